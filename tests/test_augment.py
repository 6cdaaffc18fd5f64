"""DiffAugment: each policy does what its name says, per sample, differentiably; off by default."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from srgan_jax.training import augment, config_checks
from tests.helpers import tiny_config


def _images(n=4, h=16, w=24):
  return jax.random.uniform(jax.random.key(0), (n, h, w, 3), minval=-1.0, maxval=1.0)


def test_translation_shifts_each_image_by_its_own_offset_with_zeros_shifted_in():
  x = _images()
  y = augment.translation(jax.random.key(1), x)
  offsets = []
  for a, b in zip(np.asarray(x), np.asarray(y)):
    found = [
      (dy, dx)
      for dy in range(-2, 3)
      for dx in range(-3, 4)
      if np.array_equal(np.roll(a, (dy, dx), (0, 1))[2:-2, 3:-3], b[2:-2, 3:-3])
    ]
    assert len(found) == 1, found  # a pure shift of at most 1/8 of the size (2 and 3 pixels)
    dy, dx = found[0]
    assert (dy <= 0 or not b[:dy].any()) and (dx <= 0 or not b[:, :dx].any())  # zeros came in
    offsets.append(found[0])
  assert len(set(offsets)) > 1  # one draw per sample


def test_cutout_zeroes_one_half_size_square_per_image_and_keeps_the_rest():
  x = _images(n=8, h=16, w=16)
  y = np.asarray(augment.cutout(jax.random.key(2), x))
  zeroed = (y == 0).all(axis=-1)
  assert np.array_equal(y[~zeroed], np.asarray(x)[~zeroed])
  for z in zeroed:
    rows, cols = np.nonzero(z)
    assert 0 < z.sum() <= 64 and z.sum() == (np.ptp(rows) + 1) * (np.ptp(cols) + 1)  # a rectangle
    assert max(np.ptp(rows), np.ptp(cols)) + 1 <= 8
  assert any(z.sum() == 64 for z in zeroed)  # whole 8x8 squares where not cut by the border


def test_color_changes_brightness_saturation_and_contrast_per_image():
  x = _images()
  y = augment.color(jax.random.key(3), x)
  assert y.shape == x.shape and not jnp.allclose(y, x)
  assert len({round(float(d), 4) for d in jnp.mean(y - x, axis=(1, 2, 3))}) == 4


def test_the_augmented_image_passes_g_s_gradient_and_the_policy_is_checked():
  x = _images()
  loss = lambda x, policy: jnp.sum(augment.diff_augment(jax.random.key(4), x, policy) ** 2)
  grad = jax.grad(loss)(x, augment.parse('translation,cutout'))
  assert 0.3 < float(jnp.mean(grad != 0)) < 1  # pixels cut out or shifted out get none
  grad = jax.grad(loss)(x, augment.parse('color, translation,cutout'))
  assert jnp.isfinite(grad).all() and float(jnp.mean(grad != 0)) == 1  # the means reach all
  with pytest.raises(config_checks.ConfigError, match="diffaugment='flip'"):
    config_checks.validate_config(tiny_config('srresnet', **{'loss.diffaugment': 'flip'}))
  assert augment.parse('') == ()  # the paper's default: D sees the images as they are


@pytest.mark.slow
def test_an_srgan_step_with_diffaugment_shows_d_augmented_images_and_g_still_learns():
  from srgan_jax.training import train_states, update_step  # pylint: disable=g-import-not-at-top

  hr = {'hr': jnp.asarray(np.random.default_rng(0).integers(0, 256, (4, 24, 24, 3), np.uint8))}
  metrics = {}
  for policy in ('', 'translation,cutout'):
    config = tiny_config('srgan', **{'loss.diffaugment': policy})
    g, d = train_states.create_train_states(config, jax.random.key(0))
    step = update_step.make_jitted_step(
      config, update_step.make_mesh(), update_step.make_content_loss(config)
    )
    _, _, metrics[policy] = jax.device_get(step(g, d, hr, None))
  plain, augmented = metrics[''], metrics['translation,cutout']
  assert plain['content_loss'] == augmented['content_loss']  # G's content term: unaugmented HR
  assert plain['d_loss'] != augmented['d_loss'] and np.isfinite(augmented['g_grad_norm'])


def test_joint_shift_crops_sr_and_hr_alike_at_a_random_offset():
  x = _images(n=2, h=16, w=16)
  offsets = set()
  for seed in range(6):
    a, b = augment.joint_shift(jax.random.key(seed), x, x + 1.0, 4)
    assert a.shape == (2, 12, 12, 3) and jnp.array_equal(b, a + 1.0)  # the same window of both
    found = [
      (i, j) for i in range(5) for j in range(5) if jnp.array_equal(a, x[:, i : i + 12, j : j + 12])
    ]
    assert len(found) == 1
    offsets.add(found[0])
  assert len(offsets) > 1
  with pytest.raises(config_checks.ConfigError, match='content_shift'):
    config_checks.validate_config(tiny_config('srresnet', **{'loss.content_shift': -1}))
