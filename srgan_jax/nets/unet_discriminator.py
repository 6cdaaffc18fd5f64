"""Real-ESRGAN's U-Net discriminator with spectral normalisation (Wang et al., ICCVW 2021, Sec. 3.3).

A logit per pixel, not per image: an encoder of strided 4x4 convolutions (1/2, 1/4, 1/8),
a decoder of bilinear x2 upsampling and 3x3 convolutions with skip connections back to the
encoder, two more 3x3 convolutions and a 3x3 output. Every convolution but the first and the
last is spectrally normalised (Miyato et al. 2018) -- the stability Real-ESRGAN needs for a
D that judges local detail. As BasicSR's UNetDiscriminatorSN (num_feat 64, skip_connection):
LeakyReLU 0.2, no normalisation layers; F.interpolate(bilinear, align_corners=False) is
jax.image.resize's half-pixel bilinear.

The spectral norm's power-iteration vectors u (and the last sigma) live in the 'batch_stats'
collection, the trainer's mutable state for BN: each call runs one power iteration from the
stored u; training calls (train=True) store the new u and sigma, others leave them.
"""

import functools
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from srgan_jax.kernels import bf16_grads
from srgan_jax.kernels.fast_conv import Conv


class UNetDiscriminatorSN(nn.Module):
  """[B, H, W, 3] images in [-1, 1] (H, W multiples of 8) -> [B, H, W] float32 logits."""

  features: int = 64
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, train: bool = False):
    if x.shape[1] % 8 or x.shape[2] % 8:
      raise ValueError(f'UNetDiscriminatorSN needs H and W divisible by 8, got {x.shape[1:3]}.')
    f = self.features
    act = functools.partial(bf16_grads.leaky_relu, negative_slope=0.2)  # nn.leaky_relu's values

    def sn_conv(n, k, s, i):  # params conv_i/kernel; power-iteration state under sn_i
      pad = ((1, 1), (1, 1))  # k4s2p1 halves; k3s1p1 keeps the size
      conv = Conv(
        n, (k, k), strides=(s, s), padding=pad, use_bias=False, dtype=self.dtype, name=f'conv_{i}'
      )
      return lambda h: nn.SpectralNorm(conv, name=f'sn_{i}')(h, update_stats=train)

    def up(h):  # bilinear x2, half-pixel centres (torch's align_corners=False)
      b, hh, ww, c = h.shape
      return jax.image.resize(h, (b, 2 * hh, 2 * ww, c), 'bilinear').astype(h.dtype)

    x0 = act(Conv(f, (3, 3), padding=((1, 1), (1, 1)), dtype=self.dtype, name='conv_0')(x))
    x1 = act(sn_conv(2 * f, 4, 2, 1)(x0))
    x2 = act(sn_conv(4 * f, 4, 2, 2)(x1))
    x3 = act(sn_conv(8 * f, 4, 2, 3)(x2))
    x4 = act(sn_conv(4 * f, 3, 1, 4)(up(x3))) + x2
    x5 = act(sn_conv(2 * f, 3, 1, 5)(up(x4))) + x1
    x6 = act(sn_conv(f, 3, 1, 6)(up(x5))) + x0
    out = act(sn_conv(f, 3, 1, 7)(x6))
    out = act(sn_conv(f, 3, 1, 8)(out))
    out = Conv(1, (3, 3), padding=((1, 1), (1, 1)), dtype=self.dtype, name='conv_9')(out)
    return out[..., 0].astype(jnp.float32)


# A tiny variant for fast tests.
TinyUNetDiscriminatorSN = functools.partial(UNetDiscriminatorSN, features=4)
