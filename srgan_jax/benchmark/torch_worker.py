"""The PyTorch side of `--torch`: a second process timing torch_reference one step at a time.

The parent starts it (`TorchWorker`) with its own flags plus `--torch_worker`
and drives it over stdin/stdout, so the two frameworks are timed alternately
but never share an address space: sharing one process with PyTorch slowed
XLA's SRGAN step 1.5x on this machine (5.5 s alone, 8.6 s next to torch; cause
not pinned down), which no user of either would see. torch is imported only
inside this process.
"""

import json
import os
import subprocess
import sys

from absl import app

from srgan_jax.nets import generators
from srgan_jax.nets import srgan
from srgan_jax.benchmark import measure


def torch_matmul_peak_flops(n=2048, repeats=5, dtype='float32', device='cpu'):
  import torch  # pylint: disable=g-import-not-at-top

  a = torch.randn(n, n, device=device, dtype=getattr(torch, dtype))
  sync = torch.cuda.synchronize if device == 'cuda' else (lambda: None)

  def mm():
    torch.mm(a, a)
    sync()

  mm()
  return 2 * n**3 / min(measure.timed(mm) for _ in range(repeats))


def _maker(config, figure, device, rrdb_blocks=23):
  """`make(channels_last) -> run()` for one figure of the PyTorch reference on `device`."""
  import torch  # pylint: disable=g-import-not-at-top
  from srgan_jax.benchmark import torch_archs as ta  # pylint: disable=g-import-not-at-top
  from srgan_jax.benchmark import torch_reference as tr  # pylint: disable=g-import-not-at-top

  c = config.copy_and_resolve_references()
  rrdb = figure.startswith('rrdbnet_')  # ESRGAN's G: BasicSR's RRDBNet, its L1 step
  if rrdb:
    c, figure = measure.rrdbnet_config(c, rrdb_blocks), figure[len('rrdbnet_') :]
    figure = 'srresnet_step' if figure == 'step' else figure
  g_model = generators.make_generator(c.model)
  size = generators.resolved(c.model)
  s = c.model.scale

  def generator():
    if rrdb:
      return ta.RRDBNet(size['features'], size['num_blocks'], size['growth'])
    return tr.Generator(s, g_model.num_blocks, g_model.features)

  autocast_dtype = torch.bfloat16 if c.model.compute_dtype == 'bfloat16' else None
  sync = torch.cuda.synchronize if device == 'cuda' else (lambda: None)  # CUDA runs async
  if figure.startswith('inference_'):
    lr_np = measure.lr_image(int(figure.split('_')[1]) // s)

    def make_inference(channels_last):
      f = torch.channels_last if channels_last else torch.contiguous_format
      net = generator().eval().to(device=device, memory_format=f)
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
  hr_t = torch.from_numpy(measure.hr_batch(c))
  d_model = srgan.make_discriminator(c)

  def make_step(channels_last):
    torch.manual_seed(0)
    g = generator()
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
      l1_01=rrdb,
    )

    def run():
      fn(hr_t)
      sync()

    return run

  return make_step


def _choose_format(make_torch_step, choice, log):
  """Builds the PyTorch step in `choice` format; 'auto' times one run of each and keeps the faster."""
  if choice != 'auto':
    return make_torch_step(choice == 'channels_last'), choice
  timings = {}
  for fmt in ('nchw', 'channels_last'):
    step = make_torch_step(fmt == 'channels_last')
    step()
    timings[fmt] = measure.timed(step)
  best = min(timings, key=timings.get)
  log(
    f'  torch format: nchw {timings["nchw"]:.3f}s, channels_last '
    f'{timings["channels_last"]:.3f}s -> {best}'
  )
  return make_torch_step(best == 'channels_last'), best


def serve(config, device: str, memory_format: str, rrdb_blocks: int = 23) -> None:
  """The worker process (`--torch_worker`): one JSON request per stdin line, one JSON reply per stdout line."""
  import torch  # pylint: disable=g-import-not-at-top

  torch.set_num_threads(os.cpu_count())
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
      fn, fmt = _choose_format(
        _maker(config, request['prepare'], device, rrdb_blocks), memory_format, logs.append
      )
      reply = {'format': fmt, 'log': logs}
    else:
      reply = {'s': measure.timed(fn)}
    out.write(json.dumps(reply) + '\n')
    out.flush()


class TorchWorker:
  """The parent's handle on a `--torch_worker` process started with the parent's flags."""

  def __init__(self, device: str, argv: tuple[str, ...]):
    # The worker never runs JAX: keep it off the accelerator, whose memory JAX preallocates.
    env = dict(os.environ, JAX_PLATFORMS='cpu')
    self._proc = subprocess.Popen(
      [
        sys.executable,
        '-m',
        'srgan_jax.benchmark',
        *argv,
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


def figure_timer(worker, figure, log):
  """(time-one-step function, memory format) on the worker, or (None, None) without one."""
  if worker is None:
    return None, None
  reply = worker.call(prepare=figure)
  for line in reply['log']:
    log(line)
  return (lambda: worker.call(run=1)['s']), reply['format']
