"""Convolutions that compute exactly what the paper's layers compute, faster on XLA:CPU.

Speed only: parameter names, shapes and initialisers are those of `nn.Conv`, so
checkpoints do not depend on them. Measured in `python -m srgan_jax.benchmark`
(README, Performance).

  * `Conv`: `nn.Conv` whose kernel gradient is one im2col matmul where that wins.
  * `SubpixelOutputConv`: the k9n3s1 output conv applied after the last pixel
    shuffle, computed on the coarse grid before it.
"""

import functools
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

# ----------------------------------------------------------------------------
# Convolution with a fast kernel gradient (the function is lax's).
#
# XLA:CPU computes a conv's kernel gradient as a convolution whose window is
# the whole image, 3-10x slower per FLOP than the forward conv (7-15 vs 50-60
# GFLOP/s on a 2-core Xeon). As one matmul over the input's im2col patch matrix
# (k*k*Cin values per output position) it runs at matmul speed.


def _kernel_grad(x, dy, kernel_shape, strides, pads):
  kh, kw = kernel_shape[:2]
  sh, sw = strides
  ho, wo = dy.shape[1:3]
  xp = jnp.pad(x, ((0, 0), pads[0], pads[1], (0, 0)))
  f32 = functools.partial(lax.dot_general, preferred_element_type=jnp.float32)
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


# nn.Conv with the fast kernel gradient; parameter names and initialisers unchanged.
Conv = functools.partial(nn.Conv, conv_general_dilated=conv_general_dilated)


# ----------------------------------------------------------------------------
# The output conv on the coarse grid.

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
  """The k9n3s1 output conv of pixel_shuffle(z, r), computed on z's coarse grid (unshuffled).

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
    return y + jnp.repeat(bias, r * r).astype(self.dtype)  # the caller pixel-shuffles
