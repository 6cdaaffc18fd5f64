"""A run tells about itself: WORKDIR/config.json, the compiled step's time and memory, a profile."""

import gzip
import json
import os
import re

import jax
import pytest

from srgan_jax.training import run_log
from srgan_jax.training import loop
from tests.helpers import tiny_config


def _messages(caplog):
  return [r.getMessage() for r in caplog.records]


@pytest.mark.slow
def test_a_run_writes_its_config_logs_the_compiled_step_before_step_1_and_profiles_its_steps(
  tmp_path, caplog
):
  config = tiny_config(
    num_train_steps=4, log_every=1, sample_every=0, checkpoint_every=4, profile_steps=(2, 3)
  )
  with caplog.at_level('INFO'):
    loop.train_and_evaluate(config, str(tmp_path))
  messages = _messages(caplog)

  # config.json: the config the run trained with, field for field.
  written = json.loads((tmp_path / 'config.json').read_text())
  assert written == json.loads(config.to_json_best_effort())
  assert written['profile_steps'] == [2, 3] and written['model']['tiny'] is True

  # The step is compiled, and its memory reported, before the first step runs.
  [compiled] = [i for i, m in enumerate(messages) if m.startswith('Compiled the train step in')]
  first_step = next(i for i, m in enumerate(messages) if m.startswith('step 1 |'))
  assert compiled < first_step
  sizes = dict(re.findall(r'(arguments|outputs|temporaries) ([\d.]+) MB', messages[compiled]))
  assert set(sizes) == {'arguments', 'outputs', 'temporaries'}
  assert float(sizes['arguments']) > 0  # G's parameters and Adam state at least

  # The trace holds exactly the configured steps, where TensorBoard's profile tab looks.
  [trace] = (tmp_path / 'tensorboard' / 'plugins' / 'profile').glob('*/*.trace.json.gz')
  events = json.loads(gzip.decompress(trace.read_bytes()))['traceEvents']
  traced = {e['args']['step_num'] for e in events if e.get('name') == 'train'}
  assert traced == {'2', '3'}
  assert any(m.startswith('Profiled steps 2-3 into') for m in messages)


@pytest.mark.slow
def test_without_profile_steps_nothing_is_traced(tmp_path):
  config = tiny_config(num_train_steps=2, sample_every=0)
  assert tuple(config.profile_steps) == ()  # the default: off
  loop.train_and_evaluate(config, str(tmp_path))
  assert not (tmp_path / 'tensorboard' / 'plugins').exists()


def test_config_json_is_left_alone_on_a_resume_and_another_config_is_kept_beside_it(
  tmp_path, caplog
):
  path = run_log.write_config(tmp_path, tiny_config(num_train_steps=4), first_step=0)
  first, stamp = path.read_bytes(), os.stat(path).st_mtime_ns
  run_log.write_config(tmp_path, tiny_config(num_train_steps=4), first_step=4)
  assert os.stat(path).st_mtime_ns == stamp and sorted(p.name for p in tmp_path.iterdir()) == [
    'config.json'
  ]

  with caplog.at_level('WARNING'):
    run_log.write_config(tmp_path, tiny_config(num_train_steps=8), first_step=4)
    run_log.write_config(tmp_path, tiny_config(num_train_steps=9), first_step=4)
  assert (tmp_path / 'config.until_step_4.json').read_bytes() == first
  assert json.loads((tmp_path / 'config.until_step_4.2.json').read_text())['num_train_steps'] == 8
  assert json.loads(path.read_text())['num_train_steps'] == 9
  assert 'num_train_steps: was 4 vs now 8' in _messages(caplog)[0]
  assert not list(tmp_path.glob('.config.json.tmp-*'))


def test_a_failed_config_write_leaves_the_old_file_and_other_processes_write_none(
  tmp_path, monkeypatch
):
  path = run_log.write_config(tmp_path, tiny_config(num_train_steps=4), first_step=0)
  before = path.read_bytes()

  def disk_full(*args, **kwargs):
    raise OSError(28, 'No space left on device')

  with monkeypatch.context() as m:
    m.setattr(type(path), 'write_text', disk_full)
    with pytest.raises(OSError):
      run_log.write_config(tmp_path, tiny_config(num_train_steps=8), first_step=4)
  assert path.read_bytes() == before and not list(tmp_path.glob('config.until_step_*'))

  monkeypatch.setattr(jax, 'process_index', lambda: 1)
  assert run_log.write_config(tmp_path / 'other', tiny_config(), first_step=0) is None
  assert not (tmp_path / 'other').exists()
