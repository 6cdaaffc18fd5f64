"""README.md's commands are the ones that CI and users run."""

import pathlib
import re

REPO = pathlib.Path(__file__).resolve().parents[1]


def _bash_blocks(text):
  return re.findall(r'```bash\n(.*?)```', text, flags=re.S)


def test_readme_opens_with_the_demo_and_the_test_command_and_ci_runs_the_latter():
  blocks = _bash_blocks((REPO / 'README.md').read_text())
  demo, tests = blocks[0].strip(), blocks[1].strip()
  assert 'srgan_jax.main' in demo and ':demo' in demo and 'pip install' in demo
  assert 'pytest' in tests and "pip install -e '.[test]'" in tests
  ci_lines = [l.strip() for l in (REPO / '.ci' / 'run').read_text().splitlines()]
  assert tests in ci_lines
