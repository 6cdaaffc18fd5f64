"""The loss terms on inputs whose values are computed by hand."""

import math

import jax
import jax.numpy as jnp
import numpy as np

from srgan_jax.training import losses


def test_pixel_mse_hand_computed():
  sr = jnp.array([[0.0, 1.0], [0.5, -1.0]])
  hr = jnp.array([[1.0, 1.0], [0.0, 0.0]])
  # squared errors 1, 0, 0.25, 1 -> mean 2.25 / 4
  assert float(losses.pixel_mse(sr, hr)) == 0.5625


def test_generator_adversarial_is_minus_log_d():
  logits = jnp.array([0.0, 2.0])
  # D = sigmoid(z): 0.5 and 1/(1+e^-2); l_Gen = mean(-log D)
  want = (math.log(2.0) + math.log(1.0 + math.exp(-2.0))) / 2
  np.testing.assert_allclose(float(losses.generator_adversarial(logits)), want, rtol=1e-6)


def test_discriminator_bce_hand_computed():
  real, fake = jnp.array([1.0]), jnp.array([-1.0])
  # -log sigmoid(1) - log(1 - sigmoid(-1)) = 2 log(1 + e^-1)
  want = 2 * math.log(1.0 + math.exp(-1.0))
  np.testing.assert_allclose(float(losses.discriminator_bce(real, fake)), want, rtol=1e-6)


def test_adversarial_terms_stay_finite_when_d_saturates():
  z = jnp.array([1e4, -1e4])
  assert np.isfinite(float(losses.generator_adversarial(z)))
  assert np.isfinite(float(losses.discriminator_bce(z, z)))
  g = jax.grad(lambda z: losses.generator_adversarial(z))(z)
  assert np.all(np.isfinite(np.asarray(g)))
  # A fooled D (fake logit -> +inf) costs G nothing; a confident D (-> -inf) costs ~|z|.
  np.testing.assert_allclose(
    float(losses.generator_adversarial(jnp.array([-50.0]))), 50.0, rtol=1e-6
  )
