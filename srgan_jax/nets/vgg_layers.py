"""VGG's layers: conv + bias + ReLU (`ConvReLU`), and ReLU and 2x2 max-pool with hand-written
gradients (the same values and gradients as Flax's).

`relu`'s gradient is taken from its output (y > 0 iff x > 0), so the backward pass
needs only the activation, not also the map before it: XLA fuses the conv's bias
add with the ReLU into one pass over the map and keeps one map instead of two
(the paper's bf16 SRGAN step ~4% faster on a 2-core AMX Xeon).
"""

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from srgan_jax.kernels import fast_conv


@jax.custom_vjp
def relu(x: jax.Array) -> jax.Array:
  return jnp.maximum(x, 0)


def _relu_fwd(x):
  y = jnp.maximum(x, 0)
  return y, y


def _relu_bwd(y, dy):
  return (jnp.where(y > 0, dy, jnp.zeros_like(dy)),)


relu.defvjp(_relu_fwd, _relu_bwd)


class ConvReLU(nn.Module):
  """A VGG layer, relu(conv3x3(x) + bias): fast_conv.Conv's parameters ('kernel', 'bias') and
  values. bfloat16 on oneDNN's bf16 kernels: the bias and ReLU run as the convolution's post-ops
  (`fast_conv.conv_bias_relu`: the map is written once, not written, then read and written again
  by XLA's bias + ReLU pass); else Conv, then `relu`."""

  features: int
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x):
    kernel = self.param(
      'kernel', nn.linear.default_kernel_init, (3, 3, x.shape[-1], self.features), jnp.float32
    )
    bias = self.param('bias', nn.initializers.zeros_init(), (self.features,), jnp.float32)
    x = x.astype(self.dtype)
    pads = ((1, 1), (1, 1))
    if fast_conv.bias_relu_fuses(x, kernel, pads):
      return fast_conv.conv_bias_relu(x, kernel.astype(x.dtype), bias, pads)
    y = fast_conv.conv_general_dilated(
      x, kernel.astype(x.dtype), (1, 1), pads, dimension_numbers=_NHWC
    )
    return relu(fast_conv.add_bias(y, bias))


_NHWC = ('NHWC', 'HWIO', 'NHWC')


def _windows(x: jax.Array) -> jax.Array:
  """[N, H, W, C] -> [N, H/2, 2, W/2, 2, C], an odd last row or column dropped (VALID)."""
  n, h, w, c = x.shape
  return x[:, : h // 2 * 2, : w // 2 * 2].reshape(n, h // 2, 2, w // 2, 2, c)


def _max_of_phases(x: jax.Array) -> jax.Array:
  h, w = x.shape[1] // 2 * 2, x.shape[2] // 2 * 2
  x = x[:, :h, :w]
  return jnp.maximum(
    jnp.maximum(x[:, 0::2, 0::2], x[:, 0::2, 1::2]), jnp.maximum(x[:, 1::2, 0::2], x[:, 1::2, 1::2])
  )


@jax.custom_vjp
def _max_pool_first_max_grad(x: jax.Array) -> jax.Array:
  return _max_of_phases(x)


def _max_pool_fwd(x):
  y = _max_of_phases(x)
  return y, (x, y)


def _max_pool_bwd(res, dy):
  # Each window's gradient goes to its first maximum in row-major order, as
  # nn.max_pool's (XLA's select-and-scatter) and torch's MaxPool2d do.
  x, y = res
  xw = _windows(x)
  order = jnp.arange(4, dtype=jnp.int8).reshape(1, 1, 2, 1, 2, 1)
  first = jnp.min(jnp.where(xw == y[:, :, None, :, None], order, 4), axis=(2, 4), keepdims=True)
  dx = jnp.where(order == first, dy[:, :, None, :, None], 0).astype(x.dtype)
  dx = dx.reshape(xw.shape[0], xw.shape[1] * 2, xw.shape[3] * 2, xw.shape[5])
  return (
    jnp.pad(dx, ((0, 0), (0, x.shape[1] - dx.shape[1]), (0, x.shape[2] - dx.shape[2]), (0, 0))),
  )


_max_pool_first_max_grad.defvjp(_max_pool_fwd, _max_pool_bwd)


def max_pool_2x2(x: jax.Array) -> jax.Array:
  """2x2 max-pool, stride 2, VALID (torchvision's MaxPool2d(2, 2)); same values as `nn.max_pool`.

  float32: the max of the 4 phases, elementwise, because XLA:CPU hands a
  reduce-window to YNNPACK together with the convolutions that feed it, and
  those ran slower there (VGG54 loss and gradient: 1.62 s -> 1.30 s on the
  paper's batch, 2-core Xeon); at exact ties its gradient is shared. Other
  dtypes (bfloat16): the same forward with a hand-written gradient, computed on
  the reshaped 2x2 windows, that goes to each window's first maximum as
  nn.max_pool's does, because XLA:CPU interleaves the phases' bfloat16 gradients
  8x slower than float32's (16 x 96² x 64 on an AMX Xeon, forward and gradient:
  107 ms through the phases, 20 ms this way; float32: 12 ms through the phases).
  """
  return _max_of_phases(x) if x.dtype == jnp.float32 else _max_pool_first_max_grad(x)
