"""Fault tolerance: preemption, kill -9, non-finite losses and foreign checkpoints.

A run stopped by SIGTERM saves at the step it reached and exits 0; the same
command resumes it, bit for bit. A run killed at any moment, even mid-save,
resumes from its newest complete checkpoint. A non-finite loss stops the run
with a report and without a poisoned checkpoint.
"""

import gc
import json
import os
import signal
import threading
import time

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from srgan_jax.training import run_log
from srgan_jax.training import loop
from srgan_jax.training import update_step
from srgan_jax.common.errors import UserError
from tests import main_runs
from tests.helpers import tiny_config

pytestmark = pytest.mark.slow  # every test here trains, stops and resumes runs

ENDLESS = '--config.num_train_steps=1000000'


def _wait_for_line(proc, needle, timeout=120) -> list[str]:
  lines, deadline = [], time.time() + timeout
  while time.time() < deadline:
    line = proc.stderr.readline()
    if not line:
      break
    lines.append(line)
    if needle in line:
      return lines
  proc.kill()
  raise AssertionError(f'{needle!r} never appeared:\n' + ''.join(lines[-30:]))


def test_sigterm_saves_at_the_current_step_and_the_resumed_run_is_bitwise_identical(tmp_path):
  stopped, straight = tmp_path / 'stopped', tmp_path / 'straight'
  proc = main_runs.start(stopped, ENDLESS, '--config.checkpoint_every=1000000')
  _wait_for_line(proc, 'step 3 |')  # stepping, and past the first checkpoint-free steps
  proc.send_signal(signal.SIGTERM)
  _, rest = proc.communicate(timeout=120)
  assert proc.returncode == 0, rest[-3000:]
  k = int(rest.split('Preempted: saved a checkpoint at step ')[1].split()[0])
  assert k >= 3
  assert main_runs.complete_steps(stopped) == [k]  # saved at the current step, nothing else
  assert json.loads((stopped / 'metrics.jsonl').read_text().splitlines()[-1])['step'] == k
  assert not (stopped / 'DONE').exists()

  # The same command (to a final step) resumes there; an uninterrupted run ends identically.
  n = k + 3
  r = main_runs.run(stopped, f'--config.num_train_steps={n}')
  assert r.returncode == 0, r.stderr[-3000:]
  assert f'at step {k}' in r.stderr and (stopped / 'DONE').read_text().strip() == str(n)
  r = main_runs.run(straight, f'--config.num_train_steps={n}')
  assert r.returncode == 0, r.stderr[-3000:]
  resumed, uninterrupted = main_runs.read_state(stopped, n), main_runs.read_state(straight, n)
  assert resumed.keys() == uninterrupted.keys() and len(resumed) > 10
  for name in resumed:
    assert np.array_equal(resumed[name], uninterrupted[name]), name


def test_kill_9_during_a_save_resumes_from_the_newest_complete_checkpoint(tmp_path):
  wd = tmp_path / 'run'
  proc = main_runs.start(wd, ENDLESS, '--config.checkpoint_every=1')
  deadline = time.time() + 120
  while not (main_runs.tmp_dirs(wd) and main_runs.complete_steps(wd)):  # a save in flight
    assert time.time() < deadline and proc.poll() is None, 'no checkpoint save was seen'
    time.sleep(0.002)
  proc.kill()  # SIGKILL: no handler, no cleanup
  proc.communicate(timeout=60)
  newest = main_runs.complete_steps(wd)[-1]
  # Also a save that died long ago, for a later step than any complete one.
  partial = wd / 'checkpoints' / f'{newest + 7}.orbax-checkpoint-tmp-1700000000'
  (partial / 'generator').mkdir(parents=True, exist_ok=True)
  (partial / 'generator' / 'garbage').write_bytes(b'\x00' * 10)

  r = main_runs.run(wd, f'--config.num_train_steps={newest + 2}')
  assert r.returncode == 0, r.stderr[-3000:]
  assert f'Resumed from {wd / "checkpoints"} at step {newest}' in r.stderr
  assert main_runs.complete_steps(wd)[-1] == newest + 2
  assert main_runs.tmp_dirs(wd) == []  # leftovers of killed saves are cleaned on restart


def test_nonfinite_loss_stops_with_inputs_and_metrics_saved_and_no_poisoned_checkpoint(tmp_path):
  config = tiny_config(
    **{
      'optim.learning_rate': 1e30,
      'num_train_steps': 6,
      'log_every': 1,
      'checkpoint_every': 1,
      'sample_every': 0,
    }
  )
  with pytest.raises(FloatingPointError, match='non-finite .* at step 2') as e:
    loop.train_and_evaluate(config, str(tmp_path))
  assert '\n' not in str(e.value) and 'nonfinite_step_2.json' in str(e.value)
  assert main_runs.complete_steps(tmp_path) == [1]  # the finite step 1, never step 2
  report = json.loads((tmp_path / 'nonfinite_step_2.json').read_text())
  assert report['step'] == 2 and report['last_checkpoint_step'] == 1
  assert report['metrics']['g_loss'] in ('nan', 'inf')
  hr = np.load(tmp_path / 'nonfinite_step_2.npz')['hr']
  assert hr.shape == (4, 24, 24, 3) and hr.dtype == np.uint8
  assert not (tmp_path / 'DONE').exists()


def _metrics(workdir) -> list[dict]:
  return [json.loads(l) for l in (workdir / 'metrics.jsonl').read_text().splitlines()]


def test_checkpoint_of_another_phase_is_refused_naming_the_field(tmp_path):
  loop.train_and_evaluate(tiny_config('srresnet', num_train_steps=2, sample_every=0), str(tmp_path))
  srgan = tiny_config('srgan', num_train_steps=4, sample_every=0, generator_init=str(tmp_path))
  with pytest.raises(UserError, match="phase: checkpoint 'srresnet' vs config 'srgan'") as e:
    loop.train_and_evaluate(srgan, str(tmp_path))
  assert '\n' not in str(e.value) and 'restore_compatible_only' in str(e.value)
  assert 'cannot be read' not in str(e.value)  # another config, not a damaged checkpoint
  assert main_runs.complete_steps(tmp_path) == [2]


def test_a_phase_change_keeps_g_and_starts_the_step_schedule_and_adam_afresh(tmp_path, caplog):
  # An SRResNet run whose step (4) and learning-rate schedule (decayed at 2) are past
  # what the SRGAN run that follows it in the same workdir asks for.
  optim = {
    'optim.learning_rate': 1e-3,
    'optim.decay_steps': (2,),
    'sample_every': 0,
    'log_every': 1,
    'checkpoint_every': 1,
  }
  loop.train_and_evaluate(tiny_config('srresnet', num_train_steps=4, **optim), str(tmp_path))
  srresnet = main_runs.read_state(tmp_path, 4)
  srgan = tiny_config('srgan', num_train_steps=1, restore_compatible_only=True, **optim)
  with caplog.at_level('WARNING'):
    g_state, d_state = loop.train_and_evaluate(srgan, str(tmp_path))
  notes = [r.getMessage() for r in caplog.records if 'restore_compatible_only' in r.getMessage()]
  assert len(notes) == 1 and 'step 0' in notes[0] and 'fresh learning-rate schedule' in notes[0]
  # One SRGAN update was made, at the schedule's start, by a fresh Adam (its first step
  # moves each weight by ~lr), from the SRResNet's weights (not from a random init).
  assert int(g_state.step) == int(d_state.step) == 1
  assert [(l['step'], l['learning_rate']) for l in _metrics(tmp_path)] == [(1, pytest.approx(1e-3))]
  kernel = "['generator']['params']['conv_in']['kernel']"
  moved = np.abs(np.asarray(g_state.params['conv_in']['kernel']) - srresnet[kernel])
  assert moved.max() <= 1e-3 * 1.001 and np.median(moved) > 0.5e-3
  # The SRResNet run is kept beside it, in the demo's layout; the SRGAN run owns checkpoints/.
  assert main_runs.complete_steps(tmp_path / 'srresnet') == [1, 2, 3, 4][-srgan.keep_checkpoints :]
  assert (
    main_runs.complete_steps(tmp_path) == [1] and (tmp_path / 'srresnet' / 'metrics.jsonl').exists()
  )
  config_of = lambda path: json.loads(path.read_text())
  assert config_of(tmp_path / 'srresnet' / 'config.json')['phase'] == 'srresnet'
  assert config_of(tmp_path / 'config.json')['phase'] == 'srgan'
  # The same command, further: it resumes its own run (no second phase change).
  srgan.num_train_steps = 3
  caplog.clear()
  with caplog.at_level('WARNING'):
    g_state, _ = loop.train_and_evaluate(srgan, str(tmp_path))
  assert int(g_state.step) == 3 and not [r for r in caplog.records if 'moved it' in r.getMessage()]
  assert [l['step'] for l in _metrics(tmp_path)] == [1, 2, 3]
  assert main_runs.complete_steps(tmp_path / 'srresnet') == [1, 2, 3, 4][-srgan.keep_checkpoints :]
  # Its config.json now says 3 steps; the one it resumed from is kept beside it.
  assert config_of(tmp_path / 'config.json')['num_train_steps'] == 3
  assert config_of(tmp_path / 'config.until_step_1.json')['num_train_steps'] == 1


def test_generator_init_naming_the_workdir_of_the_srresnet_run_follows_it_when_it_moves(tmp_path):
  optim = {'sample_every': 0, 'checkpoint_every': 1}
  loop.train_and_evaluate(tiny_config('srresnet', num_train_steps=2, **optim), str(tmp_path))
  srresnet = main_runs.read_state(tmp_path, 2)
  srgan = tiny_config(
    'srgan', num_train_steps=1, restore_compatible_only=True, generator_init=str(tmp_path), **optim
  )
  for steps in (1, 2):  # the first start moves the SRResNet run aside; a re-run resumes
    srgan.num_train_steps = steps
    g_state, _ = loop.train_and_evaluate(srgan, str(tmp_path))
    assert int(g_state.step) == steps
  assert main_runs.complete_steps(tmp_path / 'srresnet') == [1, 2]
  # G started from the SRResNet's weights: one Adam step of ~lr from them, not a random init.
  kernel = "['generator']['params']['conv_in']['kernel']"
  first = main_runs.read_state(tmp_path, 1)[kernel]
  assert np.abs(first - srresnet[kernel]).max() <= srgan.optim.learning_rate * 1.001


def test_resuming_with_another_crop(tmp_path):
  # SRResNet: G is fully convolutional, so another crop simply resumes.
  config = tiny_config('srresnet', num_train_steps=2, sample_every=0)
  loop.train_and_evaluate(config, str(tmp_path / 'srresnet'))
  config.data.hr_crop, config.num_train_steps = 32, 4
  g_state, _ = loop.train_and_evaluate(config, str(tmp_path / 'srresnet'))
  assert int(g_state.step) == 4

  # SRGAN: D's dense layer sees hr_crop^2 features, so the checkpoint is another config's:
  # refused as such (not as damaged), naming the field and the array.
  wd = tmp_path / 'srgan'
  config = tiny_config(
    'srgan', num_train_steps=2, sample_every=0, generator_init=str(tmp_path / 'srresnet')
  )
  loop.train_and_evaluate(config, str(wd))
  config.data.hr_crop, config.num_train_steps = 32, 4
  with pytest.raises(UserError) as e:
    loop.train_and_evaluate(config, str(wd))
  message = str(e.value)
  assert '\n' not in message and 'was written by another config' in message
  assert 'data.hr_crop: checkpoint 24 vs config 32' in message
  assert 'discriminator params/dense_0/kernel: checkpoint' in message
  assert 'cannot be read' not in message and 'move it out' not in message

  # restore_compatible_only: G, its Adam state and the step go on; D starts fresh.
  saved = main_runs.read_state(wd, 2)
  config.restore_compatible_only = True
  config.num_train_steps = 2
  g_state, d_state = loop.train_and_evaluate(config, str(wd))
  assert int(g_state.step) == 2 and int(d_state.step) == 0
  kernel = "['generator']['params']['conv_in']['kernel']"
  assert np.array_equal(np.asarray(g_state.params['conv_in']['kernel']), saved[kernel])
  config.num_train_steps = 3
  g_state, d_state = loop.train_and_evaluate(config, str(wd))
  assert int(g_state.step) == 3 and int(d_state.step) == 1


def _tree_bytes(path):
  return {p.relative_to(path): p.read_bytes() for p in sorted(path.rglob('*')) if p.is_file()}


# Orbax reads a checkpoint's arrays in concurrent tasks: those of the damaged file fail, one of
# them reaches us (as the UserError checked here), the others' exceptions are never retrieved and
# Python reports them at garbage collection (forced below, so that they land in this test);
# sometimes Orbax's reader thread also reports 'Event loop is closed' (RuntimeError, "Exception
# ignored in: None": 2 runs in 7 without this filter): Orbax's internals, not a failure.
@pytest.mark.filterwarnings('ignore::pytest.PytestUnraisableExceptionWarning')
def test_a_damaged_checkpoint_is_a_one_line_error_and_is_left_as_it_is(tmp_path):
  from srgan_jax.weights import checkpoint_files  # pylint: disable=g-import-not-at-top

  config = tiny_config('srresnet', num_train_steps=2, sample_every=0, checkpoint_every=1)
  loop.train_and_evaluate(config, str(tmp_path))
  latest = tmp_path / 'checkpoints' / '2'
  data = max((latest / 'generator').rglob('d/*'), key=lambda p: p.stat().st_size)
  data.write_bytes(data.read_bytes()[:100])  # a truncated array file (e.g. a full disk)
  before = _tree_bytes(tmp_path / 'checkpoints')

  config.num_train_steps = 3
  for load in (
    lambda: loop.train_and_evaluate(config, str(tmp_path)),
    lambda: checkpoint_files.load_generator(tmp_path),
  ):
    with pytest.raises(UserError, match='checkpoints/2 cannot be read') as e:
      load()
    assert (
      '\n' not in str(e.value)
      and 'move it out of' in str(e.value)
      and 'also here: 1' in str(e.value)
    )
    del e
    gc.collect()  # those reader tasks' reports here, under this test's filter, not in the next test
  assert _tree_bytes(tmp_path / 'checkpoints') == before  # nothing rewritten or deleted

  # Doing what the error says: the run resumes from the checkpoint before it.
  latest.rename(tmp_path / 'damaged_2')
  g_state, _ = loop.train_and_evaluate(config, str(tmp_path))
  assert int(g_state.step) == 3 and main_runs.complete_steps(tmp_path)[-1] == 3


def test_a_stop_is_acted_on_within_two_steps_whatever_log_every(tmp_path, monkeypatch, caplog):
  # Slow device steps (extra matmuls the next step depends on) and a SIGTERM sent as soon
  # as the device has finished step 3. The host dispatches asynchronously: it must not be
  # far ahead of the device then, so the checkpoint is of a step within a few of step 3,
  # though the next log step (where the metrics are fetched) is step 50.
  real_step, real_compile = update_step.train_step, run_log.compile_step
  dispatched = []

  def slow_step(g_state, d_state, batch, vgg_params, **kw):
    g_state, d_state, metrics = real_step(g_state, d_state, batch, vgg_params, **kw)
    x = jax.lax.fori_loop(0, 40, lambda i, x: jnp.tanh(x @ x), jnp.full((384, 384), 0.01))
    return (
      g_state.replace(step=g_state.step + jnp.isnan(jnp.sum(x)).astype(jnp.int32)),
      d_state,
      metrics,
    )

  def recording_compile(*args, **kwargs):
    step = real_compile(*args, **kwargs)
    return lambda *a: (out := step(*a), dispatched.append(out[2]['g_loss']))[0]

  def send_sigterm_after_step_3():
    while len(dispatched) < 3 or not dispatched[2].is_ready():
      time.sleep(0.001)
    os.kill(os.getpid(), signal.SIGTERM)

  monkeypatch.setattr(update_step, 'train_step', slow_step)
  monkeypatch.setattr(run_log, 'compile_step', recording_compile)
  threading.Thread(target=send_sigterm_after_step_3, daemon=True).start()
  config = tiny_config(
    'srresnet', num_train_steps=60, log_every=50, checkpoint_every=1000, sample_every=0
  )
  with caplog.at_level('WARNING'):
    g_state, _ = loop.train_and_evaluate(config, str(tmp_path))
  [line] = [r.getMessage() for r in caplog.records if r.getMessage().startswith('Preempted')]
  saved = main_runs.complete_steps(tmp_path)
  # At most 2 steps ahead (loop.MAX_STEPS_AHEAD), plus the one the signal may just miss.
  assert len(saved) == 1 and 3 <= saved[0] <= 3 + 2 + 1 < 50, (saved, line)
  assert int(g_state.step) == saved[0]
  assert 'after SIGTERM arrived' in line  # timed from the signal, not from when the loop saw it
