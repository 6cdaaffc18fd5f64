r"""Times the SRResNet step, the SRGAN step and inference; optionally against PyTorch.

  python -m srgan_jax.benchmark                      # paper config: B=16, batch 16, 96x96 HR, x4
  python -m srgan_jax.benchmark --torch --json=bench.json
  python -m srgan_jax.benchmark --config=configs/x4.py --batch=4 --crop=48 --repeats=1

For each figure: compile time, median step time over `--repeats` timed runs
(after `--warmup` untimed ones), images/s (inference: output megapixels/s),
peak memory (host RSS growth while running; device `memory_stats()` where the
backend has them) and MFU = analytic conv/dense FLOPs / time / peak, the peak
being the best of a matmul micro-benchmark in the compute dtype run in the same
process.
With `--torch`, `srgan_jax.torch_reference` (the same networks, losses and
step) runs in a second process, alternately with JAX (one step each in turn),
on the same number of threads, and every figure gets a JAX/PyTorch time ratio
(< 1: JAX is faster). When JAX runs on a GPU, PyTorch runs on CUDA too
(`--torch_device`), with cuDNN autotuning on and TF32 matmuls allowed, as XLA's
default float32 precision does; `--dtype=bfloat16` runs PyTorch under
`torch.autocast(bfloat16)`. The matmul peak is measured in the compute dtype.

The SRGAN step uses a randomly initialised VGG-19 (timing does not depend on
the weights); the content loss is VGG54 as in the paper.
"""

import importlib.util
import json
import os
import statistics
import subprocess
import sys
import threading
import time

import jax
import jax.numpy as jnp
import numpy as np
from absl import app, flags
from ml_collections import config_flags

from srgan_jax import data_sources, inference, input_pipeline, models, train, vgg
from srgan_jax.kernels import fast_conv, onednn_conv

_DEFAULT_CONFIG = os.path.join(
  os.path.dirname(os.path.dirname(os.path.abspath(__file__))), 'configs', 'default.py'
)
_CONFIG = config_flags.DEFINE_config_file('config', _DEFAULT_CONFIG, 'Model/data config.')
_BATCH = flags.DEFINE_integer('batch', None, 'Override config.data.batch_size.')
_CROP = flags.DEFINE_integer('crop', None, 'Override config.data.hr_crop.')
_BLOCKS = flags.DEFINE_integer('blocks', None, 'Override config.model.num_blocks.')
_SCALE = flags.DEFINE_integer('scale', None, 'Override config.model.scale.')
_DTYPE = flags.DEFINE_enum('dtype', None, ['float32', 'bfloat16'], 'Override compute dtype.')
_TINY = flags.DEFINE_bool('tiny', False, 'Tiny G and D (tests only).')
_SIZES = flags.DEFINE_list(
  'infer_sizes', ['256', '512', '1024'], 'Inference output sizes (square).'
)
_ONLY = flags.DEFINE_list('only', ['srresnet', 'srgan', 'inference'], 'Figures to run.')
_REPEATS = flags.DEFINE_integer('repeats', 5, 'Timed runs per figure (the median is reported).')
_WARMUP = flags.DEFINE_integer('warmup', 2, 'Untimed runs after compilation.')
_TORCH = flags.DEFINE_bool('torch', False, 'Also time the PyTorch reference, alternating with JAX.')
_TORCH_FORMAT = flags.DEFINE_enum(
  'torch_format',
  'auto',
  ['auto', 'nchw', 'channels_last'],
  'PyTorch memory format; auto times both and keeps the faster.',
)
_TORCH_WORKER = flags.DEFINE_bool(
  'torch_worker', False, 'Internal: serve PyTorch timings on stdin/stdout.'
)
_TORCH_DEVICE = flags.DEFINE_enum(
  'torch_device',
  'auto',
  ['auto', 'cpu', 'cuda'],
  "PyTorch's device; auto: cuda when JAX runs on a GPU, else cpu.",
)
_PEAK_N = flags.DEFINE_integer(
  'peak_n',
  None,
  'Matrix size of the matmul peak micro-benchmark (default 2048 on CPU, 8192 on accelerators).',
)
_JSON = flags.DEFINE_string('json', None, 'Write the results here as JSON.')
_CURVE_STEPS = flags.DEFINE_integer(
  'curve_steps',
  0,
  'Also train this many SRResNet steps on demo-photo crops in float32 and '
  'bfloat16 from one init, plus float32 from another init (the noise), and compare the curves.',
)


# ----------------------------------------------------------------------------
# Analytic FLOPs (multiply-add = 2 FLOPs; convs and dense layers only).


def conv_flops(k, cin, cout, h_out, w_out):
  return 2 * k * k * cin * cout * h_out * w_out


def generator_flops(lr_hw, scale, num_blocks, features):
  """One forward pass of G on one LR image."""
  h, w = lr_hw
  f = features
  total = conv_flops(9, 3, f, h, w)  # k9n64s1
  total += (2 * num_blocks + 1) * conv_flops(3, f, f, h, w)  # residual blocks + conv_mid
  for r in models.upsample_factors(scale):
    total += conv_flops(3, f, f * r * r, h, w)
    h, w = h * r, w * r
  return total + conv_flops(9, f, 3, h, w)  # k9n3s1


def discriminator_flops(hw, features, strides, dense_features):
  h, w = hw
  total, cin = 0, 3
  for f, s in zip(features, strides):
    h, w = -(-h // s), -(-w // s)
    total += conv_flops(3, cin, f, h, w)
    cin = f
  return total + 2 * h * w * cin * dense_features + 2 * dense_features


def vgg54_flops(hw):
  h, w = hw
  total, cin = 0, 3
  for b, block in enumerate(vgg.BLOCK_CHANNELS):
    if b:
      h, w = h // 2, w // 2
    for c in block:
      total += conv_flops(3, cin, c, h, w)
      cin = c
  return total


def step_flops(config):
  """Analytic FLOPs of one update: a trained net costs ~3x its forward (fwd + 2 bwd)."""
  n, hr, s = config.data.batch_size, config.data.hr_crop, config.model.scale
  g_model, d_model = models.make_generator(config.model), models.make_discriminator(config)
  g = n * generator_flops((hr // s, hr // s), s, g_model.num_blocks, g_model.features)
  if config.phase == 'srresnet':
    return 3 * g
  d = (
    2 * n * discriminator_flops((hr, hr), d_model.features, d_model.strides, d_model.dense_features)
  )  # D sees [HR, SR]
  # VGG: forward on SR and HR, backward w.r.t. the SR input only (~1 more forward of SR).
  return 3 * g + 3 * d + 3 * n * vgg54_flops((hr, hr))


# ----------------------------------------------------------------------------
# Measuring.


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


def _timed(fn):
  t = time.perf_counter()
  fn()
  return time.perf_counter() - t


def matmul_peak_flops(n=2048, repeats=5, dtype='float32'):
  """Best matmul throughput of this device through XLA, in `dtype` (random data, not zeros)."""
  a = jax.random.normal(jax.random.key(0), (n, n), jnp.dtype(dtype))
  mm = jax.jit(jnp.dot)
  mm(a, a).block_until_ready()
  best = min(_timed(lambda: mm(a, a).block_until_ready()) for _ in range(repeats))
  return 2 * n**3 / best


def torch_matmul_peak_flops(n=2048, repeats=5, dtype='float32', device='cpu'):
  import torch  # pylint: disable=g-import-not-at-top

  a = torch.randn(n, n, device=device, dtype=getattr(torch, dtype))
  sync = torch.cuda.synchronize if device == 'cuda' else (lambda: None)

  def mm():
    torch.mm(a, a)
    sync()

  mm()
  return 2 * n**3 / min(_timed(mm) for _ in range(repeats))


def _device_peak_bytes():
  stats = jax.devices()[0].memory_stats()
  return (stats or {}).get('peak_bytes_in_use')


def run_figure(name, jax_fn, compile_fn, torch_fn, *, repeats, warmup, flops, items, unit_scale):
  """Compiles, warms up, then alternates timed JAX and PyTorch runs; returns one result row.

  `torch_fn` runs one PyTorch step in the worker process and returns its time there.
  """
  t = time.perf_counter()
  compile_fn()
  compile_s = time.perf_counter() - t
  with PeakRSS() as mem:
    for _ in range(warmup):
      jax_fn()
    if torch_fn:
      for _ in range(warmup):
        torch_fn()
    jax_ts, torch_ts = [], []
    for _ in range(repeats):
      # Each timed step follows an untimed one of the same framework: the other one's
      # step in between evicts caches and page mappings a training loop keeps warm.
      jax_fn()
      jax_ts.append(_timed(jax_fn))
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
    'device_peak_bytes': _device_peak_bytes(),
  }
  row['jax_throughput'] = items * unit_scale / row['jax_s']
  if torch_ts:
    row['torch_s'] = statistics.median(torch_ts)
    row['torch_times_s'] = torch_ts
    row['torch_min_s'] = min(torch_ts)
    row['torch_throughput'] = items * unit_scale / row['torch_s']
    row['jax_over_torch'] = row['jax_s'] / row['torch_s']
  return row


# ----------------------------------------------------------------------------
# The PyTorch side runs in its own process (`--torch_worker`), started by the
# parent and driven over stdin/stdout one step at a time, so the two are still
# timed alternately but never share an address space: sharing one process with
# PyTorch slowed XLA's SRGAN step 1.5x on this machine (5.5 s alone, 8.6 s next to
# torch; cause not pinned down), which no user of either would see.


def _hr_batch(c):
  return np.random.default_rng(0).integers(
    0, 256, (c.data.batch_size, c.data.hr_crop, c.data.hr_crop, 3), dtype=np.uint8
  )


def _lr_image(lr_size):
  return np.random.default_rng(0).random((1, lr_size, lr_size, 3), dtype=np.float32)


def _torch_maker(config, figure, device):
  """`make(channels_last) -> run()` for one figure of the PyTorch reference on `device`."""
  import torch  # pylint: disable=g-import-not-at-top
  from srgan_jax import torch_reference as tr  # pylint: disable=g-import-not-at-top

  c = config.copy_and_resolve_references()
  g_model = models.make_generator(c.model)
  s = c.model.scale
  autocast_dtype = torch.bfloat16 if c.model.compute_dtype == 'bfloat16' else None
  sync = torch.cuda.synchronize if device == 'cuda' else (lambda: None)  # CUDA runs async
  if figure.startswith('inference_'):
    lr_np = _lr_image(int(figure.split('_')[1]) // s)

    def make_inference(channels_last):
      f = torch.channels_last if channels_last else torch.contiguous_format
      net = (
        tr.Generator(s, g_model.num_blocks, g_model.features)
        .eval()
        .to(device=device, memory_format=f)
      )
      x = torch.from_numpy(lr_np).permute(0, 3, 1, 2).to(device).contiguous(memory_format=f)

      def run():
        with (
          torch.inference_mode(),
          torch.autocast(device, dtype=autocast_dtype, enabled=autocast_dtype is not None),
        ):
          net(x)
        sync()

      return run

    return make_inference
  phase = figure[: -len('_step')]
  hr = c.data.hr_crop
  hr_t = torch.from_numpy(_hr_batch(c))
  d_model = models.make_discriminator(c)

  def make_step(channels_last):
    torch.manual_seed(0)
    g = tr.Generator(s, g_model.num_blocks, g_model.features)
    d = vgg_net = None
    if phase == 'srgan':
      d = tr.Discriminator(hr, d_model.features, d_model.strides, d_model.dense_features)
      vgg_net = tr.VGG19()
    fn = tr.make_step(
      g,
      d,
      vgg_net,
      hr_size=hr,
      scale=s,
      adversarial_weight=c.loss.adversarial_weight,
      channels_last=channels_last,
      device=device,
      autocast_dtype=autocast_dtype,
    )

    def run():
      fn(hr_t)
      sync()

    return run

  return make_step


def _torch_worker(config):
  """Serves the parent: one JSON request per stdin line, one JSON reply per stdout line."""
  import torch  # pylint: disable=g-import-not-at-top

  torch.set_num_threads(os.cpu_count())
  device = _TORCH_DEVICE.value
  if device == 'cuda' and not torch.cuda.is_available():
    sys.exit(
      f'error: --torch_device=cuda, but PyTorch {torch.__version__} sees no CUDA device; '
      'use --torch_device=cpu or a CUDA build of torch'
    )
  if device == 'cuda':
    torch.backends.cudnn.benchmark = True  # what a tuned PyTorch training script sets
    torch.set_float32_matmul_precision('high')  # TF32, as XLA's default float32 precision
  out = sys.stdout
  sys.stdout = sys.stderr  # nothing else may write to the reply stream
  fn = None
  for line in sys.stdin:
    request = json.loads(line)
    if 'peak' in request:
      reply = {
        'flops': torch_matmul_peak_flops(request['peak'], dtype=request['dtype'], device=device)
      }
    elif 'prepare' in request:
      logs = []
      fn, fmt = _torch_format(
        _torch_maker(config, request['prepare'], device), _TORCH_FORMAT.value, logs.append
      )
      reply = {'format': fmt, 'log': logs}
    else:
      reply = {'s': _timed(fn)}
    out.write(json.dumps(reply) + '\n')
    out.flush()


class TorchWorker:
  """The parent's handle on a `--torch_worker` process with the same flags."""

  def __init__(self, device):
    # The worker never runs JAX: keep it off the accelerator, whose memory JAX preallocates.
    env = dict(os.environ, JAX_PLATFORMS='cpu')
    self._proc = subprocess.Popen(
      [
        sys.executable,
        '-m',
        'srgan_jax.benchmark',
        *sys.argv[1:],
        '--torch_worker',
        f'--torch_device={device}',
      ],
      stdin=subprocess.PIPE,
      stdout=subprocess.PIPE,
      text=True,
      env=env,
    )

  def call(self, **request):
    self._proc.stdin.write(json.dumps(request) + '\n')
    self._proc.stdin.flush()
    line = self._proc.stdout.readline()
    if not line:
      raise app.UsageError(
        f'the PyTorch worker exited with code {self._proc.wait()}; its stderr (above) says why'
      )
    return json.loads(line)

  def close(self):
    try:
      self._proc.stdin.close()  # the worker's loop ends at end of input
    except BrokenPipeError:  # it already exited
      pass
    self._proc.wait()


def _torch_figure(worker, figure, log):
  """(time-one-step function, memory format) on the worker, or (None, None) without one."""
  if worker is None:
    return None, None
  reply = worker.call(prepare=figure)
  for line in reply['log']:
    log(line)
  return (lambda: worker.call(run=1)['s']), reply['format']


# ----------------------------------------------------------------------------
# The figures.


def _config():
  c = _CONFIG.value
  if c is None:
    raise app.UsageError('--config must name a config file, e.g. configs/default.py')
  overrides = {
    ('data', 'batch_size'): _BATCH.value,
    ('data', 'hr_crop'): _CROP.value,
    ('model', 'num_blocks'): _BLOCKS.value,
    ('model', 'scale'): _SCALE.value,
    ('model', 'compute_dtype'): _DTYPE.value,
  }
  for (section, key), value in overrides.items():
    if value is not None:
      c[section][key] = value
  if _TINY.value:
    c.model.tiny = True
  c.data.val_crop = c.data.hr_crop
  c.loss.content = 'vgg54'
  return c


def _random_vgg(config, dtype):
  return vgg.VGG19(taps=('relu5_4',), dtype=dtype).init(
    jax.random.key(1), jnp.zeros((1, config.data.hr_crop, config.data.hr_crop, 3))
  )['params']


def _torch_format(make_torch_step, choice, log):
  """Builds the PyTorch step in `choice` format; 'auto' times one run of each and keeps the faster."""
  if choice != 'auto':
    return make_torch_step(choice == 'channels_last'), choice
  timings = {}
  for fmt in ('nchw', 'channels_last'):
    step = make_torch_step(fmt == 'channels_last')
    step()
    timings[fmt] = _timed(step)
  best = min(timings, key=timings.get)
  log(
    f'  torch format: nchw {timings["nchw"]:.3f}s, channels_last '
    f'{timings["channels_last"]:.3f}s -> {best}'
  )
  return make_torch_step(best == 'channels_last'), best


def train_figure(config, phase, torch_worker, log):
  c = config.copy_and_resolve_references()
  c.phase = phase
  n, hr = c.data.batch_size, c.data.hr_crop
  dtype = jnp.dtype(c.model.compute_dtype)
  g_state, d_state = train.create_train_states(c, jax.random.key(0))
  vgg_params = None
  if phase == 'srresnet':
    c.loss.content = 'mse'
  else:
    vgg_params = _random_vgg(c, jnp.float32)
  content_loss = train.make_content_loss(c, vgg_preprocess='torch')  # as training builds it
  step = train.make_jitted_step(c, train.make_mesh(), content_loss)
  hr_np = _hr_batch(c)
  batch = {'hr': jnp.asarray(hr_np)}
  states = [g_state, d_state]

  compiled = {}

  def compile_fn():
    compiled['step'] = step.lower(*states, batch, vgg_params).compile()

  def jax_fn():
    g, d, metrics = compiled['step'](*states, batch, vgg_params)
    jax.block_until_ready(metrics)
    states[:] = [g, d]

  torch_fn, fmt = _torch_figure(torch_worker, f'{phase}_step', log)
  row = run_figure(
    f'{phase}_step',
    jax_fn,
    compile_fn,
    torch_fn,
    repeats=_REPEATS.value,
    warmup=_WARMUP.value,
    flops=step_flops(c),
    items=n,
    unit_scale=1.0,
  )
  row.update(unit='images/s', batch=n, hr_crop=hr, dtype=str(dtype), torch_format=fmt)
  return row


def inference_figure(config, out_size, torch_worker, log):
  s = config.model.scale
  lr_size = out_size // s
  g_model = models.make_generator(config.model)
  variables = g_model.init(jax.random.key(0), jnp.zeros((1, lr_size, lr_size, 3)))
  lr_np = _lr_image(lr_size)
  lr = jnp.asarray(lr_np)
  predict = inference.jit_predict()
  compiled = {}

  def compile_fn():
    compiled['f'] = predict.lower(g_model.apply, variables, lr).compile()

  def jax_fn():
    compiled['f'](variables, lr).block_until_ready()

  torch_fn, fmt = _torch_figure(torch_worker, f'inference_{out_size}', log)
  flops = generator_flops((lr_size, lr_size), s, g_model.num_blocks, g_model.features)
  row = run_figure(
    f'inference_{out_size}',
    jax_fn,
    compile_fn,
    torch_fn,
    repeats=_REPEATS.value,
    warmup=_WARMUP.value,
    flops=flops,
    items=out_size * out_size,
    unit_scale=1e-6,
  )
  row.update(unit='MP/s', out_size=out_size, torch_format=fmt)
  return row


# ----------------------------------------------------------------------------
# bf16 vs fp32 loss curves (issue: "the same loss curve within noise").


def photo_crops(data_config, steps, batch, crop, seed=0):
  """`steps` uint8 batches of random `crop`-sized crops of the demo photographs (no download)."""
  images = data_sources.load_shard('demo', data_config, crop)
  rng = np.random.default_rng(seed)
  out = np.empty((steps, batch, crop, crop, 3), np.uint8)
  for t in range(steps):
    for j in range(batch):
      out[t, j] = input_pipeline.random_crop(
        images[rng.integers(len(images))], crop, rng, augment=False
      )
  return out


def loss_curves(config, steps, window=None):
  """SRResNet content-loss curves: fp32 and bf16 from init 0, fp32 from init 1, same batches.

  Returns {'float32': [...], 'bfloat16': [...], 'float32_init1': [...]} (per-step losses),
  the window means, and the largest relative gap of bf16 (and of the other init, the
  run-to-run noise) from fp32 over the windows after the first.
  """
  window = window or max(1, steps // 10)
  batches = photo_crops(config.data, steps, config.data.batch_size, config.data.hr_crop)
  curves = {}
  for name, dtype, seed in (
    ('float32', 'float32', 0),
    ('bfloat16', 'bfloat16', 0),
    ('float32_init1', 'float32', 1),
  ):
    c = config.copy_and_resolve_references()
    c.phase, c.loss.content, c.model.compute_dtype = 'srresnet', 'mse', dtype
    g_state, _ = train.create_train_states(c, jax.random.key(seed))
    step = train.make_jitted_step(c, train.make_mesh(), train.make_content_loss(c))
    losses = []
    for hr in batches:
      g_state, _, metrics = step(g_state, None, {'hr': jnp.asarray(hr)}, None)
      losses.append(metrics['content_loss'])
    curves[name] = [float(l) for l in jax.device_get(losses)]
  means = {
    k: np.asarray(v[: len(v) // window * window]).reshape(-1, window).mean(1)
    for k, v in curves.items()
  }
  gap = lambda k: float(np.max(np.abs(means[k][1:] / means['float32'][1:] - 1)))
  return {
    'steps': steps,
    'window': window,
    'curves': curves,
    'window_means': {k: v.tolist() for k, v in means.items()},
    'bf16_max_rel_gap': gap('bfloat16'),
    'init_max_rel_gap': gap('float32_init1'),
  }


def format_curves(report):
  w = report['window']
  lines = [
    f'SRResNet content loss, mean of each {w} steps (same batches of demo-photo crops):',
    f'{"steps":>11} {"float32":>9} {"bfloat16":>9} {"fp32 init1":>10}',
  ]
  m = report['window_means']
  for i in range(len(m['float32'])):
    lines.append(
      f'{i * w + 1:>5}-{(i + 1) * w:<5} {m["float32"][i]:9.5f} {m["bfloat16"][i]:9.5f} '
      f'{m["float32_init1"][i]:10.5f}'
    )
  lines.append(
    f'largest gap to float32 after the first window: bfloat16 '
    f'{report["bf16_max_rel_gap"]:.1%}, float32 from another init {report["init_max_rel_gap"]:.1%}'
  )
  return '\n'.join(lines)


def format_table(rows, peak):
  """A fixed-width table: one line per figure."""
  head = (
    f'{"figure":<16} {"compile s":>9} {"JAX s":>8} {"JAX rate":>14} {"MFU":>6} '
    f'{"RSS MB":>7} {"torch s":>8} {"torch rate":>14} {"torch MFU":>9} {"JAX/torch":>9}'
  )
  lines = [head, '-' * len(head)]
  for r in rows:
    mfu = r['flops'] / r['jax_s'] / peak
    line = (
      f'{r["name"]:<16} {r["compile_s"]:9.2f} {r["jax_s"]:8.3f} '
      f'{r["jax_throughput"]:9.2f} {r["unit"]:<4} {mfu:6.1%} {r["host_rss_delta_mb"]:7.0f}'
    )
    if 'torch_s' in r:
      line += (
        f' {r["torch_s"]:8.3f} {r["torch_throughput"]:9.2f} {r["unit"]:<4} '
        f'{r["flops"] / r["torch_s"] / peak:9.1%} {r["jax_over_torch"]:9.2f}'
      )
    lines.append(line)
  return '\n'.join(lines)


def _cpu_model():
  try:
    with open('/proc/cpuinfo') as f:
      for line in f:
        if line.startswith('model name'):
          return line.split(':', 1)[1].strip()
  except OSError:
    pass
  return 'unknown'


def run(config, use_torch, log=print):
  """All requested figures; returns the JSON-able report."""
  if use_torch and importlib.util.find_spec('torch') is None:
    raise app.UsageError("--torch needs PyTorch: pip install -e '.[benchmark]'")
  threads = os.cpu_count()
  platform = jax.default_backend()
  dtype = config.model.compute_dtype
  torch_device = _TORCH_DEVICE.value
  if torch_device == 'auto':
    torch_device = 'cuda' if platform == 'gpu' else 'cpu'
  peak_n = _PEAK_N.value or (2048 if platform == 'cpu' else 8192)
  convs = onednn_conv.prepare() if platform == 'cpu' else None  # built here, not in a timed compile
  worker = TorchWorker(torch_device) if use_torch else None
  try:
    peaks = {'jax': matmul_peak_flops(peak_n, dtype=dtype)}
    if worker:
      peaks['torch'] = worker.call(peak=peak_n, dtype=dtype)['flops']
    peak = max(peaks.values())
    log(
      f'device {jax.devices()[0].device_kind} ({_cpu_model()}, {threads} threads); '
      f'{dtype} matmul peak {peak / 1e9:.1f} GFLOP/s '
      + ', '.join(f'{k} {v / 1e9:.1f}' for k, v in peaks.items())
      + (f'; PyTorch on {torch_device}' if worker else '')
    )
    if convs is not None:
      log(f'float32 convolutions: {convs}')
    rows = []
    for phase in ('srresnet', 'srgan'):
      if phase in _ONLY.value:
        log(f'{phase} step ...')
        rows.append(train_figure(config, phase, worker, log))
    if 'inference' in _ONLY.value:
      for size in _SIZES.value:
        log(f'inference {size}x{size} ...')
        rows.append(inference_figure(config, int(size), worker, log))
  finally:
    if worker:
      worker.close()
  for r in rows:
    r['jax_mfu'] = r['flops'] / r['jax_s'] / peak
    if 'torch_s' in r:
      r['torch_mfu'] = r['flops'] / r['torch_s'] / peak
  table = format_table(rows, peak)
  log(table)
  curves = None
  if _CURVE_STEPS.value:
    log(f'loss curves, {_CURVE_STEPS.value} steps x 3 runs ...')
    curves = loss_curves(config, _CURVE_STEPS.value)
    log(format_curves(curves))
  return {
    'device': jax.devices()[0].device_kind,
    'platform': platform,
    'cpu': _cpu_model(),
    'threads': threads,
    'torch_device': torch_device if use_torch else None,
    'compute_dtype': dtype,
    'peak_n': peak_n,
    'jax_version': jax.__version__,
    'xla_flags': os.environ.get('XLA_FLAGS', ''),
    'compiler_options': fast_conv.compiler_options(),
    'cpu_convolutions': convs,
    'peak_flops': peak,
    'matmul_peak_flops': peaks,
    'config': config.to_dict(),
    'repeats': _REPEATS.value,
    'warmup': _WARMUP.value,
    'results': rows,
    'table': table,
    'loss_curves': curves,
  }


def main(argv):
  del argv
  config = _config()
  if _TORCH_WORKER.value:
    return _torch_worker(config)
  report = run(config, _TORCH.value)
  if _JSON.value:
    with open(_JSON.value, 'w') as f:
      json.dump(report, f, indent=1, default=str)
  sys.stdout.flush()


if __name__ == '__main__':
  app.run(main)
