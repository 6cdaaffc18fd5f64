"""Runs srgan_jax.main in subprocesses (via launch/local.sh) and reads what they wrote.

Shared by test_multihost.py and test_fault_tolerance.py. Every run uses the tiny
SRResNet config and one persistent XLA compilation cache, so after the first run
a subprocess costs its imports and a few steps, not a compile.
"""

import os
import pathlib
import subprocess
import sys
import tempfile

import jax
import numpy as np

from srgan_jax.weights import checkpoint_files

REPO = pathlib.Path(__file__).resolve().parents[1]
CACHE = pathlib.Path(tempfile.gettempdir()) / 'srgan_jax_test_compile_cache'

TINY = [
  '--config=configs/x4.py:demo',
  '--config.phase=srresnet',
  '--config.loss.content=mse',
  '--config.generator_init=',
  '--config.data.batch_size=4',
  '--config.model.tiny=True',
  '--config.data.hr_crop=24',
  '--config.data.val_crop=32',
  '--config.data.num_val_images=2',
  '--config.optim.decay_steps=()',
  '--config.sample_every=0',
  '--config.log_every=1',
  '--config.checkpoint_every=2',
]


def env() -> dict:
  return dict(
    os.environ,
    JAX_PLATFORMS='cpu',
    PYTHON=sys.executable,
    PYTHONUNBUFFERED='1',
    JAX_COMPILATION_CACHE_DIR=str(CACHE),
    JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS='0',
    JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES='0',
  )


def local_command(workdir, *args, processes=1, devices=1) -> list[str]:
  return [
    'bash',
    str(REPO / 'launch' / 'local.sh'),
    '--processes',
    str(processes),
    '--devices-per-process',
    str(devices),
    '--timeout',
    '60',
    '--',
    f'--workdir={workdir}',
    *TINY,
    *args,
  ]


def run(workdir, *args, processes=1, devices=1, timeout=240) -> subprocess.CompletedProcess:
  """Runs to the end; returns the completed process (text stdout/stderr)."""
  return subprocess.run(
    local_command(workdir, *args, processes=processes, devices=devices),
    cwd=REPO,
    env=env(),
    capture_output=True,
    text=True,
    timeout=timeout,
  )


def start(workdir, *args) -> subprocess.Popen:
  """One process, started in the background, its log (stderr) readable line by line."""
  return subprocess.Popen(
    [sys.executable, '-u', '-m', 'srgan_jax.main', f'--workdir={workdir}', *TINY, *args],
    cwd=REPO,
    env=env(),
    stdout=subprocess.DEVNULL,
    stderr=subprocess.PIPE,
    text=True,
  )


def complete_steps(workdir) -> list[int]:
  d = pathlib.Path(workdir) / 'checkpoints'
  return sorted(int(p.name) for p in d.iterdir() if p.name.isdigit()) if d.is_dir() else []


def tmp_dirs(workdir) -> list[str]:
  d = pathlib.Path(workdir) / 'checkpoints'
  return [p.name for p in d.iterdir() if 'orbax-checkpoint-tmp' in p.name] if d.is_dir() else []


def read_state(workdir, step) -> dict:
  """Every array of G's checkpoint at `step` (params, BN statistics, Adam state), flat."""
  step_dir = pathlib.Path(workdir) / 'checkpoints' / str(step)
  r = {item: checkpoint_files.restore_as_numpy(step_dir / item) for item in ('generator', 'g_opt')}
  leaves = jax.tree_util.tree_flatten_with_path(r)[0]
  return {jax.tree_util.keystr(path): np.asarray(v) for path, v in leaves}
