"""How the paper's convolutions run fast on XLA:CPU; what they compute is unchanged.

  * `Conv` (`nn.Conv` through `conv_general_dilated`): float32 convolutions
    through oneDNN (`onednn_conv`) where it is built; else XLA's, strided ones
    (D's k3s2 layers) with their input gradient computed phase by phase.
  * `compiler_options`: the XLA options every jitted SRGAN function is compiled
    with (XLA's own convolutions on its multi-threaded kernels, not YNNPACK's).
  * `SubpixelOutputConv`: the k9n3s1 output conv applied after the last pixel
    shuffle, computed on the coarse grid before it.

Measured in `python -m srgan_jax.benchmark` (docs/performance.md); when each runs: README.md here.
"""

import functools
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jax.extend import core as jex_core
from jax.interpreters import ad, batching, mlir

from srgan_jax.kernels import bf16_grads, onednn_conv

# jaxlib 0.10's XLA:CPU hands dots, reductions and convolutions to YNNPACK by
# default. On the paper's conv shapes YNNPACK's convolutions use one core (a
# 16x24x24x64 k3n64 conv: 4.7 ms on one core, 5.2 ms on two) and its kernel
# gradients run 3x slower than XLA's own multi-threaded (Eigen) convolutions
# (2.8 ms forward, 4.6 ms kernel gradient on two cores). Dots and reductions
# stay with YNNPACK, where they are faster.
_YNN_FUSION_TYPES = 'LIBRARY_FUSION_TYPE_INDIVIDUAL_DOT,LIBRARY_FUSION_TYPE_REDUCE'


def compiler_options(platform: str | None = None) -> dict[str, str]:
  """`jax.jit(..., compiler_options=...)` for `platform` (default: JAX's default backend)."""
  if (platform or jax.default_backend()) != 'cpu':
    return {}
  return {'xla_cpu_experimental_ynn_fusion_type': _YNN_FUSION_TYPES}


# ----------------------------------------------------------------------------
# Strided convolutions: the input gradient by phases.
#
# XLA:CPU computes the input gradient of a stride-s conv as a convolution over
# the output gradient dilated with s-1 zeros, 2-3x slower than the forward conv
# (D's k3n64s2 at 96x96: 157 ms vs 26). Split by the phase (p, q) = position
# mod s of the padded input, it is s*s stride-1 convolutions of dy with the
# sub-kernels w[p::s, q::s], no multiplications by inserted zeros, interleaved
# back (k3n64s2: 67 ms).

_NHWC = ('NHWC', 'HWIO', 'NHWC')


def _plain_conv(x, w, strides, pads):
  return lax.conv_general_dilated(x, w, strides, pads, dimension_numbers=_NHWC)


def strided_input_grad(x_shape, w, dy, s: int, pads):
  """d(loss)/dx of y = conv(x, w) with stride (s, s) and padding `pads`, given dy."""
  n, h, wd, c = x_shape
  (pt, _), (pl, _) = pads
  ho, wo = dy.shape[1:3]
  xh, xw = ho + -(-w.shape[0] // s) - 1, wo + -(-w.shape[1] // s) - 1  # phase grid
  phases = []
  for p in range(s):
    for q in range(s):
      sub = w[p::s, q::s]  # the taps that touch input rows p mod s, columns q mod s
      th, tw = sub.shape[:2]
      conv = lambda xs, sub=sub, th=th, tw=tw: _plain_conv(
        xs[:, : ho + th - 1, : wo + tw - 1], sub, (1, 1), ((0, 0), (0, 0))
      )
      phases.append(jax.vjp(conv, jnp.zeros((n, xh, xw, c), dy.dtype))[1](dy)[0])
  # dxp[s*u + p, s*v + q] = phase (p, q) at [u, v]; then drop the padding.
  dxp = jnp.stack(phases, 3).reshape(n, xh, xw, s, s, c).transpose(0, 1, 3, 2, 4, 5)
  dxp = dxp.reshape(n, s * xh, s * xw, c)
  dxp = jnp.pad(dxp, ((0, 0), (0, max(0, pt + h - s * xh)), (0, max(0, pl + wd - s * xw)), (0, 0)))
  return dxp[:, pt : pt + h, pl : pl + wd]


# The strided conv as a bilinear primitive (like lax's own convolution): its
# transpose in x is `strided_input_grad`, in w lax's kernel gradient, both made
# of lax ops, so jvp, vmap and every order of differentiation work.


def _strided_fwd(x, w, *, s, pads):
  return _plain_conv(x, w, (s, s), pads)


def _strided_input_grad_rule(ct, x, w, *, s, pads):
  return strided_input_grad(tuple(x.aval.shape), w, ct, s, pads).astype(x.aval.dtype)


def _strided_kernel_grad_rule(ct, x, w, *, s, pads):
  zeros = jnp.zeros(w.aval.shape, w.aval.dtype)
  return jax.vjp(lambda w: _plain_conv(x, w, (s, s), pads), zeros)[1](ct)[0]


def _strided_batch(args, dims, *, s, pads):
  """vmap: a batched input with an unbatched kernel folds into N; else lax's conv batching."""
  (x, w), (dx, dw) = args, dims
  if dw is None:
    x = jnp.moveaxis(x, dx, 0)
    k, n = x.shape[:2]
    y = strided_conv_p.bind(x.reshape(k * n, *x.shape[2:]), w, s=s, pads=pads)
    return y.reshape(k, n, *y.shape[1:]), 0
  return jax.vmap(functools.partial(_strided_fwd, s=s, pads=pads), in_axes=(dx, dw))(x, w), 0


strided_conv_p = jex_core.Primitive('srgan_strided_conv')
strided_conv_p.def_impl(_strided_fwd)
strided_conv_p.def_abstract_eval(
  lambda x, w, *, s, pads: jax.core.ShapedArray(
    lax.conv_general_shape_tuple(x.shape, w.shape, (s, s), pads, _NHWC), x.dtype
  )
)
mlir.register_lowering(strided_conv_p, mlir.lower_fun(_strided_fwd, multiple_results=False))
ad.defbilinear(strided_conv_p, _strided_input_grad_rule, _strided_kernel_grad_rule)
batching.primitive_batchers[strided_conv_p] = _strided_batch


def _strided_conv(x, w, s: int, pads):
  return strided_conv_p.bind(x, w, s=s, pads=pads)


def conv_general_dilated(
  lhs,
  rhs,
  window_strides,
  padding,
  lhs_dilation=None,
  rhs_dilation=None,
  dimension_numbers=None,
  feature_group_count=1,
  precision=None,
):
  """`lax.conv_general_dilated` for `nn.Conv(conv_general_dilated=...)`.

  On XLA:CPU a plain 2-D NHWC conv (no dilation or groups, no negative padding)
  runs through oneDNN where `onednn_conv` applies (float32, one device); else a
  conv with equal strides 1 < s <= kernel size gets the phase-wise input
  gradient. All else is lax's.
  """
  plain = (
    jax.default_backend() == 'cpu'
    and lhs.ndim == 4
    and feature_group_count == 1
    and precision is None
    and all(d == 1 for d in tuple(lhs_dilation or (1, 1)) + tuple(rhs_dilation or (1, 1)))
    and lax.conv_dimension_numbers(lhs.shape, rhs.shape, dimension_numbers)
    == lax.conv_dimension_numbers(lhs.shape, rhs.shape, _NHWC)
  )
  if plain:
    strides = tuple(int(s) for s in window_strides)
    pads = padding
    if isinstance(padding, str):
      pads = lax.padtype_to_pads(lhs.shape[1:3], rhs.shape[:2], strides, padding)
    pads = tuple((int(lo), int(hi)) for lo, hi in pads)
    if min(min(p) for p in pads) >= 0:
      if onednn_conv.applies(lhs, rhs):
        return onednn_conv.conv(lhs, rhs, strides, pads)
      if len(set(strides)) == 1 and 1 < strides[0] <= min(rhs.shape[:2]):
        return _strided_conv(lhs, rhs, strides[0], pads)
  return lax.conv_general_dilated(
    lhs,
    rhs,
    window_strides,
    padding,
    lhs_dilation,
    rhs_dilation,
    dimension_numbers,
    feature_group_count,
    precision=precision,
  )


def add_bias(y, bias):
  """y + bias, the sum (and so bias's gradient, a sum over every pixel) in float32.

  In bfloat16 compute, y + bias.astype(bf16) would round the bias and, worse, sum its
  gradient over N*H*W pixels in bfloat16 (XLA keeps the rounding at every add, and
  such reductions run 10-40x slower on XLA:CPU). In float32 this is y + bias.
  """
  if bf16_grads.applies(y) and bias.dtype == jnp.float32:
    return bf16_grads.add_bias(y, bias)  # the same; its gradient summed in one pass (FFI)
  wide = jnp.promote_types(y.dtype, jnp.float32)
  return (y.astype(wide) + bias.astype(wide)).astype(y.dtype)


def bias_relu_fuses(x, kernel, pads) -> bool:
  """Whether `conv_bias_relu` runs as one oneDNN call: a bfloat16 map on oneDNN's bf16 kernels."""
  return bf16_grads.applies(x) and onednn_conv.fused_applies(
    x, kernel.astype(x.dtype), (1, 1), pads, onednn_conv.PRELU
  )


@functools.partial(jax.custom_vjp, nondiff_argnums=(3,))
def conv_bias_relu(x, kernel, bias, pads):
  """relu(conv(x, kernel) + bias), stride 1, bfloat16 x and kernel, float32 bias: the bias and
  ReLU (PReLU with slope 0) as the convolution's oneDNN post-ops, one rounding to bfloat16.
  Only where `bias_relu_fuses`. The gradient takes ReLU's mask from the output (y > 0 iff the
  pre-activation is), then oneDNN's input / kernel gradients and the one-pass bias sum. Reverse
  mode (jax.grad, jax.vjp) and vmap; no forward mode (VGG's uses need none)."""
  return onednn_conv.conv_fused(x, kernel, bias, slope=jnp.float32(0.0), pads=pads)


def _conv_bias_relu_fwd(x, kernel, bias, pads):
  y = conv_bias_relu(x, kernel, bias, pads)
  return y, (x, kernel, y)


def _conv_bias_relu_bwd(pads, res, dy):
  x, kernel, y = res
  dz = jnp.where(y > 0, dy, jnp.zeros_like(dy))
  _, conv_vjp = jax.vjp(lambda x, w: onednn_conv.conv(x, w, (1, 1), pads), x, kernel)
  dx, dkernel = conv_vjp(dz)
  return dx, dkernel, bf16_grads.bias_sum(dz)  # unused gradients (VGG's weights) are pruned


conv_bias_relu.defvjp(_conv_bias_relu_fwd, _conv_bias_relu_bwd)


class Conv(nn.Module):
  """nn.Conv (NHWC, HWIO kernel, no groups or dilation) through `conv_general_dilated`.

  The same parameters ('kernel', then 'bias'), shapes and initialisers as nn.Conv, so
  checkpoints and exports are unchanged; the bias is added by `add_bias`.
  """

  features: int
  kernel_size: tuple[int, ...]
  strides: int | tuple[int, ...] = 1
  padding: Any = 'SAME'  # 'SAME', 'VALID' or ((top, bottom), (left, right))
  use_bias: bool = True
  dtype: Any = None  # compute dtype (None: that of the input and the float32 kernel)
  kernel_init: Any = nn.linear.default_kernel_init
  bias_init: Any = nn.initializers.zeros_init()

  @nn.compact
  def __call__(self, x):
    ks = tuple(self.kernel_size)
    strides = (self.strides,) * len(ks) if isinstance(self.strides, int) else tuple(self.strides)
    kernel = self.param('kernel', self.kernel_init, ks + (x.shape[-1], self.features), jnp.float32)
    bias = (
      self.param('bias', self.bias_init, (self.features,), jnp.float32) if self.use_bias else None
    )
    dtype = self.dtype or jnp.result_type(x, kernel)
    padding = self.padding if isinstance(self.padding, str) else tuple(map(tuple, self.padding))
    y = conv_general_dilated(
      x.astype(dtype), kernel.astype(dtype), strides, padding, dimension_numbers=_NHWC
    )
    return add_bias(y, bias) if self.use_bias else y


@jax.custom_vjp
def _matmul(x, kernel):
  return jnp.dot(x, kernel)


def _matmul_fwd(x, kernel):
  return jnp.dot(x, kernel), (x, kernel)


def _matmul_bwd(res, dy):
  x, kernel = res
  # dK = x^T dy computed as [in, out], the kernel's layout: JAX's own transpose rule
  # computes dy^T x and transposes it, which XLA:CPU leaves to the optimizer update
  # to read across rows (~135 ms of Adam for D's 18432 x 1024 dense_0).
  return jnp.einsum('bo,io->bi', dy, kernel), jnp.einsum('bi,bo->io', x, dy)


_matmul.defvjp(_matmul_fwd, _matmul_bwd)


class Dense(nn.Module):
  """nn.Dense (same parameters: 'kernel' [in, out], 'bias'); in a low-precision dtype, float32 inside.

  float32: nn.Dense. bfloat16: the product in float32 on the float32 kernel (XLA:CPU
  runs a bf16 dot as a float32 one anyway, after converting the kernel: for D's
  18432 x 1024 dense_0, 19M elements each way), the kernel's gradient in its own
  layout (`_matmul`), the output rounded once to bf16. On the paper's bf16 SRGAN
  step (2-core AMX Xeon) the dense layers and their Adam update took ~190 ms.
  """

  features: int
  dtype: Any = None  # compute dtype (None: that of the input and the float32 kernel)
  kernel_init: Any = nn.linear.default_kernel_init
  bias_init: Any = nn.initializers.zeros_init()

  @nn.compact
  def __call__(self, x):
    kernel = self.param('kernel', self.kernel_init, (x.shape[-1], self.features), jnp.float32)
    bias = self.param('bias', self.bias_init, (self.features,), jnp.float32)
    dtype = self.dtype or jnp.result_type(x, kernel)
    if dtype == jnp.float32:
      return jnp.dot(x.astype(dtype), kernel) + bias
    lead = x.shape[:-1]
    y = _matmul(x.reshape(-1, x.shape[-1]).astype(jnp.float32), kernel) + bias
    return y.reshape(lead + (self.features,)).astype(dtype)


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


def polyphase_kernel(kernel, r: int):
  """[k, k, C, O] -> the [K, K, r*r*C, r*r*O] kernel W' of `SubpixelOutputConv` (K = 5 for k 9, r 2)."""
  k, _, cin, cout = kernel.shape
  s = jnp.asarray(_polyphase_selection(k, r), kernel.dtype)
  w = jnp.einsum('yuPa,xvQb,abco->yxcuvoPQ', s, s, kernel)
  return w.reshape(s.shape[0], s.shape[0], cin * r * r, cout * r * r)


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
    w = polyphase_kernel(kernel, r)
    z, w = z.astype(self.dtype), w.astype(self.dtype)
    y = conv_general_dilated(z, w, (1, 1), 'SAME', dimension_numbers=_NHWC)
    return add_bias(y, jnp.repeat(bias, r * r))  # the caller pixel-shuffles
