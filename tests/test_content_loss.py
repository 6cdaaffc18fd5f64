"""The content loss l^SR_X as training builds it: the VGG term, plus an optional pixel term."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from srgan_jax import config_checks, losses, update_step, vgg
from tests.helpers import tiny_config


def test_pixel_weight_adds_that_many_pixel_mses_to_the_vgg_loss():
  rng = np.random.default_rng(0)
  sr, hr = (jnp.asarray(rng.uniform(-1, 1, (2, 32, 32, 3)), jnp.float32) for _ in range(2))
  params = vgg.VGG16(taps=('relu2_2',)).init(jax.random.key(0), sr)['params']
  phi = update_step.make_content_loss(tiny_config('srgan', **{'loss.content': 'vgg16_22'}), 'torch')
  mixed = update_step.make_content_loss(
    tiny_config('srgan', **{'loss.content': 'vgg16_22', 'loss.pixel_weight': 2.5}), 'torch'
  )
  vgg_only, mse = float(phi(sr, hr, params)), float(losses.pixel_mse(sr, hr))
  assert vgg_only > 0 and mse > 0
  np.testing.assert_allclose(float(mixed(sr, hr, params)), vgg_only + 2.5 * mse, rtol=1e-5)


def test_a_negative_pixel_weight_is_a_config_error():
  with pytest.raises(config_checks.ConfigError, match='pixel_weight'):
    config_checks.validate_config(
      tiny_config('srgan', **{'generator_init': 'x', 'loss.pixel_weight': -1.0})
    )
