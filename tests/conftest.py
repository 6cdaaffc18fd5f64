"""Shared fixtures: repo root importable (for configs/), where the Set5/Set14 files live."""

import os
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
  sys.path.insert(0, str(REPO))


def _prepare_convolutions() -> str:
  from srgan_jax.kernels import onednn_conv  # pylint: disable=g-import-not-at-top

  return onednn_conv.prepare()  # once per process: later calls return the same line


def pytest_sessionstart(session):  # pylint: disable=unused-argument
  """Builds (or loads) the oneDNN convolution handlers at start, not inside a test's first trace."""
  _prepare_convolutions()


def pytest_report_header(config):  # pylint: disable=unused-argument
  return f'XLA:CPU convolutions: {_prepare_convolutions()}'


def datasets_dir() -> Path:
  """$SRGAN_JAX_DATASETS, else ../shared/datasets beside the checkout."""
  env = os.environ.get('SRGAN_JAX_DATASETS')
  if env:
    return Path(env)
  return REPO.parent / 'shared' / 'datasets'


@pytest.fixture(scope='session')
def datasets() -> Path:
  root = datasets_dir()
  if not (root / 'Set5').is_dir() or not (root / 'Set14').is_dir():
    pytest.skip(
      f'benchmark images not found at {root}; put Set5/Set14 there '
      'or set SRGAN_JAX_DATASETS (CI provides ../shared/datasets)'
    )
  return root


@pytest.fixture(scope='session')
def shared_datasets(datasets) -> Path:
  return datasets


def hr_lr_pairs(root: Path, name: str, scale: int):
  """Sorted (HR path, LR path) pairs of one set at one scale."""
  hrs = sorted((root / name / f'image_SRF_{scale}').glob('*_HR.png'))
  assert hrs, f'no HR files for {name} x{scale} under {root}'
  return [(h, h.with_name(h.name.replace('_HR', '_LR'))) for h in hrs]
