"""Joining a multi-process JAX job: TPU VM slices, SLURM, Open MPI, or explicit flags.

`initialize` runs before any JAX computation. It calls `jax.distributed.initialize()`
with no arguments where JAX detects the cluster itself (a TPU VM slice, a SLURM
step with several tasks, Open MPI), with the explicit coordinator address,
process count and process id where those are given (e.g. `launch/local.sh`),
and does nothing for a plain single-process run.

JAX aborts the whole process (a C++ fatal error, no Python exception) when the
coordinator cannot be reached in time; a watchdog thread turns that into a
one-line `error:` and exit status 2 a little before JAX would abort.
"""

import glob
import importlib.util
import os
import sys
import threading

import jax
from absl import logging

from srgan_jax.common.errors import UserError

# How much longer JAX's own deadline is than the watchdog's, so the watchdog speaks first.
_JAX_DEADLINE_MARGIN_S = 30


def detect_cluster(env=None, dev='/dev', libtpu: bool | None = None) -> str | None:
  """'tpu', 'slurm' or 'ompi' where JAX's own auto-detection applies.

  SLURM and Open MPI count only with several tasks. Any Cloud TPU VM counts
  (libtpu installed, TPU chips at /dev/accel* or /dev/vfio/<n>): JAX asks the metadata server
  for the slice's hosts, and a single-host VM simply becomes a job of one.
  """
  env = os.environ if env is None else env
  if (
    int(env.get('SLURM_STEP_NUM_TASKS', env.get('SLURM_NTASKS', '1')) or 1) > 1
    and 'SLURM_PROCID' in env
  ):
    return 'slurm'
  if int(env.get('OMPI_COMM_WORLD_SIZE', '1') or 1) > 1:
    return 'ompi'
  # A TPU VM slice of several hosts: the TPU runtime names every worker.
  if len([h for h in env.get('TPU_WORKER_HOSTNAMES', '').split(',') if h]) > 1:
    return 'tpu'
  if env.get('MEGASCALE_COORDINATOR_ADDRESS'):
    return 'tpu'
  if libtpu is None:
    libtpu = importlib.util.find_spec('libtpu') is not None
  chips = glob.glob(os.path.join(dev, 'accel[0-9]*')) + glob.glob(
    os.path.join(dev, 'vfio', '[0-9]*')
  )
  if libtpu and chips:
    return 'tpu'
  return None


def initialize(
  coordinator_address: str | None = None,
  num_processes: int | None = None,
  process_id: int | None = None,
  timeout_s: int = 300,
  env=None,
) -> bool:
  """Joins the job if there is one; returns whether jax.distributed was initialized.

  Raises UserError for inconsistent flags; exits with a one-line error if the
  other processes do not all join within `timeout_s`.
  """
  explicit = [coordinator_address, num_processes, process_id]
  if any(v is not None for v in explicit):
    if any(v is None for v in explicit):
      raise UserError(
        '--coordinator_address, --num_processes and --process_id go together: '
        'pass all three (or none, to let JAX detect TPU VM / SLURM / MPI jobs).'
      )
    if num_processes < 1 or not 0 <= process_id < num_processes:
      raise UserError(f'--process_id={process_id} must be in [0, --num_processes={num_processes}).')
    kwargs = dict(
      coordinator_address=coordinator_address, num_processes=num_processes, process_id=process_id
    )
    where = f'coordinator {coordinator_address}, process {process_id} of {num_processes}'
  else:
    cluster = detect_cluster(env)
    if cluster is None:
      return False
    kwargs, where = {}, f'{cluster} cluster (auto-detected)'
  # CPU devices of different processes talk through gloo (the default in recent JAX; explicit
  # here). GPUs and TPUs use their own collectives whatever this says.
  jax.config.update('jax_cpu_collectives_implementation', 'gloo')
  logging.info('Joining a multi-process job: %s (timeout %ds)', where, timeout_s)
  watchdog = threading.Timer(timeout_s, _give_up, args=(where, timeout_s))
  watchdog.daemon = True
  watchdog.start()
  try:
    jax.distributed.initialize(**kwargs, initialization_timeout=timeout_s + _JAX_DEADLINE_MARGIN_S)
  finally:
    watchdog.cancel()
  if num_processes is not None and jax.process_count() != num_processes:
    raise UserError(
      f'--num_processes={num_processes} but the job has {jax.process_count()} '
      'processes; pass the number of processes actually launched.'
    )
  return True


def _give_up(where: str, timeout_s: int) -> None:
  # Runs in the watchdog thread while jax.distributed.initialize blocks: print and leave now.
  print(
    f'error: the multi-process job did not come together within {timeout_s}s ({where}): '
    'the coordinator is unreachable, or fewer processes than --num_processes started; '
    'check the address and port, and that every process was launched '
    '(raise --initialization_timeout for slow starts).',
    file=sys.stderr,
    flush=True,
  )
  os._exit(2)  # pylint: disable=protected-access
