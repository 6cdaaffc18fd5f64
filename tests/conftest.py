"""Shared test setup: repo root importable (for configs/), paths to ../shared."""

import pathlib
import sys

import pytest

REPO = pathlib.Path(__file__).resolve().parents[1]
SHARED_DATASETS = REPO.parent / 'shared' / 'datasets'
if str(REPO) not in sys.path:
  sys.path.insert(0, str(REPO))


@pytest.fixture
def shared_datasets() -> pathlib.Path:
  if not (SHARED_DATASETS / 'Set5').is_dir():
    pytest.skip(f'benchmark images not found at {SHARED_DATASETS} (CI provides ../shared/datasets)')
  return SHARED_DATASETS
