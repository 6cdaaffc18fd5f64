"""Measuring: step times (JAX and the PyTorch worker alternating), host RSS, matmul peaks."""

import os
import statistics
import threading
import time

import jax
import jax.numpy as jnp
import numpy as np


def _rss_bytes():
  with open('/proc/self/statm') as f:
    return int(f.read().split()[1]) * os.sysconf('SC_PAGE_SIZE')


class PeakRSS:
  """Peak host RSS growth over a block, sampled every 5 ms on a side thread."""

  def __enter__(self):
    self.base = self.peak = _rss_bytes()
    self._stop = threading.Event()
    self._thread = threading.Thread(target=self._poll, daemon=True)
    self._thread.start()
    return self

  def _poll(self):
    while not self._stop.wait(0.005):
      self.peak = max(self.peak, _rss_bytes())

  def __exit__(self, *exc):
    self._stop.set()
    self._thread.join()
    self.peak = max(self.peak, _rss_bytes())
    self.delta_mb = (self.peak - self.base) / 2**20


def timed(fn):
  t = time.perf_counter()
  fn()
  return time.perf_counter() - t


def matmul_peak_flops(n=2048, repeats=5, dtype='float32'):
  """Best matmul throughput of this device through XLA, in `dtype` (random data, not zeros)."""
  a = jax.random.normal(jax.random.key(0), (n, n), jnp.dtype(dtype))
  mm = jax.jit(jnp.dot)
  mm(a, a).block_until_ready()
  best = min(timed(lambda: mm(a, a).block_until_ready()) for _ in range(repeats))
  return 2 * n**3 / best


def conv_peak_flops(n=2048, repeats=5, dtype='float32'):
  """Best throughput of an n x n x n matmul run as the networks' convolutions run (a 1x1 conv of
  n channels over n pixels, `fast_conv`: oneDNN on a CPU), in `dtype`."""
  from srgan_jax.kernels import fast_conv  # pylint: disable=g-import-not-at-top

  x = jax.random.normal(jax.random.key(0), (1, n, 1, n), jnp.dtype(dtype))
  w = jax.random.normal(jax.random.key(1), (1, 1, n, n), jnp.dtype(dtype))
  conv = jax.jit(
    lambda x, w: fast_conv.conv_general_dilated(
      x, w, (1, 1), 'VALID', dimension_numbers=('NHWC', 'HWIO', 'NHWC')
    ),
    compiler_options=fast_conv.compiler_options(),
  )
  conv(x, w).block_until_ready()
  best = min(timed(lambda: conv(x, w).block_until_ready()) for _ in range(repeats))
  return 2 * n**3 / best


def device_peak_bytes():
  stats = jax.devices()[0].memory_stats()
  return (stats or {}).get('peak_bytes_in_use')


def run_figure(
  name, jax_fn, compile_fn, torch_fn, *, repeats, warmup, flops, items, unit_scale, baseline=None
):
  """Compiles, warms up, then alternates timed JAX and PyTorch runs; returns one result row.

  `torch_fn` runs one PyTorch step in the worker process and returns its time there.
  `baseline`: (dtype, compile_fn, jax_fn) of the same figure in another compute dtype, timed
  in turn with the others (row: baseline_s, jax_over_baseline).
  """
  t = time.perf_counter()
  compile_fn()
  compile_s = time.perf_counter() - t
  if baseline:
    baseline[1]()
  with PeakRSS() as mem:
    for _ in range(warmup):
      jax_fn()
      if baseline:
        baseline[2]()
    if torch_fn:
      for _ in range(warmup):
        torch_fn()
    jax_ts, torch_ts, base_ts = [], [], []
    for _ in range(repeats):
      # Each timed step follows an untimed one of the same framework: the other one's
      # step in between evicts caches and page mappings a training loop keeps warm.
      jax_fn()
      jax_ts.append(timed(jax_fn))
      if baseline:
        baseline[2]()
        base_ts.append(timed(baseline[2]))
      if torch_fn:
        torch_fn()
        torch_ts.append(torch_fn())  # seconds, timed in the PyTorch process
  row = {
    'name': name,
    'compile_s': compile_s,
    'jax_s': statistics.median(jax_ts),
    'jax_times_s': jax_ts,
    'jax_min_s': min(jax_ts),
    'flops': flops,
    'host_rss_delta_mb': mem.delta_mb,
    'device_peak_bytes': device_peak_bytes(),
  }
  row['jax_throughput'] = items * unit_scale / row['jax_s']
  if base_ts:
    row.update(baseline_dtype=baseline[0], baseline_s=statistics.median(base_ts))
    row['baseline_times_s'] = base_ts
    row['jax_over_baseline'] = row['jax_s'] / row['baseline_s']
  if torch_ts:
    row['torch_s'] = statistics.median(torch_ts)
    row['torch_times_s'] = torch_ts
    row['torch_min_s'] = min(torch_ts)
    row['torch_throughput'] = items * unit_scale / row['torch_s']
    row['jax_over_torch'] = row['jax_s'] / row['torch_s']
  return row


def hr_batch(c):
  """The uint8 HR batch both frameworks time their train steps on (fixed seed)."""
  return np.random.default_rng(0).integers(
    0, 256, (c.data.batch_size, c.data.hr_crop, c.data.hr_crop, 3), dtype=np.uint8
  )


def lr_image(lr_size):
  """The LR image both frameworks time inference on (fixed seed)."""
  return np.random.default_rng(0).random((1, lr_size, lr_size, 3), dtype=np.float32)


def cpu_model() -> str:
  """The CPU's model name from /proc/cpuinfo ('unknown' elsewhere)."""
  try:
    with open('/proc/cpuinfo') as f:
      for line in f:
        if line.startswith('model name'):
          return line.split(':', 1)[1].strip()
  except OSError:
    pass
  return 'unknown'


def rrdbnet_config(config, num_blocks: int):
  """ESRGAN's G (x4; 64 features, growth 32, `num_blocks` RRDBs) on the benchmark's batch."""
  c = config.copy_and_resolve_references()
  c.model.update(arch='rrdbnet', scale=4, num_blocks=num_blocks, features=64, growth=32)
  return c
