"""Preemption: SIGTERM makes every process save at the same step and exit cleanly.

Cloud schedulers (spot TPU VMs, SLURM `--signal`, Kubernetes) send SIGTERM some
seconds before they kill a job. The train loop asks `reached(step)` after each
step; when it says yes, the loop writes a checkpoint at that step, waits for it
to be committed, and returns.

- One process: a Python SIGTERM handler sets an Event; the loop sees it at the
  next step.
- Several processes: only some of them may get the signal, and all must save at
  the same step. `jax.distributed.initialize` installs JAX's preemption notifier
  (its own SIGTERM handler), which tells the coordinator; Orbax's
  `CheckpointManager.reached_preemption(step)` then answers yes on every process
  at the same sync step (the maximum step of all processes, plus one). No Python
  handler is installed there, as it would replace JAX's.
"""

import contextlib
import signal
import threading

import jax
from absl import logging


@contextlib.contextmanager
def watch_sigterm():
  """Within: SIGTERM sets the yielded Event (None if multi-process); the old handler after."""
  if jax.process_count() > 1:
    yield None
    return
  if threading.current_thread() is not threading.main_thread():
    logging.warning('not in the main thread: SIGTERM will not trigger a preemption checkpoint')
    yield None
    return
  flag = threading.Event()

  def on_sigterm(signum, frame):  # pylint: disable=unused-argument
    flag.set()  # only a flag: the train loop saves at its next step boundary

  previous = signal.signal(signal.SIGTERM, on_sigterm)
  try:
    yield flag
  finally:
    signal.signal(signal.SIGTERM, previous)


def reached(step: int, checkpoint_manager, flag: threading.Event | None) -> bool:
  """Whether every process should save a checkpoint at `step` and stop."""
  if flag is not None and flag.is_set():
    return True
  return jax.process_count() > 1 and checkpoint_manager.reached_preemption(step)
