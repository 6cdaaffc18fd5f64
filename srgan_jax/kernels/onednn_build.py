"""Building, caching and loading the FFI handlers of `csrc/` (oneDNN convolutions and BatchNorm, bf16 gradient sums).

The handlers are compiled with the system C++ compiler (`CXX`, default g++)
against the oneDNN of the `onednn-devel-cpu-gomp` wheel (x86-64 Linux; a
dependency of this package there) and cached under `$SRGAN_JAX_CACHE` (default
~/.cache/srgan_jax, else a per-user dir in the temp dir; a directory or library
that another user owns or can write is refused). The key of a cached library
follows the source, the compiler and its flags, JAX's version and the oneDNN
wheel's version header and library file. `load()` builds (or finds) the library
and registers its FFI targets; `onednn_conv` calls it once per process.
"""

import ctypes
import hashlib
import os
import pathlib
import socket
import subprocess
import sys
import tempfile
import time

import jax

from srgan_jax.common import cache

_CSRC = pathlib.Path(__file__).parent / 'csrc'
_SOURCES = (_CSRC / 'onednn_conv.cc', _CSRC / 'onednn_bn.cc', _CSRC / 'bf16_grads.cc')
_HEADERS = (_CSRC / 'onednn_runtime.h',)
TARGETS = (
  'SrganConvFwd',
  'SrganConvBwdData',
  'SrganConvBwdWeights',
  'SrganConvFused',
  'SrganBnFwd',
  'SrganBnBwd',
)
BF16 = 'Bf16'  # the bfloat16 handlers: SrganConvFwdBf16, ...
BF16_ONLY = ('SrganBiasGradBf16', 'SrganPreluBwdBf16', 'SrganLeakyFwdBf16')  # csrc/bf16_grads.cc
# oneDNN ISAs with bfloat16 dot products (AVX-512 BF16's vdpbf16ps, AMX's tiles).
BF16_ISAS = ('avx512_core_bf16', 'avx512_core_fp16', 'avx512_core_amx', 'avx512_core_amx_fp16')


def onednn_prefix() -> pathlib.Path | None:
  """The install prefix holding include/oneapi/dnnl/dnnl.hpp and lib/libdnnl.so."""
  for root in (os.environ.get('DNNL_ROOT'), sys.prefix, sys.base_prefix):
    if (
      root
      and (pathlib.Path(root) / 'include/oneapi/dnnl/dnnl.hpp').is_file()
      and any((pathlib.Path(root) / 'lib').glob('libdnnl.so*'))
    ):
      return pathlib.Path(root)
  return None


def cache_dir() -> pathlib.Path:
  """cache.private_dir(): created 0700; one owned by another user or writable by others is refused."""
  try:
    return cache.private_dir()
  except cache.CacheError as e:
    raise RuntimeError(f'oneDNN handlers: {e}') from None


def _onednn_identity(prefix: pathlib.Path) -> bytes:
  """What changes when the oneDNN wheel is replaced: its version header and its library file."""
  version = (prefix / 'include/oneapi/dnnl/dnnl_version.h').read_bytes()
  lib = sorted((prefix / 'lib').glob('libdnnl.so*'))[0].resolve()
  st = lib.stat()
  return version + repr((str(lib), st.st_size, st.st_mtime_ns)).encode()


_TMP_PREFIX = '.build-'


def remove_dead_builds(cache: pathlib.Path) -> None:
  """Deletes the temp files of builds on this host whose process is gone (killed mid-build)."""
  host = socket.gethostname()
  for p in cache.glob(f'{_TMP_PREFIX}{host}-*'):
    try:
      pid = int(p.name[len(f'{_TMP_PREFIX}{host}-') :].split('-')[0])
      os.kill(pid, 0)
    except ProcessLookupError:  # no such process: its build was killed
      p.unlink(missing_ok=True)
    except (ValueError, PermissionError, OSError):
      continue


def _build_plan() -> tuple[list[str], pathlib.Path]:
  """(the compiler command less its output path, the library it makes in the cache)."""
  prefix = onednn_prefix()
  if prefix is None:
    raise RuntimeError(
      "oneDNN headers/library not found: pip install 'onednn-devel-cpu-gomp==2023.2.0' "
      '(x86-64 Linux) or set DNNL_ROOT'
    )
  cxx = os.environ.get('CXX', 'g++')
  flags = [
    '-O2',
    '-std=c++17',
    '-shared',
    '-fPIC',
    '-fopenmp',
    '-pthread',
    '-w',
    f'-I{jax.ffi.include_dir()}',
    f'-I{prefix / "include"}',
    f'-I{_CSRC}',
  ]
  libs = [f'-L{prefix / "lib"}', f'-Wl,-rpath,{prefix / "lib"}', '-ldnnl']
  key = hashlib.sha256(
    b''.join(p.read_bytes() for p in (*_SOURCES, *_HEADERS))
    + repr((cxx, flags, libs, jax.__version__)).encode()
    + _onednn_identity(prefix)
  )
  return [
    cxx,
    *flags,
    *(str(p) for p in _SOURCES),
    *libs,
  ], cache_dir() / f'libsrgan_onednn_{key.hexdigest()[:16]}.so'


def library_path() -> pathlib.Path:
  return _build_plan()[1]


def compile_library() -> tuple[pathlib.Path, bool]:
  """(the library, whether it was built now) for this source, compiler, JAX and oneDNN."""
  command, out = _build_plan()
  if out.is_file():
    return out, False
  cache, cxx = out.parent, command[0]
  remove_dead_builds(cache)
  fd, tmp = tempfile.mkstemp(
    prefix=f'{_TMP_PREFIX}{socket.gethostname()}-{os.getpid()}-', suffix='.so', dir=cache
  )
  os.close(fd)
  try:
    try:
      proc = subprocess.run([*command, '-o', tmp], capture_output=True, text=True, timeout=600)
    except FileNotFoundError:
      raise RuntimeError(f'C++ compiler {cxx!r} not found: install g++ or set CXX') from None
    if proc.returncode:
      first = next((l for l in proc.stderr.splitlines() if 'error' in l), proc.stderr.strip()[:300])
      raise RuntimeError(f'{cxx} failed to build {_CSRC}: {first}')
    os.chmod(tmp, 0o700)
    os.replace(tmp, out)  # atomic: concurrent processes never load a partial library
  finally:
    if os.path.exists(tmp):
      os.remove(tmp)
  return out, True


def load() -> tuple[bool, str, ctypes.CDLL | None]:
  if os.environ.get('SRGAN_JAX_ONEDNN', '1') == '0':
    return False, 'turned off by SRGAN_JAX_ONEDNN=0', None
  t0 = time.time()
  try:
    path, built = compile_library()
    why = cache.untrusted(path, 'file')
    if why:
      raise RuntimeError(f'not loading {why}; delete it')
    lib = ctypes.CDLL(str(path))
    for name in (*TARGETS, *(t + BF16 for t in TARGETS), *BF16_ONLY):
      jax.ffi.register_ffi_target(name, jax.ffi.pycapsule(getattr(lib, name)), platform='cpu')
    lib.SrganConvProbe.argtypes = [ctypes.POINTER(ctypes.c_int64), ctypes.c_char_p, ctypes.c_int64]
    lib.SrganConvFusedProbe.argtypes = lib.SrganConvProbe.argtypes
    lib.SrganConvCacheInfo.argtypes = [ctypes.POINTER(ctypes.c_int64)] * 2
    lib.SrganConvSetCacheCapacity.argtypes = [ctypes.c_int64]
    lib.SrganBnProbe.argtypes = [
      ctypes.POINTER(ctypes.c_int64),
      ctypes.c_float,
      ctypes.c_char_p,
      ctypes.c_int64,
    ]
    lib.SrganConvIsa.restype = ctypes.c_char_p
    threads, isa = lib.SrganConvThreads(), lib.SrganConvIsa().decode()
  except (OSError, RuntimeError, ValueError, subprocess.SubprocessError, AttributeError) as e:
    return False, str(e).splitlines()[0], None
  how = f'built in {time.time() - t0:.1f}s' if built else 'cached'
  return (
    True,
    f'oneDNN convolutions from {path} ({how}; OpenMP teams of {threads} threads, at most two; '
    f'ISA {isa}, bfloat16 {"native" if isa in BF16_ISAS else "as float32"})',
    lib,
  )
