"""oneDNN convolutions on XLA:CPU compute lax's convolution, forward and both gradients.

And the extension behaves: one OpenMP team whatever calls it, a bounded primitive
cache, a build cache that follows the oneDNN wheel and cleans up after killed
builds, no library loaded from a directory or file another user could write,
checked buffer ranks and shapes, XLA's convolution for a geometry oneDNN
rejects, and a build at program start rather than inside the first trace.
"""

import os
import pathlib
import platform
import re
import signal
import socket
import stat
import subprocess
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

from srgan_jax.training import train_states
from srgan_jax.training import update_step
from srgan_jax.kernels import fast_conv, onednn_build, onednn_conv
from tests.helpers import tiny_config

NHWC = ('NHWC', 'HWIO', 'NHWC')
X86_LINUX = platform.system() == 'Linux' and platform.machine() == 'x86_64'


def test_the_handlers_build_on_x86_64_linux():
  if not X86_LINUX:
    pytest.skip('onednn-devel-cpu-gomp wheels exist for x86-64 Linux only')
  ok, why = onednn_conv.status()
  assert ok, why


needs_onednn = pytest.mark.skipif(
  not onednn_conv.status()[0], reason=f'oneDNN handlers unavailable: {onednn_conv.status()[1]}'
)


def _rel(a, b):
  return float(jnp.linalg.norm(a - b) / jnp.linalg.norm(b))


@needs_onednn
@pytest.mark.parametrize(
  'n,h,w,c,kh,kw,o,strides,padding',
  [
    (2, 9, 7, 5, 3, 3, 4, (1, 1), 'SAME'),  # odd sizes
    (2, 10, 10, 3, 9, 9, 6, (1, 1), 'SAME'),  # G's k9 input conv
    (1, 11, 8, 4, 3, 3, 5, (2, 2), 'SAME'),  # D's k3s2: pads (0, 1)
    (2, 8, 8, 4, 3, 3, 4, (2, 1), ((1, 0), (2, 1))),  # unequal strides, asymmetric pads
    (2, 6, 6, 3, 1, 1, 5, (1, 1), 'VALID'),
    (1, 12, 12, 4, 5, 4, 3, (3, 2), 'VALID'),
  ],
)
def test_forward_and_gradients_equal_lax(n, h, w, c, kh, kw, o, strides, padding):
  rng = np.random.default_rng(h * w + kh)
  x = jnp.asarray(rng.standard_normal((n, h, w, c)), jnp.float32)
  k = jnp.asarray(rng.standard_normal((kh, kw, c, o)), jnp.float32)
  ref = lambda x, k: lax.conv_general_dilated(x, k, strides, padding, dimension_numbers=NHWC)
  ours = lambda x, k: fast_conv.conv_general_dilated(x, k, strides, padding, dimension_numbers=NHWC)
  assert 'SrganConvFwd' in jax.jit(ours).lower(x, k).as_text()
  y_ref, vjp_ref = jax.vjp(ref, x, k)
  y, vjp = jax.jit(lambda x, k: jax.vjp(ours, x, k))(x, k)
  assert y.shape == y_ref.shape
  assert _rel(y, y_ref) < 1e-5
  dy = jnp.asarray(rng.standard_normal(y.shape), jnp.float32)
  for got, want in zip(jax.jit(vjp)(dy), vjp_ref(dy)):
    assert _rel(got, want) < 1e-5


@needs_onednn
@pytest.mark.slow
@pytest.mark.parametrize('dtype', ['float32', 'bfloat16'])
def test_every_convolution_of_an_srgan_step_runs_through_onednn(dtype):
  config = tiny_config('srgan', **{'loss.content': 'vgg22', 'model.compute_dtype': dtype})
  g_state, d_state = train_states.create_train_states(config, jax.random.key(0))
  from srgan_jax.nets import vgg

  vgg_params = vgg.VGG19(taps=('relu2_2',)).init(jax.random.key(1), jnp.zeros((1, 24, 24, 3)))[
    'params'
  ]
  step = update_step.make_jitted_step(
    config, update_step.make_mesh(), update_step.make_content_loss(config, 'torch')
  )
  batch = {'hr': jnp.zeros((4, 24, 24, 3), jnp.uint8)}
  text = step.lower(g_state, d_state, batch, vgg_params).as_text()
  assert 'stablehlo.convolution' not in text  # G, D and VGG's phi alike
  native = dtype == 'bfloat16' and onednn_conv.isa() in onednn_conv.BF16_ISAS
  for target in ('SrganConvFwd', 'SrganConvBwdData', 'SrganConvBwdWeights'):
    assert target in text and (f'{target}Bf16' in text) == native


@pytest.mark.slow
@needs_onednn
def test_an_srgan_step_through_onednn_equals_one_through_lax(monkeypatch):
  config = tiny_config('srgan')
  hr = np.random.default_rng(0).integers(0, 256, (4, 24, 24, 3), dtype=np.uint8)
  results = []
  for use in (True, False):
    if not use:
      monkeypatch.setattr(onednn_conv, 'applies', lambda *a: False)
    g_state, d_state = train_states.create_train_states(config, jax.random.key(0))
    step = update_step.make_jitted_step(
      config, update_step.make_mesh(), update_step.make_content_loss(config)
    )
    text = step.lower(g_state, d_state, {'hr': jnp.asarray(hr)}, None).as_text()
    assert ('SrganConvFwd' in text) == use
    g_state, d_state, metrics = step(g_state, d_state, {'hr': jnp.asarray(hr)}, None)
    results.append(jax.device_get((g_state.params, d_state.params, metrics)))
  for a, b in zip(jax.tree.leaves(results[0]), jax.tree.leaves(results[1])):
    np.testing.assert_allclose(a, b, rtol=2e-4, atol=2e-5)


@pytest.mark.slow
@needs_onednn
def test_a_bf16_srgan_step_through_onednn_equals_one_through_xla(monkeypatch):
  config = tiny_config('srgan', **{'model.compute_dtype': 'bfloat16'})
  hr = np.random.default_rng(0).integers(0, 256, (4, 24, 24, 3), dtype=np.uint8)
  results = []
  for use in (True, False):
    if not use:
      monkeypatch.setattr(onednn_conv, 'applies', lambda *a: False)
    g_state, d_state = train_states.create_train_states(config, jax.random.key(0))
    step = update_step.make_jitted_step(
      config, update_step.make_mesh(), update_step.make_content_loss(config)
    )
    text = step.lower(g_state, d_state, {'hr': jnp.asarray(hr)}, None).as_text()
    assert ('SrganConvFwd' in text) == use and ('stablehlo.convolution' in text) != use
    g_state, d_state, metrics = step(g_state, d_state, {'hr': jnp.asarray(hr)}, None)
    results.append(jax.device_get((g_state.params, d_state.params, metrics)))
  for k in ('content_loss', 'adversarial_loss', 'd_loss', 'g_grad_norm'):
    np.testing.assert_allclose(results[0][2][k], results[1][2][k], rtol=2e-2)
  # float32 master weights after Adam's first step (~lr per weight, by the gradient's sign):
  # bf16 roundings flip the sign of a few tiny gradients, nothing more.
  ours, xla = (np.concatenate([np.ravel(p) for p in jax.tree.leaves(r[:2])]) for r in results)
  lr = config.optim.learning_rate
  assert ours.dtype == np.float32 and np.abs(ours - xla).max() <= 2 * lr * 1.001
  assert np.mean(np.abs(ours - xla) > lr / 2) < 0.03


def test_turned_off_or_without_a_compiler_it_says_why(monkeypatch, tmp_path):
  monkeypatch.setenv('SRGAN_JAX_ONEDNN', '0')
  assert onednn_build.load() == (False, 'turned off by SRGAN_JAX_ONEDNN=0', None)
  monkeypatch.delenv('SRGAN_JAX_ONEDNN')
  monkeypatch.setenv('SRGAN_JAX_CACHE', str(tmp_path))
  monkeypatch.setenv('CXX', str(tmp_path / 'no-such-compiler'))
  ok, why, _ = onednn_build.load()
  assert not ok
  if onednn_build.onednn_prefix() is not None:
    assert (
      why == f"C++ compiler '{tmp_path / 'no-such-compiler'}' not found: install g++ or set CXX"
    )
  else:
    assert 'oneDNN headers/library not found' in why
  assert list(tmp_path.iterdir()) == []  # no partial library left behind


BF16_GEOMETRIES = [
  (2, 9, 7, 5, 3, 3, 4, (1, 1), 'SAME'),  # odd sizes
  (2, 10, 10, 3, 9, 9, 16, (1, 1), 'SAME'),  # G's k9 input conv
  (1, 11, 8, 4, 3, 3, 5, (2, 2), 'SAME'),  # D's k3s2
  (2, 12, 12, 64, 3, 3, 64, (1, 1), 'SAME'),  # the residual trunk's k3n64s1
  (1, 12, 12, 4, 5, 4, 3, (3, 2), 'VALID'),
]


def _bf16_conv_against_lax(n, h, w, c, kh, kw, o, strides, padding):
  """(lowered text, [(ours, lax's) for y, dx, dk]) of one bf16 conv and its gradients."""
  rng = np.random.default_rng(h * w + kh)
  x = jnp.asarray(rng.standard_normal((n, h, w, c)), jnp.bfloat16)
  k = jnp.asarray(rng.standard_normal((kh, kw, c, o)) / np.sqrt(kh * kw * c), jnp.bfloat16)
  ref = lambda x, k: lax.conv_general_dilated(x, k, strides, padding, dimension_numbers=NHWC)
  ours = lambda x, k: fast_conv.conv_general_dilated(x, k, strides, padding, dimension_numbers=NHWC)
  loss = lambda x, k: jnp.sum(ours(x, k).astype(jnp.float32) ** 2)
  text = jax.jit(jax.value_and_grad(loss, (0, 1))).lower(x, k).as_text()
  y_ref, vjp_ref = jax.vjp(ref, x, k)
  y, vjp = jax.jit(lambda x, k: jax.vjp(ours, x, k))(x, k)
  dy = jnp.asarray(rng.standard_normal(y.shape), jnp.bfloat16)
  return text, [(y, y_ref), *zip(jax.jit(vjp)(dy), vjp_ref(dy))]


def _close_in_bf16(pairs):
  for got, want in pairs:
    assert got.dtype == want.dtype == jnp.bfloat16 and got.shape == want.shape
    got, want = got.astype(jnp.float32), want.astype(jnp.float32)
    assert _rel(got, want) < 8e-3  # a few bf16 roundings (2^-8 each) of float32 sums


@needs_onednn
@pytest.mark.parametrize('n,h,w,c,kh,kw,o,strides,padding', BF16_GEOMETRIES)
def test_bf16_forward_and_gradients_equal_lax_in_bf16(n, h, w, c, kh, kw, o, strides, padding):
  text, pairs = _bf16_conv_against_lax(n, h, w, c, kh, kw, o, strides, padding)
  native = onednn_conv.isa() in onednn_conv.BF16_ISAS
  for target in ('SrganConvFwd', 'SrganConvBwdData', 'SrganConvBwdWeights'):
    assert (target + 'Bf16' in text) == native, (target, onednn_conv.isa())
  assert 'stablehlo.convolution' not in text
  _close_in_bf16(pairs)


@needs_onednn
def test_bf16_without_native_kernels_runs_as_float32_on_onednn_saying_so_once(monkeypatch, caplog):
  monkeypatch.setenv('SRGAN_JAX_ONEDNN_BF16', '0')  # as on a CPU without bf16 dot products
  for cached in (onednn_conv._bf16_not_native, onednn_conv._say_once):
    cached.cache_clear()
  try:
    with caplog.at_level('WARNING'):
      for geometry in BF16_GEOMETRIES[:2]:
        text, pairs = _bf16_conv_against_lax(*geometry)
        assert 'SrganConvFwd' in text and 'Bf16' not in text
        assert 'stablehlo.convolution' not in text
        _close_in_bf16(pairs)
    said = [
      r.getMessage() for r in caplog.records if 'bfloat16 convolutions run as' in r.getMessage()
    ]
    assert len(said) == 1 and 'SRGAN_JAX_ONEDNN_BF16=0' in said[0], said
  finally:
    for cached in (onednn_conv._bf16_not_native, onednn_conv._say_once):
      cached.cache_clear()


def test_other_dtypes_stay_with_xla():
  x, k = jnp.zeros((1, 8, 8, 3), jnp.float16), jnp.zeros((3, 3, 3, 4), jnp.float16)
  assert not onednn_conv.applies(x, k)
  assert not onednn_conv.applies(x.astype(jnp.bfloat16), k.astype(jnp.float32))  # mixed
  text = (
    jax.jit(
      lambda x, k: fast_conv.conv_general_dilated(x, k, (1, 1), 'SAME', dimension_numbers=NHWC)
    )
    .lower(x, k)
    .as_text()
  )
  assert 'stablehlo.convolution' in text and 'SrganConv' not in text


def test_an_unwritable_cache_home_falls_back_to_a_temp_dir(monkeypatch, tmp_path):
  monkeypatch.delenv('SRGAN_JAX_CACHE', raising=False)
  blocker = tmp_path / 'not-a-dir'
  blocker.write_text('')
  monkeypatch.setenv('XDG_CACHE_HOME', str(blocker))  # mkdir under a file fails
  monkeypatch.setattr(onednn_build.tempfile, 'gettempdir', lambda: str(tmp_path))
  d = onednn_build.cache_dir()
  assert d.parent == tmp_path and d.name.startswith('srgan_jax-') and d.is_dir()
  monkeypatch.setenv('SRGAN_JAX_CACHE', str(tmp_path / 'mine'))
  assert onednn_build.cache_dir() == tmp_path / 'mine'


REPO = pathlib.Path(__file__).resolve().parents[1]
needs_onednn_wheel = pytest.mark.skipif(
  onednn_build.onednn_prefix() is None,
  reason='the onednn-devel-cpu-gomp wheel is x86-64 Linux only',
)


def test_the_temp_cache_dir_is_private_and_one_another_user_could_write_is_refused(
  monkeypatch, tmp_path
):
  monkeypatch.delenv('SRGAN_JAX_CACHE', raising=False)
  blocker = tmp_path / 'not-a-dir'
  blocker.write_text('')
  monkeypatch.setenv('XDG_CACHE_HOME', str(blocker))  # ~/.cache unusable: the temp dir fallback
  monkeypatch.setattr(onednn_build.tempfile, 'gettempdir', lambda: str(tmp_path))
  d = onednn_build.cache_dir()
  assert stat.S_IMODE(d.stat().st_mode) == 0o700
  d.chmod(0o777)  # anyone could plant a library there
  with pytest.raises(RuntimeError, match='writable by other users.*set SRGAN_JAX_CACHE'):
    onednn_build.cache_dir()
  d.chmod(0o700)
  # Another user (here: this one, seen from uid + 1) created the fallback dir first.
  uid = os.getuid()
  monkeypatch.setattr(onednn_build.os, 'getuid', lambda: uid + 1)
  with pytest.raises(RuntimeError, match=f'owned by uid {uid}, not by this user'):
    onednn_build.cache_dir()


@needs_onednn_wheel
def test_a_library_file_others_could_have_written_is_not_loaded(monkeypatch, tmp_path):
  monkeypatch.setenv('SRGAN_JAX_CACHE', str(tmp_path))
  planted = onednn_build.library_path()
  planted.write_bytes(b'not the library this source builds')
  planted.chmod(0o666)
  ok, why, lib = onednn_build.load()
  assert not ok and lib is None and 'writable by other users' in why, why


@needs_onednn_wheel
def test_the_build_cache_key_follows_the_onednn_wheel(monkeypatch, tmp_path):
  real = onednn_build.onednn_prefix()
  fake = tmp_path / 'prefix'
  (fake / 'include/oneapi/dnnl').mkdir(parents=True)
  (fake / 'lib').mkdir()
  for f in (real / 'include/oneapi/dnnl').iterdir():
    (fake / 'include/oneapi/dnnl' / f.name).symlink_to(f)
  lib = fake / 'lib' / 'libdnnl.so'
  lib.symlink_to(sorted((real / 'lib').glob('libdnnl.so*'))[0])
  monkeypatch.setenv('DNNL_ROOT', str(fake))
  monkeypatch.setenv('SRGAN_JAX_CACHE', str(tmp_path / 'cache'))
  paths = [onednn_build.library_path()]
  # The wheel upgraded in place: another version header ...
  version = fake / 'include/oneapi/dnnl/dnnl_version.h'
  text = version.read_text()
  version.unlink()
  version.write_text(text.replace('#define DNNL_VERSION_PATCH', '#define DNNL_VERSION_PATCH 9 //'))
  paths.append(onednn_build.library_path())
  # ... or another library file.
  other = tmp_path / 'libdnnl.so.other'
  other.write_bytes(b'another build')
  lib.unlink()
  lib.symlink_to(other)
  paths.append(onednn_build.library_path())
  assert len(set(paths)) == 3, paths


@pytest.mark.subprocess
@needs_onednn_wheel
def test_a_build_killed_midway_leaves_no_temp_file_after_the_next_build(monkeypatch, tmp_path):
  cache = tmp_path / 'cache'
  slow, failing = tmp_path / 'slow-cxx', tmp_path / 'failing-cxx'
  slow.write_text('#!/bin/sh\nsleep 120\n')
  failing.write_text('#!/bin/sh\necho "error: no" >&2\nexit 1\n')
  for f in (slow, failing):
    f.chmod(0o755)
  env = dict(os.environ, SRGAN_JAX_CACHE=str(cache), CXX=str(slow), JAX_PLATFORMS='cpu')
  proc = subprocess.Popen(
    [
      sys.executable,
      '-c',
      'from srgan_jax.kernels import onednn_build; onednn_build.compile_library()',
    ],
    cwd=REPO,
    env=env,
    start_new_session=True,
  )
  deadline = time.time() + 120
  while not (cache.is_dir() and list(cache.iterdir())):  # the build's temp file
    assert time.time() < deadline and proc.poll() is None, 'the build never started'
    time.sleep(0.05)
  os.killpg(proc.pid, signal.SIGKILL)  # the build process and its compiler
  proc.wait()
  assert list(cache.iterdir())  # what the killed build left
  monkeypatch.setenv('SRGAN_JAX_CACHE', str(cache))
  monkeypatch.setenv('CXX', str(failing))
  with pytest.raises(RuntimeError, match='failed to build'):
    onednn_build.compile_library()
  assert list(cache.iterdir()) == []
  # A build in progress in a live process is left alone.
  live = cache / f'.build-{socket.gethostname()}-{os.getpid()}-x.so'
  live.write_bytes(b'')
  onednn_build.remove_dead_builds(cache)
  assert live.exists()


_BAD_CALLS = """
import jax, jax.numpy as jnp, numpy as np
from srgan_jax.kernels import onednn_conv
assert onednn_conv.status()[0]
i = np.int64
for name, x, k, out in [('rank', (4, 4, 3), (3, 3, 3, 2), (4, 4, 2)),
                        ('channels', (1, 4, 4, 3), (3, 3, 5, 2), (1, 4, 4, 2)),
                        ('size', (1, 4, 4, 3), (3, 3, 3, 2), (1, 9, 9, 2))]:
  call = jax.ffi.ffi_call('SrganConvFwd', jax.ShapeDtypeStruct(out, jnp.float32))
  try:
    jax.block_until_ready(call(jnp.ones(x), jnp.ones(k), sh=i(1), sw=i(1), pt=i(1), pb=i(1), pl=i(1), pr=i(1)))
    print(name, 'no error', flush=True)
  except Exception as e:
    print(name, 'error:', ' '.join(str(e).split())[:300], flush=True)
"""


@pytest.mark.subprocess
@needs_onednn
def test_the_handlers_check_buffer_ranks_and_shapes(tmp_path):
  # In a subprocess: unchecked, such calls read and write out of bounds.
  r = subprocess.run(
    [sys.executable, '-c', _BAD_CALLS],
    cwd=REPO,
    capture_output=True,
    text=True,
    timeout=300,
    env=dict(os.environ, JAX_PLATFORMS='cpu'),
  )
  lines = dict(
    l.split(' ', 1)
    for l in r.stdout.splitlines()
    if l.split(' ', 1)[0] in ('rank', 'channels', 'size')
  )
  assert r.returncode == 0 and len(lines) == 3, r.stdout + r.stderr[-2000:]
  assert 'Wrong buffer rank' in lines['rank'], lines
  assert 'input channels differ' in lines['channels'], lines
  assert 'output size does not match' in lines['size'], lines


@needs_onednn
def test_the_primitive_cache_is_bounded_and_evicted_entries_rebuild():
  _, capacity = onednn_conv.cache_info()
  onednn_conv.set_cache_capacity(6)  # the three primitives of two geometries
  try:
    rng = np.random.default_rng(0)
    k = jnp.asarray(rng.standard_normal((3, 3, 2, 3)), jnp.float32)
    conv = jax.jit(
      lambda x, k: fast_conv.conv_general_dilated(x, k, (1, 1), 'SAME', dimension_numbers=NHWC)
    )
    for size in (
      5,
      6,
      7,
      8,
      5,
    ):  # new image sizes, as evaluate and upscale meet them; then an evicted one
      x = jnp.asarray(rng.standard_normal((1, size, size, 2)), jnp.float32)
      want = lax.conv_general_dilated(x, k, (1, 1), 'SAME', dimension_numbers=NHWC)
      assert _rel(conv(x, k), want) < 1e-5
      assert onednn_conv.cache_info()[0] <= 6
  finally:
    onednn_conv.set_cache_capacity(capacity)


def _threads_after_steps(**env) -> list[int]:
  r = subprocess.run(
    [sys.executable, '-m', 'benchmarks.cpu_threads', '--tiny', '--steps', '40', '--every', '10'],
    cwd=REPO,
    capture_output=True,
    text=True,
    timeout=600,
    env=dict(os.environ, JAX_PLATFORMS='cpu', **env),
  )
  assert r.returncode == 0, r.stderr[-3000:]
  return [int(n) for n in re.findall(r'threads after step \d+: (\d+)', r.stdout)]


@pytest.mark.slow
@pytest.mark.subprocess
@needs_onednn
def test_onednn_adds_at_most_two_thread_teams_of_at_most_the_cores_whatever_calls_it():
  # XLA:CPU calls the handlers from any thread of its pool; asked for 8 OpenMP threads
  # per team, every such thread would bring 7 more. Two teams (the first caller's and the
  # worker's), clamped to the cores, are all the threads oneDNN may add to what the same
  # steps take with XLA's convolutions.
  # The worker's team starts when a call first comes from a second pool thread, at a step
  # the scheduler picks (CI saw it after step 10): after step 1 at most that one team may
  # still come, at every step counted, however many steps run.
  cores = min(8, len(os.sched_getaffinity(0)))
  with_onednn = _threads_after_steps(OMP_NUM_THREADS='8')
  without = _threads_after_steps(OMP_NUM_THREADS='8', SRGAN_JAX_ONEDNN='0')
  assert len(with_onednn) == len(without) == 5
  assert max(with_onednn) - max(without) <= 2 * cores, (with_onednn, without)
  assert max(with_onednn) - with_onednn[0] <= cores, with_onednn


@pytest.mark.slow
def test_entry_points_build_the_handlers_at_start_not_in_the_first_trace(
  monkeypatch, tmp_path_factory, tmp_path
):
  from PIL import Image
  from srgan_jax import evaluate, upscale
  from tests.tiny_checkpoint import tiny_workdir

  workdir = tiny_workdir(tmp_path_factory)
  calls = []
  monkeypatch.setattr(onednn_conv, 'prepare', lambda: calls.append('prepare') or 'prepared')
  monkeypatch.setattr(onednn_conv, 'applies', lambda *a: calls.append('trace') or False)
  image = tmp_path / 'in' / 'a.png'
  image.parent.mkdir()
  Image.fromarray(np.random.default_rng(0).integers(0, 256, (48, 64, 3), dtype=np.uint8)).save(
    image
  )
  assert upscale.main([str(image), '--workdir', str(workdir), '--out', str(tmp_path / 'up')]) == 0
  assert calls[0] == 'prepare' and 'trace' in calls, calls
  calls.clear()
  assert (
    evaluate.main(
      ['--workdir', str(workdir), '--data', str(image.parent), '--out', str(tmp_path / 'ev')]
    )
    == 0
  )
  assert calls[0] == 'prepare' and 'trace' in calls, calls


@needs_onednn
def test_a_convolution_onednn_cannot_take_is_lowered_to_xla_instead():
  # A 2^31-row image: oneDNN 3.2 dies with SIGFPE building its primitives; XLA's conv takes it.
  conv = lambda x, k: fast_conv.conv_general_dilated(x, k, (1, 1), 'SAME', dimension_numbers=NHWC)
  huge = jax.ShapeDtypeStruct((1, 2**31, 1, 1), jnp.float32)
  k = jax.ShapeDtypeStruct((3, 1, 1, 1), jnp.float32)
  text = (
    jax.jit(jax.grad(lambda x, k: jnp.sum(conv(x, k)), argnums=(0, 1))).lower(huge, k).as_text()
  )
  assert 'SrganConv' not in text and text.count('stablehlo.convolution') >= 2
  small = jax.ShapeDtypeStruct((1, 8, 8, 1), jnp.float32)  # the same conv at a size it takes
  assert 'SrganConvFwd' in jax.jit(conv).lower(small, k).as_text()
