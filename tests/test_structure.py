"""The package's shape: imports point one way, without cycles, and modules stay small.

Every import counts, at the top of a module or inside a function (an import
put inside a function to dodge a cycle is still a cycle).
"""

import ast
import pathlib

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
