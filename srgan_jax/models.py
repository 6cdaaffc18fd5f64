"""The SRGAN networks of Ledig et al. (CVPR 2017), Figure 4, as Flax Linen modules.

Layout is NHWC. Layer names follow the paper's notation: kXnYsZ is a convolution
with kernel size X, Y feature maps and stride Z.

Value ranges (the paper's scaling, Section 3.2 / 4.2):
  * the generator takes LR images in [0, 1] and returns SR images in [-1, 1]
    (tanh output), the range of the HR targets;
  * the discriminator takes images in [-1, 1] and returns one logit per image
    (the sigmoid of Figure 4 lives in the loss, for numerical stability).

Convolutions followed by BatchNorm carry no bias: BN's offset beta plays that
role, so the bias would be a redundant parameter.
"""

import functools
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

# ----------------------------------------------------------------------------
# Convolution with a fast kernel gradient (speed only; the function is lax's).
#
# XLA:CPU computes a conv's kernel gradient as a convolution whose window is
# the whole image, 3-10x slower per FLOP than the forward conv (7-15 vs 50-60
# GFLOP/s on a 2-core Xeon). As one matmul over an im2col patch matrix it runs
# at matmul speed. The patches are built on whichever side has fewer channels:
# the input's (k*k*Cin per position) or, for stride 1, the output gradient's
# (k*k*Cout per padded position: the k9n3 output conv has Cout = 3).


def _kernel_grad(x, dy, kernel_shape, strides, pads):
  kh, kw, cin, cout = kernel_shape
  sh, sw = strides
  n, ho, wo, _ = dy.shape
  xp = jnp.pad(x, ((0, 0), pads[0], pads[1], (0, 0)))
  hp, wp = xp.shape[1:3]
  f32 = functools.partial(lax.dot_general, preferred_element_type=jnp.float32)
  if strides == (1, 1) and hp * wp * cout < ho * wo * cin:
    # dW[i, j, c, o] = sum_{n, y, x} xp[n, y, x, c] * dy[n, y - i, x - j, o]
    dyp = jnp.pad(dy, ((0, 0), (kh - 1, kh - 1), (kw - 1, kw - 1), (0, 0)))
    shifted = jnp.concatenate(
        [dyp[:, kh - 1 - i:kh - 1 - i + hp, kw - 1 - j:kw - 1 - j + wp] for i in range(kh)
         for j in range(kw)], axis=-1)  # (n, hp, wp, kh*kw*cout)
    dw = f32(xp, shifted, (((0, 1, 2), (0, 1, 2)), ((), ())))  # (cin, kh*kw*cout)
    return dw.reshape(cin, kh, kw, cout).transpose(1, 2, 0, 3)
  # dW[i, j, c, o] = sum_{n, y, x} xp[n, s*y + i, s*x + j, c] * dy[n, y, x, o]
  patches = jnp.concatenate(
      [xp[:, i:i + sh * (ho - 1) + 1:sh, j:j + sw * (wo - 1) + 1:sw] for i in range(kh)
       for j in range(kw)], axis=-1)  # (n, ho, wo, kh*kw*cin)
  dw = f32(patches, dy, (((0, 1, 2), (0, 1, 2)), ((), ())))
  return dw.reshape(kernel_shape)


def _plain_conv(x, w, strides, pads):
  return lax.conv_general_dilated(x, w, strides, pads, dimension_numbers=('NHWC', 'HWIO', 'NHWC'))


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3))
def _conv(x, w, strides, pads):
  return _plain_conv(x, w, strides, pads)


def _conv_fwd(x, w, strides, pads):
  return _plain_conv(x, w, strides, pads), (x, w)


def use_im2col_kernel_grad(kernel_shape, strides) -> bool:
  """Measured on XLA:CPU: im2col wins on stride-1 convs that at least double the
  channels (k9n64 input conv, k3n256 upsampling convs, D's 64->128->256->512
  convs); lax wins on k3n64 trunk convs, strided convs and the output conv."""
  cin, cout = kernel_shape[2:]
  return tuple(strides) == (1, 1) and cout >= 2 * cin


def _conv_bwd(strides, pads, res, dy):
  x, w = res
  x_grad = jax.vjp(lambda x: _plain_conv(x, w, strides, pads), x)[1]
  if use_im2col_kernel_grad(w.shape, strides):
    dw = _kernel_grad(x, dy, w.shape, strides, pads).astype(w.dtype)
  else:
    dw = jax.vjp(lambda w: _plain_conv(x, w, strides, pads), w)[1](dy)[0]
  return x_grad(dy)[0], dw


_conv.defvjp(_conv_fwd, _conv_bwd)


def conv_general_dilated(lhs, rhs, window_strides, padding, lhs_dilation=None, rhs_dilation=None,
                         dimension_numbers=None, feature_group_count=1, precision=None):
  """`lax.conv_general_dilated` for `nn.Conv(conv_general_dilated=...)`; fast kernel gradient
  for plain 2-D NHWC convs (no dilation, no groups), lax's own otherwise."""
  plain = (lhs.ndim == 4 and feature_group_count == 1 and precision is None
           and all(d == 1 for d in (lhs_dilation or (1, 1)) + (rhs_dilation or (1, 1)))
           and lax.conv_dimension_numbers(lhs.shape, rhs.shape, dimension_numbers)
           == lax.conv_dimension_numbers(lhs.shape, rhs.shape, ('NHWC', 'HWIO', 'NHWC')))
  if not plain:
    return lax.conv_general_dilated(lhs, rhs, window_strides, padding, lhs_dilation, rhs_dilation,
                                    dimension_numbers, feature_group_count, precision=precision)
  if isinstance(padding, str):
    padding = lax.padtype_to_pads(lhs.shape[1:3], rhs.shape[:2], window_strides, padding)
  return _conv(lhs, rhs, tuple(window_strides), tuple(tuple(p) for p in padding))


# ----------------------------------------------------------------------------
# The networks.

# nn.Conv with the fast kernel gradient; parameter names and initialisers unchanged.
Conv = functools.partial(nn.Conv, conv_general_dilated=conv_general_dilated)

# PyTorch's BatchNorm momentum 0.1 is Flax's 0.9; epsilon as in the reference.
_BN = functools.partial(nn.BatchNorm, momentum=0.9, epsilon=1e-5)
# He et al. (2015) initialise the PReLU slope at 0.25 (one slope per layer).
_PReLU = functools.partial(nn.PReLU, negative_slope_init=0.25)


def pixel_shuffle(x: jnp.ndarray, r: int) -> jnp.ndarray:
  """Sub-pixel convolution rearrangement (Shi et al. 2016), NHWC.

  Output pixel (h*r + i, w*r + j, c) takes input channel c*r*r + i*r + j at
  (h, w): the channel order of PyTorch's `nn.PixelShuffle`, so weights
  converted from PyTorch SRGANs keep their meaning.
  """
  n, h, w, crr = x.shape
  if crr % (r * r):
    raise ValueError(f'pixel_shuffle: {crr} channels is not a multiple of r*r={r * r}.')
  c = crr // (r * r)
  x = x.reshape(n, h, w, c, r, r)
  x = x.transpose(0, 1, 4, 2, 5, 3)  # n, h, i, w, j, c
  return x.reshape(n, h * r, w * r, c)


class ResidualBlock(nn.Module):
  """k3n64s1 conv, BN, PReLU, k3n64s1 conv, BN, elementwise sum."""
  features: int = 64
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, train: bool):
    conv = functools.partial(Conv, self.features, (3, 3), use_bias=False, dtype=self.dtype)
    bn = functools.partial(_BN, use_running_average=not train, dtype=self.dtype)
    y = conv()(x)
    y = bn()(y)
    y = _PReLU()(y)
    y = conv()(y)
    y = bn()(y)
    return x + y


class UpsampleBlock(nn.Module):
  """k3n256s1 conv, pixel shuffle x2, PReLU (x3: k3n576s1 conv, shuffle x3).

  PReLU (one slope) is elementwise, so it runs before the shuffle; with
  shuffle=False the block returns the unshuffled map for `SubpixelOutputConv`.
  """
  features: int = 64
  factor: int = 2
  dtype: Any = jnp.float32
  shuffle: bool = True

  @nn.compact
  def __call__(self, x):
    x = Conv(self.features * self.factor**2, (3, 3), dtype=self.dtype)(x)
    x = _PReLU()(x)
    return pixel_shuffle(x, self.factor) if self.shuffle else x


def _polyphase_selection(k: int, r: int) -> np.ndarray:
  """S[d, u, p, a] = 1 where tap a of a k-tap kernel on the r-times finer grid links
  input phase u at coarse offset d to output phase p: a - k//2 = r*d + u - p."""
  half = k // 2
  reach = (half + r - 1) // r
  s = np.zeros((2 * reach + 1, r, r, k), np.float32)
  for d in range(-reach, reach + 1):
    for u in range(r):
      for p in range(r):
        a = r * d + u - p + half
        if 0 <= a < k:
          s[d + reach, u, p, a] = 1.0
  return s


class SubpixelOutputConv(nn.Module):
  """The k9n3s1 output conv applied to pixel_shuffle(z, r), computed on z's coarse grid.

  conv9x9(shuffle(z)) == shuffle(conv_KxK(z, W')) with W' the polyphase rearrangement
  of the same 9x9 kernel (K = 5 for r = 2): one conv with r*r*C inputs and r*r*3
  outputs instead of a 3-output conv on r*r times the pixels, and no shuffle of the
  64-channel map. Parameters are the 9x9 kernel and bias of the plain conv.
  """
  features: int = 3
  kernel_size: int = 9
  factor: int = 2
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, z):
    r, k = self.factor, self.kernel_size
    cin = z.shape[-1] // (r * r)
    kernel = self.param('kernel', nn.initializers.lecun_normal(), (k, k, cin, self.features))
    bias = self.param('bias', nn.initializers.zeros_init(), (self.features,))
    s = jnp.asarray(_polyphase_selection(k, r), kernel.dtype)
    w = jnp.einsum('yuPa,xvQb,abco->yxcuvoPQ', s, s, kernel)
    w = w.reshape(s.shape[0], s.shape[0], cin * r * r, self.features * r * r)
    z, w = z.astype(self.dtype), w.astype(self.dtype)
    y = conv_general_dilated(z, w, (1, 1), 'SAME', dimension_numbers=('NHWC', 'HWIO', 'NHWC'))
    y = y + jnp.repeat(bias, r * r).astype(self.dtype)
    return pixel_shuffle(y, r)


def upsample_factors(scale: int) -> tuple[int, ...]:
  """log2(scale) x2 blocks for scales 2, 4, 8; one x3 block for scale 3."""
  factors = {2: (2,), 3: (3,), 4: (2, 2), 8: (2, 2, 2)}
  if scale not in factors:
    raise ValueError(f'scale must be one of {sorted(factors)}, got {scale}.')
  return factors[scale]


class Generator(nn.Module):
  """SRResNet: the generator G of Figure 4 (top)."""
  scale: int = 4
  num_blocks: int = 16   # B residual blocks
  features: int = 64
  dtype: Any = jnp.float32  # compute dtype; parameters stay float32

  @nn.compact
  def __call__(self, lr, train: bool = False):
    x = Conv(self.features, (9, 9), dtype=self.dtype, name='conv_in')(lr)  # k9n64s1
    x = skip = _PReLU()(x)
    for i in range(self.num_blocks):
      x = ResidualBlock(self.features, dtype=self.dtype, name=f'res_{i}')(x, train)
    x = Conv(self.features, (3, 3), use_bias=False, dtype=self.dtype, name='conv_mid')(x)
    x = _BN(use_running_average=not train, dtype=self.dtype, name='bn_mid')(x)
    x = x + skip  # long skip connection
    factors = upsample_factors(self.scale)
    subpixel_out = factors[-1] == 2  # x3: the polyphase kernel would cost 2.8x the FLOPs
    for i, f in enumerate(factors):
      last = i == len(factors) - 1
      x = UpsampleBlock(self.features, f, dtype=self.dtype, shuffle=not (last and subpixel_out),
                        name=f'up_{i}')(x)
    if subpixel_out:
      x = SubpixelOutputConv(3, 9, factors[-1], dtype=self.dtype, name='conv_out')(x)  # k9n3s1
    else:
      x = Conv(3, (9, 9), dtype=self.dtype, name='conv_out')(x)  # k9n3s1
    return jnp.tanh(x.astype(jnp.float32))


class Discriminator(nn.Module):
  """The discriminator D of Figure 4 (bottom); returns a logit per image."""
  features: tuple[int, ...] = (64, 64, 128, 128, 256, 256, 512, 512)
  strides: tuple[int, ...] = (1, 2, 1, 2, 1, 2, 1, 2)
  dense_features: int = 1024
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, train: bool = False):
    for i, (f, s) in enumerate(zip(self.features, self.strides)):
      # k3n64s1 has a bias and no BN; every later conv is followed by BN.
      x = Conv(f, (3, 3), strides=(s, s), use_bias=(i == 0), dtype=self.dtype,
                  name=f'conv_{i}')(x)
      if i > 0:
        x = _BN(use_running_average=not train, dtype=self.dtype, name=f'bn_{i}')(x)
      x = nn.leaky_relu(x, 0.2)
    x = x.reshape(x.shape[0], -1)
    x = nn.leaky_relu(nn.Dense(self.dense_features, dtype=self.dtype, name='dense_0')(x), 0.2)
    x = nn.Dense(1, dtype=self.dtype, name='dense_1')(x)
    return x[:, 0].astype(jnp.float32)


# Tiny variants for fast tests.
TinyGenerator = functools.partial(Generator, num_blocks=2, features=8)
TinyDiscriminator = functools.partial(
    Discriminator, features=(8, 8, 16, 16), strides=(1, 2, 1, 2), dense_features=16)
