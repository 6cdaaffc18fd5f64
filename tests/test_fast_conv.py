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


def test_the_im2col_gradient_is_selected_where_the_cases_above_expect_it():
  # The test above checks the custom gradient only where the selector picks it.
  assert fast_conv.use_im2col_kernel_grad((3, 3, 2, 5), (1, 1))
  assert fast_conv.use_im2col_kernel_grad((9, 9, 3, 64), (1, 1))
  assert not fast_conv.use_im2col_kernel_grad((3, 3, 64, 64), (1, 1))
  assert not fast_conv.use_im2col_kernel_grad((3, 3, 64, 128), (2, 2))


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
