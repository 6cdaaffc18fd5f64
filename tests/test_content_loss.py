"""The generator's loss as training builds it: the VGG content term, plus an optional pixel term."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from srgan_jax.training import losses, update_step
from srgan_jax.nets import vgg, vgg_texture
from tests.helpers import tiny_config
from tests.test_losses import _photo


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


def test_the_grid_term_adds_its_weight_times_the_grid_loss_and_is_checked():
  from srgan_jax.training import config_checks  # pylint: disable=g-import-not-at-top

  rng = np.random.default_rng(1)
  sr, hr = (jnp.asarray(rng.uniform(-1, 1, (2, 32, 32, 3)), jnp.float32) for _ in range(2))
  plain = tiny_config('srgan', **{'loss.content': 'mse'})
  gridded = tiny_config('srgan', **{'loss.content': 'mse', 'loss.grid_weight': 0.01})
  content = update_step.make_content_loss(plain)
  base, terms = update_step.generator_loss_terms(plain, sr, hr, None, content)
  total, terms = update_step.generator_loss_terms(gridded, sr, hr, None, content)
  assert 'grid_loss' not in update_step.generator_loss_terms(plain, sr, hr, None, content)[1]
  grid = float(losses.grid_loss(sr, hr, 4))
  assert grid > 0 and float(terms['grid_loss']) == grid
  np.testing.assert_allclose(float(total), float(base) + 0.01 * grid, rtol=1e-5)
  assert update_step.loss_label(gridded, 'pixel MSE').endswith(
    '+ 0.01 x grid + 0.001 x adversarial'
  )
  config_checks.validate_config(tiny_config('srresnet', **{'loss.grid_weight': 0.01}))
  with pytest.raises(config_checks.ConfigError, match='grid_weight'):
    config_checks.validate_config(tiny_config('srresnet', **{'loss.grid_weight': -1.0}))


def test_the_v2_recipes_validate_and_only_they_add_the_grid_term():
  from configs import srresnet_x4, x4  # pylint: disable=g-import-not-at-top
  from srgan_jax.training import config_checks  # pylint: disable=g-import-not-at-top

  v2 = x4.get_config('v2')
  config_checks.validate_config(v2)
  config_checks.validate_config(srresnet_x4.get_config('train533'))
  p192 = srresnet_x4.get_config('p192')  # srresnet_x4 v3's first cycle: train533 on 192-px crops
  config_checks.validate_config(p192)
  assert (p192.data.hr_crop, p192.data.batch_size, p192.loss.content) == (192, 8, 'mse')
  assert p192.generator_init == srresnet_x4.get_config('train533').generator_init
  assert v2.loss.grid_weight == 0.01 and v2.loss.content == 'vgg16_22'
  assert update_step.loss_label(v2, 'phi').endswith('+ 0.01 x grid + 0.001 x adversarial')
  for paper in (x4.get_config(), x4.get_config('vgg16'), x4.get_config('demo')):
    assert paper.loss.grid_weight == 0.0


def test_v3_is_v2_with_the_unet_discriminator_and_asks_for_the_v2_run():
  from configs import x4  # pylint: disable=g-import-not-at-top
  from srgan_jax.training import config_checks  # pylint: disable=g-import-not-at-top

  v2, v3 = x4.get_config('v2'), x4.get_config('v3')
  assert (v3.model.discriminator, v3.loss.adversarial_weight) == ('unet_sn', 5e-3)
  changed = {'generator_init', 'model', 'loss', 'num_train_steps', 'eval', 'checkpoint_every'}
  assert all(v3[k] == v2[k] for k in v2.keys() if k not in changed)
  assert v3.loss.grid_weight == v2.loss.grid_weight and v3.loss.pixel_weight == v2.loss.pixel_weight
  with pytest.raises(config_checks.ConfigError, match='generator_init'):
    config_checks.validate_config(v3)  # G must come from the v2 run, not a zoo default
  v3.generator_init = 'srresnet_x4'  # any generator validates (the recipe names v2's run)
  config_checks.validate_config(v3)


# Frequency separation (config.loss.pixel_lowpass, config.loss.d_highpass; Fritsche et al. 2019).


def test_the_low_passed_pixel_term_ignores_texture_but_not_colour(datasets):
  hr = jnp.asarray(_photo(datasets))[None]
  # Texture: a +-0.1 checkerboard (HR pixels); colour: a +0.1 shift of every channel.
  checker = (np.indices(hr.shape[1:3]).sum(0) % 2 * 2 - 1)[None, ..., None] * 0.1
  textured, tinted = hr + checker, hr + 0.1

  def pixel_term(config, sr):
    return float(
      update_step.generator_loss_terms(config, sr, hr, None, lambda *_: 0.0)[1]['pixel_loss']
    )

  full = tiny_config(
    'srgan', **{'loss.content': 'mse', 'loss.pixel': 'mse', 'loss.pixel_weight': 4.0}
  )
  low = tiny_config(
    'srgan',
    **{
      'loss.content': 'mse',
      'loss.pixel': 'mse',
      'loss.pixel_weight': 4.0,
      'loss.pixel_lowpass': 2.0,
    },
  )
  assert pixel_term(full, textured) == pytest.approx(pixel_term(full, tinted), rel=0.05)
  assert pixel_term(low, textured) < 1e-3 * pixel_term(low, tinted)
  assert pixel_term(low, tinted) == pytest.approx(pixel_term(full, tinted), rel=1e-3)
  assert '4 x pixel mse (Gaussian low-pass, sigma 2)' in update_step.loss_label(low, 'pixel MSE')


def test_the_high_passed_discriminator_input_drops_colour_and_keeps_texture(datasets):
  hr = jnp.asarray(_photo(datasets))[None]
  sr = hr + 0.05 * jnp.asarray(np.random.default_rng(0).standard_normal(hr.shape), jnp.float32)
  plain = tiny_config('srgan')
  high = tiny_config('srgan', **{'loss.d_highpass': 2.0})
  key = jax.random.key(0)
  pair = np.asarray(update_step.discriminator_input(plain, hr, sr, key))
  np.testing.assert_array_equal(pair[0], hr[0])  # the paper: [HR, SR] as they are
  np.testing.assert_array_equal(pair[1], sr[0])
  got = update_step.discriminator_input(high, hr, sr, key)
  tinted = update_step.discriminator_input(high, hr + 0.3, sr - 0.2, key)
  np.testing.assert_allclose(np.asarray(tinted), np.asarray(got), atol=1e-5)  # a tint is gone
  noise = np.asarray(got[1] - got[0])  # SR's added noise is mostly high frequencies: it stays
  assert 0.8 < np.std(noise) / 0.05 < 1.0


def test_frequency_separation_sigmas_are_checked():
  from srgan_jax.training import config_checks  # pylint: disable=g-import-not-at-top

  config_checks.validate_config(
    tiny_config(
      'srgan',
      generator_init='',
      pretrain_steps=1,
      **{'loss.pixel': 'l1', 'loss.pixel_lowpass': 2.0, 'loss.d_highpass': 2.0},
    )
  )
  for bad in ({'loss.d_highpass': -1.0}, {'loss.pixel': 'l1', 'loss.pixel_lowpass': 100.0}):
    with pytest.raises(config_checks.ConfigError, match='Gaussian sigma'):
      config_checks.validate_config(
        tiny_config('srgan', generator_init='', pretrain_steps=1, **bad)
      )
  with pytest.raises(config_checks.ConfigError, match='needs a pixel term'):
    config_checks.validate_config(
      tiny_config('srgan', generator_init='', pretrain_steps=1, **{'loss.pixel_lowpass': 2.0})
    )


@pytest.mark.slow
def test_an_srgan_step_with_frequency_separation_runs_and_changes_both_losses():
  from srgan_jax.training import train_states  # pylint: disable=g-import-not-at-top

  hr = {'hr': jnp.asarray(np.random.default_rng(0).integers(0, 256, (4, 24, 24, 3), np.uint8))}
  metrics = {}
  for sigma in (0.0, 2.0):
    config = tiny_config(
      'srgan',
      **{
        'loss.pixel': 'mse',
        'loss.pixel_weight': 4.0,
        'loss.pixel_lowpass': sigma,
        'loss.d_highpass': sigma,
      },
    )
    g, d = train_states.create_train_states(config, jax.random.key(0))
    step = update_step.make_jitted_step(
      config, update_step.make_mesh(), update_step.make_content_loss(config)
    )
    _, _, metrics[sigma] = jax.device_get(step(g, d, hr, None))
  plain, separated = metrics[0.0], metrics[2.0]
  assert (
    plain['content_loss'] == separated['content_loss']
  )  # the content term sees SR and HR as they are
  # Random-noise HR: the blurred pair differs far less than the pair itself.
  assert 0 < separated['pixel_loss'] < 0.5 * plain['pixel_loss']
  assert plain['d_loss'] != separated['d_loss'] and np.isfinite(separated['g_grad_norm'])


# LDL (config.loss.artifact_weight; Liang et al. 2022): against G's moving average.


def test_the_artifact_term_needs_the_moving_average_and_a_weight():
  from srgan_jax.training import config_checks  # pylint: disable=g-import-not-at-top

  ok = {'loss.artifact_weight': 1.0, 'ema_decay': 0.999}
  config_checks.validate_config(tiny_config('srgan', generator_init='', pretrain_steps=1, **ok))
  for bad, match in (
    ({'loss.artifact_weight': 1.0}, 'ema_decay'),
    ({**ok, 'loss.artifact_weight': -1.0}, 'weight'),
  ):
    with pytest.raises(config_checks.ConfigError, match=match):
      config_checks.validate_config(
        tiny_config('srgan', generator_init='', pretrain_steps=1, **bad)
      )


@pytest.mark.slow
def test_an_srgan_step_with_the_artifact_term_adds_its_weight_times_it_to_g_only():
  from srgan_jax.training import train_states  # pylint: disable=g-import-not-at-top

  hr = {'hr': jnp.asarray(np.random.default_rng(0).integers(0, 256, (4, 24, 24, 3), np.uint8))}
  metrics = {}
  for w in (0.0, 2.0):
    config = tiny_config('srgan', **{'loss.artifact_weight': w, 'ema_decay': 0.999})
    g, d = train_states.create_train_states(config, jax.random.key(0))
    step = update_step.make_jitted_step(
      config, update_step.make_mesh(), update_step.make_content_loss(config)
    )
    _, _, metrics[w] = jax.device_get(step(g, d, hr, None))
  plain, ldl = metrics[0.0], metrics[2.0]
  # G's average (inference-mode BN) differs from G on this batch: some pixels are weighed.
  assert 'artifact_loss' not in plain and ldl['artifact_loss'] > 0
  np.testing.assert_allclose(ldl['g_loss'] - plain['g_loss'], 2.0 * ldl['artifact_loss'], rtol=1e-4)
  assert ldl['d_loss'] == plain['d_loss'] and ldl['g_grad_norm'] != plain['g_grad_norm']


# EnhanceNet's texture loss (config.loss.texture_weight; Sajjadi et al. 2017).


def _texture_by_loops(f_sr, f_hr, patch):
  """L_T transcribed window by window in NumPy: mean of (Gram_SR - Gram_HR)^2, Gram = F^T F / n."""
  f_sr, f_hr = np.asarray(f_sr, np.float64), np.asarray(f_hr, np.float64)
  n, h, w, c = f_sr.shape
  p_h, p_w = (h, w) if patch == 0 else (patch, patch)
  total, count = 0.0, 0
  for b in range(n):
    for y in range(0, h, p_h):
      for x in range(0, w, p_w):
        a = f_sr[b, y : y + p_h, x : x + p_w].reshape(-1, c)
        z = f_hr[b, y : y + p_h, x : x + p_w].reshape(-1, c)
        total += np.sum((a.T @ a / len(a) - z.T @ z / len(z)) ** 2)
        count += c * c
  return total / count


def test_the_texture_loss_is_enhancenets_gram_distance_over_windows():
  rng = np.random.default_rng(0)
  f_sr = {
    t: rng.uniform(0, 3, (2, 16 // s, 16 // s, ch)) for t, s, ch in (('a', 1, 4), ('b', 2, 6))
  }
  f_hr = {t: rng.uniform(0, 3, f.shape) for t, f in f_sr.items()}
  taps = ('relu1_1', 'relu2_1')  # strides 1 and 2: an 8-pixel window is 8 and 4 positions
  named = lambda f: {'relu1_1': f['a'], 'relu2_1': f['b']}
  got = vgg_texture.texture_loss(named(f_sr), named(f_hr), taps, patch=8, feature_scale=0.5)
  want = sum(
    _texture_by_loops(0.5 * f_sr[k], 0.5 * f_hr[k], 8 // s) for k, s in (('a', 1), ('b', 2))
  )
  np.testing.assert_allclose(float(got), want, rtol=1e-5)
  whole = vgg_texture.texture_loss(named(f_sr), named(f_hr), taps, patch=0, feature_scale=0.5)
  want = sum(_texture_by_loops(0.5 * f_sr[k], 0.5 * f_hr[k], 0) for k in 'ab')
  np.testing.assert_allclose(float(whole), want, rtol=1e-5)


def test_the_texture_loss_sees_what_is_in_each_window_not_where():
  # Positions shuffled inside each window: the same texture (loss 0), unlike the content loss;
  # windows swapped: other textures at those places (loss > 0), unless the window is the crop.
  rng = np.random.default_rng(1)
  hr = rng.uniform(0, 1, (1, 8, 8, 5)) * np.linspace(0.2, 2, 8)[None, :, None, None]
  shuffled = hr.reshape(1, 2, 4, 2, 4, 5).copy()
  for y in range(2):
    for x in range(2):
      block = shuffled[0, y, :, x].reshape(16, 5)
      shuffled[0, y, :, x] = block[rng.permutation(16)].reshape(4, 4, 5)
  shuffled = shuffled.reshape(hr.shape)
  swapped = np.concatenate([hr[:, 4:], hr[:, :4]], axis=1)  # top and bottom halves
  loss = lambda sr, patch: float(
    vgg_texture.texture_loss(
      {'relu1_1': sr}, {'relu1_1': hr}, ['relu1_1'], patch, feature_scale=1.0
    )
  )
  assert np.abs(shuffled - hr).max() > 0.1
  assert loss(shuffled, 4) < 1e-12 and loss(shuffled, 0) < 1e-12
  assert loss(swapped, 4) > 1e-4 and loss(swapped, 0) < 1e-12


def test_the_texture_term_adds_its_weight_times_the_texture_loss_from_the_same_vgg_pass():
  rng = np.random.default_rng(2)
  sr, hr = (jnp.asarray(rng.uniform(-1, 1, (2, 32, 32, 3)), jnp.float32) for _ in range(2))
  params = vgg.VGG16(taps=('relu3_1',)).init(jax.random.key(0), sr)['params']
  plain = tiny_config('srgan', **{'loss.content': 'vgg16_22'})
  textured = tiny_config('srgan', **{'loss.content': 'vgg16_22', 'loss.texture_weight': 3.0})
  base, base_terms = update_step.generator_loss_terms(
    plain, sr, hr, params, update_step.make_content_loss(plain, 'torch')
  )
  total, terms = update_step.generator_loss_terms(
    textured, sr, hr, params, update_step.make_content_loss(textured, 'torch')
  )
  features = vgg.VGG16(taps=('relu1_1', 'relu2_1', 'relu3_1')).apply(
    {'params': params}, jnp.concatenate([vgg.preprocess(sr, 'torch'), vgg.preprocess(hr, 'torch')])
  )
  want = vgg_texture.texture_loss(
    {k: f[:2] for k, f in features.items()},
    {k: f[2:] for k, f in features.items()},
    ('relu1_1', 'relu2_1', 'relu3_1'),
    patch=16,
  )
  assert float(terms['texture_loss']) == pytest.approx(float(want), rel=1e-4) and float(want) > 0
  assert float(terms['content_loss']) == pytest.approx(float(base_terms['content_loss']), rel=1e-6)
  np.testing.assert_allclose(float(total), float(base) + 3.0 * float(want), rtol=1e-5)
  assert 'texture_loss' not in base_terms
  assert update_step.loss_label(textured, 'phi') == (
    'phi + 3 x texture (Gram matrices of relu1_1, relu2_1, relu3_1 over 16x16-pixel windows) '
    '+ 0.001 x adversarial'
  )
  assert 'texture' not in update_step.loss_label(plain, 'phi')


@pytest.mark.parametrize(
  'bad, match',
  [
    ({'loss.content': 'mse'}, 'VGG loss'),
    ({'loss.texture_taps': ('relu6_1',)}, 'texture_taps'),
    ({'loss.texture_taps': ()}, 'texture_taps'),
    ({'loss.texture_patch': 10}, 'texture_patch'),  # does not divide hr_crop 24
    ({'loss.texture_patch': 6}, 'texture_patch'),  # not a multiple of relu3_1's stride 4
    ({'loss.content_shift': 4}, 'content_shift=4'),  # the content loss sees 20x20: 8 does not tile
    ({'loss.texture_weight': -1.0}, 'texture_weight'),
  ],
)
def test_the_texture_term_is_checked(bad, match):
  from srgan_jax.training import config_checks  # pylint: disable=g-import-not-at-top

  ok = {'loss.content': 'vgg16_22', 'loss.vgg_weights': 'x', 'loss.texture_weight': 1.0}
  config_checks.validate_config(
    tiny_config('srgan', generator_init='', pretrain_steps=1, **{**ok, 'loss.texture_patch': 8})
  )
  with pytest.raises(config_checks.ConfigError, match=match):
    config_checks.validate_config(
      tiny_config('srgan', generator_init='', pretrain_steps=1, **{**ok, **bad})
    )
