"""The loss terms on inputs whose values are computed by hand."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

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


# The grid term (config.loss.grid_weight): SR's pattern locked to the LR grid against HR's.


def _photo(datasets):
  from srgan_jax.data import image_io  # pylint: disable=g-import-not-at-top

  img = image_io.load_rgb(datasets / 'Set14' / 'image_SRF_4' / 'img_001_SRF_4_HR.png')
  return img[:96, :120].astype(np.float32) / 127.5 - 1.0


def test_the_grid_pattern_is_the_grid_measure_of_evaluation(datasets):
  from srgan_jax.evaluation import metrics  # pylint: disable=g-import-not-at-top

  x = _photo(datasets)
  pattern = losses.grid_pattern(jnp.asarray(x)[None], 4)
  assert pattern.shape == (1, 4, 4)
  want = metrics.grid_artifact((x + 1.0) * 127.5, 4)  # scipy's Gaussian, numpy, float64
  assert abs(float(jnp.sqrt(jnp.mean(pattern**2))) - want) < 1e-4 * want


def test_the_grid_loss_is_zero_for_hr_and_its_step_removes_a_grid(datasets):
  hr = jnp.asarray(_photo(datasets))[None]
  assert float(losses.grid_loss(hr, hr, 4)) == 0.0
  # A fixed 4x4 pattern tiled over the image (a sub-pixel convolution's grid) of 3 grey levels.
  tile = np.random.default_rng(0).standard_normal((4, 4, 1)).astype(np.float32)
  grid = np.tile(tile / np.sqrt(np.mean(tile**2)) * 3 / 127.5, (24, 30, 3))
  sr = hr + grid
  loss = float(losses.grid_loss(sr, hr, 4))
  assert 5.0 < loss < 12.0  # ~ (3 grey levels x Y's weights and the high-pass)^2
  # Noise of the same RMS that does not repeat with the LR pixels counts ~1 / 720 as much
  # (its phase means over 24 x 30 positions).
  noise = np.random.default_rng(1).standard_normal(grid.shape).astype(np.float32) * 3 / 127.5
  assert float(losses.grid_loss(hr + noise, hr, 4)) < 0.01 * loss
  g = jax.grad(lambda s: losses.grid_loss(s, hr, 4))(sr)
  lr = 0.5 * loss / float(jnp.sum(g * g))
  assert float(losses.grid_loss(sr - lr * g, hr, 4)) < 0.6 * loss


# Frequency separation (config.loss.pixel_lowpass, config.loss.d_highpass; Fritsche et al. 2019).


def test_the_gaussian_low_pass_is_scipys_gaussian_filter(datasets):
  import scipy.ndimage  # pylint: disable=g-import-not-at-top

  x = _photo(datasets)
  got = np.asarray(losses.gaussian_lowpass(jnp.asarray(x)[None], 2.0))[0]
  want = scipy.ndimage.gaussian_filter(x.astype(np.float64), sigma=(2.0, 2.0, 0), mode='reflect')
  np.testing.assert_allclose(got, want, atol=1e-5)


# LDL's artifact map (Liang et al., CVPR 2022), against a NumPy transcription of BasicSR's
# get_refined_artifact_map (NCHW torch there: unfold with 'reflect' padding, unbiased variances).


def _basicsr_artifact_map(gt, output, ema, ksize=7):
  r_ema = np.abs(gt - ema).sum(-1, keepdims=True)
  r_sr = np.abs(gt - output).sum(-1, keepdims=True)
  patch = np.var(r_sr, axis=(1, 2, 3), ddof=1, keepdims=True) ** (1 / 5)
  p = (ksize - 1) // 2
  padded = np.pad(r_sr, ((0, 0), (p, p), (p, p), (0, 0)), mode='reflect')
  windows = np.lib.stride_tricks.sliding_window_view(padded, (ksize, ksize), axis=(1, 2))
  pixel = np.var(windows, axis=(-2, -1), ddof=1)
  weight = patch * pixel
  weight[r_sr < r_ema] = 0
  return weight


def test_artifact_map_is_basicsrs():
  rng = np.random.default_rng(0)
  hr, sr, ema = (rng.uniform(0, 1, (2, 20, 17, 3)) for _ in range(3))
  want = _basicsr_artifact_map(hr, sr, ema)
  got = losses.artifact_map(*(jnp.asarray(x * 2 - 1, jnp.float32) for x in (hr, sr, ema)))
  assert got.shape == (2, 20, 17, 1) and (want == 0).mean() > 0.2  # some pixels masked
  np.testing.assert_allclose(np.asarray(got), want, rtol=2e-4, atol=1e-7)


def test_artifact_loss_weighs_only_what_gs_average_does_better():
  # Flat grey HR; SR adds +-0.1 noise in one corner (grain on a flat region: an artifact).
  hr = jnp.zeros((1, 16, 16, 3))
  noise = np.random.default_rng(0).uniform(-0.1, 0.1, (1, 8, 8, 3)).astype(np.float32)
  sr = hr.at[:, :8, :8].add(noise)
  clean = float(losses.artifact_loss(sr, hr, hr))  # the average is right: SR's grain is weighed
  assert clean > 0
  assert float(losses.artifact_loss(sr, hr, sr)) == clean  # as bad as the average: still weighed
  assert float(losses.artifact_loss(sr, hr, hr.at[:, :8, :8].add(2 * noise))) == 0  # worse average
  grad = jax.grad(lambda x: losses.artifact_loss(x, hr, hr))(sr)
  assert np.abs(np.asarray(grad[:, :8, :8])).min() > 0  # every noisy pixel pulled back
  assert not np.asarray(grad[:, 12:, 12:]).any()  # a flat residual far from it: no weight


# The local power spectrum term (config.loss.spectrum_weight).


def test_the_local_power_spectrum_is_numpys_ring_mean_of_each_hann_windowed_luma_tile(datasets):
  x = _photo(datasets)[:90, :100]  # not multiples of 16: the last 10 rows and 4 columns drop out
  got = np.asarray(losses.local_power_spectrum(jnp.asarray(x)[None], 16))
  assert got.shape == (1, 5, 6, 8)
  rgb = (x.astype(np.float64) + 1.0) * 127.5
  y = (65.481 * rgb[..., 0] + 128.553 * rgb[..., 1] + 24.966 * rgb[..., 2]) / 255.0
  hann = np.outer(*[np.sin(np.pi * np.arange(1, 17) / 17) ** 2] * 2)  # numpy's hanning(18)[1:-1]
  k = np.fft.fftfreq(16) * 16
  ring = np.clip(np.round(np.hypot(k[:, None], k[None, :])), 0, 8)  # the full plane
  for i, j in ((0, 0), (2, 3), (4, 5)):
    tile = y[16 * i : 16 * i + 16, 16 * j : 16 * j + 16] * hann
    power = np.abs(np.fft.fft2(tile)) ** 2 / 256  # orthonormal
    want = [power[ring == r].mean() for r in range(1, 9)]
    np.testing.assert_allclose(got[0, i, j], want, rtol=1e-3)
  assert abs(
    np.sum(np.abs(np.fft.fft2(y[:16, :16] * hann)) ** 2 / 256) - np.sum((y[:16, :16] * hann) ** 2)
  ) < 1e-6 * np.sum((y[:16, :16] * hann) ** 2)  # Parseval: the reference's normalisation


def test_the_spectrum_term_asks_for_grain_energy_not_grain_pixels(datasets):
  # HR: a smooth photograph with film grain (white, 3 grey levels per channel). A pixel MSE prefers
  # SR without grain (the grain's mean); the spectrum term is least for SR with independent grain
  # of HR's strength, less or more grain costing more, and cares little where in a tile content
  # sits (a circular shift of a whole-crop tile; the Hann window makes it not quite invariant).
  import scipy.ndimage  # pylint: disable=g-import-not-at-top

  smooth = scipy.ndimage.gaussian_filter(_photo(datasets)[:96, :96], (2, 2, 0))
  grain = lambda seed, s: np.random.default_rng(seed).standard_normal((96, 96, 1)) * s / 127.5
  hr = jnp.asarray(smooth + grain(0, 3), jnp.float32)[None]
  sr = {s: jnp.asarray(smooth + grain(1, s), jnp.float32)[None] for s in (0, 1.5, 3, 6)}
  mse = {s: float(jnp.mean((x - hr) ** 2)) for s, x in sr.items()}
  loss = {s: float(losses.spectrum_loss(x, hr, 16)) for s, x in sr.items()}
  assert min(mse, key=mse.get) == 0 and mse[3] > 1.8 * mse[0]
  assert min(loss, key=loss.get) == 3 and loss[3] < 0.3 * loss[0]
  assert loss[0] > loss[1.5] > loss[3] < loss[6]
  assert float(losses.spectrum_loss(hr, hr, 16)) == 0.0
  a = np.asarray(hr[0])
  periodic = jnp.asarray(np.tile(a[:24, :24], (2, 2, 1)))[None]  # 48 x 48, periodic in 24
  shifted = jnp.roll(periodic, (5, 9), axis=(1, 2))
  assert float(losses.spectrum_loss(shifted, periodic, 48)) < 0.3 * float(
    losses.spectrum_loss(shifted, periodic, 8)
  )


def test_the_spectrum_term_adds_its_weight_and_is_checked():
  from srgan_jax.training import config_checks, update_step  # pylint: disable=g-import-not-at-top
  from tests.helpers import tiny_config  # pylint: disable=g-import-not-at-top

  rng = np.random.default_rng(2)
  sr, hr = (jnp.asarray(rng.uniform(-1, 1, (2, 24, 24, 3)), jnp.float32) for _ in range(2))
  plain = tiny_config('srgan')
  tiled = tiny_config('srgan', **{'loss.spectrum_weight': 2.0, 'loss.spectrum_window': 8})
  content = update_step.make_content_loss(plain, 'torch')
  base, base_terms = update_step.generator_loss_terms(plain, sr, hr, None, content)
  total, terms = update_step.generator_loss_terms(tiled, sr, hr, None, content)
  want = float(losses.spectrum_loss(sr, hr, 8))
  assert float(terms['spectrum_loss']) == want > 0 and 'spectrum_loss' not in base_terms
  np.testing.assert_allclose(float(total), float(base) + 2.0 * want, rtol=1e-5)
  assert update_step.loss_label(tiled, 'MSE').startswith(
    'MSE + 2 x log power spectrum l1 (8x8-pixel tiles)'
  )
  ok = {'loss.spectrum_weight': 2.0, 'loss.spectrum_window': 8}
  checked = lambda **kw: config_checks.validate_config(
    tiny_config('srgan', generator_init='', pretrain_steps=1, **{**ok, **kw})
  )
  checked()
  for bad, match in (
    ({'loss.spectrum_window': 2}, 'spectrum_window'),
    ({'loss.spectrum_window': 9}, 'spectrum_window'),  # odd
    ({'loss.spectrum_window': 48}, 'spectrum_window'),  # over hr_crop 24
    ({'loss.spectrum_weight': -1.0}, 'spectrum_weight'),
  ):
    with pytest.raises(config_checks.ConfigError, match=match):
      checked(**bad)
