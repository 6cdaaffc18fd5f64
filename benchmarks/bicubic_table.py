"""Bicubic baseline on Set5/Set14, measured next to the published table.

Upsamples each MATLAB-made `_LR.png` by S with our uint8 imresize and scores
it against `_HR.png` with the SR protocol (Y channel, crop S, PSNR/SSIM).

  python -m benchmarks.bicubic_table [--datasets DIR]

DIR defaults to $SRGAN_JAX_DATASETS, else ../shared/datasets beside the repo.
Runs in about 20 s on 2 CPU cores.
"""

import argparse
import os
from pathlib import Path

import numpy as np

from srgan_jax.data.image_io import is_grayscale_file, load_rgb
from srgan_jax.data.imresize import imresize_uint8
from srgan_jax.evaluation.metrics import psnr_y, ssim_y

# README of shared/datasets: (PSNR dB, SSIM) of bicubic upsampling.
PUBLISHED = {
  ('Set5', 2): (33.66, 0.9299),
  ('Set5', 3): (30.39, 0.8682),
  ('Set5', 4): (28.42, 0.8104),
  ('Set14', 2): (30.24, 0.8688),
  ('Set14', 3): (27.55, 0.7742),
  ('Set14', 4): (26.00, 0.7027),
}


def default_datasets_dir() -> Path:
  env = os.environ.get('SRGAN_JAX_DATASETS')
  if env:
    return Path(env)
  return Path(__file__).resolve().parents[1].parent / 'shared' / 'datasets'


def bicubic_scores(root: Path, name: str, scale: int, round_y: bool = False):
  """Mean (PSNR, SSIM) of bicubic x`scale` over one set."""
  hr_files = sorted((root / name / f'image_SRF_{scale}').glob('*_HR.png'))
  if not hr_files:
    raise FileNotFoundError(f'no *_HR.png under {root / name}; pass --datasets.')
  p, s = [], []
  for hr_path in hr_files:
    hr = load_rgb(hr_path)
    lr = load_rgb(hr_path.with_name(hr_path.name.replace('_HR', '_LR')))
    sr = imresize_uint8(lr, scale=scale)
    if is_grayscale_file(hr_path):  # protocol: gray files scored as-is
      sr, hr = sr[..., :1], hr[..., :1]
    p.append(float(psnr_y(sr, hr, crop_border=scale, round_y=round_y)))
    s.append(float(ssim_y(sr, hr, crop_border=scale, round_y=round_y)))
  return float(np.mean(p)), float(np.mean(s))


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--datasets', type=Path, default=default_datasets_dir())
  args = parser.parse_args()
  print(f'{"set":6} {"x":>2}  {"ours (float Y)":>16}  {"ours (rounded Y)":>16}  {"published":>16}')
  for (name, scale), (pp, ps) in PUBLISHED.items():
    try:
      fp, fs = bicubic_scores(args.datasets, name, scale, round_y=False)
      rp, rs = bicubic_scores(args.datasets, name, scale, round_y=True)
    except FileNotFoundError as e:
      raise SystemExit(str(e)) from None
    print(f'{name:6} x{scale}  {fp:7.2f} / {fs:.4f}  {rp:7.2f} / {rs:.4f}  {pp:7.2f} / {ps:.4f}')


if __name__ == '__main__':
  main()
