"""A run's checkpoint directories read without a CheckpointManager: G, meta, array shapes.

What inference, evaluation and `config.generator_init` load (through model_zoo),
what the trainer asks before it starts (is there a checkpoint, of which phase),
and what `checkpointing` shares: array shapes from Orbax metadata and the one-line
error for a checkpoint that cannot be read. Nothing here imports the data pipeline.
"""

import contextlib

import jax
import numpy as np
import orbax.checkpoint as ocp
from etils import epath

from srgan_jax.common import workdir as workdir_lib
from srgan_jax.common.errors import UserError


def leaf_shapes(tree) -> dict[str, tuple[int, ...]]:
  """{'params/conv_in/kernel': shape, ...} of a pytree of arrays, shape structs or Orbax metadata."""
  name = lambda k: str(next((getattr(k, a) for a in ('key', 'name', 'idx') if hasattr(k, a)), k))
  return {
    '/'.join(name(k) for k in path): tuple(getattr(leaf, 'shape', np.shape(leaf)))
    for path, leaf in jax.tree_util.tree_leaves_with_path(tree)
  }


def shape_differences(have: dict | None, want: dict) -> list[str]:
  """'path: checkpoint SHAPE vs this run SHAPE' for each array that differs or is on one side only."""
  if have is None:
    return ['not in the checkpoint']
  show = lambda s: 'absent' if s is None else str(tuple(s))
  order = lambda k: (not k.startswith('params/'), k)  # parameters first: they name the layer
  return [
    f'{k}: checkpoint {show(have.get(k))} vs this run {show(want.get(k))}'
    for k in sorted(set(have) | set(want), key=order)
    if have.get(k) != want.get(k)
  ]


def saved_shapes(item_dir: epath.Path) -> dict | None:
  """leaf_shapes of one saved item from its Orbax metadata (no array is read); None if absent."""
  if not item_dir.exists():
    return None
  with ocp.PyTreeCheckpointer() as ckptr:
    return leaf_shapes(ckptr.metadata(item_dir).item_metadata.tree)


@contextlib.contextmanager
def explain_unreadable(step_dir: epath.Path):
  """Turns a failure to read checkpoint `step_dir` into one line; nothing is changed on disk."""
  try:
    yield
  except Exception as error:  # damaged files: Orbax, TensorStore and json raise many kinds
    why = ' '.join(str(error).split('See full TensorStore details')[0].split())[:200]
    others = sorted(p.name for p in step_dir.parent.iterdir() if p.name.isdigit() and p != step_dir)
    before = f' (also here: {", ".join(others)})' if others else ''
    raise UserError(
      f'{step_dir} cannot be read ({type(error).__name__}: {why}); if it is damaged, '
      f'move it out of {step_dir.parent} to use the checkpoint before it{before}, or '
      'restore it from a copy.'
    ) from error


def _latest_step_dir(manager_dir: epath.Path) -> epath.Path | None:
  steps = [p for p in manager_dir.iterdir() if p.name.isdigit() and (p / 'generator').exists()]
  return max(steps, key=lambda p: int(p.name)) if steps else None


def resolve_generator_dir(path) -> epath.Path | None:
  """The step directory holding generator/ for a workdir, a checkpoints/export dir or a step dir."""
  path = workdir_lib.absolute(path)
  if not path.is_dir():
    return None
  if (path / 'generator').is_dir():
    return path
  for sub in ('checkpoints', 'export'):
    if (path / sub).is_dir():
      found = _latest_step_dir(path / sub)
      if found is not None:
        return found
  return _latest_step_dir(path)


def has_checkpoint(manager_dir) -> bool:
  manager_dir = epath.Path(manager_dir)
  return manager_dir.is_dir() and _latest_step_dir(manager_dir) is not None


def has_generator(path) -> bool:
  """Whether a workdir, checkpoints/ or export/ dir or step dir holds a generator checkpoint."""
  return resolve_generator_dir(path) is not None


def load_generator(path) -> dict:
  """{'params', 'batch_stats'} of G (host arrays) from a workdir, checkpoint or export."""
  return load_generator_with_meta(path)[0]


def _generator_step_dir(path) -> epath.Path:
  step_dir = resolve_generator_dir(path)
  if step_dir is None:
    raise UserError(
      f'no generator checkpoint under {path!s}; pass a training workdir, '
      'its checkpoints/ or export/ directory, or one step directory.'
    )
  return step_dir


def _read_meta(step_dir: epath.Path) -> dict:
  with ocp.Checkpointer(ocp.CompositeCheckpointHandler()) as ckptr:
    return ckptr.restore(step_dir, args=ocp.args.Composite(meta=ocp.args.JsonRestore()))['meta']


def load_generator_with_meta(path) -> tuple[dict, dict]:
  """(G variables, meta) where meta['model'] gives scale, num_blocks, features, tiny.

  path: a workdir, checkpoints/ or export/ dir, or a step dir (model_zoo also
  takes generator files and shipped models' names). A checkpoint of a run with
  config.ema_decay gives the moving average of G's weights, as its export does.
  """
  step_dir = _generator_step_dir(path)
  with explain_unreadable(step_dir):
    variables = restore_as_numpy(step_dir / 'generator')
    if (step_dir / 'generator_ema').is_dir():  # a run with config.ema_decay: its average
      variables = {**variables, 'params': restore_as_numpy(step_dir / 'generator_ema')['params']}
    variables.setdefault('batch_stats', {})
    meta = _read_meta(step_dir)
  return variables, meta


def generator_metadata(path) -> tuple[dict, dict]:
  """(leaf_shapes of G's saved variables, meta), read without loading the arrays."""
  step_dir = _generator_step_dir(path)
  with explain_unreadable(step_dir):
    return saved_shapes(step_dir / 'generator'), _read_meta(step_dir)


def latest_phase(manager_dir) -> str | None:
  """The phase of the newest checkpoint in a checkpoints/ dir (None: no checkpoint there)."""
  step_dir = _latest_step_dir(epath.Path(manager_dir)) if has_checkpoint(manager_dir) else None
  if step_dir is None:
    return None
  with explain_unreadable(step_dir):
    return _read_meta(step_dir).get('phase')


def restore_as_numpy(item_dir) -> dict:
  """One saved pytree item (e.g. STEP/generator) as host numpy arrays.

  Independent of the devices and processes that wrote it: a checkpoint of a
  4-device or 2-process run loads on one CPU.
  """
  with ocp.PyTreeCheckpointer() as ckptr:
    tree = ckptr.metadata(epath.Path(item_dir)).item_metadata.tree
    as_numpy = jax.tree.map(lambda _: ocp.RestoreArgs(restore_type=np.ndarray), tree)
    return ckptr.restore(epath.Path(item_dir), args=ocp.args.PyTreeRestore(restore_args=as_numpy))
