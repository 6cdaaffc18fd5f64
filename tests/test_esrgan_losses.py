"""ESRGAN's loss options on inputs whose values are computed independently."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from srgan_jax.training import losses
from srgan_jax.nets import vgg


def softplus(x):
  return math.log1p(math.exp(x))


def test_pixel_losses_are_measured_on_0_1_images():
  sr = jnp.array([[-1.0, 1.0], [0.0, 0.5]])  # [0, 1]: 0, 1, 0.5, 0.75
  hr = jnp.array([[1.0, 1.0], [-1.0, 0.0]])  # [0, 1]: 1, 1, 0, 0.5
  assert float(losses.pixel_loss('l1', sr, hr)) == (1 + 0 + 0.5 + 0.25) / 4
  assert float(losses.pixel_loss('mse', sr, hr)) == (1 + 0 + 0.25 + 0.0625) / 4
  # the paper's content MSE is on [-1, 1] images: four times as large
  assert float(losses.pixel_mse(sr, hr)) == 4 * float(losses.pixel_loss('mse', sr, hr))
  with pytest.raises(ValueError, match='unknown pixel loss'):
    losses.pixel_loss('l2', sr, hr)


def test_ragan_losses_by_hand():
  real, fake = jnp.array([1.0, 3.0]), jnp.array([0.0, -2.0])  # means 2 and -1
  # G: -log(1 - sigmoid(x_r - E[x_f])) - log sigmoid(x_f - E[x_r]); -log sigmoid(z) = softplus(-z)
  want_g = (
    (softplus(1 - -1) + softplus(3 - -1)) / 2 + (softplus(-(0 - 2)) + softplus(-(-2 - 2))) / 2
  ) / 2
  want_d = (
    (softplus(-(1 - -1)) + softplus(-(3 - -1))) / 2 + (softplus(0 - 2) + softplus(-2 - 2)) / 2
  ) / 2
  np.testing.assert_allclose(float(losses.ragan_generator(real, fake)), want_g, rtol=1e-6)
  np.testing.assert_allclose(float(losses.ragan_discriminator(real, fake)), want_d, rtol=1e-6)


def test_ragan_is_the_binary_cross_entropy_of_the_relative_logits():
  """As ESRGAN's code: BCE(x_r - E[x_f], real) and BCE(x_f - E[x_r], fake), averaged."""
  k1, k2 = jax.random.split(jax.random.key(0))
  real, fake = jax.random.normal(k1, (8,)) * 3, jax.random.normal(k2, (8,)) * 3
  bce = lambda z, label: jnp.mean(optax.sigmoid_binary_cross_entropy(z, jnp.full_like(z, label)))
  rel_r, rel_f = real - fake.mean(), fake - real.mean()
  np.testing.assert_allclose(
    losses.ragan_discriminator(real, fake), (bce(rel_r, 1) + bce(rel_f, 0)) / 2, rtol=1e-5
  )
  np.testing.assert_allclose(
    losses.ragan_generator(real, fake), (bce(rel_r, 0) + bce(rel_f, 1)) / 2, rtol=1e-5
  )
  # D's gradient also flows through the means (the loss as written, not a detached variant)
  g_fake = jax.grad(lambda f: losses.ragan_discriminator(real, f))(fake)
  g_fake_detached = jax.grad(
    lambda f: (bce(real - jax.lax.stop_gradient(f).mean(), 1) + bce(f - real.mean(), 0)) / 2
  )(fake)
  assert not np.allclose(g_fake, g_fake_detached)


def test_ragan_stays_finite_when_d_saturates():
  z = jnp.array([1e4, -1e4])
  for fn in (losses.ragan_generator, losses.ragan_discriminator):
    assert np.isfinite(float(fn(z, -z)))
    assert np.all(np.isfinite(np.asarray(jax.grad(fn, argnums=(0, 1))(z, -z))))


@pytest.mark.slow
def test_vgg_loss_before_activation_and_with_the_l1_criterion():
  params = vgg.VGG16(taps=('conv2_2',)).init(jax.random.key(0), jnp.zeros((1, 8, 8, 3)))['params']
  k1, k2 = jax.random.split(jax.random.key(1))
  sr = jax.random.uniform(k1, (2, 8, 8, 3), minval=-1, maxval=1)
  hr = jax.random.uniform(k2, (2, 8, 8, 3), minval=-1, maxval=1)
  feats = lambda x: vgg.VGG16(taps=('conv2_2', 'relu2_2')).apply(
    {'params': params}, vgg.preprocess(x, 'torch')
  )
  fs, fh = feats(sr), feats(hr)
  loss = lambda tap, criterion: vgg.content_loss(
    params,
    sr,
    hr,
    preprocess='torch',
    taps=(tap,),
    feature_scale=1.0,
    arch='vgg16',
    criterion=criterion,
  )
  np.testing.assert_allclose(
    loss('conv2_2', 'l1'), jnp.abs(fs['conv2_2'] - fh['conv2_2']).mean(), rtol=1e-5
  )
  np.testing.assert_allclose(
    loss('relu2_2', 'mse'), jnp.square(fs['relu2_2'] - fh['relu2_2']).mean(), rtol=1e-5
  )
  # before the ReLU the negative responses count too
  assert float(loss('conv2_2', 'l1')) > float(loss('relu2_2', 'l1'))
