"""Orbax checkpoints of a run: both train states, the step, the RNG and the data iterator.

Layout of WORKDIR/checkpoints/<step>/ (one Orbax composite checkpoint per step):
  generator/      {'params', 'batch_stats'} of G: all that inference needs
  generator_ema/  {'params'}: their moving average, with config.ema_decay (inference uses it)
  g_opt/          {'step', 'opt_state'} of G's Adam
  discriminator/  D's {'params', 'batch_stats', 'step', 'opt_state'} (SRGAN phase)
  meta/           JSON: step, phase, RNG key data, the model config, the config
  data/           the Grain iterator state of each process
WORKDIR/export/<step>/ holds only generator/ and meta/: the generator-only
export written at the end of a run (the moving average's params, where kept). `checkpoint_files.load_generator` reads either.

Orbax writes each checkpoint to a temporary directory (`<step>.orbax-checkpoint-tmp-*`)
and renames it when complete (on GCS, where renames are not atomic, it writes a
commit marker last), so a save killed at any moment never becomes the latest
checkpoint; the manager deletes such leftovers when it starts.

All processes call `save` and `restore_latest` together: each writes its own
shards of the arrays and its own Grain iterator state (`data/process_<i>-of-<n>.json`).
A checkpoint written by N processes restores into M != N processes: the train
states and RNG are restored as usual, and the data iterator, whose per-process
state is not split or merged, is placed at the checkpoint's step instead, with a
warning. With the same device count this continuation is exact: the input
pipeline has one data shard per device and the batch of step t is a pure
function of t (see pipeline). Another device count means other shards,
so another sample stream; the restore warns about it.
"""

import json

import grain
import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
from absl import logging
from flax import traverse_util
from etils import epath

from srgan_jax.weights import checkpoint_files
from srgan_jax.nets import generators
from srgan_jax.data import pipeline
from srgan_jax.common.errors import UserError

# The train-state items of a checkpoint, as restore_compatible_only names them.
_ITEM_NAMES = {
  'generator': "G's weights",
  'g_opt': "G's Adam state and the step",
  'discriminator': 'D',
  'generator_ema': "G's moving average",
}


def _model_meta(config) -> dict:
  return generators.describe(config.model)


def config_differences(theirs: dict, mine: dict, labels=('checkpoint', 'config')) -> list[str]:
  """'field: checkpoint X vs config Y' (labels) for each differing field; phase, model, data first."""
  theirs, mine = (traverse_util.flatten_dict(d, sep='.') for d in (theirs, mine))
  rank = lambda f: (0 if f == 'phase' else 1 if f.startswith(('model.', 'data.')) else 2, f)
  return [
    f'{f}: {labels[0]} {theirs.get(f)!r} vs {labels[1]} {mine.get(f)!r}'
    for f in sorted(set(theirs) | set(mine), key=rank)
    if theirs.get(f) != mine.get(f)
  ]


class Checkpointer:
  """Periodic, async, keep-last-N checkpoints of a run in `directory`."""

  def __init__(self, directory, config):
    self.directory = epath.Path(directory)
    self._config = config
    options = ocp.CheckpointManagerOptions(
      max_to_keep=config.keep_checkpoints,
      create=True,
      enable_async_checkpointing=True,
      cleanup_tmp_directories=True,
    )
    self._mngr = ocp.CheckpointManager(self.directory, options=options)
    self._export_dir = self.directory.parent / 'export'

  def _meta(self, step, rng):
    return {
      'step': int(step),
      'phase': self._config.phase,
      'model': _model_meta(self._config),
      **_ema_meta(self._config),
      'rng': np.asarray(jax.random.key_data(rng)).tolist(),
      'process_count': jax.process_count(),
      'device_count': jax.device_count(),
      'config': json.loads(self._config.to_json_best_effort()),
    }

  def save(self, step: int, g_state, d_state, rng, data_iter) -> None:
    items = {
      'generator': ocp.args.StandardSave(
        {'params': g_state.params, 'batch_stats': g_state.batch_stats}
      ),
      'g_opt': ocp.args.StandardSave({'step': g_state.step, 'opt_state': g_state.opt_state}),
      'meta': ocp.args.JsonSave(self._meta(step, rng)),
      'data': grain.checkpoint.CheckpointSave(data_iter),
    }
    if d_state is not None:
      items['discriminator'] = ocp.args.StandardSave(_d_tree(d_state))
    if g_state.ema_params is not None:
      items['generator_ema'] = ocp.args.StandardSave({'params': g_state.ema_params})
    self._mngr.save(step, args=ocp.args.Composite(**items), force=True)

  def latest_step(self) -> int | None:
    return self._mngr.latest_step()

  def reached_preemption(self, step: int) -> bool:
    """Orbax's multi-process preemption sync point (see srgan_jax.preemption)."""
    return self._mngr.reached_preemption(step)

  def restore_latest(self, g_state, d_state, data_iter):
    """(g_state, d_state, rng) from the newest complete checkpoint, or None if there is none.

    `data_iter` is restored in place, so the run continues the same sample sequence.
    Whether the checkpoint fits is decided from its arrays' shapes (Orbax metadata)
    against this run's states: a checkpoint of another config is refused, naming the
    differing fields and arrays; one that fits but cannot be read is reported as
    damaged. With config.restore_compatible_only, a checkpoint of the same phase
    restores the networks whose shapes fit (G's Adam state and the step come with
    G's weights) and starts the others fresh. (A checkpoint of the other phase is
    moved aside by the train loop first: see phases.adopt_previous_phase.)
    """
    step = self._mngr.latest_step()
    if step is None:
      return None
    step_dir = self.directory / str(step)
    targets = {
      'generator': {'params': g_state.params, 'batch_stats': g_state.batch_stats},
      'g_opt': {'step': g_state.step, 'opt_state': g_state.opt_state},
    }
    if d_state is not None:
      targets['discriminator'] = _d_tree(d_state)
    # A checkpoint without a moving average (one from before config.ema_decay was set) still
    # restores: the average starts from G's restored weights.
    ema_saved = (step_dir / 'generator_ema').exists()
    if g_state.ema_params is not None and ema_saved:
      targets['generator_ema'] = {'params': g_state.ema_params}
    with checkpoint_files.explain_unreadable(step_dir):
      meta = self._mngr.restore(step, args=ocp.args.Composite(meta=ocp.args.JsonRestore()))['meta']
      misfits = {
        name: checkpoint_files.shape_differences(
          checkpoint_files.saved_shapes(step_dir / name), checkpoint_files.leaf_shapes(tree)
        )
        for name, tree in targets.items()
      }
    misfits = {name: diff for name, diff in misfits.items() if diff}
    partial = self._config.get('restore_compatible_only', False)
    other_phase = meta.get('phase', self._config.phase) != self._config.phase
    if other_phase or (misfits and not partial):
      self._refuse(step, meta, misfits)
    if 'generator' in misfits:
      misfits.setdefault('g_opt', ["the step and G's Adam state go with its weights"])
      if 'generator_ema' in targets:
        misfits.setdefault('generator_ema', ['the moving average goes with its weights'])
    items = {
      name: ocp.args.StandardRestore(tree) for name, tree in targets.items() if name not in misfits
    }
    same_processes = meta.get('process_count', jax.process_count()) == jax.process_count()
    if (
      same_processes and not misfits
    ):  # else each process's saved position belongs to another sharding
      items['data'] = grain.checkpoint.CheckpointRestore(data_iter)
    with checkpoint_files.explain_unreadable(step_dir):
      r = self._mngr.restore(step, args=ocp.args.Composite(**items))
    if 'generator' in r:
      g_state = g_state.replace(
        params=r['generator']['params'], batch_stats=r['generator'].get('batch_stats', {})
      )
      if g_state.ema_params is not None:
        if 'generator_ema' in r:
          g_state = g_state.replace(ema_params=r['generator_ema']['params'])
        else:  # own buffers: the step donates params and average separately
          g_state = g_state.replace(ema_params=jax.tree.map(jnp.copy, g_state.params))
          logging.warning(
            '%s has no moving average of G (written with config.ema_decay=0); it starts '
            "from G's restored weights.",
            step_dir,
          )
    if 'g_opt' in r:
      g_state = g_state.replace(step=r['g_opt']['step'], opt_state=r['g_opt']['opt_state'])
    if d_state is not None and 'discriminator' in r:
      d_state = d_state.replace(**r['discriminator'])
    if misfits:
      logging.warning(
        'restore_compatible_only: %s: restored %s; fresh: %s; the run continues at step %d.',
        step_dir,
        ', '.join(_ITEM_NAMES[n] for n in targets if n not in misfits) or 'nothing',
        '; '.join(f'{_ITEM_NAMES[n]} ({d[0]})' for n, d in misfits.items()),
        int(g_state.step),
      )
    if 'data' not in r:
      why = (
        f'it was written by {meta.get("process_count")} processes and this run has '
        f'{jax.process_count()}'
        if not same_processes
        else 'only compatible parts were restored'
      )
      logging.warning(
        '%s/%d: the data iterator state is not restored (%s); the sample stream '
        'continues from step %d, as it would have without the interruption.',
        self.directory,
        step,
        why,
        int(g_state.step),
      )
      pipeline.seek(data_iter, int(g_state.step))
    devices = meta.get('device_count', jax.device_count())
    if devices != jax.device_count():
      logging.warning(
        '%s/%d was written by a run on %d devices and this run has %d: the data has '
        'one shard per device, so the sample stream from here on differs from the '
        'one the checkpointed run would have seen.',
        self.directory,
        step,
        devices,
        jax.device_count(),
      )
    rng = jax.random.wrap_key_data(np.asarray(meta['rng'], dtype=np.uint32))
    return g_state, d_state, rng

  def _refuse(self, step: int, meta: dict, misfits: dict) -> None:
    """The one-line error for a checkpoint of another config (not a damaged one)."""
    fields = config_differences(
      meta.get('config', {}), json.loads(self._config.to_json_best_effort())
    )
    arrays = [f'{n} {d[0]}' for n, d in misfits.items()]
    details = (
      fields[:4] + ([f'{len(fields) - 4} more fields'] if len(fields) > 4 else []) + arrays[:3]
    )
    raise UserError(
      f'{self.directory}/{step} was written by another config ({"; ".join(details)}); '
      'use a fresh --workdir or the matching config, or pass '
      '--config.restore_compatible_only=True to restore only the parts that fit.'
    )

  def save_export(self, step: int, g_state) -> None:
    """The generator-only export (WORKDIR/export/<step>) that inference loads."""
    # The run's own save of this step must be committed first: on several processes the two
    # managers would otherwise share the commit barrier named after the step.
    self._mngr.wait_until_finished()
    mngr = ocp.CheckpointManager(
      self._export_dir,
      options=ocp.CheckpointManagerOptions(
        max_to_keep=1, create=True, enable_async_checkpointing=False
      ),
    )
    params = g_state.params if g_state.ema_params is None else g_state.ema_params
    meta = {'step': int(step), 'phase': self._config.phase, 'model': _model_meta(self._config)}
    mngr.save(
      step,
      args=ocp.args.Composite(
        generator=ocp.args.StandardSave({'params': params, 'batch_stats': g_state.batch_stats}),
        meta=ocp.args.JsonSave({**meta, **_ema_meta(self._config)}),
      ),
      force=True,
    )
    mngr.wait_until_finished()
    mngr.close()

  def wait(self) -> None:
    self._mngr.wait_until_finished()

  def close(self) -> None:
    self._mngr.wait_until_finished()
    self._mngr.close()


def _ema_meta(config) -> dict:
  """{'ema_decay': d} where G's moving average is kept (and is what inference loads)."""
  return {'ema_decay': config.ema_decay} if config.get('ema_decay', 0.0) else {}


def _d_tree(d_state) -> dict:
  return {
    'params': d_state.params,
    'batch_stats': d_state.batch_stats,
    'step': d_state.step,
    'opt_state': d_state.opt_state,
  }
