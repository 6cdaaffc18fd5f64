"""The generator's loss as training builds it: the VGG content term, plus an optional pixel term."""

import jax
import jax.numpy as jnp
import numpy as np

from srgan_jax.training import losses, update_step
from srgan_jax.nets import vgg
from tests.helpers import tiny_config


def test_the_demo_pixel_term_is_the_papers_pixel_mse_on_minus_one_to_one():
  """configs/x4.py:demo adds pixel 'mse' x 4 on [0, 1] images: 1 x Eq. 4's MSE on G's [-1, 1]."""
  from configs import x4

  demo = x4.get_config('demo')
  rng = np.random.default_rng(0)
  sr, hr = (jnp.asarray(rng.uniform(-1, 1, (2, 32, 32, 3)), jnp.float32) for _ in range(2))
  params = vgg.VGG16(taps=('relu2_2',)).init(jax.random.key(0), sr)['params']
  config = tiny_config(
    'srgan',
    **{
      'loss.content': 'vgg16_22',
      'loss.pixel': demo.loss.pixel,
      'loss.pixel_weight': demo.loss.pixel_weight,
    },
  )
  content = update_step.make_content_loss(config, 'torch')
  total, terms = update_step.generator_loss_terms(config, sr, hr, params, content)
  phi = float(content(sr, hr, params))
  assert phi > 0 and float(terms['content_loss']) == phi
  np.testing.assert_allclose(float(total), phi + float(losses.pixel_mse(sr, hr)), rtol=1e-5)
