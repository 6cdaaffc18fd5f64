r"""Times the SRResNet and SRGAN steps, inference, and ESRGAN's RRDBNet; optionally against PyTorch.

  python -m srgan_jax.benchmark                      # paper config: B=16, batch 16, 96x96 HR, x4
  python -m srgan_jax.benchmark --torch --json=bench.json
  python -m srgan_jax.benchmark --config=configs/x4.py --batch=4 --crop=48 --repeats=1

For each figure: compile time, median step time over `--repeats` timed runs
(after `--warmup` untimed ones), images/s (inference: output megapixels/s),
peak memory (host RSS growth while running; device `memory_stats()` where the
backend has them) and MFU = analytic conv/dense FLOPs / time / peak, the peak
being the best of a matmul micro-benchmark in the compute dtype run in the same
process.
With `--torch`, `torch_reference.py` (the same networks, losses and step in
PyTorch) runs in a second process, alternately with JAX (one step each in turn),
on the same number of threads, and every figure gets a JAX/PyTorch time ratio
(< 1: JAX is faster). When JAX runs on a GPU, PyTorch runs on CUDA too
(`--torch_device`), with cuDNN autotuning on and TF32 matmuls allowed, as XLA's
default float32 precision does; `--dtype=bfloat16` runs PyTorch under
`torch.autocast(bfloat16)`. The matmul peak is measured in the compute dtype.

The SRGAN step uses a randomly initialised VGG-19 (timing does not depend on
the weights); the content loss is VGG54 as in the paper. The rrdbnet figures
time ESRGAN's RRDBNet x4 (--rrdb_blocks RRDBs, 64 features, growth 32): its
PSNR-oriented L1 step on the same batch and its inference at --infer_sizes;
the PyTorch side is BasicSR's RRDBNet (benchmark/torch_archs.py).
"""

import json
import os
import sys

from absl import app
from absl import flags
from ml_collections import config_flags

from srgan_jax.benchmark import figures
from srgan_jax.benchmark import torch_worker

_REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
_DEFAULT_CONFIG = os.path.join(_REPO, 'configs', 'default.py')
_CONFIG = config_flags.DEFINE_config_file('config', _DEFAULT_CONFIG, 'Model/data config.')
_BATCH = flags.DEFINE_integer('batch', None, 'Override config.data.batch_size.')
_CROP = flags.DEFINE_integer('crop', None, 'Override config.data.hr_crop.')
_BLOCKS = flags.DEFINE_integer('blocks', None, 'Override config.model.num_blocks.')
_SCALE = flags.DEFINE_integer('scale', None, 'Override config.model.scale.')
_DTYPE = flags.DEFINE_enum('dtype', None, ['float32', 'bfloat16'], 'Override compute dtype.')
_BASELINE_DTYPE = flags.DEFINE_enum(
  'baseline_dtype',
  '',
  ['', 'float32', 'bfloat16'],
  'Also time each JAX figure in this dtype, in turn with the others (e.g. --dtype=bfloat16 '
  '--baseline_dtype=float32: the bf16 speed-up measured side by side).',
)
_TINY = flags.DEFINE_bool('tiny', False, 'Tiny G and D (tests only).')
_SIZES = flags.DEFINE_list(
  'infer_sizes', ['256', '512', '1024'], 'Inference output sizes (square).'
)
_ONLY = flags.DEFINE_list(
  'only',
  ['srresnet', 'srgan', 'inference', 'rrdbnet'],
  "Figures to run (rrdbnet: ESRGAN's G, its L1 step and inference at --infer_sizes).",
)
_RRDB_BLOCKS = flags.DEFINE_integer('rrdb_blocks', 23, 'RRDBs in the rrdbnet figures (ESRGAN: 23).')
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


def main(argv):
  del argv
  config = _config()
  if _TORCH_WORKER.value:
    return torch_worker.serve(config, _TORCH_DEVICE.value, _TORCH_FORMAT.value, _RRDB_BLOCKS.value)
  options = figures.Options(
    repeats=_REPEATS.value,
    warmup=_WARMUP.value,
    only=tuple(_ONLY.value),
    infer_sizes=tuple(int(s) for s in _SIZES.value),
    torch_device=_TORCH_DEVICE.value,
    peak_n=_PEAK_N.value,
    curve_steps=_CURVE_STEPS.value,
    rrdb_blocks=_RRDB_BLOCKS.value,
    baseline_dtype=_BASELINE_DTYPE.value,
    argv=tuple(sys.argv[1:]),
  )
  report = figures.run(config, _TORCH.value, options)
  if _JSON.value:
    with open(_JSON.value, 'w') as f:
      json.dump(report, f, indent=1, default=str)
  sys.stdout.flush()


if __name__ == '__main__':
  app.run(main)
