"""Preemption: SIGTERM makes every process save at the same step and exit cleanly.

Cloud schedulers (spot TPU VMs, SLURM `--signal`, Kubernetes) send SIGTERM some
seconds before they kill a job. The train loop asks `reached(step)` after each
step; when it says yes, the loop writes a checkpoint at that step, waits for it
to be committed, and returns.

- One process: a Python SIGTERM handler sets an Event and stamps when the
  signal arrived; the loop sees it at the next step. The loop runs at most
  train.MAX_STEPS_AHEAD steps ahead of the device and waits for them with
  `wait_until_ready`, which lets the handler run at once, so the checkpoint is
  committed a step or two (plus the save) after the signal.
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
import time

import jax
from absl import logging


class StopFlag(threading.Event):
  """Set by SIGTERM; `arrived` is when the (first) signal arrived, in time.monotonic() seconds."""

  arrived: float | None = None


def wait_until_ready(x) -> None:
  """Blocks until the array x is computed, returning to Python often enough that a signal handler
  runs (and stamps the signal's arrival) within milliseconds, not after the wait."""
  while not x.is_ready():
    time.sleep(0.002)


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
  flag = StopFlag()

  def on_sigterm(signum, frame):  # pylint: disable=unused-argument
    if flag.arrived is None:
      flag.arrived = time.monotonic()
    flag.set()  # only a flag: the train loop saves at its next step boundary

  previous = signal.signal(signal.SIGTERM, on_sigterm)
  try:
    yield flag
  finally:
    signal.signal(signal.SIGTERM, previous)


def reached(step: int, checkpoint_manager, flag: StopFlag | None) -> bool:
  """Whether every process should save a checkpoint at `step` and stop."""
  if flag is not None and flag.is_set():
    return True
  return jax.process_count() > 1 and checkpoint_manager.reached_preemption(step)
