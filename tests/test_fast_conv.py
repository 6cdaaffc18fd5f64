"""The speed-only convolutions compute exactly what the plain layers compute, gradients included."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

from srgan_jax import fast_conv
from srgan_jax.models import pixel_shuffle


def _lax_conv(x, w, strides, padding):
  return lax.conv_general_dilated(x, w, strides, padding, dimension_numbers=('NHWC', 'HWIO', 'NHWC'))


def _fast_conv(x, w, strides, padding):
  return fast_conv.conv_general_dilated(x, w, strides, padding,
                                        dimension_numbers=('NHWC', 'HWIO', 'NHWC'))


@pytest.mark.parametrize('k,cin,cout,stride', [
    (9, 3, 16, 1),   # k9n64s1 input conv shape: im2col on the input patches
    (3, 4, 12, 1),   # widening stride-1 conv (upsampling conv): im2col
    (3, 8, 8, 1),    # trunk conv: lax's own gradient
    (3, 4, 8, 2),    # strided D conv: lax's own gradient
    (3, 3, 8, 2),    # strided image-input conv: lax's own gradient
    (5, 4, 8, 1),    # k5 widening conv (the sub-pixel output conv's size): im2col
    (3, 2, 5, 1),    # widening by 2.5: im2col
    (3, 64, 64, 1),  # k3n64 trunk conv: Winograd
    (3, 64, 128, 1),  # D's 64->128 conv: Winograd
])
@pytest.mark.parametrize('h,w', [(11, 9), (13, 14), (6, 5)])  # odd and even sizes, SAME padding
def test_custom_kernel_gradient_equals_lax_gradient(k, cin, cout, stride, h, w):
  rng = np.random.default_rng(0)
  x = jnp.asarray(rng.normal(size=(2, h, w, cin)), jnp.float32)
  w = jnp.asarray(rng.normal(size=(k, k, cin, cout)), jnp.float32)
  cot = jnp.asarray(rng.normal(size=_lax_conv(x, w, (stride, stride), 'SAME').shape), jnp.float32)

  def loss(conv):
    return lambda x, w: jnp.sum(conv(x, w, (stride, stride), 'SAME') * cot)

  fast = jax.grad(loss(_fast_conv), argnums=(0, 1))(x, w)
  ref = jax.grad(loss(_lax_conv), argnums=(0, 1))(x, w)
  np.testing.assert_allclose(_fast_conv(x, w, (stride, stride), 'SAME'),
                             _lax_conv(x, w, (stride, stride), 'SAME'), rtol=1e-5, atol=1e-4)
  for got, want in zip(fast, ref):
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-3 * float(jnp.max(jnp.abs(want))))


def test_each_kernel_gradient_is_selected_where_the_cases_above_expect_it():
  # The test above checks each custom gradient only where the selector picks it.
  same = ((1, 1), (1, 1))
  method = lambda shape, strides=(1, 1), pads=same: fast_conv.kernel_grad_method(shape, strides, pads, 'cpu')
  assert method((3, 3, 2, 5)) == 'im2col'
  assert method((9, 9, 3, 64), pads=((4, 4), (4, 4))) == 'im2col'
  assert method((3, 3, 64, 256)) == 'im2col'
  assert method((3, 3, 64, 64)) == 'winograd'
  assert method((3, 3, 64, 128)) == 'winograd'
  assert method((3, 3, 8, 8)) == 'lax'
  assert method((3, 3, 64, 128), (2, 2), ((0, 1), (0, 1))) == 'lax'
  # cuDNN and TPU convolutions keep their own gradients.
  assert fast_conv.kernel_grad_method((3, 3, 64, 64), (1, 1), same, 'gpu') == 'lax'


def _correlate2d(d, g):
  """Valid 2-D correlation, written out: out[i, j] = sum_ab d[i + a, j + b] g[a, b]."""
  r = g.shape[0]
  m = d.shape[0] - r + 1
  return np.array([[np.sum(d[i:i + r, j:j + r] * g) for j in range(m)] for i in range(m)])


@pytest.mark.parametrize('m', [2, 4, 6])
def test_winograd_matrices_compute_the_tile_correlation(m):
  at, g, bt = fast_conv.winograd_matrices(m)
  assert at.shape == (m, m + 2) and g.shape == (m + 2, 3) and bt.shape == (m + 2, m + 2)
  rng = np.random.default_rng(m)
  for _ in range(3):
    d, w = rng.normal(size=(m + 2, m + 2)), rng.normal(size=(3, 3))
    y = at @ ((g @ w @ g.T) * (bt @ d @ bt.T)) @ at.T
    np.testing.assert_allclose(y, _correlate2d(d, w), rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize('m', [2, 4, 6])
@pytest.mark.parametrize('h,w', [(8, 8), (7, 10), (3, 5)])  # whole tiles, partial tiles, one tile
def test_winograd_kernel_gradient_equals_lax_kernel_gradient(m, h, w):
  rng = np.random.default_rng(0)
  x = jnp.asarray(rng.normal(size=(3, h, w, 6)), jnp.float32)
  dy = jnp.asarray(rng.normal(size=(3, h, w, 5)), jnp.float32)
  want = jax.vjp(lambda k: _lax_conv(x, k, (1, 1), 'SAME'), jnp.zeros((3, 3, 6, 5)))[1](dy)[0]
  got = fast_conv.winograd_kernel_grad(x, dy, m)
  np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4 * float(jnp.max(jnp.abs(want))))


@pytest.mark.parametrize('h,w', [(5, 7), (8, 8)])
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
