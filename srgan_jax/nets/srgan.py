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
import jax.numpy as jnp

from srgan_jax.kernels import bf16_grads
from srgan_jax.kernels.fast_conv import Conv, Dense, SubpixelOutputConv
from srgan_jax.kernels.fast_norm import BatchNorm

# PyTorch's BatchNorm momentum 0.1 is Flax's 0.9; epsilon as in the reference. BatchNorm is
# nn.BatchNorm (same parameters) with bfloat16 training on oneDNN's kernels (kernels/fast_norm.py).
_BN = functools.partial(BatchNorm, momentum=0.9, epsilon=1e-5)


class PReLU(nn.Module):
  """nn.PReLU (one slope, parameter 'negative_slope'); slope x input in float32.

  So the slope's gradient, a sum over every element, is summed in float32 when the
  activations are bfloat16 (nn.PReLU casts the slope to the input's dtype); the same
  values as nn.PReLU in float32.
  """

  negative_slope_init: float = 0.01

  @nn.compact
  def __call__(self, x):
    slope = self.param(
      'negative_slope', lambda k: jnp.asarray(self.negative_slope_init, jnp.float32)
    )
    if bf16_grads.applies(x):
      return bf16_grads.prelu(x, slope)  # the same; the slope's gradient summed in one pass (FFI)
    wide = jnp.promote_types(x.dtype, jnp.float32)
    return jnp.where(x >= 0, x, (slope.astype(wide) * x.astype(wide)).astype(x.dtype))


# He et al. (2015) initialise the PReLU slope at 0.25 (one slope per layer).
_PReLU = functools.partial(PReLU, negative_slope_init=0.25)


def icnr(init, r: int):
  """ICNR (Aitken et al. 2017): a sub-pixel conv's kernel init under which pixel_shuffle starts
  as nearest-neighbour upsampling: the r*r output channels that one shuffled channel takes its
  r*r sub-pixels from start with the same kernel, so no r-periodic (grid) pattern at init."""

  def init_fn(key, shape, dtype=jnp.float32):
    kh, kw, cin, cout = shape
    return jnp.repeat(init(key, (kh, kw, cin, cout // (r * r)), dtype), r * r, axis=-1)

  return init_fn


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
  icnr: bool = False  # ICNR init of the conv (else Flax's lecun_normal)

  @nn.compact
  def __call__(self, x):
    init = nn.initializers.lecun_normal()
    init = icnr(init, self.factor) if self.icnr else init
    x = Conv(self.features * self.factor**2, (3, 3), dtype=self.dtype, kernel_init=init)(x)
    x = _PReLU()(x)
    return pixel_shuffle(x, self.factor) if self.shuffle else x


def upsample_factors(scale: int) -> tuple[int, ...]:
  """log2(scale) x2 blocks for scales 2, 4, 8; one x3 block for scale 3."""
  factors = {2: (2,), 3: (3,), 4: (2, 2), 8: (2, 2, 2)}
  if scale not in factors:
    raise ValueError(f'scale must be one of {sorted(factors)}, got {scale}.')
  return factors[scale]


def output_activation(x: jnp.ndarray, output: str) -> jnp.ndarray:
  """G's last step, in float32: 'tanh' (the paper's [-1, 1]) or 'clamp' (2 clip(x, 0, 1) - 1)."""
  if output == 'clamp':
    return 2.0 * jnp.clip(x.astype(jnp.float32), 0.0, 1.0) - 1.0
  return jnp.tanh(x.astype(jnp.float32))


class Generator(nn.Module):
  """SRResNet: the generator G of Figure 4 (top)."""

  scale: int = 4
  num_blocks: int = 16  # B residual blocks
  features: int = 64
  dtype: Any = jnp.float32  # compute dtype; parameters stay float32
  # 'tanh': the paper's [-1, 1] output. 'clamp': SRGAN-PyTorch's clip of the same conv to
  # [0, 1] (for its converted weights), returned as 2y - 1 in [-1, 1] like tanh's.
  output: str = 'tanh'
  icnr: bool = False  # ICNR init of the upsampling convs (training from scratch; not the paper's)

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
      x = UpsampleBlock(
        self.features,
        f,
        dtype=self.dtype,
        shuffle=not (last and subpixel_out),
        icnr=self.icnr,
        name=f'up_{i}',
      )(x)
    if subpixel_out:  # k9n3s1 after the last shuffle == a 5x5 conv before it, then the shuffle
      x = SubpixelOutputConv(3, 9, factors[-1], dtype=self.dtype, name='conv_out')(x)
      x = pixel_shuffle(x, factors[-1])
    else:
      x = Conv(3, (9, 9), dtype=self.dtype, name='conv_out')(x)  # k9n3s1
    return output_activation(x, self.output)


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
      x = Conv(f, (3, 3), strides=(s, s), use_bias=(i == 0), dtype=self.dtype, name=f'conv_{i}')(x)
      if i > 0:
        x = _BN(use_running_average=not train, dtype=self.dtype, name=f'bn_{i}')(x)
      x = bf16_grads.leaky_relu(x, 0.2)
    x = x.reshape(x.shape[0], -1)
    x = bf16_grads.leaky_relu(Dense(self.dense_features, dtype=self.dtype, name='dense_0')(x), 0.2)
    x = Dense(1, dtype=self.dtype, name='dense_1')(x)
    return x[:, 0].astype(jnp.float32)


# Tiny variants for fast tests.
TinyGenerator = functools.partial(Generator, num_blocks=2, features=8)
TinyDiscriminator = functools.partial(
  Discriminator, features=(8, 8, 16, 16), strides=(1, 2, 1, 2), dense_features=16
)


# ----------------------------------------------------------------------------
# The discriminator a config names (generators.make_generator builds G).


DISCRIMINATORS = ('srgan', 'unet_sn')  # config.model.discriminator


def make_discriminator(config) -> nn.Module:
  """D of a run's config (config.model.discriminator, tiny and compute_dtype)."""
  dtype = jnp.dtype(config.model.compute_dtype)
  if config.model.get('discriminator', 'srgan') == 'unet_sn':
    from srgan_jax.nets import unet_discriminator  # pylint: disable=g-import-not-at-top

    if config.model.tiny:
      return unet_discriminator.TinyUNetDiscriminatorSN(dtype=dtype)
    return unet_discriminator.UNetDiscriminatorSN(dtype=dtype)
  if config.model.tiny:
    return TinyDiscriminator(dtype=dtype)
  return Discriminator(dtype=dtype)
