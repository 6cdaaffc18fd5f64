"""Bias and PReLU-slope gradients of bfloat16 maps, summed in float32 in one pass (`csrc/bf16_grads.cc`).

`fast_conv.add_bias` and `srgan.PReLU` compute in float32 and round once to bfloat16,
so their parameter gradients are float32 sums over every element of a bfloat16
map. XLA:CPU computes such a sum by writing a float32 copy of the map and reducing
that: on G's 16 x 48 x 48 x 256 upsampling map, the copies alone took ~17 ms of a
0.28 s bf16 SRResNet step (AMX Xeon; docs/performance.md). Here the backward passes
are FFI handlers that read each element once. Same values as autodiff of the
float32-then-round forward (tested); `SRGAN_JAX_BF16_GRADS=0` turns them off.
`leaky_relu` (the discriminators') takes its input gradient from the same handler:
nn.leaky_relu's values and gradients, the paper's bf16 SRGAN step ~4% faster.
"""

import functools
import os

import jax
import jax.numpy as jnp
import numpy as np

from srgan_jax.kernels import onednn_conv


def applies(x) -> bool:
  """Whether a bfloat16 map x on a single CPU device takes these handlers."""
  return (
    x.dtype == jnp.bfloat16
    and os.environ.get('SRGAN_JAX_BF16_GRADS', '1') != '0'
    and jax.default_backend() == 'cpu'
    and jax.device_count() == 1
    and onednn_conv.status()[0]
  )


def _bias_sum(dy):
  c = dy.shape[-1]
  out = jax.ShapeDtypeStruct((c,), jnp.float32)
  return jax.ffi.ffi_call('SrganBiasGradBf16', out, vmap_method='sequential')(dy)


def bias_sum(dy):
  """A bias's gradient: dy summed over all but its last axis, in float32 (one pass where `applies`)."""
  if applies(dy):
    return _bias_sum(dy)
  return jnp.sum(dy.astype(jnp.float32), axis=tuple(range(dy.ndim - 1)))


@jax.custom_vjp
def add_bias(y, bias):
  """bf16(float32(y) + bias) for a bfloat16 map y and a float32 bias of y's last dimension."""
  return (y.astype(jnp.float32) + bias.astype(jnp.float32)).astype(y.dtype)


def _add_bias_fwd(y, bias):
  return add_bias(y, bias), bias


def _add_bias_bwd(bias, ct):
  ct = ct.astype(jnp.bfloat16)
  return ct, _bias_sum(ct).astype(bias.dtype)


add_bias.defvjp(_add_bias_fwd, _add_bias_bwd)


@jax.custom_vjp
def prelu(x, slope):
  """PReLU with one float32 slope: x where x >= 0, else bf16(slope * float32(x))."""
  return jnp.where(x >= 0, x, (slope.astype(jnp.float32) * x.astype(jnp.float32)).astype(x.dtype))


def _prelu_fwd(x, slope):
  return prelu(x, slope), (x, slope)


def _prelu_bwd(res, ct):
  x, slope = res
  dx, dslope = _prelu_grads(x, ct, slope)
  return dx, dslope.astype(slope.dtype)


def _prelu_grads(x, ct, slope):
  """(dx, dslope) of PReLU at x for the cotangent ct: SrganPreluBwdBf16."""
  return jax.ffi.ffi_call(
    'SrganPreluBwdBf16',
    (jax.ShapeDtypeStruct(x.shape, x.dtype), jax.ShapeDtypeStruct((), jnp.float32)),
    vmap_method='sequential',
  )(x, ct.astype(x.dtype), jnp.asarray(slope, jnp.float32))


prelu.defvjp(_prelu_fwd, _prelu_bwd)


def leaky_relu(x, negative_slope: float):
  """nn.leaky_relu(x, negative_slope), the same values; on a bfloat16 map that `applies` takes,
  its input gradient in one pass (FFI; XLA's took ~160 ms of the paper's bf16 SRGAN step)."""
  if not applies(x):
    return jax.nn.leaky_relu(x, negative_slope)
  # nn.leaky_relu on bf16 multiplies by the slope rounded to bf16 (0.2 -> 0.2001953125).
  return _leaky(x, float(np.asarray(negative_slope, x.dtype)))


@functools.partial(jax.custom_vjp, nondiff_argnums=(1,))
def _leaky(x, slope: float):
  return jnp.where(x >= 0, x, (slope * x.astype(jnp.float32)).astype(x.dtype))


def _leaky_fwd(x, slope):
  out = jax.ShapeDtypeStruct(x.shape, x.dtype)
  y = jax.ffi.ffi_call('SrganLeakyFwdBf16', out, vmap_method='sequential')(
    x, slope=np.float32(slope)
  )
  return y, x


def _leaky_bwd(slope, x, ct):
  return (_prelu_grads(x, ct, slope)[0],)


_leaky.defvjp(_leaky_fwd, _leaky_bwd)
