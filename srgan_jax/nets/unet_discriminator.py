"""Real-ESRGAN's U-Net discriminator with spectral normalisation (Wang et al., ICCVW 2021, Sec. 3.3).

A logit per pixel, not per image: an encoder of strided 4x4 convolutions (1/2, 1/4, 1/8),
a decoder of bilinear x2 upsampling and 3x3 convolutions with skip connections back to the
encoder, two more 3x3 convolutions and a 3x3 output. Every convolution but the first and the
last is spectrally normalised (Miyato et al. 2018) -- the stability Real-ESRGAN needs for a
D that judges local detail. As BasicSR's UNetDiscriminatorSN (num_feat 64, skip_connection):
LeakyReLU 0.2, no normalisation layers; F.interpolate(bilinear, align_corners=False) is
`upsample_bilinear_x2`
(jax.image.resize's half-pixel bilinear at x2).

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


def _shift(x: jax.Array, axis: int, by: int, edge: bool) -> jax.Array:
  """x moved `by` (+1 or -1) along axis; the vacated end repeats x's edge (edge) or is zero."""
  n = x.shape[axis]
  take = lambda lo, hi: jax.lax.slice_in_dim(x, lo, hi, axis=axis)
  if by > 0:
    end = take(0, 1) if edge else jnp.zeros_like(take(0, 1))
    return jnp.concatenate([end, take(0, n - 1)], axis)
  end = take(n - 1, n) if edge else jnp.zeros_like(take(0, 1))
  return jnp.concatenate([take(1, n), end], axis)


@functools.partial(jax.custom_vjp, nondiff_argnums=(1,))
def _bilinear_x2_axis(x: jax.Array, axis: int) -> jax.Array:
  """x2 along `axis` with half-pixel centres: output 2i is 1/4 x[i-1] + 3/4 x[i], output 2i+1 is
  3/4 x[i] + 1/4 x[i+1], the edges repeated (sample points outside the image clamp to it)."""
  even = 0.25 * _shift(x, axis, 1, edge=True) + 0.75 * x
  odd = 0.75 * x + 0.25 * _shift(x, axis, -1, edge=True)
  out = jnp.stack([even, odd], axis + 1)
  return out.reshape(*x.shape[:axis], 2 * x.shape[axis], *x.shape[axis + 1 :])


def _bilinear_x2_fwd(x, axis):
  return _bilinear_x2_axis(x, axis), None


def _bilinear_x2_bwd(axis, _, g):
  # The transpose of the two stencils: each input gathers 3/4 of its two outputs and 1/4 of
  # its neighbours' nearer outputs; at the edges the repeated sample's 1/4 comes back to it.
  n = g.shape[axis] // 2
  g = g.reshape(*g.shape[:axis], n, 2, *g.shape[axis + 1 :])
  ge = jax.lax.index_in_dim(g, 0, axis + 1, keepdims=False)
  go = jax.lax.index_in_dim(g, 1, axis + 1, keepdims=False)
  take = lambda v, i: jax.lax.slice_in_dim(v, i, i + 1, axis=axis)
  index = jax.lax.broadcasted_iota(jnp.int32, ge.shape, axis)
  edges = jnp.where(index == 0, take(ge, 0), 0) + jnp.where(index == n - 1, take(go, n - 1), 0)
  dx = 0.75 * (ge + go) + 0.25 * (
    _shift(ge, axis, -1, edge=False) + _shift(go, axis, 1, edge=False)
  )
  return (dx + 0.25 * edges,)


_bilinear_x2_axis.defvjp(_bilinear_x2_fwd, _bilinear_x2_bwd)


def upsample_bilinear_x2(h: jax.Array) -> jax.Array:
  """[B, H, W, C] -> [B, 2H, 2W, C]: torch's F.interpolate(scale_factor=2, mode='bilinear',
  align_corners=False), i.e. jax.image.resize(..., 'bilinear') at exactly x2 (tested), in float32,
  rounded once to h's dtype. As two-tap stencils with their transposes written out, not
  jax.image.resize's dense [2n, n] weight matrices: their dots and transposes took ~0.3 s of a
  1.7 s bf16 train step (2-core CPU)."""
  y = _bilinear_x2_axis(_bilinear_x2_axis(h.astype(jnp.float32), 1), 2)
  return y.astype(h.dtype)


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

    up = upsample_bilinear_x2

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
