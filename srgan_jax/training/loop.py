"""SRResNet pre-training and SRGAN training: the run, told top to bottom.

train_and_evaluate is one function in stages, each under a banner:
  phases and config -> mesh and input -> models and optimizers (restore or init;
  WORKDIR/config.json) -> the update step (compiled up front, its memory logged)
  -> loop: step, log, sample grid, eval, checkpoint (profile steps) -> the end.
The parts live beside it: config_checks (the one-line errors), train_states (G, D and
Adam), update_step (the losses and the jitted step), phases (SRResNet before SRGAN),
run_log (config.json, the compile log, the profiler), checkpointing, pipeline,
writers, validation.
"""

import collections
import functools
import time

import jax
import ml_collections
import numpy as np
from absl import logging
from jax.sharding import NamedSharding, PartitionSpec as P

from srgan_jax.weights import checkpoint_files
from srgan_jax.training import checkpointing
from srgan_jax.training import config_checks
from srgan_jax.evaluation import inference
from srgan_jax.data import pipeline
from srgan_jax.weights import zoo
from srgan_jax.training import nonfinite
from srgan_jax.training import phases
from srgan_jax.training import preemption
from srgan_jax.training import run_log
from srgan_jax.training import train_states
from srgan_jax.training import update_step
from srgan_jax.evaluation import validation
from srgan_jax.training import writers
from srgan_jax.common import workdir as workdir_lib
from srgan_jax.kernels import fast_conv

# The host dispatches at most this many steps beyond the last one known finished:
# enough to keep the device busy, and a stop (SIGTERM) is acted on within a step or
# two whatever log_every is (a fetch of metrics, where the host would otherwise
# wait, comes only every log_every steps).
MAX_STEPS_AHEAD = 2


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str):
  """Trains per config in workdir (resuming from its latest checkpoint); returns the final states."""
  # --------------------------------------------------------------------------
  # Phases and config: SRResNet first if asked, then the one-line config errors.
  workdir = workdir_lib.absolute(workdir)
  config = phases.adopt_previous_phase(config, workdir)
  if config.phase == 'srgan' and config.pretrain_steps and not config.generator_init:
    if not checkpoint_files.has_checkpoint(workdir / 'checkpoints'):  # else phase 1 is long done
      logging.info(
        'Phase 1/2: SRResNet pre-training, %d steps, in %s',
        config.pretrain_steps,
        workdir / 'srresnet',
      )
      g_state, _ = train_and_evaluate(phases.pretrain_config(config), str(workdir / 'srresnet'))
      if int(g_state.step) < config.pretrain_steps:  # preempted in phase 1: stop, resume later
        return g_state, None
    config = ml_collections.ConfigDict(config.to_dict())
    config.generator_init = str(workdir / 'srresnet')
    logging.info('Phase 2/2: SRGAN initialised from %s', config.generator_init)
  config_checks.validate_config(config)
  config = config_checks.check_vgg_weights(config)
  content_loss, vgg_params = update_step.load_content_loss(config)

  # --------------------------------------------------------------------------
  # Mesh and input: one data shard per device (see pipeline).
  mesh = update_step.make_mesh()
  batch_sharding = NamedSharding(mesh, P('data'))
  replicated = NamedSharding(mesh, P())
  local_shards = [
    i for i, d in enumerate(mesh.devices.flat) if d.process_index == jax.process_index()
  ]
  train_iter = pipeline.create_train_iterator(
    config,
    jax.process_index(),
    jax.process_count(),
    num_shards=jax.device_count(),
    local_shards=local_shards,
  )
  val_hr = pipeline.load_val_crops(config) if config.sample_every else None
  eval_sets = (
    validation.load_sets(config.eval.sets, config.model.scale)
    if config.eval.every and config.eval.sets
    else None
  )
  lpips_fn = None
  if eval_sets and config.eval.get('lpips'):
    from srgan_jax.nets import lpips  # pylint: disable=g-import-not-at-top

    lpips_fn = lpips.make_lpips(config.eval.lpips)

  # --------------------------------------------------------------------------
  # Models and optimizers: restore the latest checkpoint, or start fresh.
  rng = jax.random.key(config.seed)
  init_rng, rng = jax.random.split(rng)
  g_state, d_state = jax.jit(
    functools.partial(train_states.create_train_states, config),
    out_shardings=replicated,
    compiler_options=fast_conv.compiler_options(),
  )(init_rng)
  ckpt = checkpointing.Checkpointer(workdir / 'checkpoints', config)
  try:
    restored = ckpt.restore_latest(g_state, d_state, train_iter)
  except BaseException:  # e.g. a damaged checkpoint: close Orbax's manager and its threads first
    ckpt.close()
    raise
  if restored is not None:
    g_state, d_state, rng = restored
    logging.info('Resumed from %s at step %d', ckpt.directory, int(g_state.step))
  elif config.generator_init:
    g_vars = zoo.load_generator(config.generator_init)
    g_state = train_states.with_params(g_state, g_vars['params'], g_vars['batch_stats'])
    if zoo.is_model_name(config.generator_init):
      logging.info(
        'Initialised G from the shipped model %s: %s',
        config.generator_init,
        zoo.MODELS[config.generator_init][2],
      )
    else:
      logging.info('Initialised G from the generator in %s', config.generator_init)
  g_state, d_state = jax.device_put((g_state, d_state), replicated)
  vgg_params = jax.device_put(vgg_params, replicated)
  first_step = int(g_state.step)
  total = config.num_train_steps
  run_log.write_config(workdir, config, first_step)  # the config as this run resolved it

  # --------------------------------------------------------------------------
  # The update step: jitted over the mesh, states replicated and donated; compiled
  # here, before step 1, with its compile time and memory in the log.
  step_fn = update_step.make_jitted_step(config, mesh, content_loss)
  if first_step < total:
    crop = config.data.hr_crop
    batch_spec = jax.ShapeDtypeStruct(
      (config.data.batch_size, crop, crop, 3), np.uint8, sharding=batch_sharding
    )
    step_fn = run_log.compile_step(step_fn, g_state, d_state, {'hr': batch_spec}, vgg_params)

  # --------------------------------------------------------------------------
  # Metrics: fetched every log_every steps, checked finite before any checkpoint.
  writer = writers.MetricWriter(workdir, enabled=jax.process_index() == 0)
  predict = inference.jit_predict()
  # Scores as `evaluate` computes them (in bf16 on one CPU: the fused SRResNet, same parameters).
  eval_apply = inference.generator_apply(config.model, config.model.get('compute_dtype', 'float32'))
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

  # --------------------------------------------------------------------------
  # The loop: step, log, sample grid, eval, checkpoint; SIGTERM saves and returns.
  profiler = run_log.StepProfiler(workdir, config.profile_steps, jax.process_index() == 0)
  with preemption.watch_sigterm() as stop_flag, profiler:
    for step in range(first_step + 1, total + 1):
      local = next(train_iter)
      batch = {'hr': jax.make_array_from_process_local_data(batch_sharding, local['hr'])}
      profiler.start(step)
      with profiler.annotate(step):
        g_state, d_state, metrics = step_fn(g_state, d_state, batch, vgg_params)
      profiler.stop(step, metrics)
      pending.append(({**metrics, 'step': step}, local['hr']))
      in_flight.append(metrics['g_loss'])
      while len(in_flight) > MAX_STEPS_AHEAD:  # so that a stop is acted on within a step or two
        preemption.wait_until_ready(in_flight.popleft())
      if step % config.log_every == 0 or step == total:
        flush(step)
      g_used = train_states.inference_state(g_state)  # G's moving average, where kept
      if val_hr is not None and (step % config.sample_every == 0 or step == total):
        writers.write_sample_grid(writer, workdir, step, val_hr, config, g_used, predict)
      if eval_sets and (step % config.eval.every == 0 or step == total):
        scores = validation.evaluate_sets(
          functools.partial(predict, eval_apply),
          {'params': g_used.params, 'batch_stats': g_used.batch_stats},
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

  # --------------------------------------------------------------------------
  # The end: the generator-only export, the DONE marker.
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
