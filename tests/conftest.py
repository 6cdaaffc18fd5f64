"""Shared fixtures: where the Set5/Set14 benchmark files live."""

import os
from pathlib import Path

import pytest


def datasets_dir() -> Path:
  """$SRGAN_JAX_DATASETS, else ../shared/datasets beside the checkout."""
  env = os.environ.get('SRGAN_JAX_DATASETS')
  if env:
    return Path(env)
  return Path(__file__).resolve().parents[1].parent / 'shared' / 'datasets'


@pytest.fixture(scope='session')
def datasets() -> Path:
  root = datasets_dir()
  if not (root / 'Set5').is_dir() or not (root / 'Set14').is_dir():
    pytest.skip(f'benchmark images not found at {root}; put Set5/Set14 there '
                'or set SRGAN_JAX_DATASETS')
  return root


def hr_lr_pairs(root: Path, name: str, scale: int):
  """Sorted (HR path, LR path) pairs of one set at one scale."""
  hrs = sorted((root / name / f'image_SRF_{scale}').glob('*_HR.png'))
  assert hrs, f'no HR files for {name} x{scale} under {root}'
  return [(h, h.with_name(h.name.replace('_HR', '_LR'))) for h in hrs]
