"""Real-ESRGAN's degradation model (data/degradations.py, data/blur.py, data/jpeg.py): each
operation against an independent reference (Pillow's libjpeg, torch's F.interpolate, scipy's
J1, numpy's reflect padding) and the statistics it promises."""

import io

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest
import scipy.special
import torch
from PIL import Image
from skimage import data as skdata

from configs import realsrgan_x4
from srgan_jax.data import blur, degradations, imresize, jpeg
from srgan_jax.training import config_checks


def _pillow_roundtrip(img: np.ndarray, quality: int) -> tuple[np.ndarray, dict]:
  buf = io.BytesIO()
  Image.fromarray(img).save(buf, 'JPEG', quality=quality, subsampling=2)
  decoded = Image.open(io.BytesIO(buf.getvalue()))
  return np.asarray(decoded.convert('RGB')), decoded.quantization


def _psnr(a, b) -> float:
  return 10 * np.log10(255.0**2 / np.mean((a.astype(np.float64) - b) ** 2))


@pytest.mark.parametrize('quality', [10, 37, 50, 75, 95])
def test_quant_tables_are_libjpegs(quality):
  # The tables Pillow's encoder wrote into the file (natural order), as ours for that quality.
  _, tables = _pillow_roundtrip(skdata.chelsea()[:32, :32], quality)
  luma, chroma = jpeg.quant_tables(quality)
  np.testing.assert_array_equal(np.asarray(luma).ravel(), tables[0])
  np.testing.assert_array_equal(np.asarray(chroma).ravel(), tables[1])


def test_jpeg_matches_pillows_decode_on_photographs():
  # Odd sizes (partial blocks and MCUs), three photographs, a range of qualities.
  f = jax.jit(jpeg.jpeg)
  for img in (
    skdata.astronaut()[:150, :181],
    skdata.chelsea()[:97, :123],
    skdata.coffee()[:64, :80],
  ):
    errors = []
    for q in (20, 50, 90):
      ref, _ = _pillow_roundtrip(img, q)
      ours = np.asarray(f(jnp.asarray(img[None] / 255.0, jnp.float32), q))[0] * 255.0
      assert _psnr(ours, ref) > 42.0, q  # measured 45-51 dB (docs/degradations.md)
      errors.append(_psnr(ours, img))
    assert errors[0] < errors[1] < errors[2]  # higher quality, closer to the original


def test_jpeg_of_an_image_in_a_canvas_is_that_of_the_image():
  img = skdata.coffee()[:45, :70] / 255.0
  canvas = np.zeros((2, 80, 96, 3), np.float32)
  canvas[0, :45, :70] = img
  canvas[1, :45, :70] = img[::-1]
  out = np.asarray(
    jpeg.jpeg(jnp.asarray(canvas), jnp.array([40, 80]), jnp.array([45, 45]), jnp.array([70, 70]))
  )
  for i, (im, q) in enumerate(((img, 40), (img[::-1], 80))):
    alone = np.asarray(jpeg.jpeg(jnp.asarray(im[None], jnp.float32), q))[0]
    np.testing.assert_array_equal(out[i, :45, :70], alone)


def test_kernels_sum_to_one_and_stay_within_their_size():
  p = degradations._kernel_params(degradations.defaults(), '')
  kernels = np.asarray(blur.random_kernels(jax.random.key(0), 64, p))
  np.testing.assert_allclose(kernels.sum(axis=(1, 2)), 1.0, atol=1e-5)
  for k in kernels:
    support = np.nonzero(np.abs(k) > 0)
    half = max(np.abs(support[0] - 10).max(), np.abs(support[1] - 10).max())
    assert half <= 10
    np.testing.assert_allclose(k, k[::-1, ::-1], atol=1e-6)  # point-symmetric
  assert len({np.round(k, 6).tobytes() for k in kernels}) == 64  # each sample its own
  # a wide kernel of size 7 is cut to its 7 x 7 window
  wide = np.asarray(
    blur.shaped_kernel(0, jnp.array(3.0), jnp.array(3.0), jnp.array(0.0), jnp.array(1.0), 7)
  )
  assert np.all(wide[7:14, 7:14] > 0) and wide.sum() == pytest.approx(wide[7:14, 7:14].sum())


def test_gaussian_kernels_have_their_sigma_and_sinc_has_bessels_shape():
  y, x = np.mgrid[-10:11, -10:11].astype(np.float64)
  iso = np.asarray(
    blur.shaped_kernel(0, jnp.array(2.0), jnp.array(2.0), jnp.array(0.0), jnp.array(1.0), 21)
  )
  np.testing.assert_allclose(np.sum(iso * x * x), 4.0, rtol=0.02)  # variance sigma^2
  aniso = np.asarray(
    blur.shaped_kernel(1, jnp.array(3.0), jnp.array(1.0), jnp.array(np.pi / 2), jnp.array(1.0), 21)
  )
  assert np.sum(aniso * y * y) > 5 * np.sum(aniso * x * x)  # rotated 90 degrees: long along y
  r = np.linspace(0.1, 45, 200)
  np.testing.assert_allclose(
    blur.bessel_j1(jnp.asarray(r, jnp.float32)), scipy.special.j1(r), atol=2e-5
  )
  omega, rr = 1.3, np.hypot(x, y)
  want = np.where(
    rr == 0,
    omega**2 / (4 * np.pi),
    omega * scipy.special.j1(omega * rr) / (2 * np.pi * np.maximum(rr, 1e-9)),
  )
  np.testing.assert_allclose(blur.sinc_kernel(jnp.array(omega), 21), want / want.sum(), atol=2e-6)


def test_filter2d_is_a_correlation_with_reflected_borders_also_inside_a_canvas():
  rng = np.random.default_rng(0)
  img = rng.random((1, 30, 41, 3)).astype(np.float32)
  k = rng.random((1, 21, 21)).astype(np.float32)
  padded = np.pad(img[0], ((10, 10), (10, 10), (0, 0)), mode='reflect')
  want = np.zeros_like(img[0])
  for dy in range(21):
    for dx in range(21):
      want += k[0, dy, dx] * padded[dy : dy + 30, dx : dx + 41]
  np.testing.assert_allclose(
    blur.filter2d(jnp.asarray(img), jnp.asarray(k))[0], want, rtol=1e-4, atol=1e-4
  )
  canvas = np.zeros((1, 48, 48, 3), np.float32)
  canvas[0, :30, :41] = img[0]
  out = blur.filter2d(jnp.asarray(canvas), jnp.asarray(k), jnp.array([30]), jnp.array([41]))
  np.testing.assert_allclose(out[0, :30, :41], want, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize('mode', degradations.MODES)
@pytest.mark.parametrize('n_in,n_out', [(37, 11), (40, 20), (23, 50), (16, 16)])
def test_resize_is_torchs_interpolate(mode, n_in, n_out):
  x = np.random.default_rng(1).random((1, n_in, n_in + 3, 3)).astype(np.float32)
  ref = (
    torch.nn.functional.interpolate(
      torch.from_numpy(x).permute(0, 3, 1, 2),
      size=(n_out, n_out + 2),
      mode=mode,
      **({} if mode == 'area' else {'align_corners': False}),
    )
    .permute(0, 2, 3, 1)
    .numpy()
  )
  canvas = np.zeros((1, 60, 60, 3), np.float32)
  canvas[0, :n_in, : n_in + 3] = x[0]
  m = jnp.array([degradations.MODES.index(mode)])
  out = degradations.resize(
    jnp.asarray(canvas),
    (jnp.array([n_in]), jnp.array([n_in + 3])),
    (jnp.array([n_out]), jnp.array([n_out + 2])),
    (64, 64),
    m,
  )
  np.testing.assert_allclose(out[0, :n_out, : n_out + 2], ref[0], atol=2e-5)
  assert not np.any(np.asarray(out[0, n_out:]))  # nothing beyond the valid size


def test_noise_statistics():
  b = 4
  x = jnp.full((b, 64, 64, 3), 0.5)
  n = jnp.full((b,), 64)
  key = jax.random.key(3)
  # Gaussian only, colour: the std is sigma (grey levels / 255)
  g = degradations.random_noise(key, x, n, n, 1.0, (10.0, 10.0), (1.0, 1.0), 0.0)
  np.testing.assert_allclose(np.std(np.asarray(g) - 0.5), 10 / 255, rtol=0.03)
  # grey noise: the same in the three channels
  grey = np.asarray(degradations.random_noise(key, x, n, n, 1.0, (10.0, 10.0), (1.0, 1.0), 1.0))
  np.testing.assert_array_equal(grey[..., 0], grey[..., 2])
  # Poisson: variance scale^2 x / v, v = 64 * 64 * 3 rounded up to 2^14
  pz = np.asarray(degradations.random_noise(key, x, n, n, 0.0, (1.0, 1.0), (2.0, 2.0), 0.0)) - 0.5
  np.testing.assert_allclose(np.var(pz), 4 * 0.5 / 2**14, rtol=0.05)
  # ranges may start at 0 (config.data.realesrgan.noise_range=(0, 30)): sigma or scale 0 adds none
  for gaussian_prob in (0.0, 1.0):
    none = degradations.random_noise(key, x, n, n, gaussian_prob, (0.0, 0.0), (0.0, 0.0), 0.0)
    np.testing.assert_array_equal(none, x)


def test_realesrgan_lr_is_seeded_per_sample_and_on_8_bit_levels():
  hr = np.repeat(skdata.astronaut()[None, 100:196, 200:296], 3, axis=0) / 255.0
  f = jax.jit(lambda k, x: degradations.realesrgan(k, x, 4, degradations.defaults()))
  a = np.asarray(f(jax.random.key(7), jnp.asarray(hr, jnp.float32)))
  assert a.shape == (3, 24, 24, 3) and a.min() >= 0 and a.max() <= 1
  np.testing.assert_allclose(a * 255, np.round(a * 255), atol=1e-3)
  np.testing.assert_array_equal(a, f(jax.random.key(7), jnp.asarray(hr, jnp.float32)))  # seeded
  assert not np.array_equal(a, f(jax.random.key(8), jnp.asarray(hr, jnp.float32)))
  assert not np.array_equal(a[0], a[1]) and not np.array_equal(a[1], a[2])  # own parameters


def test_light_samples_are_bicubic_lr_saved_as_jpeg_and_the_rest_realesrgans():
  hr = np.stack([skdata.astronaut()[y : y + 96, 150:246] for y in range(0, 400, 50)])
  c = realsrgan_x4.get_config()
  key = jax.random.key(3)
  full, _ = degradations.make_lr(key, hr, c.data, 4)
  c.data.realesrgan.light_prob, c.data.realesrgan.light_jpeg_range = 1.0, (50, 50)
  light, _ = degradations.make_lr(key, hr, c.data, 4)
  bicubic_lr = np.asarray(imresize.degrade(hr, 4, True)[0] * 255).round().astype(np.uint8)
  np.testing.assert_array_equal(light, jpeg.jpeg(bicubic_lr / 255.0, 50))
  pillow = np.stack([_pillow_roundtrip(lr, 50)[0] for lr in bicubic_lr])
  # A web image: bicubic, then JPEG q50. Over 8 images of 24 x 24 (9 blocks each) one DCT
  # coefficient rounded the other way (float DCT here, libjpeg's integer one) weighs more.
  assert _psnr(np.asarray(light * 255).round(), pillow) > 38
  c.data.realesrgan.light_prob = 0.5
  mixed = np.asarray(degradations.make_lr(key, hr, c.data, 4)[0])
  is_light = [np.array_equal(m, x) for m, x in zip(mixed, np.asarray(light))]
  is_full = [np.array_equal(m, x) for m, x in zip(mixed, np.asarray(full))]
  assert all(a != b for a, b in zip(is_light, is_full))  # each sample one kind or the other
  assert 0 < sum(is_light) < len(hr)


def test_make_lr_bicubic_is_the_papers_degradation():
  hr = skdata.coffee()[None, :96, :96]
  c = realsrgan_x4.get_config()
  c.data.degradation = 'bicubic'
  got = degradations.make_lr(jax.random.key(0), hr, c.data, 4)
  want = imresize.degrade(hr, 4, c.data.quantize_lr)
  for g, w in zip(got, want):
    np.testing.assert_array_equal(g, w)


@pytest.mark.parametrize(
  'field,value,says',
  [
    ('degradation', 'jpeg', "data.degradation='jpeg'"),
    ('realesrgan.jpeg_range', (20, 120), 'jpeg_range=(20, 120)'),
    ('realesrgan.jpeg_range', (30.5, 95), 'integer qualities'),
    ('realesrgan.resize_range', (1.2, 1.5), 'resize_range'),
    ('realesrgan.sinc_prob', 1.5, 'probability'),
    ('realesrgan.kernel_prob', (1.0, 0.0), 'kernel_prob'),
    ('realesrgan.blur_sigma', (0.0, 3.0), 'blur_sigma'),
    ('realesrgan.noise_range', (-1.0, 30.0), 'noise_range=(-1.0, 30.0): use (low, high) with 0 <='),
    ('realesrgan.light_prob', -0.1, 'light_prob=-0.1: use a probability'),
    ('realesrgan.light_jpeg_range', (0, 50), 'light_jpeg_range=(0, 50)'),
  ],
)
def test_bad_degradation_settings_are_one_line_config_errors(field, value, says):
  c = realsrgan_x4.get_config()
  c.generator_init = ''
  c.phase = 'srresnet'
  c.loss.content = 'mse'
  c.eval.sets = ()
  target = c.data
  *parents, leaf = field.split('.')
  for name in parents:
    target = target[name]
  with target.ignore_type():
    target[leaf] = value
  with pytest.raises(config_checks.ConfigError) as e:
    config_checks.validate_config(c)
  assert says in str(e.value) and '\n' not in str(e.value)


def test_the_papers_configs_keep_bicubic():
  from configs import default, esrgan_x4, srresnet_x4, x4  # pylint: disable=g-import-not-at-top

  for c in (
    default.get_config(),
    x4.get_config(),
    x4.get_config('v2'),
    srresnet_x4.get_config(),
    esrgan_x4.get_config(),
  ):
    assert c.data.degradation == 'bicubic'
  for variant in (None, 'v2', 'demo'):  # the real-world configs and the demo validate as they are
    c = realsrgan_x4.get_config(variant)
    assert c.data.degradation == 'realesrgan'
    config_checks.validate_config(c)
  assert isinstance(realsrgan_x4.get_config().data.realesrgan, ml_collections.ConfigDict)


def _srresnet_step(**overrides):
  """(config, G's state, batch, metrics) of one jitted SRResNet train step on a tiny config."""
  from srgan_jax.data import pipeline  # pylint: disable=g-import-not-at-top
  from srgan_jax.training import train_states, update_step  # pylint: disable=g-import-not-at-top
  from tests.helpers import tiny_config  # pylint: disable=g-import-not-at-top

  c = tiny_config('srresnet', **{'data.hr_crop': 32, **overrides})
  config_checks.validate_config(c)
  g, _ = train_states.create_train_states(c, jax.random.key(0))
  batch = {'hr': jnp.asarray(next(pipeline.create_train_iterator(c))['hr'])}
  step = jax.jit(
    lambda g, b: update_step.train_step(
      g, None, b, None, config=c, content_loss=update_step.make_content_loss(c)
    )
  )
  return c, g, batch, step(g, batch)[2]


def test_the_train_step_feeds_g_the_seeded_realesrgan_lr():
  from srgan_jax.training import losses  # pylint: disable=g-import-not-at-top

  c, g, batch, m = _srresnet_step(**{'data.degradation': 'realesrgan'})
  key = jax.random.fold_in(jax.random.fold_in(jax.random.key(c.seed), g.step), 2)
  # jitted: op by op, compiling each of the degradations' many small kernels was most of the test
  lr, hr = jax.jit(lambda k, x: degradations.make_lr(k, x, c.data, 4))(key, batch['hr'])
  assert not np.allclose(lr, imresize.degrade(batch['hr'], 4, True)[0], atol=2 / 255)
  sr, _ = jax.jit(
    lambda g, lr: g.apply_fn(
      {'params': g.params, 'batch_stats': g.batch_stats}, lr, train=True, mutable=['batch_stats']
    )
  )(g, lr)
  np.testing.assert_allclose(m['content_loss'], losses.pixel_mse(sr, hr), rtol=1e-5)


def test_usm_sharpen_is_basicsrs_usmsharp():
  x = np.stack([skdata.astronaut()[100:196, 150:246], skdata.coffee()[:96, 200:296]]) / 255.0
  got = np.asarray(blur.usm_sharpen(jnp.asarray(x, jnp.float32)))
  # BasicSR: cv2.getGaussianKernel(51, 0) (sigma 8, 25 taps each side), torch's reflect padding
  # (numpy/scipy 'mirror'), residual mask above 10 grey levels softened by the same blur.
  g = lambda a: scipy.ndimage.gaussian_filter(a, sigma=(0, 8, 8, 0), mode='mirror', truncate=25 / 8)
  residual = x - g(x)
  soft = g((np.abs(residual) * 255 > 10).astype(np.float64))
  want = soft * np.clip(x + 0.5 * residual, 0, 1) + (1 - soft) * x
  np.testing.assert_allclose(got, want, atol=2e-4)
  assert np.std(got - x) > 1e-3  # it did sharpen
  flat = jnp.full((1, 32, 32, 3), 0.3)
  np.testing.assert_allclose(blur.usm_sharpen(flat), flat, atol=1e-6)


def test_usm_target_is_what_gs_content_loss_aims_at():
  from srgan_jax.training import losses  # pylint: disable=g-import-not-at-top

  c, g, batch, m = _srresnet_step(**{'loss.usm_target': True})
  lr, hr = degradations.make_lr(None, batch['hr'], c.data, 4)
  sr, _ = g.apply_fn(
    {'params': g.params, 'batch_stats': g.batch_stats}, lr, train=True, mutable=['batch_stats']
  )
  target = blur.usm_sharpen((hr + 1) / 2) * 2 - 1
  np.testing.assert_allclose(m['content_loss'], losses.pixel_mse(sr, target), rtol=1e-5)
  assert not np.isclose(m['content_loss'], losses.pixel_mse(sr, hr), rtol=1e-3)
  c.data.hr_crop = 24
  with pytest.raises(config_checks.ConfigError, match='usm_target'):
    config_checks.validate_config(c)
