"""The two phases in one workdir: SRResNet pre-training before SRGAN, and a phase's hand-over.

pretrain_config: the SRResNet phase run first when config.pretrain_steps > 0.
adopt_previous_phase: with restore_compatible_only, the other phase's run moves
aside to WORKDIR/<its phase> and G starts from it.
"""

import jax
import ml_collections
from absl import logging
from etils import epath

from srgan_jax.weights import checkpoint_files
from srgan_jax.common import workdir as workdir_lib
from srgan_jax.training.config_checks import PHASES


def pretrain_config(config) -> ml_collections.ConfigDict:
  """The SRResNet phase that precedes an SRGAN run with config.pretrain_steps > 0."""
  pre = ml_collections.ConfigDict(config.to_dict())
  pre.phase = 'srresnet'
  pretrain = config.get('pretrain') or {}
  pre.loss.content = pretrain.get('content', 'mse')  # the paper: MSE; ESRGAN: L1
  pre.loss.content_weight = 1.0
  pre.loss.pixel = ''  # the pixel term is the content loss here
  pre.loss.texture_weight = 0.0  # EnhanceNet's texture term goes with the VGG content loss
  pre.num_train_steps = config.pretrain_steps
  pre.pretrain_steps = 0
  pre.generator_init = ''
  pre.optim.learning_rate = pretrain.get('learning_rate') or config.optim.learning_rate
  pre.optim.decay_steps = tuple(pretrain.get('decay_steps', ()))
  pre.optim.decay_factor = pretrain.get('decay_factor', config.optim.decay_factor)
  pre.profile_steps = ()  # config.profile_steps are the SRGAN phase's steps
  return pre


def sync(name: str) -> None:
  """A barrier of all processes (none with one process)."""
  if jax.process_count() > 1:
    from jax.experimental import multihost_utils  # pylint: disable=g-import-not-at-top

    multihost_utils.sync_global_devices(name)


def _names_this_workdir(spec: str, workdir: epath.Path) -> bool:
  """Whether a generator_init spec is the workdir itself or its checkpoints/ dir."""
  if not spec:
    return False
  path = workdir_lib.absolute(spec)
  return path in (workdir, workdir / 'checkpoints')


def adopt_previous_phase(config, workdir: epath.Path) -> ml_collections.ConfigDict:
  """restore_compatible_only in a workdir whose checkpoints are the other phase's run.

  That run moves to WORKDIR/<its phase> (the demo's layout) and, unless
  config.generator_init says otherwise, G starts from it: a new phase starts at
  step 0 with a fresh learning-rate schedule and Adam state (and D), keeping G's
  weights. A move cut short is finished by the next start; a start after the move
  (a resume, or a restart before the first checkpoint) finds G in WORKDIR/<other phase>.
  """
  if not config.get('restore_compatible_only', False):
    return config
  other = next(p for p in PHASES if p != config.phase)
  theirs = checkpoint_files.latest_phase(workdir / 'checkpoints')
  sync('srgan_jax_phase_read')  # every process has looked before process 0 moves anything
  if theirs is not None and theirs != config.phase:
    if jax.process_index() == 0:
      workdir_lib.move_run(workdir, workdir / theirs)
    sync('srgan_jax_phase_moved')
    logging.warning(
      'restore_compatible_only: %s held a %s run; moved it to %s. This %s run starts '
      'at step 0 with a fresh learning-rate schedule, Adam state and D%s.',
      workdir / 'checkpoints',
      theirs,
      workdir / theirs,
      config.phase,
      '' if config.generator_init else f", and G's weights from {workdir / theirs}",
    )
  if _names_this_workdir(config.generator_init, workdir) and checkpoint_files.has_generator(
    workdir / other
  ):
    # generator_init=WORKDIR named the other phase's run, which now lives in WORKDIR/<other>.
    config = ml_collections.ConfigDict(config.to_dict())
    config.generator_init = str(workdir / other)
    logging.info('config.generator_init names this workdir: G starts from %s', workdir / other)
  if (
    not config.generator_init
    and not config.pretrain_steps
    and checkpoint_files.has_generator(workdir / other)
  ):
    # (On a resume this run's own checkpoint is restored; G's source still passes validate_config.)
    config = ml_collections.ConfigDict(config.to_dict())
    config.generator_init = str(workdir / other)
  return config
