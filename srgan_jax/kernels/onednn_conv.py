"""2-D float32 and bfloat16 convolutions on XLA:CPU through oneDNN, as XLA FFI custom calls.

XLA:CPU runs convolutions on Eigen or YNNPACK kernels, 1.2-2.5x slower than
oneDNN's on the paper's shapes (docs/performance.md); jaxlib ships oneDNN's
conv kernels but does not route convolutions to them. `csrc/onednn_conv.cc`
binds oneDNN's forward, backward-data and backward-weights convolutions
(NHWC activations, HWIO kernels, as Flax) as three FFI handlers.

bfloat16 convolutions run on oneDNN's bf16 kernels where the CPU has bf16 dot-product
instructions (AVX-512 BF16, AMX: `isa()`), accumulating in float32 as oneDNN does; on
a CPU without them (or with SRGAN_JAX_ONEDNN_BF16=0) they run as float32 convolutions
on oneDNN, cast in and out, said once in the log: oneDNN's emulated bf16 and XLA's
bf16 convolutions are both slower than that.

`conv` is `lax.conv_general_dilated` (tested to float32 rounding) as three JAX
primitives, one per handler, each bilinear and each the transpose of the
others (as lax's own convolution is): so `jax.grad` runs the backward handlers,
and `jax.jvp`, `jax.vmap`, `jax.hessian` or a gradient penalty (grad of grad)
work too. vmap folds a batch axis into N where it can, else maps. A geometry
oneDNN rejects when its primitives are built (probed once, when it is lowered)
is lowered to XLA's convolution instead.

The handlers are built and cached by `onednn_build` (the system C++ compiler
against the `onednn-devel-cpu-gomp` wheel's oneDNN). Entry points call `prepare()`
at start (one log line: built or cached, and how long it took); `status()` says
whether the handlers are in use and, if not, why; `SRGAN_JAX_ONEDNN=0` turns
them off. Without them XLA's own convolutions run: same results, slower.
"""

import ctypes
import functools
import os
import threading

import jax
import jax.numpy as jnp
import numpy as np
from absl import logging
from jax import lax
from jax.extend import core as jex_core
from jax.interpreters import ad, batching, mlir

from srgan_jax.kernels import onednn_build

_BF16 = onednn_build.BF16
BF16_ISAS = onednn_build.BF16_ISAS
_NHWC = ('NHWC', 'HWIO', 'NHWC')
_lock = threading.Lock()
_state: dict = {}  # 'ok': bool, 'why': str, 'lib': the loaded library; set once per process


def status() -> tuple[bool, str]:
  """(in use, why): builds and registers the handlers on the first call in a process."""
  with _lock:
    if not _state:
      _state['ok'], _state['why'], _state['lib'] = onednn_build.load()
      log = logging.info if _state['ok'] or 'SRGAN_JAX_ONEDNN' in _state['why'] else logging.warning
      log(
        'XLA:CPU convolutions: %s',
        _state['why'] if _state['ok'] else f"XLA's own (slower): {_state['why']}",
      )
    return _state['ok'], _state['why']


def prepare() -> str:
  """Builds or loads the handlers now, where a program starts (one log line), not at its first trace.

  Returns the log line's text. Nothing to do (and nothing logged) off CPU or on several devices,
  where they are not used.
  """
  if jax.default_backend() != 'cpu':
    return f'not used on {jax.default_backend()}'
  if jax.device_count() != 1:
    return f'not used on {jax.device_count()} devices'
  ok, why = status()
  return why if ok else f"XLA's own (slower): {why}"


def isa() -> str:
  """The instruction set oneDNN's kernels use here ('avx512_core_amx', ...); '' without them."""
  return _state['lib'].SrganConvIsa().decode() if status()[0] else ''


def library() -> ctypes.CDLL:
  """The loaded handler library (after `status()` says they are in use)."""
  return _state['lib']


def cache_info() -> tuple[int, int]:
  """(primitives cached, capacity) of the handlers' LRU cache."""
  size, capacity = ctypes.c_int64(), ctypes.c_int64()
  _state['lib'].SrganConvCacheInfo(ctypes.byref(size), ctypes.byref(capacity))
  return size.value, capacity.value


def set_cache_capacity(capacity: int) -> None:
  _state['lib'].SrganConvSetCacheCapacity(int(capacity))


def applies(x, w) -> bool:
  """Whether `conv` takes a plain NHWC/HWIO conv (`fast_conv` checks that): float32 or
  bfloat16 (both operands alike) on one device."""
  return (
    jax.device_count() == 1
    and x.dtype == w.dtype
    and x.dtype in (jnp.float32, jnp.bfloat16)
    and status()[0]
  )


@functools.lru_cache(maxsize=4096)
def _probe(geometry: tuple[int, ...]) -> tuple[bool, str]:
  """(built, oneDNN's three implementations or why not) of a geometry (+ bf16 flag); builds them."""
  why = ctypes.create_string_buffer(512)
  built = _state['lib'].SrganConvProbe((ctypes.c_int64 * 16)(*geometry), why, len(why)) == 0
  return built, why.value.decode(errors='replace')


@functools.lru_cache(maxsize=4096)
def _rejected(geometry: tuple[int, ...]) -> str:
  """Why oneDNN cannot build a float32 geometry's three primitives ('' if it can)."""
  built, reason = _probe((*geometry, 0))
  if built:
    return ''
  logging.warning(
    "oneDNN rejects the convolution %s (%s): XLA's convolution runs it.",
    dict(zip('n h w c kh kw o ho wo sh sw pt pb pl pr'.split(), geometry)),
    reason,
  )
  return reason


@functools.lru_cache(maxsize=4096)
def _bf16_not_native(geometry: tuple[int, ...]) -> str:
  """Why a bfloat16 geometry runs as float32 on oneDNN ('' where its bf16 kernels take it)."""
  if os.environ.get('SRGAN_JAX_ONEDNN_BF16', '1') == '0':
    reason = 'turned off by SRGAN_JAX_ONEDNN_BF16=0'
  elif isa() not in BF16_ISAS:
    reason = f'this CPU has no bfloat16 dot products (oneDNN ISA {isa()})'
  else:
    built, impls = _probe((*geometry, 1))
    if built and not any(i.startswith('ref') for i in impls.split(';')):
      return ''
    reason = f'oneDNN has no bf16 kernel for {geometry} ({impls})'
  _say_once(
    f'bfloat16 convolutions run as float32 on oneDNN (cast in and out): {reason}. '
    'Faster than XLA bf16 or emulated bf16.'
  )
  return reason


@functools.lru_cache(maxsize=None)
def _say_once(message: str) -> None:
  logging.warning('%s', message)


# ----------------------------------------------------------------------------
# The three convolutions as primitives: forward y = F(x, w), input gradient
# dx = D(dy, w), kernel gradient dw = W(x, dy). With T(x, w, dy) = <F(x, w), dy>
# = <x, D(dy, w)> = <w, W(x, dy)>, each is bilinear and the transposes are
# members of the family, so every order of differentiation stays on oneDNN.


def _geometry(x_shape, w_shape, y_shape, strides, pads) -> tuple[int, ...]:
  (pt, pb), (pl, pr) = pads
  n, h, wd, c = x_shape
  kh, kw, _, o = w_shape
  return (n, h, wd, c, kh, kw, o, y_shape[1], y_shape[2], *strides, pt, pb, pl, pr)


def _y_shape(x_shape, w_shape, strides, pads):
  return lax.conv_general_shape_tuple(x_shape, w_shape, strides, pads, _NHWC)


def _lax_fwd(x, w, strides, pads):
  return lax.conv_general_dilated(x, w, strides, pads, dimension_numbers=_NHWC)


def _ffi(target, out_shape, a, b, strides, pads):
  """The handler `target` on a and b (float32, or bfloat16: its Bf16 twin), out_shape in their dtype."""
  (pt, pb), (pl, pr) = pads
  i = lambda v: np.int64(v)
  name = target + (_BF16 if a.dtype == jnp.bfloat16 else '')
  return jax.ffi.ffi_call(name, jax.ShapeDtypeStruct(out_shape, a.dtype))(
    a, b, sh=i(strides[0]), sw=i(strides[1]), pt=i(pt), pb=i(pb), pl=i(pl), pr=i(pr)
  )


def _onednn(target, out_shape, a, b, x_shape, w_shape, strides, pads, lax_only):
  """The handler's result, or None where XLA's convolution must run it. bfloat16 without
  native kernels runs as float32 on oneDNN (cast in and out)."""
  if lax_only or not _state.get('ok', False):
    return None
  geometry = _geometry(x_shape, w_shape, _y_shape(x_shape, w_shape, strides, pads), strides, pads)
  if _rejected(geometry):
    return None
  if a.dtype == jnp.bfloat16 and _bf16_not_native(geometry):
    f32 = lambda v: v.astype(jnp.float32)
    return _ffi(target, out_shape, f32(a), f32(b), strides, pads).astype(a.dtype)
  return _ffi(target, out_shape, a, b, strides, pads)


def _fwd_impl(x, w, *, strides, pads, lax_only=False):
  y_shape = _y_shape(x.shape, w.shape, strides, pads)
  y = _onednn('SrganConvFwd', y_shape, x, w, x.shape, w.shape, strides, pads, lax_only)
  return _lax_fwd(x, w, strides, pads) if y is None else y


def _bwd_data_impl(dy, w, *, strides, pads, x_shape, lax_only=False):
  dx = _onednn('SrganConvBwdData', x_shape, dy, w, x_shape, w.shape, strides, pads, lax_only)
  if dx is not None:
    return dx
  return jax.vjp(lambda x: _lax_fwd(x, w, strides, pads), jnp.zeros(x_shape, dy.dtype))[1](dy)[0]


def _bwd_weights_impl(x, dy, *, strides, pads, w_shape, lax_only=False):
  dw = _onednn('SrganConvBwdWeights', w_shape, x, dy, x.shape, w_shape, strides, pads, lax_only)
  if dw is not None:
    return dw
  return jax.vjp(lambda w: _lax_fwd(x, w, strides, pads), jnp.zeros(w_shape, x.dtype))[1](dy)[0]


fwd_p = jex_core.Primitive('srgan_onednn_conv_fwd')
bwd_data_p = jex_core.Primitive('srgan_onednn_conv_bwd_data')
bwd_weights_p = jex_core.Primitive('srgan_onednn_conv_bwd_weights')

_aval = lambda shape, dtype: jax.core.ShapedArray(tuple(shape), dtype)
fwd_p.def_abstract_eval(
  lambda x, w, *, strides, pads: _aval(_y_shape(x.shape, w.shape, strides, pads), x.dtype)
)
bwd_data_p.def_abstract_eval(lambda dy, w, *, strides, pads, x_shape: _aval(x_shape, dy.dtype))
bwd_weights_p.def_abstract_eval(lambda x, dy, *, strides, pads, w_shape: _aval(w_shape, x.dtype))

for _p, _impl in (
  (fwd_p, _fwd_impl),
  (bwd_data_p, _bwd_data_impl),
  (bwd_weights_p, _bwd_weights_impl),
):
  _p.def_impl(_impl)
  mlir.register_lowering(_p, mlir.lower_fun(_impl, multiple_results=False), platform='cpu')
  # Elsewhere (fast_conv only routes CPU convolutions here): XLA's convolution.
  mlir.register_lowering(
    _p, mlir.lower_fun(functools.partial(_impl, lax_only=True), multiple_results=False)
  )

# Transposes: F -> (D, W); D(dy, w) -> (F, W); W(x, dy) -> (D, F).
ad.defbilinear(
  fwd_p,
  lambda ct, x, w, *, strides, pads: bwd_data_p.bind(
    ct, w, strides=strides, pads=pads, x_shape=tuple(x.aval.shape)
  ),
  lambda ct, x, w, *, strides, pads: bwd_weights_p.bind(
    x, ct, strides=strides, pads=pads, w_shape=tuple(w.aval.shape)
  ),
)
ad.defbilinear(
  bwd_data_p,
  lambda ct, dy, w, *, strides, pads, x_shape: fwd_p.bind(ct, w, strides=strides, pads=pads),
  lambda ct, dy, w, *, strides, pads, x_shape: bwd_weights_p.bind(
    ct, dy, strides=strides, pads=pads, w_shape=tuple(w.aval.shape)
  ),
)
ad.defbilinear(
  bwd_weights_p,
  lambda ct, x, dy, *, strides, pads, w_shape: bwd_data_p.bind(
    dy, ct, strides=strides, pads=pads, x_shape=tuple(x.aval.shape)
  ),
  lambda ct, x, dy, *, strides, pads, w_shape: fwd_p.bind(x, ct, strides=strides, pads=pads),
)


def _batch(prim, args, dims, **params):
  """vmap: a batched activation with an unbatched kernel folds into N; anything else maps."""
  (a, b), (da, db) = args, dims
  if prim is not bwd_weights_p and da is not None and db is None:
    a = jnp.moveaxis(a, da, 0)
    k, n = a.shape[:2]
    if prim is bwd_data_p:
      params = dict(params, x_shape=(k * n, *params['x_shape'][1:]))
    out = prim.bind(a.reshape(k * n, *a.shape[2:]), b, **params)
    return out.reshape(k, n, *out.shape[1:]), 0
  a = a if da is None else jnp.moveaxis(a, da, 0)
  b = b if db is None else jnp.moveaxis(b, db, 0)
  mapped = tuple(v for v, d in ((a, da), (b, db)) if d is not None)

  def one(slices):
    it = iter(slices)
    return prim.bind(next(it) if da is not None else a, next(it) if db is not None else b, **params)

  return lax.map(one, mapped), 0


for _p in (fwd_p, bwd_data_p, bwd_weights_p):
  batching.primitive_batchers[_p] = functools.partial(_batch, _p)


def conv(x, w, strides, pads):
  """lax.conv_general_dilated(x, w, strides, pads, dimension_numbers=('NHWC', 'HWIO', 'NHWC'))."""
  return fwd_p.bind(
    x, w, strides=tuple(int(s) for s in strides), pads=tuple((int(lo), int(hi)) for lo, hi in pads)
  )


# ----------------------------------------------------------------------------
# A convolution with its bias, a residual sum and PReLU fused into one oneDNN call
# (post-ops), so each map is written once instead of once per elementwise pass: the
# fused inference generator, and VGG's conv + bias + ReLU (fast_conv.conv_bias_relu
# gives that one its gradient; conv_fused itself has none).

RESIDUAL, PRELU = 1, 2  # csrc/onednn_conv.cc's Post flags


@functools.lru_cache(maxsize=4096)
def _fused_rejected(geometry: tuple[int, ...]) -> str:
  """Why oneDNN has no fast fused kernel for geometry (+ bf16, post) ('' where it has)."""
  why = ctypes.create_string_buffer(512)
  built = _state['lib'].SrganConvFusedProbe((ctypes.c_int64 * 17)(*geometry), why, len(why)) == 0
  impl = why.value.decode(errors='replace')
  if built and not impl.startswith('ref'):
    return ''
  reason = impl if not built else f'only its reference kernel ({impl})'
  logging.warning(
    'oneDNN has no fused convolution for %s (%s): separate passes run it.', geometry, reason
  )
  return reason or 'rejected'


def fused_enabled() -> bool:
  """False where SRGAN_JAX_ONEDNN_FUSED=0 turns the fused convolutions off (inference, VGG)."""
  return os.environ.get('SRGAN_JAX_ONEDNN_FUSED', '1') != '0'


def fused_applies(x, w, strides=(1, 1), pads=((0, 0), (0, 0)), post: int = 0) -> bool:
  """Whether `conv_fused` takes this conv on oneDNN (else it composes lax ops, same values)."""
  if not (fused_enabled() and jax.default_backend() == 'cpu' and applies(x, w)):
    return False
  y_shape = _y_shape(x.shape, w.shape, strides, pads)
  geometry = _geometry(x.shape, w.shape, y_shape, strides, pads)
  if _rejected(geometry):
    return False
  bf16 = x.dtype == jnp.bfloat16
  if bf16 and _bf16_not_native(geometry):
    return False
  return not _fused_rejected((*geometry, int(bf16), int(post)))


def _fused_lax(x, w, bias, residual, slope, strides, pads):
  """What the fused handler computes, as separate passes (float32 sums, one rounding)."""
  y = conv(x, w, strides, pads) if applies(x, w) else _lax_fwd(x, w, strides, pads)
  y = y.astype(jnp.float32) + bias.astype(jnp.float32)
  if residual is not None:
    y = y + residual.astype(jnp.float32)
  if slope is not None:
    y = jnp.where(y >= 0, y, slope.astype(jnp.float32) * y)
  return y.astype(x.dtype)


def conv_fused(x, w, bias, residual=None, slope=None, strides=(1, 1), pads=((0, 0), (0, 0))):
  """prelu(conv(x, w) + bias [+ residual]) for inference: x and w NHWC / HWIO in one dtype (float32
  or bfloat16), bias float32 [O], residual of the output's shape and dtype, slope a float32 scalar
  (None: no PReLU). On oneDNN (one call, one rounding) where `fused_applies`, else the same sums
  as separate passes. No gradient of its own (see fast_conv.conv_bias_relu)."""
  strides = tuple(int(s) for s in strides)
  pads = tuple((int(lo), int(hi)) for lo, hi in pads)
  post = (RESIDUAL if residual is not None else 0) | (PRELU if slope is not None else 0)
  if not fused_applies(x, w, strides, pads, post):
    return _fused_lax(x, w, bias, residual, slope, strides, pads)
  (pt, pb), (pl, pr) = pads
  i = lambda v: np.int64(v)
  y_shape = _y_shape(x.shape, w.shape, strides, pads)
  r = residual if residual is not None else jnp.zeros((1, 1, 1, 1), x.dtype)
  s = jnp.reshape(slope if slope is not None else 0.0, (1,)).astype(jnp.float32)
  name = 'SrganConvFused' + (_BF16 if x.dtype == jnp.bfloat16 else '')
  out = jax.ShapeDtypeStruct(y_shape, x.dtype)
  return jax.ffi.ffi_call(name, out, vmap_method='sequential')(
    x,
    w,
    bias.astype(jnp.float32),
    r,
    s,
    sh=i(strides[0]),
    sw=i(strides[1]),
    pt=i(pt),
    pb=i(pb),
    pl=i(pl),
    pr=i(pr),
    post=i(post),
  )
