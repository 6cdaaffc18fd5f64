"""Tiny configs shared by the tests: real code paths, small enough to compile in seconds."""

import os
import subprocess
import sys

from configs import default
from tests.conftest import REPO


def run_main(*args: str, timeout: float = 900) -> subprocess.CompletedProcess:
  """`python -m srgan_jax.main ARGS` from the repository root on CPU, as a user runs it."""
  return subprocess.run(
    [sys.executable, '-m', 'srgan_jax.main', *args],
    cwd=REPO,
    capture_output=True,
    text=True,
    timeout=timeout,
    env=dict(os.environ, JAX_PLATFORMS='cpu'),
  )


def cpu_devices_env(n_devices: int) -> dict:
  """The environment of a child JAX process with n CPU devices (XLA_FLAGS kept, e.g. conftest's)."""
  flags = f'{os.environ.get("XLA_FLAGS", "")} --xla_force_host_platform_device_count={n_devices}'
  return dict(os.environ, JAX_PLATFORMS='cpu', XLA_FLAGS=flags.strip())


def tiny_config(phase: str = 'srresnet', **overrides):
  c = default.get_config()
  c.phase = phase
  c.model.tiny = True
  c.model.scale = 4
  c.data.source = 'demo'
  c.data.val_source = 'demo'
  c.data.hr_crop = 24
  c.data.val_crop = 32
  c.data.num_val_images = 2
  c.data.batch_size = 4
  c.loss.content = 'mse'
  c.optim.decay_steps = ()
  c.num_train_steps = 4
  c.log_every = 2
  c.checkpoint_every = 2
  c.sample_every = 2
  for k, v in overrides.items():
    node = c
    *path, last = k.split('.')
    for p in path:
      node = node[p]
    node[last] = v
  return c
