"""One style for the whole tree: the pinned formatter finds nothing to change."""

import pathlib
import re
import subprocess
import sys

import pytest

REPO = pathlib.Path(__file__).resolve().parents[1]


def _pinned_ruff() -> str:
  import tomllib  # pylint: disable=g-import-not-at-top

  extra = tomllib.loads((REPO / 'pyproject.toml').read_text())['project']['optional-dependencies']
  [pin] = [d for d in extra['test'] if d.startswith('ruff==')]
  return pin.split('==')[1]


@pytest.mark.subprocess
def test_the_tree_is_formatted_by_the_pinned_ruff():
  version = subprocess.run(
    [sys.executable, '-m', 'ruff', '--version'], capture_output=True, text=True
  )
  assert version.returncode == 0, (
    "ruff is not installed: pip install -e '.[test]' (the test extra pins it)"
  )
  found = re.search(r'\d+\.\d+\.\d+', version.stdout).group()
  assert found == _pinned_ruff(), (
    f'ruff {found} is installed but pyproject.toml pins {_pinned_ruff()} (formatting differs '
    "between versions): pip install -e '.[test]'"
  )
  r = subprocess.run(
    [sys.executable, '-m', 'ruff', 'format', '--check', '--diff', '.'],
    cwd=REPO,
    capture_output=True,
    text=True,
  )
  assert r.returncode == 0, f'run `ruff format .` to fix:\n{r.stdout[-4000:]}{r.stderr[-1000:]}'
