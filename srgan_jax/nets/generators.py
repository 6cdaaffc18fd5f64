"""The generator a model config names (config.model.arch), and the description saved with it.

  srresnet   the paper's G (Ledig et al. 2017, Figure 4; srgan.Generator), the default
  msrresnet  BasicSR's BN-free SRResNet (esrgan.MSRResNet)
  rrdbnet    ESRGAN's RRDBNet (Wang et al. 2018; esrgan.RRDBNet), x4

A model description ({'arch', 'scale', 'num_blocks', 'features', 'tiny', and
'growth' for RRDBNet, 'output' for SRResNet}) is saved in checkpoints and
generator files; a description without 'arch' (written before there were
others) is an SRResNet.
"""

import math

import jax
import jax.numpy as jnp

from srgan_jax.weights import checkpoint_files
from srgan_jax.nets import esrgan
from srgan_jax.nets import srgan

ARCHS = ('srresnet', 'msrresnet', 'rrdbnet')
SCALES = {'srresnet': (2, 3, 4, 8), 'msrresnet': (2, 3, 4), 'rrdbnet': (4,)}
# model.tiny (tests): small widths whatever num_blocks / features say.
TINY = {
  'srresnet': {'num_blocks': 2, 'features': 8},
  'msrresnet': {'num_blocks': 2, 'features': 8},
  'rrdbnet': {'num_blocks': 1, 'features': 8, 'growth': 4},
}
# SRResNet's last activation: the paper's tanh, or SRGAN-PyTorch's clamp to [0, 1].
OUTPUTS = ('tanh', 'clamp')


def arch_of(model_config) -> str:
  return model_config.get('arch', 'srresnet') or 'srresnet'


def check(model_config) -> None:
  """Raises ValueError (one line, naming the field) unless the config describes a generator."""
  arch = arch_of(model_config)
  if arch not in ARCHS:
    raise ValueError(f'model.arch={arch!r}; use one of {ARCHS}.')
  scale = model_config.get('scale')
  if scale not in SCALES[arch]:
    raise ValueError(f"model.scale={scale!r}: {arch}'s scale must be one of {list(SCALES[arch])}.")
  if arch == 'srresnet' and model_config.get('output', 'tanh') not in OUTPUTS:
    raise ValueError(f'model.output={model_config.get("output")!r}; use one of {OUTPUTS}.')
  for field in ('num_blocks', 'features') + (('growth',) if arch == 'rrdbnet' else ()):
    v = model_config.get(field)
    if not isinstance(v, int) or v < (0 if field == 'num_blocks' else 1):
      raise ValueError(f'model.{field}={v!r}; use a positive integer.')


def describe(model_config) -> dict:
  """The model description saved with a generator (the fields its architecture uses)."""
  arch = arch_of(model_config)
  d = {
    'arch': arch,
    'scale': int(model_config['scale']),
    'num_blocks': int(model_config['num_blocks']),
    'features': int(model_config['features']),
    'tiny': bool(model_config.get('tiny', False)),
  }
  if arch == 'rrdbnet':
    d['growth'] = int(model_config.get('growth', 32))
  if arch == 'srresnet' and model_config.get('output', 'tanh') != 'tanh':
    d['output'] = model_config['output']  # absent: the paper's tanh (files from before stay equal)
  return d


def resolved(model_config) -> dict:
  """describe(), with the tiny variant's sizes in place of num_blocks / features / growth."""
  d = describe(model_config)
  if d['tiny']:
    d.update(TINY[d['arch']])
  return d


def make_generator(model_config, dtype=None):
  """G of `model_config` (arch, scale, num_blocks, features, growth, tiny; compute_dtype unless `dtype`)."""
  dtype = dtype or jnp.dtype(model_config.get('compute_dtype', 'float32'))
  d = resolved(model_config)
  size = {'scale': d['scale'], 'num_blocks': d['num_blocks'], 'features': d['features']}
  if d['arch'] == 'msrresnet':
    return esrgan.MSRResNet(**size, dtype=dtype)
  if d['arch'] == 'rrdbnet':
    return esrgan.RRDBNet(**size, growth=d['growth'], dtype=dtype)
  icnr = bool(model_config.get('icnr', False))  # an init, not the architecture: not in describe()
  return srgan.Generator(**size, output=d.get('output', 'tanh'), icnr=icnr, dtype=dtype)


def mismatch(have_shapes: dict, model_config) -> str | None:
  """The first array of G's variables whose shape `model_config`'s generator does not have.

  have_shapes: checkpoint_files.leaf_shapes of {'params', 'batch_stats'} (saved or loaded).
  Traces G's init abstractly: nothing is compiled or allocated.
  """
  generator = make_generator(model_config, dtype=jnp.float32)
  expected = jax.eval_shape(lambda: generator.init(jax.random.key(0), jnp.zeros((1, 8, 8, 3))))
  want = checkpoint_files.leaf_shapes(  # BN-free generators have no batch_stats
    {'params': expected['params'], 'batch_stats': expected.get('batch_stats', {})}
  )
  have = {k: v for k, v in have_shapes.items() if k.startswith(('params/', 'batch_stats/'))}
  diff = checkpoint_files.shape_differences(have, want)
  return diff[0] if diff else None


def receptive_radius(model_config) -> int:
  """LR pixels of context each side that one SR pixel depends on (tiling's halo)."""
  d = resolved(model_config)
  if d['arch'] != 'srresnet':
    return esrgan.receptive_radius(d['arch'], d['scale'], d['num_blocks'])
  # k9 conv (4) + two k3 convs per residual block (2B) + the k3 conv before the
  # long skip (1) + one k3 conv per upsampling block, at its own resolution
  # (1 / product of the earlier factors) + the final k9 conv at SR resolution
  # (4 / scale). SRResNet x4, B = 16: 4 + 32 + 1 + 1 + 1/2 + 1 = 39.5 -> 40.
  radius = 4.0 + 2 * d['num_blocks'] + 1
  resolution = 1
  for f in srgan.upsample_factors(d['scale']):
    radius += 1.0 / resolution
    resolution *= f
  radius += 4.0 / d['scale']
  return int(math.ceil(radius))


def label(model_config) -> str:
  """'rrdbnet x4, 23 blocks, 64 features, growth 32' (logs and errors)."""
  d = describe(model_config)
  s = f'{d["arch"]} x{d["scale"]}, {d["num_blocks"]} blocks, {d["features"]} features'
  s += f', growth {d["growth"]}' if 'growth' in d else ''
  s += f', output {d["output"]}' if 'output' in d else ''
  return s + (' (tiny)' if d['tiny'] else '')
