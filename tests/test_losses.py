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
