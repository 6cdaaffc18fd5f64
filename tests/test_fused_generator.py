"""Inference with BN folded and bias / skip / PReLU fused into oneDNN's convolution is SRResNet's.

`onednn_conv.conv_fused` against the same sums as separate lax passes; `fused_generator.apply`
against `srgan.Generator.apply` (float32: to float32 rounding; bfloat16: no further from the
float32 result than the module's own bfloat16 path); and what `inference` picks.
"""

import jax
import ml_collections
import jax.numpy as jnp
import numpy as np
import pytest

from srgan_jax.evaluation import fused_generator, inference
from srgan_jax.kernels import onednn_conv
from srgan_jax.nets import srgan

needs_onednn = pytest.mark.skipif(
  not onednn_conv.status()[0], reason=f'oneDNN handlers unavailable: {onednn_conv.status()[1]}'
)
needs_bf16_units = pytest.mark.skipif(
  not onednn_conv.status()[0] or onednn_conv.isa() not in onednn_conv.BF16_ISAS,
  reason='the fused bfloat16 generator needs oneDNN bf16 kernels (a CPU with AVX-512 BF16 or AMX)',
)


def _operands(dtype, x_shape=(2, 13, 11, 24), k=3, o=20, strides=(1, 1)):
  rng = np.random.default_rng(0)
  x = jnp.asarray(rng.normal(0, 1, x_shape), dtype)
  w = jnp.asarray(rng.normal(0, 0.1, (k, k, x_shape[-1], o)), dtype)
  bias = jnp.asarray(rng.normal(0, 1, (o,)), jnp.float32)
  pads = ((k // 2, k - 1 - k // 2), (k // 2 + 1, k - 1 - k // 2))  # asymmetric
  y_shape = jax.eval_shape(lambda: onednn_conv._lax_fwd(x, w, strides, pads)).shape
  residual = jnp.asarray(rng.normal(0, 1, y_shape), dtype)
  return x, w, bias, residual, pads


@needs_onednn
@pytest.mark.parametrize('dtype', [jnp.float32, jnp.bfloat16])
@pytest.mark.parametrize('with_residual', [False, True])
@pytest.mark.parametrize('with_prelu', [False, True])
@pytest.mark.parametrize('strides', [(1, 1), (2, 2)])
def test_conv_fused_is_the_separate_sums(dtype, with_residual, with_prelu, strides):
  x, w, bias, residual, pads = _operands(dtype, strides=strides)
  r = residual if with_residual else None
  slope = jnp.float32(0.23) if with_prelu else None
  post = (onednn_conv.RESIDUAL if with_residual else 0) | (onednn_conv.PRELU if with_prelu else 0)
  if dtype == jnp.float32 or onednn_conv.isa() in onednn_conv.BF16_ISAS:
    assert onednn_conv.fused_applies(x, w, strides, pads, post)
  fused = jax.jit(lambda *a: onednn_conv.conv_fused(*a, strides=strides, pads=pads))
  y = fused(x, w, bias, r, slope)
  # The reference: the same bf16-rounded operands, every sum in float32, then one rounding.
  f32 = lambda v: None if v is None else v.astype(jnp.float32)
  ref = onednn_conv._fused_lax(f32(x), f32(w), bias, f32(r), slope, strides, pads)
  assert y.dtype == dtype and y.shape == ref.shape
  scale = float(jnp.max(jnp.abs(ref)))
  # float32: accumulation order only; bfloat16: one rounding of the output (2^-8 relative)
  tol = 1e-5 * scale if dtype == jnp.float32 else 2**-8 * scale
  np.testing.assert_allclose(np.asarray(y, np.float32), np.asarray(ref), atol=tol, rtol=0)
  if with_prelu:  # the negative side really is scaled: some outputs are below zero
    assert float(jnp.min(ref)) < 0


def _generator_and_variables(scale, output='tanh', num_blocks=2):
  g = srgan.Generator(scale=scale, num_blocks=num_blocks, output=output)
  v = g.init(jax.random.key(scale), jnp.zeros((1, 8, 8, 3)))
  # Trained-looking BN statistics and affine parameters, so folding them is exercised.
  keys = iter(jax.random.split(jax.random.key(7), 1000))
  noisy = lambda a, lo, hi: jax.random.uniform(next(keys), a.shape, minval=lo, maxval=hi)
  stats = jax.tree.map(lambda a: noisy(a, 0.2, 1.5), v['batch_stats'])
  params = jax.tree_util.tree_map_with_path(
    lambda path, a: noisy(a, 0.5, 1.5) if 'scale' in str(path[-1]) else a, v['params']
  )
  return g, {'params': params, 'batch_stats': stats}


@needs_onednn
@pytest.mark.parametrize('scale,output', [(4, 'tanh'), (2, 'clamp'), (3, 'tanh')])
def test_fused_generator_float32_is_the_module(scale, output):
  g, v = _generator_and_variables(scale, output)
  lr = jax.random.uniform(jax.random.key(1), (2, 11, 13, 3))
  want = jax.jit(lambda v, lr: g.apply(v, lr))(v, lr)
  got = jax.jit(lambda v, lr: fused_generator.apply(g, v, lr))(v, lr)
  assert got.shape == want.shape == (2, 11 * scale, 13 * scale, 3)
  np.testing.assert_allclose(np.asarray(got), np.asarray(want), atol=2e-5, rtol=0)


@needs_bf16_units
@pytest.mark.parametrize('scale', [4, 3])
def test_fused_generator_bfloat16_is_as_close_to_float32_as_the_module(scale):
  g32, v = _generator_and_variables(scale, num_blocks=4)
  g16 = g32.clone(dtype=jnp.bfloat16)
  assert fused_generator.applies(g16) and not fused_generator.applies(g32)
  lr = jax.random.uniform(jax.random.key(2), (1, 24, 20, 3))
  ref = g32.apply(v, lr)
  module = jax.jit(lambda v, lr: g16.apply(v, lr))(v, lr)
  fused = jax.jit(lambda v, lr: fused_generator.apply(g16, v, lr))
  rms = lambda y: float(jnp.sqrt(jnp.mean((y - ref) ** 2)))
  assert rms(fused(v, lr)) <= 1.25 * rms(module)
  # One fused oneDNN call per conv: conv_in, 2 per block, conv_mid, the upsampling convs, conv_out.
  hlo = fused.lower(v, lr).as_text()
  convs = 1 + 2 * g16.num_blocks + 1 + len(srgan.upsample_factors(scale)) + 1
  assert hlo.count('@SrganConvFusedBf16') == convs
  assert '@SrganConvFwdBf16' not in hlo


def test_inference_picks_the_fused_generator_only_where_it_applies(monkeypatch):
  model_config = ml_collections.ConfigDict(
    {'arch': 'srresnet', 'scale': 4, 'num_blocks': 2, 'features': 64}
  )
  f32 = inference.generator_apply(model_config, 'float32')
  assert getattr(f32, '__self__', None) is not None  # a bound Generator.apply: the exact path
  bf16 = inference.generator_apply(model_config, 'bfloat16')
  fused_expected = fused_generator.applies(srgan.Generator(num_blocks=2, dtype=jnp.bfloat16))
  assert (getattr(bf16, 'func', None) is inference._fused_apply) == fused_expected
  monkeypatch.setenv('SRGAN_JAX_ONEDNN_FUSED', '0')
  off = inference.generator_apply(model_config, 'bfloat16')
  assert getattr(off, 'func', None) is not inference._fused_apply


# VGG's layers in training: relu(conv + bias) as one oneDNN call, with a gradient.


def _conv_relu_pair(dtype, monkeypatch=None):
  from srgan_jax.kernels import fast_conv
  from srgan_jax.nets import vgg_layers

  x = jax.random.uniform(jax.random.key(0), (2, 12, 10, 8), minval=-1.0, maxval=1.0)
  fused = vgg_layers.ConvReLU(16, dtype=dtype)
  plain = fast_conv.Conv(16, (3, 3), padding='SAME', dtype=dtype)
  return x, fused, plain, vgg_layers


def test_conv_relu_has_convs_parameters_and_float32_values():
  x, fused, plain, vgg_layers = _conv_relu_pair(jnp.float32)
  p_fused, p_plain = fused.init(jax.random.key(3), x), plain.init(jax.random.key(3), x)
  assert jax.tree.structure(p_fused) == jax.tree.structure(p_plain)
  jax.tree.map(np.testing.assert_array_equal, p_fused, p_plain)
  p = jax.tree.map(lambda a: a + 0.1, p_plain)  # a nonzero bias
  np.testing.assert_array_equal(fused.apply(p, x), vgg_layers.relu(plain.apply(p, x)))


@needs_bf16_units
def test_conv_relu_bfloat16_fused_matches_the_separate_passes_with_gradients(monkeypatch):
  x, fused, plain, vgg_layers = _conv_relu_pair(jnp.bfloat16)
  p = jax.tree.map(lambda a: a + 0.05, plain.init(jax.random.key(3), x))
  ct = jax.random.normal(jax.random.key(4), (2, 12, 10, 16))

  def value_and_grads():
    def loss(p, x):
      y = fused.apply(p, x)
      return jnp.sum(y.astype(jnp.float32) * ct), y

    fn = jax.jit(jax.value_and_grad(loss, argnums=(0, 1), has_aux=True))
    (_, y), grads = fn(p, x)
    return y, grads, fn.lower(p, x).as_text()

  y, grads, hlo = value_and_grads()
  assert hlo.count('@SrganConvFusedBf16') == 1
  monkeypatch.setenv('SRGAN_JAX_ONEDNN_FUSED', '0')
  y_sep, grads_sep, hlo_sep = value_and_grads()
  assert '@SrganConvFusedBf16' not in hlo_sep
  y32, y_sep32 = y.astype(jnp.float32), y_sep.astype(jnp.float32)
  # one bf16 step apart at most (the separate passes round twice)
  np.testing.assert_allclose(y32, y_sep32, rtol=2**-7, atol=2**-8)
  assert float(jnp.mean(y32 == 0)) > 0.2  # ReLU did cut
  for got, want in zip(jax.tree.leaves(grads), jax.tree.leaves(grads_sep)):
    got, want = np.asarray(got, np.float32), np.asarray(want, np.float32)
    np.testing.assert_allclose(got, want, atol=2e-2 * np.abs(want).max())


@needs_bf16_units
def test_conv_relu_bfloat16_under_vmap_and_grad_is_per_example():
  x, fused, plain, _ = _conv_relu_pair(jnp.bfloat16)
  p = fused.init(jax.random.key(3), x)
  xs = jnp.stack([x, -x, 2 * x])
  loss = lambda x: jnp.sum(fused.apply(p, x).astype(jnp.float32) ** 2)
  batched = jax.vmap(jax.value_and_grad(loss))(xs)
  for i in range(3):
    value, grad = jax.value_and_grad(loss)(xs[i])
    np.testing.assert_allclose(batched[0][i], value, rtol=1e-5)  # float32 sums, other order
    np.testing.assert_allclose(batched[1][i], grad, rtol=1e-5, atol=1e-5)
