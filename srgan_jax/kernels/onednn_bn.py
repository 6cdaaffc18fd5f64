"""BatchNorm in training mode on oneDNN's kernels, as XLA FFI custom calls (`csrc/onednn_bn.cc`).

Flax's BatchNorm on a bfloat16 map runs as XLA elementwise passes and reductions:
on the paper's networks that is 8-10x slower than oneDNN's batch_normalization
primitives (forward + backward, 2-core Xeon with AMX: 1.18 vs 0.12 ms on the
SRResNet trunk's 16 x 24 x 24 x 64, 31 vs 3.7 ms on D's 32 x 48 x 48 x 128;
docs/performance.md), and it was the largest cost of a bf16 train step left
outside the convolutions.

`batch_norm(x, scale, shift, eps)` is (y, mean, var) of Flax's BatchNorm with batch
statistics: mean and biased variance over N, H, W in float32, y = (x - mean) /
sqrt(var + eps) * scale + shift computed in float32 and rounded once to x's dtype.
Its gradient is oneDNN's backward primitive (through the statistics, as autodiff of
Flax's); a gradient flowing into the returned mean or var (Flax's running averages
take them, outside any loss) is added in JAX. `applies` says whether a map can run
here (one CPU device, NHWC, oneDNN's fast kernels take the shape; else Flax's runs).
`SRGAN_JAX_ONEDNN_BN=0` turns it off.
"""

import ctypes
import functools
import os

import jax
import jax.numpy as jnp
import numpy as np
from absl import logging
from jax.custom_derivatives import SymbolicZero

from srgan_jax.kernels import onednn_build
from srgan_jax.kernels import onednn_conv


def _dtypes() -> tuple:
  return (jnp.bfloat16,)  # float32 keeps Flax's (bit-identical results; a few ms per step)


@functools.lru_cache(maxsize=1024)
def _why_not(shape: tuple[int, ...], dtype: str, eps: float) -> str:
  """'' if oneDNN's fast BatchNorm kernels take this map, else why not (logged once per reason)."""
  if os.environ.get('SRGAN_JAX_ONEDNN_BN', '1') == '0':
    return 'turned off by SRGAN_JAX_ONEDNN_BN=0'
  ok, why = onednn_conv.status()
  if not ok:
    return why
  why = ctypes.create_string_buffer(512)
  dims = (ctypes.c_int64 * 5)(*shape, int(dtype == 'bfloat16'))
  built = onednn_conv.library().SrganBnProbe(dims, ctypes.c_float(eps), why, len(why)) == 0
  impls = why.value.decode(errors='replace')
  if built and not any(i.startswith('ref') for i in impls.split(';')):
    return ''
  reason = f'oneDNN BatchNorm on {dtype} {shape}: {impls}'
  _say_once(f"Flax's BatchNorm runs instead: {reason}")
  return reason


@functools.lru_cache(maxsize=None)
def _say_once(message: str) -> None:
  logging.warning('%s', message)


def applies(x, eps: float) -> bool:
  """Whether `batch_norm` takes x: a bfloat16 NHWC map on a single CPU device, a shape oneDNN's
  jitted kernels take (its reference kernels are slower than Flax's: those keep Flax's)."""
  return (
    jax.default_backend() == 'cpu'
    and jax.device_count() == 1
    and x.ndim == 4
    and x.dtype in _dtypes()
    and not _why_not(tuple(int(d) for d in x.shape), str(x.dtype), float(eps))
  )


def _target(name: str, dtype) -> str:
  return name + (onednn_build.BF16 if dtype == jnp.bfloat16 else '')


def _forward(x, scale, shift, eps):
  c = x.shape[-1]
  stat = jax.ShapeDtypeStruct((c,), jnp.float32)
  return jax.ffi.ffi_call(
    _target('SrganBnFwd', x.dtype), (jax.ShapeDtypeStruct(x.shape, x.dtype), stat, stat)
  )(x, scale.astype(jnp.float32), shift.astype(jnp.float32), eps=np.float32(eps))


def _backward(x, dy, mean, var, scale, eps):
  c = x.shape[-1]
  stat = jax.ShapeDtypeStruct((c,), jnp.float32)
  return jax.ffi.ffi_call(
    _target('SrganBnBwd', x.dtype), (jax.ShapeDtypeStruct(x.shape, x.dtype), stat, stat)
  )(x, dy.astype(x.dtype), mean, var, scale.astype(jnp.float32), eps=np.float32(eps))


@functools.partial(jax.custom_vjp, nondiff_argnums=(3,))
def batch_norm(x, scale, shift, eps: float):
  """(y, mean, var): Flax's BatchNorm of an NHWC map x with batch statistics (see the module doc)."""
  return _forward(x, scale, shift, eps)


def _fwd(x, scale, shift, eps):
  x, scale, shift = x.value, scale.value, shift.value  # CustomVJPPrimal (symbolic_zeros)
  y, mean, var = _forward(x, scale, shift, eps)
  return (y, mean, var), (x, mean, var, scale, shift)


def _bwd(eps, res, cts):
  x, mean, var, scale, shift = res
  dy, dmean, dvar = cts
  if isinstance(dy, SymbolicZero):
    dy = jnp.zeros(x.shape, x.dtype)
  dx, dscale, dshift = _backward(x, dy, mean, var, scale, eps)
  # Through the returned statistics: d mean / dx = 1/M, d var / dx = 2 (x - mean) / M.
  m = x.size // x.shape[-1]
  extra = 0.0
  if not isinstance(dmean, SymbolicZero):
    extra = extra + dmean / m
  if not isinstance(dvar, SymbolicZero):
    extra = extra + dvar * 2.0 * (x.astype(jnp.float32) - mean) / m
  if not isinstance(extra, float):
    dx = (dx.astype(jnp.float32) + extra).astype(x.dtype)
  return dx, dscale.astype(scale.dtype), dshift.astype(shift.dtype)


batch_norm.defvjp(_fwd, _bwd, symbolic_zeros=True)
