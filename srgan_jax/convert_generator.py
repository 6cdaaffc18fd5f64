"""Imports a generator trained in PyTorch as a srgan_jax generator file.

  python -m srgan_jax.convert_generator RealESRGAN_x4plus.pth realesrgan_x4.msgpack
  python -m srgan_jax.upscale photo.jpg --checkpoint=realesrgan_x4.msgpack --out=up/

Layouts, told apart by their state_dict keys (the weights under 'params_ema',
'params' or 'state_dict' when the file holds several, 'params_ema' first as
Real-ESRGAN's inference does; 'module.' / '_orig_mod.' prefixes dropped):

  BasicSR RRDBNet      conv_first, body.N.rdbK.convJ, conv_body, conv_up1/2, conv_hr, conv_last
                       (ESRGAN and Real-ESRGAN x4 weights, e.g. RealESRGAN_x4plus.pth)
  ESRGAN RRDBNet       conv_first, RRDB_trunk.N.RDBK.convJ, trunk_conv, upconv1/2, HRconv, conv_last
  ESRGAN RRDBNet 2018  model.0, model.1.sub.N.RDBK.convJ.0, model.3/6/8/10 (RRDB_ESRGAN_x4.pth)
  BasicSR MSRResNet    conv_first, body.N.conv1/2, upconv1(/2), conv_hr, conv_last
  SRGAN-PyTorch        conv1 (or conv_block1), trunk.N.rcb, conv2 (conv_block2), upsampling.N,
  SRResNet             conv3 (conv_block3): Lornatang/SRGAN-PyTorch, output clamped to [0, 1]

The file written is the single-file format of `srgan_jax.model_zoo` (meta
'phase': 'imported'); `upscale`, `evaluate` and `config.generator_init` take it.
Reading .pth files needs torch (pip install 'srgan-jax[convert]').
"""

import argparse
import math
import re
import sys
from pathlib import Path

import numpy as np

from srgan_jax.weights import checkpoint_files, file_kinds
from srgan_jax.nets import generators
from srgan_jax.common import files
from srgan_jax.weights import zoo
from srgan_jax.common.errors import UserError

WEIGHT_KEYS = ('params_ema', 'params', 'state_dict')


class ConvertError(UserError):
  """A PyTorch generator file that cannot be imported; nothing was written."""


def read_state_dict(path) -> tuple[dict[str, np.ndarray], str]:
  """(state_dict as float32 numpy, which entry it came from) of a torch.save file."""
  try:
    torch = __import__('torch')
  except ImportError:
    raise ConvertError(f"{path}: reading .pth files needs torch: pip install 'srgan-jax[convert]'")
  if not Path(path).is_file():
    raise ConvertError(f'{path}: no such file.')
  expected = "pass a generator's PyTorch checkpoint (a .pth/.pt file written by torch.save)"
  what = file_kinds.describe(path)
  if not file_kinds.is_torch_file(path):
    raise ConvertError(f'{path} is {what}, not a PyTorch checkpoint; {expected}.')
  try:
    obj = torch.load(path, map_location='cpu', weights_only=True)
  except Exception as e:  # pylint: disable=broad-except  # torch raises many types on bad files
    why = ' '.join(str(e).split())[:120]
    raise ConvertError(
      f'{path}: torch.load failed on {what} ({type(e).__name__}: {why}); is the file complete? '
      f'{expected}.'
    ) from None
  entry = 'the file'
  if isinstance(obj, dict):
    for key in WEIGHT_KEYS:
      if isinstance(obj.get(key), dict):
        obj, entry = obj[key], repr(key)
        break
  if not isinstance(obj, dict) or not obj:
    raise ConvertError(f'{path}: holds a {type(obj).__name__}, not a state_dict of tensors.')
  state = {}
  for k, v in obj.items():
    if hasattr(v, 'detach'):
      name = re.sub(r'^(module\.|_orig_mod\.)+', '', str(k))
      state[name] = v.detach().float().cpu().numpy()
  return state, entry


# ----------------------------------------------------------------------------
# Layouts -> BasicSR's names (one canonical form per architecture).

_ESRGAN_2019 = [
  (r'RRDB_trunk\.(\d+)\.RDB(\d)\.', r'body.\1.rdb\2.'),
  (r'^trunk_conv\.', 'conv_body.'),
  (r'^upconv(\d)\.', r'conv_up\1.'),
  (r'^HRconv\.', 'conv_hr.'),
]


def _esrgan_2018(state: dict) -> dict:
  """model.0 / model.1.sub.N.RDBK.convJ.0 / model.1.sub.B / model.3,6,8,10 -> BasicSR names."""
  nb = max(int(m.group(1)) for k in state if (m := re.match(r'model\.1\.sub\.(\d+)\.RDB', k)))
  fixed = {
    'model.0.': 'conv_first.',
    f'model.1.sub.{nb + 1}.': 'conv_body.',
    'model.3.': 'conv_up1.',
    'model.6.': 'conv_up2.',
    'model.8.': 'conv_hr.',
    'model.10.': 'conv_last.',
  }
  out = {}
  for k, v in state.items():
    m = re.match(r'model\.1\.sub\.(\d+)\.RDB(\d)\.conv(\d)\.0\.(weight|bias)$', k)
    if m:
      out[f'body.{m[1]}.rdb{m[2]}.conv{m[3]}.{m[4]}'] = v
    else:
      prefix = next((p for p in fixed if k.startswith(p)), None)
      out[fixed[prefix] + k[len(prefix) :] if prefix else k] = v
  return out


def _rename(state: dict, rules) -> dict:
  out = {}
  for k, v in state.items():
    for pattern, repl in rules:
      k = re.sub(pattern, repl, k)
    out[k] = v
  return out


def detect(state: dict) -> str:
  """The layout of a state_dict, from its keys; ConvertError naming what was found otherwise."""
  keys = set(state)
  if 'conv_first.weight' in keys and 'body.0.rdb1.conv1.weight' in keys:
    return 'BasicSR RRDBNet'
  if 'conv_first.weight' in keys and 'RRDB_trunk.0.RDB1.conv1.weight' in keys:
    return 'ESRGAN RRDBNet'
  if 'model.0.weight' in keys and 'model.1.sub.0.RDB1.conv1.0.weight' in keys:
    return 'ESRGAN RRDBNet 2018'
  if 'conv_first.weight' in keys and 'body.0.conv1.weight' in keys and 'upconv1.weight' in keys:
    return 'BasicSR MSRResNet'
  if 'trunk.0.rcb.0.weight' in keys and ({'conv1.0.weight', 'conv_block1.0.weight'} & keys):
    return 'SRGAN-PyTorch SRResNet'
  tops = sorted({re.sub(r'\.\d+(\..*)?$|\.(weight|bias|running_\w+)$', '', k) for k in keys})
  raise ConvertError(
    f'unknown generator layout: {len(keys)} tensors under {", ".join(tops[:8])}'
    f'{" ..." if len(tops) > 8 else ""}; this converter reads BasicSR/ESRGAN/Real-ESRGAN '
    'RRDBNet (x4), BasicSR MSRResNet and SRGAN-PyTorch SRResNet.'
  )


def _conv(state, prefix, used, bias=True) -> dict:
  """OIHW weight (+ bias) under `prefix` -> Linen {'kernel': HWIO, 'bias'}."""
  used.add(f'{prefix}.weight')
  p = {'kernel': np.transpose(state[f'{prefix}.weight'], (2, 3, 1, 0))}
  if bias:
    used.add(f'{prefix}.bias')
    p['bias'] = state[f'{prefix}.bias']
  return p


def _count(state, pattern) -> int:
  found = {int(m.group(1)) for k in state if (m := re.match(pattern, k))}
  return max(found) + 1 if found else 0


def _rrdbnet(state: dict, used: set) -> tuple[dict, dict]:
  cin = state['conv_first.weight'].shape[1]
  if cin != 3:
    scale = {12: 2, 48: 1}.get(cin, '?')  # BasicSR pixel-unshuffles the input for x2 / x1
    raise ConvertError(
      f'conv_first takes {cin} channels: an RRDBNet for scale {scale} (pixel-unshuffled '
      'input, e.g. RealESRGAN_x2plus); only the x4 RRDBNet (3 input channels) is supported.'
    )
  nb = _count(state, r'body\.(\d+)\.')
  names = ('conv_first', 'conv_body', 'conv_up1', 'conv_up2', 'conv_hr', 'conv_last')
  params = {n: _conv(state, n, used) for n in names}
  for i in range(nb):
    params[f'body_{i}'] = {
      f'rdb{k}': {f'conv{j}': _conv(state, f'body.{i}.rdb{k}.conv{j}', used) for j in range(1, 6)}
      for k in range(1, 4)
    }
  growth = state['body.0.rdb1.conv1.weight'].shape[0] if nb else 32
  features = state['conv_first.weight'].shape[0]
  return params, {
    'arch': 'rrdbnet',
    'scale': 4,
    'num_blocks': nb,
    'features': features,
    'growth': growth,
  }


def _msrresnet(state: dict, used: set) -> tuple[dict, dict]:
  nb = _count(state, r'body\.(\d+)\.')
  f = state['conv_first.weight'].shape[0]
  names = ['conv_first', 'upconv1', 'conv_hr', 'conv_last'] + (
    ['upconv2'] if 'upconv2.weight' in state else []
  )
  params = {n: _conv(state, n, used) for n in names}
  for i in range(nb):
    params[f'body_{i}'] = {c: _conv(state, f'body.{i}.{c}', used) for c in ('conv1', 'conv2')}
  r2 = state['upconv1.weight'].shape[0] // f
  scale = 4 if 'upconv2.weight' in state else {4: 2, 9: 3}.get(r2, 0)
  return params, {'arch': 'msrresnet', 'scale': scale, 'num_blocks': nb, 'features': f}


def _srgan_pytorch(state: dict, used: set) -> tuple[dict, dict]:
  old = 'conv_block1.0.weight' in state  # the 2021-22 names of the same modules
  c1, c2, c3 = ('conv_block1', 'conv_block2', 'conv_block3') if old else ('conv1', 'conv2', 'conv3')

  def bn(prefix):
    used.update(f'{prefix}.{n}' for n in ('weight', 'bias', 'running_mean', 'running_var'))
    used.add(f'{prefix}.num_batches_tracked')
    return {'scale': state[f'{prefix}.weight'], 'bias': state[f'{prefix}.bias']}, {
      'mean': state[f'{prefix}.running_mean'],
      'var': state[f'{prefix}.running_var'],
    }

  def prelu(prefix):
    used.add(f'{prefix}.weight')
    w = state[f'{prefix}.weight']
    if w.size != 1:
      raise ConvertError(f'{prefix} has {w.size} PReLU slopes; the paper (and srgan_jax) has one.')
    return {'negative_slope': w.reshape(())}

  params = {'conv_in': _conv(state, f'{c1}.0', used), 'PReLU_0': prelu(f'{c1}.1')}
  stats = {}
  for i in range(_count(state, r'trunk\.(\d+)\.')):
    t = f'trunk.{i}.rcb'
    (b0, s0), (b1, s1) = bn(f'{t}.1'), bn(f'{t}.4')
    params[f'res_{i}'] = {
      'Conv_0': _conv(state, f'{t}.0', used, bias=False),
      'BatchNorm_0': b0,
      'PReLU_0': prelu(f'{t}.2'),
      'Conv_1': _conv(state, f'{t}.3', used, bias=False),
      'BatchNorm_1': b1,
    }
    stats[f'res_{i}'] = {'BatchNorm_0': s0, 'BatchNorm_1': s1}
  params['conv_mid'] = _conv(state, f'{c2}.0', used, bias=False)
  params['bn_mid'], stats['bn_mid'] = bn(f'{c2}.1')
  n_up = _count(state, r'upsampling\.(\d+)\.')
  for k in range(n_up):
    u = f'upsampling.{k}.upsample_block'
    params[f'up_{k}'] = {'Conv_0': _conv(state, f'{u}.0', used), 'PReLU_0': prelu(f'{u}.2')}
  params['conv_out'] = _conv(state, c3, used)
  f = state[f'{c1}.0.weight'].shape[0]
  if n_up and state['upsampling.0.upsample_block.0.weight'].shape[0] != 4 * f:
    raise ConvertError('its upsampling blocks are not x2 sub-pixel convs (4 x features outputs).')
  model = {'arch': 'srresnet', 'scale': 2**n_up, 'num_blocks': len(stats) - 1, 'features': f}
  model['output'] = 'clamp'
  return {'params': params, 'batch_stats': stats}, model


def to_generator(state: dict) -> tuple[dict, dict, str]:
  """(variables {'params', 'batch_stats'}, model description, layout) of a state_dict."""
  layout = detect(state)
  if layout == 'ESRGAN RRDBNet':
    state = _rename(state, _ESRGAN_2019)
  elif layout == 'ESRGAN RRDBNet 2018':
    state = _esrgan_2018(state)
  used = set()
  try:
    if layout.endswith('MSRResNet'):
      (params, model), stats = _msrresnet(state, used), {}
    elif 'RRDBNet' in layout:
      (params, model), stats = _rrdbnet(state, used), {}
    else:
      variables, model = _srgan_pytorch(state, used)
      params, stats = variables['params'], variables['batch_stats']
  except KeyError as e:
    raise ConvertError(f'a {layout} without the tensor {e.args[0]}; the file is incomplete.')
  extra = sorted(k for k in set(state) - used if not k.endswith('num_batches_tracked'))
  if extra:
    raise ConvertError(
      f'a {layout} with tensors it does not have: {", ".join(extra[:4])}'
      f'{" ..." if len(extra) > 4 else ""}; another variant of the architecture?'
    )
  model['tiny'] = False
  return {'params': params, 'batch_stats': stats}, model, layout


def convert(src, dst, scale: int | None = None) -> str:
  """Writes SRC's generator to DST (.msgpack) atomically; returns a one-line summary."""
  dst = Path(dst)
  if dst.suffix != '.msgpack':
    raise ConvertError(f'{dst}: a generator file must end in .msgpack.')
  if not dst.parent.is_dir():
    raise ConvertError(f'{dst.parent}: no such folder.')
  state, entry = read_state_dict(src)
  variables, model, layout = to_generator(state)
  if scale is not None and scale != model['scale']:
    raise ConvertError(
      f'{src}: --scale={scale}, but its weights are a x{model["scale"]} {layout}; '
      f'drop --scale or pass --scale={model["scale"]}.'
    )
  try:
    generators.check(model)
  except ValueError as e:
    raise ConvertError(f'{src}: a {layout} srgan_jax cannot build ({e}).') from None
  shapes = checkpoint_files.leaf_shapes({c: variables[c] for c in ('params', 'batch_stats')})
  diff = generators.mismatch(shapes, generators.describe(model))
  if diff:
    raise ConvertError(f'{src}: a {layout} whose tensors do not fit it ({diff}).')
  meta = {'model': generators.describe(model), 'phase': 'imported', 'step': 0}
  meta['imported_from'] = f'{layout} ({entry} of {Path(src).name})'
  data = zoo.encode(variables, meta)
  files.write_atomic(dst, data)  # never a half-written file
  n = sum(math.prod(s) for k, s in shapes.items() if k.startswith('params/'))
  return (
    f'converted {layout} ({entry}; {generators.label(model)}, {n:,} parameters) from {src} to {dst}'
  )


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(
    prog='python -m srgan_jax.convert_generator', description=__doc__.splitlines()[0]
  )
  parser.add_argument('src', help='a PyTorch .pth of one of the layouts above')
  parser.add_argument('dst', help='the generator file to write (.msgpack)')
  parser.add_argument('--scale', type=int, help="check that the weights are this scale's")
  args = parser.parse_args(argv)
  try:
    print(convert(args.src, args.dst, args.scale))
  except UserError as e:
    print(f'error: {e}', file=sys.stderr)
    return 2
  return 0


if __name__ == '__main__':
  sys.exit(main())
