"""2-D float32 convolutions on XLA:CPU through oneDNN, as XLA FFI custom calls.

XLA:CPU runs convolutions on Eigen or YNNPACK kernels, 1.2-2.5x slower than
oneDNN's on the paper's shapes (README, Performance); jaxlib ships oneDNN's
conv kernels but does not route convolutions to them. `csrc/onednn_conv.cc`
binds oneDNN's forward, backward-data and backward-weights convolutions
(NHWC activations, HWIO kernels, as Flax) as three FFI handlers; `conv` is a
`jax.custom_vjp` over them, the same function as `lax.conv_general_dilated`
(tested to float32 rounding).

The handlers are compiled on first use with the system C++ compiler (`CXX`,
default g++) against the oneDNN of the `onednn-devel-cpu-gomp` wheel (x86-64
Linux; a dependency of this package there) and cached under
`$SRGAN_JAX_CACHE` (default ~/.cache/srgan_jax, else a temp dir). `status()`
says whether they are in use and, if not, why; `SRGAN_JAX_ONEDNN=0` turns
them off. Without them XLA's own convolutions run: same results, slower.
"""

import ctypes
import functools
import hashlib
import os
import pathlib
import subprocess
import sys
import tempfile
import threading

import jax
import jax.numpy as jnp
import numpy as np
from absl import logging
from jax import lax

_SOURCE = pathlib.Path(__file__).parent / 'csrc' / 'onednn_conv.cc'
_TARGETS = ('SrganConvFwd', 'SrganConvBwdData', 'SrganConvBwdWeights')
_NHWC = ('NHWC', 'HWIO', 'NHWC')
_lock = threading.Lock()
_state: dict = {}  # 'ok': bool, 'why': str, set once per process


def _onednn_prefix() -> pathlib.Path | None:
  """The install prefix holding include/oneapi/dnnl/dnnl.hpp and lib/libdnnl.so."""
  for root in (os.environ.get('DNNL_ROOT'), sys.prefix, sys.base_prefix):
    if root and (pathlib.Path(root) / 'include/oneapi/dnnl/dnnl.hpp').is_file() and any(
        (pathlib.Path(root) / 'lib').glob('libdnnl.so*')):
      return pathlib.Path(root)
  return None


def _cache_dir() -> pathlib.Path:
  """$SRGAN_JAX_CACHE, else $XDG_CACHE_HOME/srgan_jax (~/.cache), else a per-user temp dir."""
  if os.environ.get('SRGAN_JAX_CACHE'):
    d = pathlib.Path(os.environ['SRGAN_JAX_CACHE'])
    d.mkdir(parents=True, exist_ok=True)
    return d
  xdg = os.environ.get('XDG_CACHE_HOME') or pathlib.Path.home() / '.cache'
  for d in (pathlib.Path(xdg) / 'srgan_jax', pathlib.Path(tempfile.gettempdir()) / f'srgan_jax-{os.getuid()}'):
    try:
      d.mkdir(parents=True, exist_ok=True)
    except OSError:
      continue
    if os.access(d, os.W_OK):
      return d
  raise RuntimeError('no writable cache directory for the oneDNN handlers: set SRGAN_JAX_CACHE')


def _compile() -> pathlib.Path:
  prefix = _onednn_prefix()
  if prefix is None:
    raise RuntimeError("oneDNN headers/library not found: pip install 'onednn-devel-cpu-gomp==2023.2.0' "
                       '(x86-64 Linux) or set DNNL_ROOT')
  cxx = os.environ.get('CXX', 'g++')
  flags = ['-O2', '-std=c++17', '-shared', '-fPIC', '-w', f'-I{jax.ffi.include_dir()}',
           f'-I{prefix / "include"}']
  libs = [f'-L{prefix / "lib"}', f'-Wl,-rpath,{prefix / "lib"}', '-ldnnl']
  key = hashlib.sha256(_SOURCE.read_bytes() + repr((cxx, flags, libs, jax.__version__)).encode())
  cache = _cache_dir()
  out = cache / f'libsrgan_onednn_{key.hexdigest()[:16]}.so'
  if not out.is_file():
    fd, tmp = tempfile.mkstemp(suffix='.so', dir=cache)
    os.close(fd)
    try:
      try:
        proc = subprocess.run([cxx, *flags, str(_SOURCE), '-o', tmp, *libs], capture_output=True,
                              text=True, timeout=600)
      except FileNotFoundError:
        raise RuntimeError(f'C++ compiler {cxx!r} not found: install g++ or set CXX') from None
      if proc.returncode:
        first = next((l for l in proc.stderr.splitlines() if 'error' in l), proc.stderr.strip()[:300])
        raise RuntimeError(f'{cxx} failed to build {_SOURCE.name}: {first}')
      os.replace(tmp, out)  # atomic: concurrent processes never load a partial library
    finally:
      if os.path.exists(tmp):
        os.remove(tmp)
  return out


def _load() -> tuple[bool, str]:
  if os.environ.get('SRGAN_JAX_ONEDNN', '1') == '0':
    return False, 'turned off by SRGAN_JAX_ONEDNN=0'
  try:
    path = _compile()
    lib = ctypes.CDLL(str(path))
    for name in _TARGETS:
      jax.ffi.register_ffi_target(name, jax.ffi.pycapsule(getattr(lib, name)), platform='cpu')
  except (OSError, RuntimeError, ValueError, subprocess.SubprocessError, AttributeError) as e:
    return False, str(e).splitlines()[0]
  return True, f'oneDNN convolutions from {path}'


def status() -> tuple[bool, str]:
  """(in use, why): builds and registers the handlers on the first call in a process."""
  with _lock:
    if not _state:
      _state['ok'], _state['why'] = _load()
      log = logging.info if _state['ok'] or 'SRGAN_JAX_ONEDNN' in _state['why'] else logging.warning
      log('XLA:CPU convolutions: %s', _state['why'] if _state['ok'] else
          f"XLA's own (slower): {_state['why']}")
    return _state['ok'], _state['why']


def applies(x, w) -> bool:
  """Whether `conv` takes a plain NHWC/HWIO conv (`fast_conv` checks that): float32 on one device."""
  return (jax.device_count() == 1 and x.dtype == jnp.float32 and w.dtype == jnp.float32
          and status()[0])


def _call(target, out_shape, a, b, strides, pads):
  (pt, pb), (pl, pr) = pads
  i = lambda v: np.int64(v)
  return jax.ffi.ffi_call(target, jax.ShapeDtypeStruct(out_shape, jnp.float32))(
      a, b, sh=i(strides[0]), sw=i(strides[1]), pt=i(pt), pb=i(pb), pl=i(pl), pr=i(pr))


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3))
def conv(x, w, strides, pads):
  """lax.conv_general_dilated(x, w, strides, pads, dimension_numbers=('NHWC', 'HWIO', 'NHWC'))."""
  y_shape = lax.conv_general_shape_tuple(x.shape, w.shape, strides, pads, _NHWC)
  return _call('SrganConvFwd', y_shape, x, w, strides, pads)


def _conv_fwd(x, w, strides, pads):
  return conv(x, w, strides, pads), (x, w)


def _conv_bwd(strides, pads, res, dy):
  x, w = res
  dx = _call('SrganConvBwdData', x.shape, dy, w, strides, pads)  # dropped by XLA when unused
  dw = _call('SrganConvBwdWeights', w.shape, x, dy, strides, pads)
  return dx, dw


conv.defvjp(_conv_fwd, _conv_bwd)
