"""What a run tells about itself: its config, its compiled step, a profile of chosen steps.

- write_config: the resolved config as WORKDIR/config.json (process 0, atomically).
  The same config again (a resume) leaves the file alone; another one (a resume
  with overrides) keeps the old file as config.until_step_<N>.json, N the step
  the run resumes from, and logs the differing fields.
- compile_step: the update step compiled up front (`jit(...).lower(...).compile()`),
  its compile time and memory (`compiled.memory_analysis()`) logged before step 1.
- StepProfiler: a `jax.profiler` trace of config.profile_steps written to
  WORKDIR/tensorboard/plugins/profile/, which TensorBoard's profile tab reads.
"""

import json
import time
import uuid

import jax
from absl import logging
from etils import epath

from srgan_jax.training import checkpointing


def write_config(workdir, config, first_step: int) -> epath.Path | None:
  """WORKDIR/config.json: the config this run trains with (process 0; None on the others)."""
  if jax.process_index() != 0:
    return None
  workdir = epath.Path(workdir)
  path = workdir / 'config.json'
  new = json.loads(config.to_json_best_effort())
  old = None
  if path.exists():
    try:
      old = json.loads(path.read_text())
    except ValueError:
      old = 'not JSON'
    if old == new:
      return path  # a resume with the same config: the file is left as it is
  workdir.mkdir(parents=True, exist_ok=True)
  for leftover in workdir.glob('.config.json.tmp-*'):  # of a write killed midway
    leftover.unlink()
  tmp = workdir / f'.config.json.tmp-{uuid.uuid4().hex}'
  tmp.write_text(json.dumps(new, indent=2, sort_keys=True) + '\n')
  if old is not None:  # another config: kept beside, never overwritten
    kept = workdir / f'config.until_step_{first_step}.json'
    n = 1
    while kept.exists():
      n += 1
      kept = workdir / f'config.until_step_{first_step}.{n}.json'
    path.rename(kept)
    diff = (
      checkpointing.config_differences(old, new, labels=('was', 'now'))
      if isinstance(old, dict)
      else [f'the old file is {old}']
    )
    logging.warning(
      '%s held another config; kept it as %s. Changed: %s',
      path,
      kept.name,
      '; '.join(diff[:8]) + (f'; {len(diff) - 8} more' if len(diff) > 8 else ''),
    )
  tmp.rename(path)  # atomic on a local disk: readers see a whole file, never a part
  return path


def _mb(n: int) -> str:
  return f'{n / 2**20:.1f} MB'


def memory_summary(compiled) -> str:
  """The compiled program's buffers by kind, from XLA's buffer assignment."""
  m = compiled.memory_analysis()
  if m is None:
    return 'memory not reported by this backend'
  parts = [
    f'arguments {_mb(m.argument_size_in_bytes)}',
    f'outputs {_mb(m.output_size_in_bytes)}',
    f'of which aliased to (donated) arguments {_mb(m.alias_size_in_bytes)}',
    f'temporaries {_mb(m.temp_size_in_bytes)}',
  ]
  if m.generated_code_size_in_bytes:  # not reported on CPU
    parts.append(f'code {_mb(m.generated_code_size_in_bytes)}')
  if getattr(m, 'peak_memory_in_bytes', 0):
    parts.append(f'peak {_mb(m.peak_memory_in_bytes)}')
  return ', '.join(parts)


def compile_step(jitted, *args, name: str = 'train step'):
  """jitted compiled for args (arrays or jax.ShapeDtypeStructs), timed and its memory logged."""
  t = time.perf_counter()
  compiled = jitted.lower(*args).compile()
  logging.info(
    'Compiled the %s in %.1fs; memory per device: %s',
    name,
    time.perf_counter() - t,
    memory_summary(compiled),
  )
  return compiled


class StepProfiler:
  """A jax.profiler trace from the first to the last of `steps` (process 0 only), as a context.

  Call `start(step)` before dispatching each step and `stop(step, outputs)` after;
  dispatch inside `annotate(step)` so the trace marks each step. Leaving the
  context (the end, a preemption, an error) ends a trace still running.
  """

  def __init__(self, workdir, steps, enabled: bool = True):
    self.steps = sorted({int(s) for s in steps}) if enabled else []
    self.directory = epath.Path(workdir) / 'tensorboard'
    self._first = None  # the first traced step, while tracing

  def __enter__(self):
    return self

  def __exit__(self, *exc):
    if self._first is not None:
      jax.profiler.stop_trace()
      self._first = None

  def start(self, step: int) -> None:
    if self.steps and self._first is None and self.steps[0] <= step <= self.steps[-1]:
      jax.profiler.start_trace(str(self.directory))
      self._first = step

  @staticmethod
  def annotate(step: int):
    return jax.profiler.StepTraceAnnotation('train', step_num=step)

  def stop(self, step: int, outputs) -> None:
    if self._first is not None and step >= self.steps[-1]:
      jax.block_until_ready(outputs)  # the trace holds the steps' device work, not only dispatch
      jax.profiler.stop_trace()
      logging.info(
        'Profiled steps %d-%d into %s (TensorBoard: profile tab)',
        self._first,
        step,
        self.directory / 'plugins' / 'profile',
      )
      self._first, self.steps = None, []
