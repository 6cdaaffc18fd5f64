"""Fault tolerance: preemption, kill -9, non-finite losses and foreign checkpoints.

A run stopped by SIGTERM saves at the step it reached and exits 0; the same
command resumes it, bit for bit. A run killed at any moment, even mid-save,
resumes from its newest complete checkpoint. A non-finite loss stops the run
with a report and without a poisoned checkpoint.
"""

import json
import signal
import time

import numpy as np
import pytest

from srgan_jax import train
from srgan_jax.errors import UserError
from tests import main_runs
from tests.helpers import tiny_config

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
  config = tiny_config(**{'optim.learning_rate': 1e30, 'num_train_steps': 6, 'log_every': 1,
                          'checkpoint_every': 1, 'sample_every': 0})
  with pytest.raises(FloatingPointError, match='non-finite .* at step 2') as e:
    train.train_and_evaluate(config, str(tmp_path))
  assert '\n' not in str(e.value) and 'nonfinite_step_2.json' in str(e.value)
  assert main_runs.complete_steps(tmp_path) == [1]  # the finite step 1, never step 2
  report = json.loads((tmp_path / 'nonfinite_step_2.json').read_text())
  assert report['step'] == 2 and report['last_checkpoint_step'] == 1
  assert report['metrics']['g_loss'] in ('nan', 'inf')
  hr = np.load(tmp_path / 'nonfinite_step_2.npz')['hr']
  assert hr.shape == (4, 24, 24, 3) and hr.dtype == np.uint8
  assert not (tmp_path / 'DONE').exists()


def test_checkpoint_of_another_config_is_refused_unless_restoring_compatible_parts(tmp_path):
  train.train_and_evaluate(tiny_config('srresnet', num_train_steps=2, sample_every=0), str(tmp_path))
  srgan = tiny_config('srgan', num_train_steps=4, sample_every=0, generator_init=str(tmp_path))
  with pytest.raises(UserError, match="phase: checkpoint 'srresnet' vs config 'srgan'") as e:
    train.train_and_evaluate(srgan, str(tmp_path))
  assert '\n' not in str(e.value) and 'restore_compatible_only' in str(e.value)
  assert main_runs.complete_steps(tmp_path) == [2]

  # Opting in: G and its Adam state come from the checkpoint, D starts fresh. (The run is
  # asked to stop at the checkpoint's step: restoring is the point here, not training.)
  srgan.restore_compatible_only = True
  srgan.num_train_steps = 2
  g_state, d_state = train.train_and_evaluate(srgan, str(tmp_path))
  saved = main_runs.read_state(tmp_path, 2)
  assert int(g_state.step) == 2 and int(d_state.step) == 0
  kernel = "['generator']['params']['conv_in']['kernel']"
  assert np.array_equal(np.asarray(g_state.params['conv_in']['kernel']), saved[kernel])


def _tree_bytes(path):
  return {p.relative_to(path): p.read_bytes() for p in sorted(path.rglob('*')) if p.is_file()}


def test_a_damaged_checkpoint_is_a_one_line_error_and_is_left_as_it_is(tmp_path):
  from srgan_jax import checkpointing  # pylint: disable=g-import-not-at-top
  config = tiny_config('srresnet', num_train_steps=2, sample_every=0, checkpoint_every=1)
  train.train_and_evaluate(config, str(tmp_path))
  latest = tmp_path / 'checkpoints' / '2'
  data = max((latest / 'generator').rglob('d/*'), key=lambda p: p.stat().st_size)
  data.write_bytes(data.read_bytes()[:100])  # a truncated array file (e.g. a full disk)
  before = _tree_bytes(tmp_path / 'checkpoints')

  config.num_train_steps = 3
  for load in (lambda: train.train_and_evaluate(config, str(tmp_path)),
               lambda: checkpointing.load_generator(tmp_path)):
    with pytest.raises(UserError, match='checkpoints/2 cannot be read') as e:
      load()
    assert '\n' not in str(e.value) and 'move it out of' in str(e.value) and 'also here: 1' in str(e.value)
  assert _tree_bytes(tmp_path / 'checkpoints') == before  # nothing rewritten or deleted

  # Doing what the error says: the run resumes from the checkpoint before it.
  latest.rename(tmp_path / 'damaged_2')
  g_state, _ = train.train_and_evaluate(config, str(tmp_path))
  assert int(g_state.step) == 3 and main_runs.complete_steps(tmp_path)[-1] == 3
