"""The package's shape: five parts, imports pointing one way, no cycles, small modules.

The parts (docs/architecture.md): nets/ and data/ at the bottom with weights/,
common/ and kernels/ below them; evaluation/ above nets and data; training/ above
evaluation, using only its public modules; the commands (srgan_jax/*.py, the
benchmark) on top, imported by no part.

Every import counts, at the top of a module or inside a function (an import
put inside a function to dodge a cycle is still a cycle).
"""

import ast
import importlib
import os
import pathlib
import re
import shutil
import subprocess
import sys
import tomllib

import pytest

REPO = pathlib.Path(__file__).resolve().parents[1]
# Who may import the trainer: its entry point and the benchmarks (which time its step).
TRAIN_IMPORTERS = ('srgan_jax.main', 'srgan_jax.benchmark', 'benchmarks')
# Where training and inference start: nothing they reach may be the benchmark or torch.
ENTRY_POINTS = (
  'srgan_jax.main',
  'srgan_jax.evaluate',
  'srgan_jax.upscale',
  'srgan_jax.model_zoo',
  'srgan_jax.convert_vgg',
)
MAX_LINES = 400
# Each part (a folder of srgan_jax) and the other parts it may import.
PARTS = {
  'common': set(),
  'kernels': {'common'},
  'weights': {'common'},
  'data': {'common'},
  'nets': {'common', 'kernels', 'weights'},
  'evaluation': {'common', 'kernels', 'weights', 'nets', 'data'},
  'training': {'common', 'kernels', 'weights', 'nets', 'data', 'evaluation'},
}
# What training may use of evaluation: its eval sets, metrics and sample grids.
EVALUATION_PUBLIC = ('metrics', 'validation', 'inference')


def module_names(
  root: pathlib.Path, packages=('srgan_jax', 'benchmarks')
) -> dict[str, pathlib.Path]:
  """{'srgan_jax.kernels.fast_conv': path, ...} of every module under `packages`."""
  names = {}
  for package in packages:
    for path in sorted((root / package).rglob('*.py')):
      parts = path.relative_to(root).with_suffix('').parts
      names['.'.join(parts[:-1] if parts[-1] == '__init__' else parts)] = path
  return names


def imports(path: pathlib.Path, known: set[str]) -> dict[str, set[str]]:
  """{'modules': this project's modules `path` imports, 'external': top-level packages}."""
  found, external = set(), set()
  for node in ast.walk(ast.parse(path.read_text())):
    if isinstance(node, ast.Import):
      for alias in node.names:
        (found if alias.name in known else external).add(
          alias.name if alias.name in known else alias.name.split('.')[0]
        )
    elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
      for alias in node.names:  # `from pkg import mod` imports a module; `from mod import name` not
        full = f'{node.module}.{alias.name}'
        if full in known:
          found.add(full)
        elif node.module in known:
          found.add(node.module)
        else:
          external.add(node.module.split('.')[0])
  return {'modules': found, 'external': external}


def import_graph(root: pathlib.Path = REPO) -> tuple[dict[str, set[str]], dict[str, set[str]]]:
  """(module -> the project's modules it imports, module -> external packages it imports)."""
  names = module_names(root)
  parsed = {m: imports(p, set(names)) for m, p in names.items()}
  return (
    {m: i['modules'] - {m} for m, i in parsed.items()},
    {m: i['external'] for m, i in parsed.items()},
  )


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
  """One import cycle as [a, b, ..., a], or None."""
  state, stack = {}, []

  def visit(m):
    state[m] = 'open'
    stack.append(m)
    for n in sorted(graph.get(m, ())):
      if state.get(n) == 'open':
        return stack[stack.index(n) :] + [n]
      if n not in state and (cycle := visit(n)):
        return cycle
    stack.pop()
    state[m] = 'done'
    return None

  for m in sorted(graph):
    if m not in state and (cycle := visit(m)):
      return cycle
  return None


def reachable(graph: dict[str, set[str]], starts) -> set[str]:
  seen, todo = set(), list(starts)
  while todo:
    m = todo.pop()
    if m not in seen:
      seen.add(m)
      todo.extend(graph.get(m, ()))
  return seen


def _within(module: str, prefixes) -> bool:
  return any(module == p or module.startswith(p + '.') for p in prefixes)


def part_of(module: str) -> str | None:
  """'nets' for srgan_jax.nets.vgg; None for a command (srgan_jax.upscale, the benchmark)."""
  parts = module.split('.')
  return parts[1] if parts[0] == 'srgan_jax' and len(parts) > 1 and parts[1] in PARTS else None


def part_violations(graph: dict[str, set[str]]) -> list[str]:
  """'a -> b (why)' for each import that goes against PARTS and EVALUATION_PUBLIC."""
  bad = []
  for m, deps in sorted(graph.items()):
    mine = part_of(m)
    if mine is None:
      continue  # a command: may import any part
    for d in sorted(deps):
      theirs = part_of(d)
      if d.startswith(('srgan_jax', 'benchmarks')) and theirs is None and d != 'srgan_jax':
        bad.append(f'{m} -> {d} (a part imports a command)')
      elif theirs not in (None, mine) and theirs not in PARTS[mine]:
        bad.append(f'{m} -> {d} ({mine} may import only {sorted(PARTS[mine])})')
      elif (mine, theirs) == ('training', 'evaluation') and d.rsplit('.', 1)[1] not in (
        EVALUATION_PUBLIC
      ):
        bad.append(f"{m} -> {d} (evaluation's internals)")
  return bad


def test_every_module_of_the_package_lives_in_a_part_or_is_a_command():
  graph, _ = import_graph()
  folders = {m.split('.')[1] for m in graph if m.count('.') >= 2 and m.startswith('srgan_jax.')}
  assert folders == set(PARTS) | {'benchmark'}, folders


def test_each_part_imports_only_the_parts_below_it():
  graph, _ = import_graph()
  assert not part_violations(graph), part_violations(graph)


def test_the_part_rules_catch_an_upward_import_a_command_import_and_an_internal(tmp_path):
  files = {
    '__init__': '',
    'upscale': 'from srgan_jax.nets import srgan\n',  # a command may import anything
    'nets/__init__': '',
    'nets/srgan': 'from srgan_jax.training import loop\n',  # upward
    'data/__init__': '',
    'data/pipeline': 'def f():\n  from srgan_jax import upscale\n',  # a command, lazily
    'training/__init__': '',
    'training/loop': 'from srgan_jax.evaluation import tiling, metrics\n',  # tiling: internal
    'evaluation/__init__': '',
    'evaluation/tiling': '',
    'evaluation/metrics': '',
  }
  for name, text in files.items():
    (tmp_path / 'srgan_jax' / name).parent.mkdir(parents=True, exist_ok=True)
    (tmp_path / 'srgan_jax' / f'{name}.py').write_text(text)
  (tmp_path / 'benchmarks').mkdir()
  graph, _ = import_graph(tmp_path)
  assert [v.split(' (')[0] for v in part_violations(graph)] == [
    'srgan_jax.data.pipeline -> srgan_jax.upscale',
    'srgan_jax.nets.srgan -> srgan_jax.training.loop',
    'srgan_jax.training.loop -> srgan_jax.evaluation.tiling',
  ]


def test_the_import_graph_has_no_cycle():
  graph, _ = import_graph()
  assert find_cycle(graph) is None, ' -> '.join(find_cycle(graph))


def test_only_main_and_the_benchmarks_import_the_trainer():
  graph, _ = import_graph()
  importers = sorted(m for m, deps in graph.items() if 'srgan_jax.training.loop' in deps)
  assert importers and all(_within(m, TRAIN_IMPORTERS) for m in importers), importers


def test_training_and_inference_reach_neither_the_benchmark_nor_torch():
  graph, external = import_graph()
  reached = reachable(graph, ENTRY_POINTS)
  assert (
    'srgan_jax.training.loop' in reached and 'srgan_jax.evaluation.inference' in reached
  )  # the walk works
  assert not [m for m in reached if _within(m, ('srgan_jax.benchmark',))]
  assert not [m for m in reached if 'torch' in external[m]]
  # The PyTorch reference is imported by the benchmark's worker and nothing else.
  assert [m for m, deps in graph.items() if 'srgan_jax.benchmark.torch_reference' in deps] == [
    'srgan_jax.benchmark.torch_worker'
  ]


def test_the_checks_above_fail_on_a_cycle_and_on_a_stray_import_of_the_trainer(tmp_path):
  (tmp_path / 'srgan_jax' / 'training').mkdir(parents=True)
  (tmp_path / 'benchmarks').mkdir()
  files = {
    '__init__': '',
    'training/__init__': '',
    'training/loop': 'from srgan_jax.training import writers\n',
    'training/writers': 'def grid():\n  from srgan_jax.training import loop\n',  # lazy, still a cycle
    'upscale': 'from srgan_jax.training import loop\n',
  }
  for name, text in files.items():
    (tmp_path / 'srgan_jax' / f'{name}.py').write_text(text)
  graph, _ = import_graph(tmp_path)
  assert find_cycle(graph) == [
    'srgan_jax.training.loop',
    'srgan_jax.training.writers',
    'srgan_jax.training.loop',
  ]
  importers = [m for m, deps in graph.items() if 'srgan_jax.training.loop' in deps]
  assert not all(_within(m, TRAIN_IMPORTERS) for m in importers)


@pytest.mark.parametrize('module', sorted(module_names(REPO)))
def test_no_module_is_over_400_lines(module):
  lines = len(module_names(REPO)[module].read_text().splitlines())
  assert lines <= MAX_LINES, f'{module}: {lines} lines; split it by job'


def test_every_command_at_the_package_root_has_a_console_script_that_names_a_function():
  scripts = tomllib.loads((REPO / 'pyproject.toml').read_text())['project']['scripts']
  targets = {}
  for name, target in scripts.items():
    module, _, func = target.partition(':')
    assert callable(getattr(importlib.import_module(module), func)), name
    targets[module] = name
  commands = {
    m
    for m, path in module_names(REPO).items()
    if path.parent == REPO / 'srgan_jax' and path.name != '__init__.py'
  }
  assert commands == set(targets), sorted(commands ^ set(targets))


@pytest.mark.subprocess
def test_a_console_script_runs_as_its_python_m_twin():
  exe = shutil.which('srgan-zoo', path=os.path.dirname(sys.executable))
  if exe is None:
    pytest.skip('console scripts not installed in this environment (pip install -e .)')
  out = subprocess.run([exe, 'list'], capture_output=True, text=True, check=True).stdout
  twin = subprocess.run(
    [sys.executable, '-m', 'srgan_jax.model_zoo', 'list'],
    capture_output=True,
    text=True,
    check=True,
  ).stdout
  # The same lines; where each model file lies depends on which checkout the install points at.
  where = lambda text: [re.sub(r' \(/[^()]*\)$', '', l) for l in text.splitlines()]
  assert where(out) == where(twin) and 'srresnet_x4' in out
