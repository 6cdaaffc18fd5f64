"""BatchNorm on oneDNN's kernels is Flax's BatchNorm: parameters, statistics, values, gradients.

`fast_norm.BatchNorm` (the networks' BatchNorm) runs bfloat16 training maps through
`onednn_bn.batch_norm`; everything else is nn.BatchNorm's own code.
"""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from srgan_jax.kernels import fast_norm, onednn_bn, onednn_conv
from srgan_jax.training import train_states, update_step
from tests.helpers import tiny_config

needs_onednn = pytest.mark.skipif(
  not onednn_conv.status()[0], reason=f'oneDNN handlers unavailable: {onednn_conv.status()[1]}'
)


def _maps(shape, dtype):
  rng = np.random.default_rng(0)
  x = jnp.asarray(rng.normal(0.5, 2.0, shape), dtype)
  ct = jnp.asarray(rng.normal(0.0, 1.0, shape), dtype)
  c = shape[-1]
  params = {'scale': jnp.linspace(0.5, 1.5, c), 'bias': jnp.linspace(-1.0, 1.0, c)}
  return x, ct, params


def _train_step(module, params, x, ct):
  """(y, updated batch_stats, grads of sum(y * ct) w.r.t. params and x), jitted; and its HLO."""
  stats = module.init(jax.random.key(0), x)['batch_stats']

  def loss(p, x):
    y, upd = module.apply({'params': p, 'batch_stats': stats}, x, mutable=['batch_stats'])
    return jnp.sum(y.astype(jnp.float32) * ct.astype(jnp.float32)), (y, upd['batch_stats'])

  fn = jax.jit(jax.value_and_grad(loss, argnums=(0, 1), has_aux=True))
  (_, (y, new_stats)), grads = fn(params, x)
  return y, new_stats, grads, fn.lower(params, x).as_text()


def _bn(cls, **kw):
  return cls(use_running_average=False, momentum=0.9, epsilon=1e-5, **kw)


@pytest.mark.parametrize('dtype', [jnp.float32, jnp.bfloat16])
def test_parameters_and_statistics_are_nn_batchnorms(dtype):
  x, _, _ = _maps((2, 5, 5, 6), dtype)
  ours = _bn(fast_norm.BatchNorm, dtype=dtype).init(jax.random.key(0), x)
  flax_ = _bn(nn.BatchNorm, dtype=dtype).init(jax.random.key(0), x)
  assert jax.tree.structure(ours) == jax.tree.structure(flax_)
  for a, b in zip(jax.tree.leaves(ours), jax.tree.leaves(flax_)):
    assert a.dtype == b.dtype == jnp.float32 and np.array_equal(a, b)


def test_float32_training_is_nn_batchnorm_bit_for_bit():
  x, ct, params = _maps((4, 6, 6, 8), jnp.float32)
  ours = _train_step(_bn(fast_norm.BatchNorm, dtype=jnp.float32), params, x, ct)
  flax_ = _train_step(_bn(nn.BatchNorm, dtype=jnp.float32), params, x, ct)
  assert 'SrganBn' not in ours[3]
  for a, b in zip(jax.tree.leaves(ours[:3]), jax.tree.leaves(flax_[:3])):
    assert np.array_equal(a, b)


@needs_onednn
@pytest.mark.parametrize('shape', [(4, 6, 6, 8), (16, 24, 24, 64), (3, 7, 5, 3)])
def test_bf16_training_on_onednn_equals_nn_batchnorm(shape):
  x, ct, params = _maps(shape, jnp.bfloat16)
  if not onednn_bn.applies(x, 1e-5):
    pytest.skip("oneDNN's fast BatchNorm kernels do not take bf16 here (its log says why)")
  y, stats, (dp, dx), hlo = _train_step(_bn(fast_norm.BatchNorm, dtype=jnp.bfloat16), params, x, ct)
  ry, rstats, (rdp, rdx), rhlo = _train_step(_bn(nn.BatchNorm, dtype=jnp.bfloat16), params, x, ct)
  assert 'SrganBnFwdBf16' in hlo and 'SrganBnBwdBf16' in hlo and 'SrganBn' not in rhlo
  assert y.dtype == dx.dtype == jnp.bfloat16
  f32 = lambda a: np.asarray(a, np.float32)
  # y and dx: both compute in float32 and round once to bf16, so they differ by at most one
  # bf16 step (2^-8 relative) where the float32 values straddle a rounding boundary.
  np.testing.assert_allclose(f32(y), f32(ry), rtol=2**-7, atol=2**-7)
  np.testing.assert_allclose(f32(dx), f32(rdx), rtol=2**-7, atol=2**-7 * np.abs(f32(rdx)).max())
  for k in ('mean', 'var'):  # running averages of float32 batch statistics
    np.testing.assert_allclose(stats[k], rstats[k], rtol=1e-5, atol=1e-6)
  for k in ('scale', 'bias'):  # float32 sums over N, H, W
    np.testing.assert_allclose(dp[k], rdp[k], rtol=1e-3, atol=1e-3 * np.abs(rdp[k]).max())


def _reference(x, scale, shift, eps):
  """Batch-statistics BatchNorm in float64 (the two-pass variance)."""
  x = x.astype(jnp.float64)
  mean = jnp.mean(x, axis=(0, 1, 2))
  var = jnp.mean(jnp.square(x - mean), axis=(0, 1, 2))
  y = (x - mean) / jnp.sqrt(var + eps) * scale + shift
  return y, mean, var


@needs_onednn
def test_gradients_through_the_returned_statistics_equal_float64_autodiff():
  jax.config.update('jax_enable_x64', True)
  try:
    x, ct, params = _maps((2, 5, 4, 6), jnp.bfloat16)
    if not onednn_bn.applies(x, 1e-3):
      pytest.skip("oneDNN's fast BatchNorm kernels do not take bf16 here")
    u, w = jnp.linspace(-1.0, 2.0, 6), jnp.linspace(0.5, -0.5, 6)

    def loss(fn, x, scale, shift):
      y, mean, var = fn(x, scale, shift, 1e-3)
      y = y.astype(jnp.float64) * ct.astype(jnp.float64)
      return jnp.sum(y) + jnp.sum(mean * u) + jnp.sum(var * w)

    grad = lambda fn, dt: jax.grad(loss, argnums=(1, 2, 3))(
      fn, x, params['scale'].astype(dt), params['bias'].astype(dt)
    )
    ours = grad(onednn_bn.batch_norm, jnp.float32)
    ref = grad(_reference, jnp.float64)
    np.testing.assert_allclose(
      np.asarray(ours[0], np.float64), ref[0], rtol=2e-2, atol=2e-2 * np.abs(ref[0]).max()
    )
    for a, b in zip(ours[1:], ref[1:]):
      np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4 * np.abs(b).max())
  finally:
    jax.config.update('jax_enable_x64', False)


@needs_onednn
def test_turned_off_by_the_environment_flax_runs(monkeypatch):
  x, ct, params = _maps((4, 6, 6, 8), jnp.bfloat16)
  monkeypatch.setenv('SRGAN_JAX_ONEDNN_BN', '0')
  onednn_bn._why_not.cache_clear()
  try:
    assert not onednn_bn.applies(x, 1e-5)
    assert (
      'SrganBn' not in _train_step(_bn(fast_norm.BatchNorm, dtype=jnp.bfloat16), params, x, ct)[3]
    )
  finally:
    onednn_bn._why_not.cache_clear()


def test_inference_and_initialisation_are_flaxs():
  x, _, params = _maps((2, 6, 6, 4), jnp.bfloat16)
  stats = {'mean': jnp.linspace(-1, 1, 4), 'var': jnp.linspace(0.5, 2, 4)}
  variables = {'params': params, 'batch_stats': stats}
  ours = fast_norm.BatchNorm(use_running_average=True, dtype=jnp.bfloat16)
  flax_ = nn.BatchNorm(use_running_average=True, dtype=jnp.bfloat16)
  assert np.array_equal(ours.apply(variables, x), flax_.apply(variables, x))
  assert 'SrganBn' not in jax.jit(ours.apply).lower(variables, x).as_text()


@needs_onednn
def test_a_bf16_srresnet_step_runs_its_batchnorms_on_onednn():
  config = tiny_config('srresnet', **{'model.compute_dtype': 'bfloat16'})
  hr = np.random.default_rng(0).integers(0, 256, (4, 24, 24, 3), dtype=np.uint8)
  g_state, d_state = train_states.create_train_states(config, jax.random.key(0))
  step = update_step.make_jitted_step(
    config, update_step.make_mesh(), update_step.make_content_loss(config)
  )
  x = jnp.zeros((4, 6, 6, 64), jnp.bfloat16)
  if not onednn_bn.applies(x, 1e-5):
    pytest.skip("oneDNN's fast BatchNorm kernels do not take bf16 here")
  text = step.lower(g_state, d_state, {'hr': jnp.asarray(hr)}, None).as_text()
  n_bn = sum(1 for _ in jax.tree.leaves(g_state.batch_stats)) // 2
  assert text.count('SrganBnFwdBf16') == n_bn and text.count('SrganBnBwdBf16') == n_bn
  g_state, _, metrics = step(g_state, d_state, {'hr': jnp.asarray(hr)}, None)
  assert np.isfinite(float(metrics['content_loss']))
