"""oneDNN convolutions on XLA:CPU compute lax's convolution, forward and both gradients."""

import platform

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

from srgan_jax import fast_conv, onednn_conv, train
from tests.helpers import tiny_config

NHWC = ('NHWC', 'HWIO', 'NHWC')
X86_LINUX = platform.system() == 'Linux' and platform.machine() == 'x86_64'


def test_the_handlers_build_on_x86_64_linux():
  if not X86_LINUX:
    pytest.skip('onednn-devel-cpu-gomp wheels exist for x86-64 Linux only')
  ok, why = onednn_conv.status()
  assert ok, why


needs_onednn = pytest.mark.skipif(not onednn_conv.status()[0],
                                  reason=f'oneDNN handlers unavailable: {onednn_conv.status()[1]}')


def _rel(a, b):
  return float(jnp.linalg.norm(a - b) / jnp.linalg.norm(b))


@needs_onednn
@pytest.mark.parametrize('n,h,w,c,kh,kw,o,strides,padding', [
    (2, 9, 7, 5, 3, 3, 4, (1, 1), 'SAME'),  # odd sizes
    (2, 10, 10, 3, 9, 9, 6, (1, 1), 'SAME'),  # G's k9 input conv
    (1, 11, 8, 4, 3, 3, 5, (2, 2), 'SAME'),  # D's k3s2: pads (0, 1)
    (2, 8, 8, 4, 3, 3, 4, (2, 1), ((1, 0), (2, 1))),  # unequal strides, asymmetric pads
    (2, 6, 6, 3, 1, 1, 5, (1, 1), 'VALID'),
    (1, 12, 12, 4, 5, 4, 3, (3, 2), 'VALID'),
])
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
def test_every_convolution_of_an_srgan_step_runs_through_onednn():
  config = tiny_config('srgan', **{'loss.content': 'vgg22'})
  g_state, d_state = train.create_train_states(config, jax.random.key(0))
  from srgan_jax import vgg
  vgg_params = vgg.VGG19(taps=('relu2_2',)).init(jax.random.key(1), jnp.zeros((1, 24, 24, 3)))['params']
  step = train.make_jitted_step(config, train.make_mesh(), train.make_content_loss(config, 'torch'))
  batch = {'hr': jnp.zeros((4, 24, 24, 3), jnp.uint8)}
  text = step.lower(g_state, d_state, batch, vgg_params).as_text()
  assert 'stablehlo.convolution' not in text
  for target in ('SrganConvFwd', 'SrganConvBwdData', 'SrganConvBwdWeights'):
    assert target in text


@needs_onednn
def test_an_srgan_step_through_onednn_equals_one_through_lax(monkeypatch):
  config = tiny_config('srgan')
  hr = np.random.default_rng(0).integers(0, 256, (4, 24, 24, 3), dtype=np.uint8)
  results = []
  for use in (True, False):
    if not use:
      monkeypatch.setattr(onednn_conv, 'applies', lambda *a: False)
    g_state, d_state = train.create_train_states(config, jax.random.key(0))
    step = train.make_jitted_step(config, train.make_mesh(), train.make_content_loss(config))
    text = step.lower(g_state, d_state, {'hr': jnp.asarray(hr)}, None).as_text()
    assert ('SrganConvFwd' in text) == use
    g_state, d_state, metrics = step(g_state, d_state, {'hr': jnp.asarray(hr)}, None)
    results.append(jax.device_get((g_state.params, d_state.params, metrics)))
  for a, b in zip(jax.tree.leaves(results[0]), jax.tree.leaves(results[1])):
    np.testing.assert_allclose(a, b, rtol=2e-4, atol=2e-5)


def test_turned_off_or_without_a_compiler_it_says_why(monkeypatch, tmp_path):
  monkeypatch.setenv('SRGAN_JAX_ONEDNN', '0')
  assert onednn_conv._load() == (False, 'turned off by SRGAN_JAX_ONEDNN=0')
  monkeypatch.delenv('SRGAN_JAX_ONEDNN')
  monkeypatch.setenv('SRGAN_JAX_CACHE', str(tmp_path))
  monkeypatch.setenv('CXX', str(tmp_path / 'no-such-compiler'))
  ok, why = onednn_conv._load()
  assert not ok
  if onednn_conv._onednn_prefix() is not None:
    assert why == f"C++ compiler '{tmp_path / 'no-such-compiler'}' not found: install g++ or set CXX"
  else:
    assert 'oneDNN headers/library not found' in why
  assert list(tmp_path.iterdir()) == []  # no partial library left behind


def test_bf16_convolutions_stay_with_xla():
  x, k = jnp.zeros((1, 8, 8, 3), jnp.bfloat16), jnp.zeros((3, 3, 3, 4), jnp.bfloat16)
  assert not onednn_conv.applies(x, k)
  text = jax.jit(lambda x, k: fast_conv.conv_general_dilated(x, k, (1, 1), 'SAME', dimension_numbers=NHWC)
                 ).lower(x, k).as_text()
  assert 'stablehlo.convolution' in text and 'SrganConv' not in text


def test_an_unwritable_cache_home_falls_back_to_a_temp_dir(monkeypatch, tmp_path):
  monkeypatch.delenv('SRGAN_JAX_CACHE', raising=False)
  blocker = tmp_path / 'not-a-dir'
  blocker.write_text('')
  monkeypatch.setenv('XDG_CACHE_HOME', str(blocker))  # mkdir under a file fails
  monkeypatch.setattr(onednn_conv.tempfile, 'gettempdir', lambda: str(tmp_path))
  d = onednn_conv._cache_dir()
  assert d.parent == tmp_path and d.name.startswith('srgan_jax-') and d.is_dir()
  monkeypatch.setenv('SRGAN_JAX_CACHE', str(tmp_path / 'mine'))
  assert onednn_conv._cache_dir() == tmp_path / 'mine'
