"""Convolutions that compute exactly what the paper's layers compute, faster on XLA:CPU.

Speed only: parameter names, shapes and initialisers are those of `nn.Conv`, so
checkpoints do not depend on them. Measured in `python -m srgan_jax.benchmark`
(README, Performance).

  * `Conv`: `nn.Conv` whose kernel gradient, on XLA:CPU, is a Winograd product
    or one im2col matmul where either wins.
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
# Winograd kernel gradient (Lavin & Gray, CVPR 2016, "Fast Algorithms for
# Convolutional Neural Networks"): y = A^T [(G w G^T) * (B^T d B)] A per m x m
# output tile d, so dw = G^T [sum over tiles of (B^T d B) * (A dy A^T)] G: one
# batched matmul over the (m+2)^2 tile positions, 4x fewer multiplications than
# the direct kernel gradient at m = 4.

# Toom-Cook interpolation points of F(m, 3), the usual well-conditioned choices.
_POINTS = {2: (0, 1, -1), 4: (0, 1, -1, 2, -2), 6: (0, 1, -1, 2, -2, 0.5, -0.5)}


@functools.lru_cache(maxsize=None)
def winograd_matrices(m: int):
  """A^T (m x a), G (a x 3), B^T (a x a), a = m + 2, of F(m, 3) (Toom-Cook).

  A^T and G come from Lagrange interpolation at `_POINTS[m]` and infinity; B^T is
  the unique solution of the 1-D identity sum_j A^T[i,j] G[j,k] B^T[j,t] = [t = i + k]
  (output i, tap k, input t), checked exact.
  """
  a = np.asarray(_POINTS[m], np.float64)
  r, n = 3, m + 2
  at, g = np.zeros((m, n)), np.zeros((n, r))
  for j, p in enumerate(a):
    at[:, j] = p ** np.arange(m)
    g[j] = p ** np.arange(r) / np.prod([p - q for q in a if q != p])
  at[m - 1, n - 1] = g[n - 1, r - 1] = 1.0  # the point at infinity
  system = np.zeros((m, r, n, n, n))  # (i, k, t) equations in the unknowns B^T[j, t']
  for t in range(n):
    system[:, :, t, :, t] = at[:, None, :] * g.T[None, :, :]
  system = system.reshape(m * r * n, n * n)
  target = np.zeros((m, r, n))
  for i in range(m):
    for k in range(r):
      target[i, k, i + k] = 1.0
  bt = np.linalg.lstsq(system, target.ravel(), rcond=None)[0]
  assert np.abs(system @ bt - target.ravel()).max() < 1e-9, 'F(m, r) identity does not hold'
  return at, g, bt.reshape(n, n)


def winograd_kernel_grad(x, dy, m: int = 4):
  """Kernel gradient of the 3x3 SAME stride-1 conv y = conv(x, w), given dy = dL/dy.

  Equals sum_{n,y,x} xpad[n, y + a, x + b, c] dy[n, y, x, o] up to float32 rounding
  (relative error ~1e-5 of the largest entry at m = 4); computed in float32.
  """
  at, g, bt = (jnp.asarray(t, jnp.float32) for t in winograd_matrices(m))
  x, dy = x.astype(jnp.float32), dy.astype(jnp.float32)
  n, h, w, _ = x.shape
  a = m + 2
  th, tw = -(-h // m), -(-w // m)  # tiles per column and row
  xp = jnp.pad(x, ((0, 0), (1, th * m + 1 - h), (1, tw * m + 1 - w), (0, 0)))
  # V = B^T d B for every overlapping a x a input tile d (stride m), rows then columns.
  d = jnp.stack([xp[:, i:i + m * (th - 1) + 1:m] for i in range(a)])
  d = jnp.einsum('ui,inyXc->unyXc', bt, d)
  d = jnp.stack([d[:, :, :, j:j + m * (tw - 1) + 1:m] for j in range(a)], 1)
  v = jnp.einsum('vj,ujnyxc->uvnyxc', bt, d)
  # A dy A^T for every m x m output tile.
  dyp = jnp.pad(dy, ((0, 0), (0, th * m - h), (0, tw * m - w), (0, 0)))
  dyp = dyp.reshape(n, th, m, tw, m, dy.shape[-1])
  dm = jnp.einsum('iu,nyixjo,jv->uvnyxo', at, dyp, at)
  # dU[u, v] = sum over tiles of V[u, v]^T dM[u, v]; dw = G^T dU G.
  du = lax.dot_general(v.reshape(a * a, -1, v.shape[-1]), dm.reshape(a * a, -1, dm.shape[-1]),
                       (((1,), (1,)), ((0,), (0,))))
  return jnp.einsum('ua,uvco,vb->abco', g, du.reshape(a, a, *du.shape[1:]), g)


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


def kernel_grad_method(kernel_shape, strides, pads, platform=None) -> str:
  """'winograd', 'im2col' or 'lax': how `Conv` computes its kernel gradient.

  Measured on XLA:CPU (2-core Xeon, the paper's shapes, kernel gradient alone):
  Winograd F(4x4, 3x3) wins on 3x3 SAME stride-1 convs with >= 64 inputs that at
  most double the channels (G's k3n64 trunk convs 18 -> 11 ms, D's 64->128,
  128->256, 256->512 convs 217 -> 191, 198 -> 110, 76 -> 69 ms); im2col on the
  other stride-1 convs that at least double the channels (k9n64 input conv,
  k3n256 upsampling convs: 50 -> 22 ms); lax on strided convs and the output
  conv. Other backends (cuDNN, TPU) keep lax's own.
  """
  if (platform or jax.default_backend()) != 'cpu':
    return 'lax'
  kh, kw, cin, cout = kernel_shape
  if tuple(strides) != (1, 1):
    return 'lax'
  if (kh, kw) == (3, 3) and tuple(map(tuple, pads)) == ((1, 1), (1, 1)) and 64 <= cin and cout <= 2 * cin:
    return 'winograd'
  return 'im2col' if cout >= 2 * cin else 'lax'


def _conv_bwd(strides, pads, res, dy):
  x, w = res
  x_grad = jax.vjp(lambda x: _plain_conv(x, w, strides, pads), x)[1]
  method = kernel_grad_method(w.shape, strides, pads)
  if method == 'winograd':
    dw = winograd_kernel_grad(x, dy).astype(w.dtype)
  elif method == 'im2col':
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
