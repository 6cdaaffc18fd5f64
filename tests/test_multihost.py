"""Multi-host: 2 processes x 2 CPU devices train exactly like 1 process x 4, and hand over.

The processes are real (launch/local.sh: jax.distributed on localhost, gloo
collectives); only the devices are CPUs.
"""

import os
import pathlib
import re
import shutil
import signal
import socket
import subprocess
import sys
import time

import numpy as np
import pytest

from srgan_jax.training import distributed
from srgan_jax.common.errors import UserError
from tests import main_runs


def _assert_same_state(a: dict, b: dict, **tol):
  assert a.keys() == b.keys() and len(a) > 10
  for k in a:
    np.testing.assert_allclose(a[k], b[k], err_msg=k, **tol)


@pytest.mark.slow
@pytest.mark.multiprocess
@pytest.mark.subprocess
def test_two_processes_match_one_process_and_their_checkpoint_resumes_in_one(tmp_path):
  two, one, handover = tmp_path / 'two', tmp_path / 'one', tmp_path / 'handover'
  r = main_runs.run(two, '--config.num_train_steps=4', processes=2, devices=2)
  assert r.returncode == 0, r.stderr[-3000:]
  r = main_runs.run(one, '--config.num_train_steps=4', processes=1, devices=4)
  assert r.returncode == 0, r.stderr[-3000:]

  # Same global batches, same seed: the same parameters, BN statistics and Adam state.
  assert main_runs.complete_steps(two) == [2, 4]
  _assert_same_state(
    main_runs.read_state(two, 4), main_runs.read_state(one, 4), rtol=1e-5, atol=1e-6
  )
  # Each process checkpoints its own data-iterator state; only process 0 writes reports.
  assert sorted(p.name for p in (two / 'checkpoints' / '4' / 'data').glob('process_*')) == [
    'process_0-of-2.json',
    'process_1-of-2.json',
  ]
  steps = [l for l in (two / 'metrics.jsonl').read_text().splitlines()]
  assert len(steps) == 4
  assert (two / 'DONE').read_text().strip() == '4'

  # The 2-process checkpoint of step 2 resumes in 1 process: states restored, data
  # continued from the step count (with a warning), ending where the others ended.
  shutil.copytree(two / 'checkpoints', handover / 'checkpoints')
  shutil.rmtree(handover / 'checkpoints' / '4')
  r = main_runs.run(handover, '--config.num_train_steps=4', processes=1, devices=4)
  assert r.returncode == 0, r.stderr[-3000:]
  assert 'Resumed from' in r.stderr and 'at step 2' in r.stderr
  assert 'written by 2 processes and this run has 1' in r.stderr
  _assert_same_state(
    main_runs.read_state(handover, 4), main_runs.read_state(one, 4), rtol=1e-5, atol=1e-6
  )


def _child_with_process_id(parent_pid: int, process_id: int) -> int:
  children = pathlib.Path(f'/proc/{parent_pid}/task/{parent_pid}/children').read_text().split()
  for pid in map(int, children):
    if f'--process_id={process_id}' in pathlib.Path(f'/proc/{pid}/cmdline').read_text():
      return pid
  raise AssertionError(f'no child of {parent_pid} has --process_id={process_id}')


@pytest.mark.slow
@pytest.mark.multiprocess
@pytest.mark.subprocess
def test_sigterm_to_one_process_makes_every_process_save_at_the_same_step(tmp_path):
  cmd = main_runs.local_command(
    tmp_path,
    '--config.num_train_steps=1000000',
    '--config.checkpoint_every=1000000',
    processes=2,
    devices=1,
  )
  launcher = subprocess.Popen(
    cmd,
    cwd=main_runs.REPO,
    env=main_runs.env(),
    text=True,
    stdout=subprocess.DEVNULL,
    stderr=subprocess.PIPE,
  )
  deadline = time.time() + 120
  while 'step 3 |' not in launcher.stderr.readline():
    assert time.time() < deadline and launcher.poll() is None, 'the run never started stepping'
  os.kill(
    _child_with_process_id(launcher.pid, 1), signal.SIGTERM
  )  # a preemption notice to one host
  _, rest = launcher.communicate(timeout=120)
  assert launcher.returncode == 0, rest[-3000:]
  saved = re.findall(r'Preempted: saved a checkpoint at step (\d+)', rest)
  assert len(saved) == 2 and saved[0] == saved[1], rest[-3000:]  # both processes, one step
  assert main_runs.complete_steps(tmp_path) == [int(saved[0])]
  assert len(list((tmp_path / 'checkpoints' / saved[0] / 'data').glob('process_*-of-2.json'))) == 2


@pytest.mark.slow
@pytest.mark.multiprocess
@pytest.mark.subprocess
@pytest.mark.parametrize(
  'process_id',
  [
    1,  # the coordinator (process 0) is unreachable
    0,  # this is the coordinator, but the other process of --num_processes=2 never comes
  ],
)
def test_a_job_that_never_comes_together_is_a_one_line_error_not_a_hang(process_id, tmp_path):
  with socket.socket() as s:  # a port nobody listens on
    s.bind(('127.0.0.1', 0))
    port = s.getsockname()[1]
  r = subprocess.run(
    [
      sys.executable,
      '-m',
      'srgan_jax.main',
      f'--workdir={tmp_path}',
      *main_runs.TINY,
      f'--coordinator_address=127.0.0.1:{port}',
      '--num_processes=2',
      f'--process_id={process_id}',
      '--initialization_timeout=3',
    ],
    cwd=main_runs.REPO,
    env=main_runs.env(),
    capture_output=True,
    text=True,
    timeout=60,
  )
  assert r.returncode == 2
  last = r.stderr.strip().splitlines()[-1]
  assert last.startswith('error: the multi-process job did not come together within 3s'), last
  assert 'Traceback' not in r.stderr and 'Check failure' not in r.stderr


@pytest.mark.parametrize(
  'env,kind',
  [
    ({'SLURM_JOB_ID': '7', 'SLURM_NTASKS': '8', 'SLURM_PROCID': '3'}, 'slurm'),
    ({'SLURM_JOB_ID': '7', 'SLURM_NTASKS': '1', 'SLURM_PROCID': '0'}, None),  # one task: no job
    ({'OMPI_COMM_WORLD_SIZE': '4'}, 'ompi'),
    ({'TPU_WORKER_HOSTNAMES': 'w-0,w-1,w-2,w-3'}, 'tpu'),
    ({'TPU_WORKER_HOSTNAMES': 'localhost'}, None),  # a single-host TPU VM
    ({}, None),
  ],
)
def test_cluster_detection_from_the_environment(env, kind, tmp_path):
  assert distributed.detect_cluster(env, dev=str(tmp_path)) == kind


@pytest.mark.parametrize('device', ['accel0', 'vfio/0'])
def test_a_tpu_vm_is_recognised_by_its_tpu_chips(device, tmp_path):
  (tmp_path / device).parent.mkdir(parents=True, exist_ok=True)
  (tmp_path / device).touch()
  assert distributed.detect_cluster({}, dev=str(tmp_path), libtpu=True) == 'tpu'
  assert distributed.detect_cluster({}, dev=str(tmp_path), libtpu=False) is None  # e.g. a VFIO GPU


@pytest.mark.parametrize(
  'args,match',
  [
    (('10.0.0.1:1234', 2, None), 'go together'),
    (('10.0.0.1:1234', 2, 2), r'must be in \[0, --num_processes=2\)'),
    (('10.0.0.1:1234', 0, 0), 'must be in'),
  ],
)
def test_inconsistent_process_flags_are_refused_before_joining(args, match):
  with pytest.raises(UserError, match=match):
    distributed.initialize(*args, timeout_s=1, env={})


def test_a_plain_run_joins_nothing():
  assert distributed.detect_cluster({}) is None  # this test machine: no TPU, no SLURM job
  assert distributed.initialize(env={}) is False
