"""The figures: what is timed (train steps, inference), the table, and the whole report."""

import dataclasses
import functools
import importlib.util
import os

import jax
import jax.numpy as jnp
from absl import app

from srgan_jax.evaluation import inference
from srgan_jax.nets import generators
from srgan_jax.training import train_states
from srgan_jax.training import update_step
from srgan_jax.nets import vgg
from srgan_jax.benchmark import curves as curves_lib
from srgan_jax.benchmark import flops as flops_lib
from srgan_jax.benchmark import measure
from srgan_jax.benchmark import torch_worker as torch_worker_lib
from srgan_jax.kernels import fast_conv
from srgan_jax.kernels import onednn_conv


@dataclasses.dataclass(frozen=True)
class Options:
  """How to measure (the flags of `python -m srgan_jax.benchmark`; see __main__)."""

  repeats: int = 5  # timed runs per figure (the median is reported)
  warmup: int = 2  # untimed runs after compilation
  only: tuple[str, ...] = ('srresnet', 'srgan', 'inference', 'rrdbnet')
  infer_sizes: tuple[int, ...] = (256, 512, 1024)
  torch_device: str = 'auto'  # auto: cuda when JAX runs on a GPU, else cpu
  peak_n: int | None = None  # matmul peak size (default 2048 on CPU, 8192 on accelerators)
  curve_steps: int = 0
  rrdb_blocks: int = 23  # RRDBNet's B in the rrdbnet figures (ESRGAN: 23)
  # Also time each JAX figure in this compute dtype, in turn with the others ('' = no).
  baseline_dtype: str = ''
  argv: tuple[str, ...] = ()  # the command line's flags, handed to the PyTorch worker


def _random_vgg(config, dtype):
  return vgg.VGG19(taps=('relu5_4',), dtype=dtype).init(
    jax.random.key(1), jnp.zeros((1, config.data.hr_crop, config.data.hr_crop, 3))
  )['params']


def _baseline(config, options, make_fns):
  """(dtype, compile_fn, jax_fn) of the figure in options.baseline_dtype, or None."""
  if not options.baseline_dtype or options.baseline_dtype == config.model.compute_dtype:
    return None
  c = config.copy_and_resolve_references()
  c.model.compute_dtype = options.baseline_dtype
  return (options.baseline_dtype, *make_fns(c))


def train_figure(config, phase, options, torch_worker, log, name=None):
  """One train step's row: JAX (and the PyTorch worker's) time, compile time, FLOPs, memory.

  The SRResNet phase's loss: pixel MSE, or for RRDBNet ESRGAN's PSNR-oriented L1.
  """
  c = config.copy_and_resolve_references()
  c.phase = phase
  if phase == 'srresnet':
    c.loss.content = 'l1' if c.model.arch == 'rrdbnet' else 'mse'
  name = name or f'{phase}_step'
  n, hr = c.data.batch_size, c.data.hr_crop
  dtype = jnp.dtype(c.model.compute_dtype)
  compile_fn, jax_fn = _train_fns(c)
  torch_fn, fmt = torch_worker_lib.figure_timer(torch_worker, name, log)
  row = measure.run_figure(
    name,
    jax_fn,
    compile_fn,
    torch_fn,
    repeats=options.repeats,
    warmup=options.warmup,
    flops=flops_lib.step_flops(c),
    items=n,
    unit_scale=1.0,
    baseline=_baseline(c, options, _train_fns),
  )
  row.update(unit='images/s', batch=n, hr_crop=hr, dtype=str(dtype), torch_format=fmt)
  return row


def _train_fns(c):
  """(compile_fn, jax_fn) of config c's train step on the benchmark's batch."""
  g_state, d_state = train_states.create_train_states(c, jax.random.key(0))
  vgg_params = None if c.phase == 'srresnet' else _random_vgg(c, jnp.float32)
  content_loss = update_step.make_content_loss(c, vgg_preprocess='torch')  # as training builds it
  step = update_step.make_jitted_step(c, update_step.make_mesh(), content_loss)
  hr_np = measure.hr_batch(c)
  batch = {'hr': jnp.asarray(hr_np)}
  states = [g_state, d_state]

  compiled = {}

  def compile_fn():
    compiled['step'] = step.lower(*states, batch, vgg_params).compile()

  def jax_fn():
    g, d, metrics = compiled['step'](*states, batch, vgg_params)
    jax.block_until_ready(metrics)
    states[:] = [g, d]

  return compile_fn, jax_fn


def inference_figure(config, out_size, options, torch_worker, log, prefix=''):
  """One inference row (one LR image to `out_size` squared output pixels)."""
  s = config.model.scale
  name = f'{prefix}inference_{out_size}'
  lr_size = out_size // s
  make_fns = functools.partial(_inference_fns, lr_size=lr_size)
  compile_fn, jax_fn = make_fns(config)
  torch_fn, fmt = torch_worker_lib.figure_timer(torch_worker, name, log)
  flops = flops_lib.any_generator_flops(config.model, (lr_size, lr_size))
  row = measure.run_figure(
    name,
    jax_fn,
    compile_fn,
    torch_fn,
    repeats=options.repeats,
    warmup=options.warmup,
    flops=flops,
    items=out_size * out_size,
    unit_scale=1e-6,
    baseline=_baseline(config, options, make_fns),
  )
  row.update(unit='MP/s', out_size=out_size, torch_format=fmt)
  return row


def _inference_fns(config, lr_size):
  """(compile_fn, jax_fn) of G (config.model, its compute dtype) on one lr_size^2 image."""
  g_model = generators.make_generator(config.model)
  variables = g_model.init(jax.random.key(0), jnp.zeros((1, lr_size, lr_size, 3)))
  lr = jnp.asarray(measure.lr_image(lr_size))
  predict = inference.jit_predict()
  dtype = str(config.model.get('compute_dtype', 'float32'))
  apply_fn = inference.generator_apply(config.model, dtype)  # what upscale / evaluate run
  compiled = {}

  def compile_fn():
    compiled['f'] = predict.lower(apply_fn, variables, lr).compile()

  def jax_fn():
    compiled['f'](variables, lr).block_until_ready()

  return compile_fn, jax_fn


def format_table(rows, peak):
  """A fixed-width table: one line per figure (and the baseline dtype's time where measured)."""
  base = next((r['baseline_dtype'] for r in rows if 'baseline_s' in r), None)
  head = (
    f'{"figure":<22} {"compile s":>9} {"JAX s":>8} {"JAX rate":>14} {"MFU":>6} '
    f'{"RSS MB":>7} {"torch s":>8} {"torch rate":>14} {"torch MFU":>9} {"JAX/torch":>9}'
  )
  if base:
    short = {'float32': 'f32', 'bfloat16': 'bf16'}.get(base, base)
    head += f' {short + " s":>8} {"JAX/" + short:>9}'
  lines = [head, '-' * len(head)]
  for r in rows:
    mfu = r['flops'] / r['jax_s'] / peak
    line = (
      f'{r["name"]:<22} {r["compile_s"]:9.2f} {r["jax_s"]:8.3f} '
      f'{r["jax_throughput"]:9.2f} {r["unit"]:<4} {mfu:6.1%} {r["host_rss_delta_mb"]:7.0f}'
    )
    if 'torch_s' in r:
      line += (
        f' {r["torch_s"]:8.3f} {r["torch_throughput"]:9.2f} {r["unit"]:<4} '
        f'{r["flops"] / r["torch_s"] / peak:9.1%} {r["jax_over_torch"]:9.2f}'
      )
    elif base:
      line += ' ' * 55
    if 'baseline_s' in r:
      line += f' {r["baseline_s"]:8.3f} {r["jax_over_baseline"]:9.2f}'
    lines.append(line)
  return '\n'.join(lines)


def run(config, use_torch: bool, options: Options = Options(), log=print) -> dict:
  """All requested figures (and the loss curves if asked); returns the JSON-able report."""
  if use_torch and importlib.util.find_spec('torch') is None:
    raise app.UsageError("--torch needs PyTorch: pip install -e '.[benchmark]'")
  threads = os.cpu_count()
  platform = jax.default_backend()
  dtype = config.model.compute_dtype
  torch_device = options.torch_device
  if torch_device == 'auto':
    torch_device = 'cuda' if platform == 'gpu' else 'cpu'
  peak_n = options.peak_n or (2048 if platform == 'cpu' else 8192)
  convs = onednn_conv.prepare() if platform == 'cpu' else None  # built here, not in a timed compile
  isa = onednn_conv.isa() if platform == 'cpu' and jax.device_count() == 1 else ''
  worker = torch_worker_lib.TorchWorker(torch_device, options.argv) if use_torch else None
  try:
    peaks = {'jax': measure.matmul_peak_flops(peak_n, dtype=dtype)}
    if platform == 'cpu':  # the path the networks take: a 1x1 conv on oneDNN
      peaks['jax_conv'] = measure.conv_peak_flops(peak_n, dtype=dtype)
    if worker:
      peaks['torch'] = worker.call(peak=peak_n, dtype=dtype)['flops']
    peak = max(peaks.values())
    log(
      f'device {jax.devices()[0].device_kind} ({measure.cpu_model()}, {threads} threads'
      + (f', oneDNN ISA {isa}' if isa else '')
      + f'); {dtype} matmul peak {peak / 1e9:.1f} GFLOP/s '
      + ', '.join(f'{k} {v / 1e9:.1f}' for k, v in peaks.items())
      + (f'; PyTorch on {torch_device}' if worker else '')
    )
    if convs is not None:
      log(f'CPU convolutions: {convs}')
    rows = []
    for phase in ('srresnet', 'srgan'):
      if phase in options.only:
        log(f'{phase} step ...')
        rows.append(train_figure(config, phase, options, worker, log))
    if 'inference' in options.only:
      for size in options.infer_sizes:
        log(f'inference {size}x{size} ...')
        rows.append(inference_figure(config, int(size), options, worker, log))
    if 'rrdbnet' in options.only:  # ESRGAN's G: the PSNR-oriented L1 step and inference
      rrdb = measure.rrdbnet_config(config, options.rrdb_blocks)
      log(f'rrdbnet step ({options.rrdb_blocks} RRDBs) ...')
      rows.append(train_figure(rrdb, 'srresnet', options, worker, log, name='rrdbnet_step'))
      for size in options.infer_sizes:
        log(f'rrdbnet inference {size}x{size} ...')
        rows.append(inference_figure(rrdb, int(size), options, worker, log, prefix='rrdbnet_'))
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
  if options.curve_steps:
    log(f'loss curves, {options.curve_steps} steps x 3 runs ...')
    curves = curves_lib.loss_curves(config, options.curve_steps)
    log(curves_lib.format_curves(curves))
  return {
    'device': jax.devices()[0].device_kind,
    'platform': platform,
    'cpu': measure.cpu_model(),
    'threads': threads,
    'torch_device': torch_device if use_torch else None,
    'compute_dtype': dtype,
    'peak_n': peak_n,
    'jax_version': jax.__version__,
    'xla_flags': os.environ.get('XLA_FLAGS', ''),
    'compiler_options': fast_conv.compiler_options(),
    'cpu_convolutions': convs,
    'onednn_isa': isa,
    'baseline_dtype': options.baseline_dtype,
    'peak_flops': peak,
    'matmul_peak_flops': peaks,
    'config': config.to_dict(),
    'repeats': options.repeats,
    'warmup': options.warmup,
    'results': rows,
    'table': table,
    'loss_curves': curves,
  }
