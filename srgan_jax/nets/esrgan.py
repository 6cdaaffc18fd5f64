"""SRGAN's successors as Flax Linen modules, in BasicSR's layout: MSRResNet and ESRGAN's RRDBNet.

  * MSRResNet (BasicSR's "modified SRResNet"): the paper's generator without
    BatchNorm (as EDSR, Lim et al. 2017), k3 convs throughout, LeakyReLU 0.1,
    a bilinear-upsampled copy of the input added to the output.
  * RRDBNet (ESRGAN, Wang et al. 2018, Figure 4): 23 residual-in-residual
    dense blocks of three 5-conv dense blocks (growth 32), each residual
    scaled by beta = 0.2 (Section 3.1), no BatchNorm; x4 by two
    nearest-neighbour x2 upsamplings each followed by a k3 conv.

Parameter names follow BasicSR's arch files (conv_first, body_<i>/rdb1/conv1,
conv_body, conv_up1, ...) so that `convert_generator` maps a state dict by name.
Input: LR images in [0, 1], NHWC. BasicSR's networks output an image in [0, 1]
(unbounded, not clipped); here it is returned as 2y - 1, the [-1, 1] range of
this package's HR targets and the paper's tanh generator, so every loss,
metric and inference path treats all generators alike.
"""

import functools
import math
from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from srgan_jax.nets import srgan
from srgan_jax.kernels.fast_conv import Conv


def _kaiming(scale: float):
  """BasicSR's default_init_weights: kaiming_normal_ (gain sqrt 2, fan_in) times `scale`."""
  return nn.initializers.variance_scaling(2.0 * scale**2, 'fan_in', 'normal')


def _conv3(features: int, dtype, name: str, init_scale: float = 0.1):
  return Conv(features, (3, 3), dtype=dtype, kernel_init=_kaiming(init_scale), name=name)


def upsample_nearest(x: jnp.ndarray, r: int) -> jnp.ndarray:
  """F.interpolate(x, scale_factor=r, mode='nearest'), NHWC: each pixel repeated r x r."""
  n, h, w, c = x.shape
  x = jnp.broadcast_to(x[:, :, None, :, None, :], (n, h, r, w, r, c))
  return x.reshape(n, h * r, w * r, c)


def upsample_bilinear(x: jnp.ndarray, r: int) -> jnp.ndarray:
  """F.interpolate(x, scale_factor=r, mode='bilinear', align_corners=False), NHWC.

  Output pixel i samples the input at (i + 0.5) / r - 0.5, clamped to the image
  (PyTorch's half-pixel convention), interpolating linearly between neighbours.
  """

  def along(x, axis):
    size = x.shape[axis]
    src = jnp.clip((jnp.arange(size * r) + 0.5) / r - 0.5, 0.0, size - 1)
    lo = jnp.floor(src).astype(jnp.int32)
    hi = jnp.minimum(lo + 1, size - 1)
    shape = [1] * x.ndim
    shape[axis] = size * r
    t = (src - lo).reshape(shape).astype(x.dtype)
    return jnp.take(x, lo, axis=axis) * (1 - t) + jnp.take(x, hi, axis=axis) * t

  return along(along(x, 1), 2)


def _to_pm1(y: jnp.ndarray) -> jnp.ndarray:
  """BasicSR's [0, 1] output -> this package's [-1, 1] range, in float32."""
  return 2.0 * y.astype(jnp.float32) - 1.0


# ----------------------------------------------------------------------------
# MSRResNet (BasicSR basicsr/archs/srresnet_arch.py).


class ResidualBlockNoBN(nn.Module):
  """conv k3, ReLU, conv k3, + identity (EDSR's block; BasicSR's res_scale 1)."""

  features: int = 64
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x):
    y = nn.relu(_conv3(self.features, self.dtype, 'conv1')(x))
    return x + _conv3(self.features, self.dtype, 'conv2')(y)


class MSRResNet(nn.Module):
  """BasicSR's MSRResNet: x2 / x3 (one sub-pixel conv) or x4 (two x2 sub-pixel convs)."""

  scale: int = 4
  num_blocks: int = 16
  features: int = 64
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, lr, train: bool = False):
    del train  # no BatchNorm
    lrelu = functools.partial(nn.leaky_relu, negative_slope=0.1)
    f = self.features
    feat = lrelu(_conv3(f, self.dtype, 'conv_first')(lr))
    out = feat
    for i in range(self.num_blocks):
      out = ResidualBlockNoBN(f, self.dtype, name=f'body_{i}')(out)
    factors = (2, 2) if self.scale == 4 else (self.scale,)
    for i, r in enumerate(factors, 1):
      out = lrelu(srgan.pixel_shuffle(_conv3(f * r * r, self.dtype, f'upconv{i}')(out), r))
    out = _conv3(3, self.dtype, 'conv_last')(lrelu(_conv3(f, self.dtype, 'conv_hr')(out)))
    return _to_pm1(out.astype(jnp.float32) + upsample_bilinear(lr.astype(jnp.float32), self.scale))


# ----------------------------------------------------------------------------
# RRDBNet (ESRGAN; BasicSR basicsr/archs/rrdbnet_arch.py).


class ResidualDenseBlock(nn.Module):
  """Five k3 convs, each seeing all earlier maps (growth channels each); out = x + beta * conv5."""

  features: int = 64
  growth: int = 32
  residual_scale: float = 0.2  # ESRGAN's beta
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x):
    maps = [x]
    for i in range(1, 5):
      y = _conv3(self.growth, self.dtype, f'conv{i}')(jnp.concatenate(maps, axis=-1))
      maps.append(nn.leaky_relu(y, 0.2))
    y = _conv3(self.features, self.dtype, 'conv5')(jnp.concatenate(maps, axis=-1))
    return x + self.residual_scale * y


class RRDB(nn.Module):
  """Residual in residual dense block: three dense blocks, then x + beta * (their output)."""

  features: int = 64
  growth: int = 32
  residual_scale: float = 0.2
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x):
    y = x
    for i in range(1, 4):
      y = ResidualDenseBlock(
        self.features, self.growth, self.residual_scale, self.dtype, name=f'rdb{i}'
      )(y)
    return x + self.residual_scale * y


class RRDBNet(nn.Module):
  """ESRGAN's generator, x4: conv_first, B RRDBs, conv_body (+ skip), 2 x (nearest x2, conv)."""

  scale: int = 4
  num_blocks: int = 23
  features: int = 64
  growth: int = 32
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, lr, train: bool = False):
    del train  # no BatchNorm
    if self.scale != 4:
      raise ValueError(f'RRDBNet upsamples x4 only, got scale {self.scale}.')
    lrelu = functools.partial(nn.leaky_relu, negative_slope=0.2)
    f = self.features
    feat = _conv3(f, self.dtype, 'conv_first', 1.0)(lr)
    body = feat
    for i in range(self.num_blocks):
      body = RRDB(f, self.growth, dtype=self.dtype, name=f'body_{i}')(body)
    feat = feat + _conv3(f, self.dtype, 'conv_body', 1.0)(body)
    for name in ('conv_up1', 'conv_up2'):
      feat = lrelu(_conv3(f, self.dtype, name, 1.0)(upsample_nearest(feat, 2)))
    out = _conv3(3, self.dtype, 'conv_last', 1.0)(
      lrelu(_conv3(f, self.dtype, 'conv_hr', 1.0)(feat))
    )
    return _to_pm1(out)


# ----------------------------------------------------------------------------
# Receptive fields (for exact tiling, srgan_jax/tiling.py).


def radius_through(stages) -> int:
  """LR pixels each side that one output pixel depends on, for `stages` from input to output.

  stages: [(factor, radius)]: after upsampling by `factor` (sub-pixel or
  nearest: output pixel i reads input pixel i // factor), convs of total
  radius `radius` (a k3 conv: 1) at that resolution. Walked from the output
  back: r pixels at one resolution need ceil(r / factor) at the one before.
  """
  r = 0
  for factor, radius in reversed(stages):
    r = math.ceil((r + radius) / factor)
  return r


def receptive_radius(arch: str, scale: int, num_blocks: int) -> int:
  """MSRResNet: 2B + 2 k3 convs at LR, the rest after the shuffles; RRDBNet: 15B + 2 at LR.

  (MSRResNet's bilinear skip reads one LR pixel each side: always covered.)
  """
  if arch == 'msrresnet':
    if scale == 4:  # upconv1 | x2: upconv2 | x2: conv_hr, conv_last
      return radius_through([(1, 2 * num_blocks + 2), (2, 1), (2, 2)])
    return radius_through([(1, 2 * num_blocks + 2), (scale, 2)])
  if arch == 'rrdbnet':  # conv_first, 3 x 5 convs per RRDB, conv_body | x2: conv_up1 | x2: 3 convs
    return radius_through([(1, 2 + 15 * num_blocks), (2, 1), (2, 3)])
  raise ValueError(f'unknown arch {arch!r}')
