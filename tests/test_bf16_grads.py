"""The one-pass bias and PReLU-slope gradients of bfloat16 maps (FFI) equal autodiff's.

`bf16_grads.add_bias` / `bf16_grads.prelu` compute the float32-then-round forward of
`fast_conv.add_bias` / `srgan.PReLU`; their backward passes are FFI handlers.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from srgan_jax.kernels import bf16_grads, onednn_conv
from srgan_jax.training import train_states, update_step
from tests.helpers import tiny_config

needs_handlers = pytest.mark.skipif(
  not onednn_conv.status()[0], reason=f'FFI handlers unavailable: {onednn_conv.status()[1]}'
)


def _xla_add_bias(y, bias):
  return (y.astype(jnp.float32) + bias).astype(y.dtype)


def _xla_prelu(x, slope):
  return jnp.where(x >= 0, x, (slope * x.astype(jnp.float32)).astype(x.dtype))


def _maps(shape):
  rng = np.random.default_rng(0)
  x = rng.normal(0.0, 3.0, shape)
  x[..., 0] = 0.0  # PReLU's kink: x == 0 takes the identity branch
  ct = rng.normal(0.0, 1.0, shape)
  return jnp.asarray(x, jnp.bfloat16), jnp.asarray(ct, jnp.bfloat16)


@needs_handlers
@pytest.mark.parametrize('shape', [(3, 5, 7, 6), (2, 33, 17, 256), (4, 1000)])
@pytest.mark.parametrize('op', ['add_bias', 'prelu'])
def test_values_and_input_gradient_bit_identical_parameter_gradient_a_float32_sum(shape, op):
  x, ct = _maps(shape)
  if op == 'add_bias':
    ours, xla = bf16_grads.add_bias, _xla_add_bias
    param = jnp.asarray(np.random.default_rng(1).normal(0, 1, shape[-1]), jnp.float32)
  else:
    ours, xla = bf16_grads.prelu, _xla_prelu
    param = jnp.float32(0.25)
  y, vjp = jax.vjp(jax.jit(ours), x, param)
  ry, rvjp = jax.vjp(xla, x, param)
  (dx, dp), (rdx, _) = jax.jit(vjp)(ct), rvjp(ct)
  assert 'SrganBiasGradBf16' in jax.jit(vjp).lower(ct).as_text() or op == 'prelu'
  assert y.dtype == dx.dtype == jnp.bfloat16 and dp.dtype == jnp.float32
  assert np.array_equal(y, ry) and np.array_equal(dx, rdx)
  # The parameter's gradient against a float64 sum of the same bf16 terms.
  x64, ct64 = np.asarray(x, np.float64), np.asarray(ct, np.float64)
  if op == 'add_bias':
    exact = ct64.reshape(-1, shape[-1]).sum(axis=0)
  else:
    exact = np.sum(np.where(x64 < 0, x64 * ct64, 0.0))
  scale = np.sum(np.abs(ct64 if op == 'add_bias' else x64 * ct64))
  assert np.max(np.abs(np.asarray(dp, np.float64) - exact)) <= 1e-5 * scale


@needs_handlers
def test_a_bf16_srresnet_step_sums_its_bias_and_slope_gradients_through_the_handlers(monkeypatch):
  config = tiny_config('srresnet', **{'model.compute_dtype': 'bfloat16'})
  hr = jnp.asarray(np.random.default_rng(0).integers(0, 256, (4, 24, 24, 3), dtype=np.uint8))
  g_state, d_state = train_states.create_train_states(config, jax.random.key(0))
  texts = []
  for flag in ('1', '0'):
    monkeypatch.setenv('SRGAN_JAX_BF16_GRADS', flag)
    step = update_step.make_jitted_step(
      config, update_step.make_mesh(), update_step.make_content_loss(config)
    )
    texts.append(step.lower(g_state, d_state, {'hr': hr}, None).as_text())
  n_prelu = sum(
    'negative_slope' in str(p) for p in jax.tree_util.tree_leaves_with_path(g_state.params)
  )
  assert texts[0].count('SrganPreluBwdBf16') == n_prelu and 'SrganBiasGradBf16' in texts[0]
  assert 'SrganPreluBwdBf16' not in texts[1] and 'SrganBiasGradBf16' not in texts[1]


def test_float32_maps_keep_xlas_code():
  assert not bf16_grads.applies(jnp.zeros((2, 3), jnp.float32))


@needs_handlers
@pytest.mark.parametrize('slope', [0.2, 0.1])
def test_leaky_relu_equals_flax_values_and_gradient(slope):
  x, ct = _maps((2, 9, 11, 64))
  y, vjp = jax.vjp(lambda v: bf16_grads.leaky_relu(v, slope), x)
  ry, rvjp = jax.vjp(lambda v: jax.nn.leaky_relu(v, slope), x)
  text = jax.jit(jax.grad(lambda v: jnp.sum(bf16_grads.leaky_relu(v, slope)))).lower(x).as_text()
  assert 'SrganPreluBwdBf16' in text
  assert y.dtype == jnp.bfloat16 and np.array_equal(y, ry)
  assert np.array_equal(jax.jit(vjp)(ct)[0], rvjp(ct)[0])
  x32 = x.astype(jnp.float32)
  assert np.array_equal(bf16_grads.leaky_relu(x32, slope), jax.nn.leaky_relu(x32, slope))
