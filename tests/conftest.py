"""Shared fixtures: repo root importable (for configs/), where the Set5/Set14 files live."""

import os
import shutil
import sys
import tempfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
  sys.path.insert(0, str(REPO))


# One JAX compilation cache for the whole run, child processes included (they inherit the
# environment): most tests compile the same small programs (a tiny config's step, its eval), and
# compiling is most of their time. Measured on two training tests: 277 s without, 174 s with an
# empty cache. Removed at the end; a cache the caller set is used as it is.
_JIT_CACHE = None
if 'JAX_COMPILATION_CACHE_DIR' not in os.environ:
  _JIT_CACHE = tempfile.mkdtemp(prefix='srgan_jax-tests-jit-')
  os.environ['JAX_COMPILATION_CACHE_DIR'] = _JIT_CACHE
  os.environ['JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS'] = '0'
  os.environ['JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES'] = '0'


# XLA:CPU's LLVM backend at -O0 for the tests (and, through the environment, their child
# processes): compiling, not running, is most of a test's time, and the tiny programs run fast
# enough unoptimised. Measured on the U-Net D, DiffAugment, ESRGAN and degradation tests (76,
# -n 2, 2-core AMX Xeon): 212 s at XLA's default, 134 s at -O0. Set the flag yourself to test
# the optimised code (e.g. XLA_FLAGS=--xla_backend_optimization_level=2).
if 'xla_backend_optimization_level' not in os.environ.get('XLA_FLAGS', ''):
  os.environ['XLA_FLAGS'] = (
    os.environ.get('XLA_FLAGS', '') + ' --xla_backend_optimization_level=0'
  ).strip()


def pytest_sessionfinish(session, exitstatus):  # pylint: disable=unused-argument
  if _JIT_CACHE:
    shutil.rmtree(_JIT_CACHE, ignore_errors=True)


def _prepare_convolutions() -> str:
  from srgan_jax.kernels import onednn_conv  # pylint: disable=g-import-not-at-top

  return onednn_conv.prepare()  # once per process: later calls return the same line


def pytest_sessionstart(session):  # pylint: disable=unused-argument
  """Builds (or loads) the oneDNN convolution handlers at start, not inside a test's first trace."""
  _prepare_convolutions()


def pytest_report_header(config):  # pylint: disable=unused-argument
  return f'XLA:CPU convolutions: {_prepare_convolutions()}'


# Set5 and Set14 at x4, in the repository (srgan_jax/evaluation/sets/README.md).
BUNDLED_SETS = REPO / 'srgan_jax' / 'evaluation' / 'sets'


def datasets_dir() -> Path:
  """$SRGAN_JAX_DATASETS, else ../shared/datasets beside the checkout (x2 and x3 too)."""
  env = os.environ.get('SRGAN_JAX_DATASETS')
  if env:
    return Path(env)
  return REPO.parent / 'shared' / 'datasets'


@pytest.fixture(scope='session')
def datasets() -> Path:
  """Set5/ and Set14/ with image_SRF_4/: the bundled copies, present in every clone."""
  return BUNDLED_SETS


@pytest.fixture(scope='session')
def shared_datasets() -> Path:
  """Set5/ and Set14/ at x2, x3 and x4: only beside the checkout (not bundled)."""
  root = datasets_dir()
  if not (root / 'Set5' / 'image_SRF_2').is_dir() or not (root / 'Set14' / 'image_SRF_2').is_dir():
    pytest.skip(
      f'Set5/Set14 at x2 and x3 not found at {root} (only x4 is bundled); put them there '
      "or set SRGAN_JAX_DATASETS (this project's machines have ../shared/datasets)"
    )
  return root


def hr_lr_pairs(root: Path, name: str, scale: int):
  """Sorted (HR path, LR path) pairs of one set at one scale."""
  hrs = sorted((root / name / f'image_SRF_{scale}').glob('*_HR.png'))
  assert hrs, f'no HR files for {name} x{scale} under {root}'
  return [(h, h.with_name(h.name.replace('_HR', '_LR'))) for h in hrs]
