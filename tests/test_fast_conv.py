"""The speed-only pieces: the XLA:CPU compiler options, and the output conv on the coarse grid."""

import re

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

from srgan_jax.kernels import fast_conv
from srgan_jax.kernels import onednn_conv
from srgan_jax.training import train_states
from srgan_jax.training import update_step
from srgan_jax.nets import vgg_layers
from srgan_jax.nets import vgg
from srgan_jax.nets.srgan import pixel_shuffle
from tests.helpers import tiny_config


def _lax_conv(x, w, strides, padding):
  return lax.conv_general_dilated(
    x, w, strides, padding, dimension_numbers=('NHWC', 'HWIO', 'NHWC')
  )


def _ynn_fusion_bodies(hlo: str) -> list[str]:
  """The bodies of the computations XLA:CPU hands to YNNPACK in a compiled module's text."""
  bodies = dict(re.findall(r'^(%[\w.\-]+) .*?\{\n(.*?)\n\}', hlo, re.S | re.M))
  called = re.findall(r'kind=kCustom, calls=(%[\w.\-]+).*?"__ynn_fusion"', hlo)
  return [bodies[name] for name in called]


def _convs_in_ynn(hlo: str) -> int:
  return sum(body.count(' convolution(') for body in _ynn_fusion_bodies(hlo))


@pytest.mark.skipif(jax.default_backend() != 'cpu', reason='XLA:CPU compiler options')
def test_compiler_options_keep_convolutions_in_xla_and_dots_in_ynnpack():
  x, w = jnp.ones((16, 24, 24, 64)), jnp.ones((3, 3, 64, 64))  # the paper's k3n64 trunk conv
  f = lambda x, w: (_lax_conv(x, w, (1, 1), 'SAME'), x.reshape(-1, 64) @ w[0, 0])
  default = jax.jit(f).lower(x, w).compile().as_text()
  ours = jax.jit(f, compiler_options=fast_conv.compiler_options()).lower(x, w).compile().as_text()
  # jaxlib's default hands the conv to YNNPACK (if this fails, jaxlib changed its
  # default: re-measure the options with `python -m srgan_jax.benchmark`).
  assert _convs_in_ynn(default) == 1
  assert _convs_in_ynn(ours) == 0 and ' convolution(' in ours
  assert sum(' dot(' in body for body in _ynn_fusion_bodies(ours)) == 1  # the matmul stays there
  assert fast_conv.compiler_options('gpu') == {} and fast_conv.compiler_options('tpu') == {}


@pytest.mark.slow
@pytest.mark.skipif(jax.default_backend() != 'cpu', reason='XLA:CPU compiler options')
def test_no_convolution_of_the_srgan_step_runs_in_ynnpack(monkeypatch):
  # The VGG max-pool is written elementwise so that YNNPACK's reduce-window fusion
  # does not take the convolutions around it. XLA's own convolutions, as where
  # oneDNN's do not apply (bf16, several devices, no oneDNN build).
  monkeypatch.setattr(onednn_conv, 'applies', lambda *a: False)
  config = tiny_config('srgan', **{'loss.content': 'vgg54'})
  g_state, d_state = train_states.create_train_states(config, jax.random.key(0))
  vgg_params = vgg.VGG19(taps=('relu5_4',)).init(jax.random.key(1), jnp.zeros((1, 24, 24, 3)))[
    'params'
  ]
  content_loss = lambda sr, hr, p: vgg.content_loss(
    p, sr, hr, preprocess='torch', taps=('relu5_4',)
  )
  step = update_step.make_jitted_step(config, update_step.make_mesh(), content_loss)
  batch = {'hr': jnp.zeros((4, 24, 24, 3), jnp.uint8)}
  hlo = step.lower(g_state, d_state, batch, vgg_params).compile().as_text()
  assert hlo.count(' convolution(') > 16  # G, D and the 16 VGG convs are in the module
  assert _convs_in_ynn(hlo) == 0


@pytest.mark.parametrize(
  'k,stride,padding',
  [
    (3, 2, 'SAME'),  # D's k3s2 convs
    (3, 2, 'VALID'),
    (4, 2, 'SAME'),  # even kernel: uneven phases
    (3, 3, 'SAME'),  # stride 3
    (5, 2, ((2, 0), (1, 3))),  # explicit, asymmetric padding
  ],
)
@pytest.mark.parametrize('h,w', [(12, 10), (9, 7), (5, 6)])
def test_strided_conv_gradients_equal_lax_gradients(k, stride, padding, h, w):
  rng = np.random.default_rng(0)
  x = jnp.asarray(rng.normal(size=(2, h, w, 3)), jnp.float32)
  kernel = jnp.asarray(rng.normal(size=(k, k, 3, 4)), jnp.float32)
  conv = lambda f: (
    lambda x, kernel: f(
      x, kernel, (stride, stride), padding, dimension_numbers=('NHWC', 'HWIO', 'NHWC')
    )
  )
  y = conv(lax.conv_general_dilated)(x, kernel)
  cot = jnp.asarray(rng.normal(size=y.shape), jnp.float32)
  loss = lambda f: lambda x, kernel: jnp.sum(conv(f)(x, kernel) * cot)
  got = jax.grad(loss(fast_conv.conv_general_dilated), argnums=(0, 1))(x, kernel)
  want = jax.grad(loss(lax.conv_general_dilated), argnums=(0, 1))(x, kernel)
  np.testing.assert_allclose(
    conv(fast_conv.conv_general_dilated)(x, kernel), y, rtol=1e-6, atol=1e-6
  )
  for g, wnt in zip(got, want):
    np.testing.assert_allclose(g, wnt, rtol=1e-5, atol=1e-5 * float(jnp.max(jnp.abs(wnt))))


@pytest.mark.skipif(
  jax.default_backend() != 'cpu', reason='the phase-wise gradient is used on XLA:CPU'
)
def test_the_discriminator_strided_convs_take_the_phase_wise_input_gradient(monkeypatch):
  # Where oneDNN's convolutions do not apply, the custom rule is in the graph: the input
  # gradient of a k3s2 conv is made of stride-1 convolutions only (lax's own would
  # dilate dy: lhs_dilation 2).
  monkeypatch.setattr(onednn_conv, 'applies', lambda *a: False)
  x, kernel = jnp.ones((2, 8, 8, 3)), jnp.ones((3, 3, 3, 4))
  f = lambda x: jnp.sum(
    fast_conv.conv_general_dilated(
      x, kernel, (2, 2), 'SAME', dimension_numbers=('NHWC', 'HWIO', 'NHWC')
    )
  )
  hlo = jax.jit(jax.grad(f)).lower(x).as_text()
  plain = lambda x: jnp.sum(
    lax.conv_general_dilated(x, kernel, (2, 2), 'SAME', dimension_numbers=('NHWC', 'HWIO', 'NHWC'))
  )
  assert 'lhs_dilate = [2, 2]' in jax.jit(jax.grad(plain)).lower(x).as_text()
  assert (
    'lhs_dilate = [2, 2]' not in hlo and hlo.count('stablehlo.convolution') >= 4
  )  # one per phase


@pytest.mark.parametrize('h,w', [pytest.param(12, 10, marks=pytest.mark.slow), (9, 7), (1, 3)])
def test_vgg_max_pool_equals_flax_max_pool_values_and_gradient(h, w):
  x = jax.random.normal(jax.random.key(0), (2, h, w, 5))  # continuous: no ties
  want, want_vjp = jax.vjp(lambda x: nn.max_pool(x, (2, 2), strides=(2, 2)), x)
  got, got_vjp = jax.vjp(vgg_layers.max_pool_2x2, x)
  np.testing.assert_array_equal(got, want)
  ct = jax.random.normal(jax.random.key(1), want.shape)
  np.testing.assert_array_equal(got_vjp(ct)[0], want_vjp(ct)[0])


@pytest.mark.parametrize('h,w', [(5, 7), pytest.param(8, 8, marks=pytest.mark.slow)])
def test_subpixel_output_conv_equals_the_9x9_conv_after_the_shuffle(h, w):
  r, cin = 2, 3
  z = jax.random.normal(jax.random.key(0), (2, h, w, cin * r * r))
  module = fast_conv.SubpixelOutputConv(3, 9, r)
  variables = module.init(jax.random.key(1), z)
  kernel, bias = variables['params']['kernel'], variables['params']['bias']
  variables = {'params': {'kernel': kernel, 'bias': bias + jnp.arange(3.0)}}  # a non-zero bias
  got = pixel_shuffle(module.apply(variables, z), r)
  want = _lax_conv(pixel_shuffle(z, r), kernel, (1, 1), 'SAME') + variables['params']['bias']
  assert kernel.shape == (9, 9, cin, 3)  # the paper's k9n3s1 parameters, unchanged
  np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-4)


# ----------------------------------------------------------------------------
# Layers whose parameter gradients are summed in float32 when they compute in bf16.


def _tree_shapes(tree):
  return jax.tree_util.tree_map_with_path(lambda p, a: (jax.tree_util.keystr(p), a.shape), tree)


@pytest.mark.parametrize('use_bias', [True, False])
def test_conv_has_nn_conv_parameters_and_float32_values(use_bias):
  x = jax.random.normal(jax.random.key(0), (2, 7, 6, 3))
  ours = fast_conv.Conv(5, (3, 3), strides=(2, 2), use_bias=use_bias)
  # The old fast_conv.Conv: nn.Conv through the same convolution.
  flax_conv = nn.Conv(
    5,
    (3, 3),
    strides=(2, 2),
    use_bias=use_bias,
    conv_general_dilated=fast_conv.conv_general_dilated,
  )
  variables = ours.init(jax.random.key(1), x)
  # Same names, shapes and initial values (checkpoints and exports are a file format).
  want_variables = flax_conv.init(jax.random.key(1), x)
  assert _tree_shapes(variables) == _tree_shapes(want_variables)
  jax.tree.map(np.testing.assert_array_equal, variables, want_variables)
  if use_bias:
    variables = jax.tree.map(lambda a: a + 0.1, variables)  # a non-zero bias
  # Bit-identical: the paper's float32 configs are unchanged.
  np.testing.assert_array_equal(ours.apply(variables, x), flax_conv.apply(variables, x))


def test_bf16_conv_and_prelu_sum_their_parameter_gradients_in_float32():
  # nn.Conv / nn.PReLU in bf16 cast the bias / slope to bf16, so their gradient, a
  # sum over every pixel, was accumulated in bf16: it saturates, 94-95% off here.
  from srgan_jax.nets.srgan import PReLU

  x = jax.random.normal(jax.random.key(0), (16, 24, 24, 8), jnp.bfloat16)
  ct = jax.random.uniform(jax.random.key(1), (16, 24, 24, 8), jnp.bfloat16, 0.5, 1.5)
  conv = fast_conv.Conv(8, (3, 3), dtype=jnp.bfloat16)
  cv = conv.init(jax.random.key(2), x)
  y, vjp = jax.vjp(lambda v: conv.apply(v, x), cv)
  assert y.dtype == jnp.bfloat16
  bias_grad = vjp(ct)[0]['params']['bias']
  want = np.asarray(ct, np.float64).sum(axis=(0, 1, 2))
  assert bias_grad.dtype == jnp.float32
  np.testing.assert_allclose(bias_grad, want, rtol=1e-5)

  prelu = PReLU(0.25)
  pv = prelu.init(jax.random.key(3), x)
  y, vjp = jax.vjp(lambda v: prelu.apply(v, x), pv)
  assert y.dtype == jnp.bfloat16
  slope_grad = vjp(ct)[0]['params']['negative_slope']
  xs, cs = np.asarray(x, np.float64), np.asarray(ct, np.float64)
  np.testing.assert_allclose(slope_grad, np.sum(np.where(xs >= 0, 0.0, xs) * cs), rtol=1e-5)


def test_prelu_is_nn_prelu_in_float32():
  from srgan_jax.nets.srgan import PReLU

  x = jax.random.normal(jax.random.key(0), (2, 5, 5, 3))
  ours, theirs = PReLU(0.25), nn.PReLU(negative_slope_init=0.25)
  variables = ours.init(jax.random.key(1), x)
  assert _tree_shapes(variables) == _tree_shapes(theirs.init(jax.random.key(1), x))
  np.testing.assert_array_equal(ours.apply(variables, x), theirs.apply(variables, x))
  ct = jax.random.normal(jax.random.key(2), x.shape)
  got = jax.vjp(lambda v, x: ours.apply(v, x), variables, x)[1](ct)
  want = jax.vjp(lambda v, x: theirs.apply(v, x), variables, x)[1](ct)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-6), got, want)


@pytest.mark.parametrize('dtype', [jnp.float32, jnp.bfloat16])
def test_dense_has_nn_dense_parameters_and_gradients(dtype):
  x = jax.random.normal(jax.random.key(0), (4, 3, 40))
  ours, theirs = fast_conv.Dense(6, dtype=dtype), nn.Dense(6)
  variables = ours.init(jax.random.key(1), x)
  want_variables = theirs.init(jax.random.key(1), x)
  assert _tree_shapes(variables) == _tree_shapes(want_variables)
  jax.tree.map(np.testing.assert_array_equal, variables, want_variables)
  variables = jax.tree.map(lambda a: a + 0.1, variables)
  ct = jax.random.normal(jax.random.key(2), (4, 3, 6))
  y, vjp = jax.vjp(lambda v, x: ours.apply(v, x), variables, x)
  want_y, want_vjp = jax.vjp(lambda v, x: theirs.apply(v, x), variables, x)
  assert y.dtype == dtype
  if dtype == jnp.float32:
    np.testing.assert_array_equal(y, want_y)  # bit-identical
  # bf16: the input and output are rounded to bf16, the product is float32.
  tol = {'rtol': 1e-5, 'atol': 1e-5} if dtype == jnp.float32 else {'rtol': 2e-2, 'atol': 2e-2}
  np.testing.assert_allclose(np.asarray(y, np.float32), want_y, **tol)
  got, want = vjp(ct.astype(dtype)), want_vjp(ct)
  jax.tree.map(
    lambda a, b: np.testing.assert_allclose(np.asarray(a, np.float32), b, **tol), got, want
  )


@pytest.mark.parametrize('h,w', [(9, 7), (8, 8)])
def test_bf16_vgg_max_pool_equals_flax_max_pool_with_ties(h, w):
  # Rounded values: many ties, whose gradient goes to the window's first maximum.
  x = (jnp.round(jax.random.normal(jax.random.key(0), (2, h, w, 5)) * 2) / 2).astype(jnp.bfloat16)
  want, want_vjp = jax.vjp(lambda x: nn.max_pool(x, (2, 2), strides=(2, 2)), x)
  got, got_vjp = jax.vjp(vgg_layers.max_pool_2x2, x)
  np.testing.assert_array_equal(got, want)
  ct = jax.random.normal(jax.random.key(1), want.shape, jnp.bfloat16)
  np.testing.assert_array_equal(got_vjp(ct)[0], want_vjp(ct)[0])


@pytest.mark.parametrize('dtype', [jnp.float32, jnp.bfloat16])
def test_output_gradient_relu_equals_flax_values_and_gradients(dtype):
  # Exact zeros included: the gradient there is flax's either way.
  x = jnp.round(jax.random.normal(jax.random.key(0), (2, 6, 6, 4)) * 2).astype(dtype)
  assert bool(jnp.any(x == 0))
  want, want_vjp = jax.vjp(nn.relu, x)
  got, got_vjp = jax.vjp(vgg_layers.relu, x)
  np.testing.assert_array_equal(got, want)
  ct = jax.random.normal(jax.random.key(1), x.shape, dtype)
  np.testing.assert_array_equal(got_vjp(ct)[0], want_vjp(ct)[0])
