"""PSNR/SSIM follow the SR literature's protocol (its published bicubic table: test_evaluate.py)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import signal

from srgan_jax.evaluation import validation
from srgan_jax.evaluation.metrics import (
  grid_artifact,
  psnr,
  psnr_rgb,
  psnr_y,
  rgb_to_y,
  ssim,
  ssim_y,
)


def _rand(shape, seed=0):
  return np.random.default_rng(seed).integers(0, 256, shape).astype(np.float64)


def _ref_psnr(a, b):
  # Straight from the definition, one pixel at a time.
  total = 0.0
  for i in range(a.shape[0]):
    for j in range(a.shape[1]):
      total += (a[i, j] - b[i, j]) ** 2
  return 10 * np.log10(255.0**2 / (total / a.size))


def _ref_ssim(a, b):
  # ssim_index.m: fspecial('gaussian', 11, 1.5), filter2(..., 'valid').
  y, x = np.mgrid[-5:6, -5:6]
  w = np.exp(-(x**2 + y**2) / (2 * 1.5**2))
  w /= w.sum()
  f = lambda v: signal.correlate2d(v, w, mode='valid')
  c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
  mu1, mu2 = f(a), f(b)
  s11, s22, s12 = f(a * a) - mu1**2, f(b * b) - mu2**2, f(a * b) - mu1 * mu2
  m = (2 * mu1 * mu2 + c1) * (2 * s12 + c2) / ((mu1**2 + mu2**2 + c1) * (s11 + s22 + c2))
  return m.mean()


def test_identical_images_give_infinite_psnr_and_unit_ssim():
  a = _rand((20, 24))
  assert np.isinf(psnr(a, a)) and np.isinf(float(psnr(jnp.asarray(a), a)))
  assert ssim(a, a) == pytest.approx(1.0, abs=1e-12)
  assert float(ssim(jnp.asarray(a, jnp.float32), a)) == pytest.approx(1.0, abs=1e-6)


def test_known_mse_gives_known_psnr():
  a = np.zeros((4, 4))
  b = a.copy()
  b[1, 2] = 16.0  # MSE = 16^2 / 16 pixels = 16
  assert psnr(a, b) == pytest.approx(10 * np.log10(65025 / 16), abs=1e-12)
  # Every pixel off by 5: MSE 25, PSNR = 10 log10(2601) = 34.1514 dB.
  assert psnr(a, a + 5) == pytest.approx(34.15140352195873, abs=1e-9)
  assert psnr(a, a + 0.5, peak=1.0) == pytest.approx(10 * np.log10(4), abs=1e-12)


def test_crop_border_ignores_the_frame():
  a = _rand((10, 12))
  b = a.copy()
  b[:2] += 9
  b[:, -2:] -= 7
  assert np.isinf(psnr(a, b, crop_border=2))
  assert not np.isinf(psnr(a, b, crop_border=1))


@pytest.mark.parametrize('seed', [0, 1])
def test_metrics_agree_with_independent_formulas(seed):
  a, b = _rand((37, 29), seed), _rand((37, 29), seed + 10)
  b = 0.5 * a + 0.5 * b  # correlated, so SSIM is far from 0
  assert psnr(a, b) == pytest.approx(_ref_psnr(a, b), abs=1e-9)
  assert ssim(a, b) == pytest.approx(_ref_ssim(a, b), abs=1e-9)
  # JAX float32 path: same numbers to float32 accuracy, also under jit.
  ja, jb = jnp.asarray(a, jnp.float32), jnp.asarray(b, jnp.float32)
  assert float(jax.jit(psnr)(ja, jb)) == pytest.approx(_ref_psnr(a, b), abs=1e-4)
  assert float(jax.jit(ssim)(ja, jb)) == pytest.approx(_ref_ssim(a, b), abs=1e-5)


def test_metrics_are_batched_over_leading_dims():
  a, b = _rand((2, 3, 16, 18), 3), _rand((2, 3, 16, 18), 4)
  p, s = psnr(a, b), ssim(a, b)
  assert p.shape == s.shape == (2, 3)
  assert p[1, 2] == pytest.approx(psnr(a[1, 2], b[1, 2]))
  assert s[0, 1] == pytest.approx(ssim(a[0, 1], b[0, 1]))


def test_rgb_to_y_is_bt601():
  rgb = np.array([[0, 0, 0], [255, 255, 255], [255, 0, 0], [0, 255, 0]], np.uint8)
  np.testing.assert_allclose(rgb_to_y(rgb), [16, 235, 16 + 65.481, 16 + 128.553], atol=1e-9)
  np.testing.assert_allclose(rgb_to_y(rgb, round_y=True), [16, 235, 81, 145])


def test_y_metrics_on_rgb_and_gray():
  a, b = _rand((2, 20, 22, 3), 5), _rand((2, 20, 22, 3), 6)
  ya, yb = rgb_to_y(a), rgb_to_y(b)
  np.testing.assert_allclose(psnr_y(a, b, crop_border=2), psnr(ya, yb, crop_border=2))
  np.testing.assert_allclose(ssim_y(a, b), ssim(ya, yb))
  # A gray image as 3 equal channels is measured on its Y = 16 + 219 v / 255.
  g, h = a[..., :1], b[..., :1]
  g3, h3 = np.repeat(g, 3, -1), np.repeat(h, 3, -1)
  np.testing.assert_allclose(
    psnr_y(g3, h3), psnr(16 + g[..., 0] * 219 / 255, 16 + h[..., 0] * 219 / 255)
  )
  assert ssim_y(g3, g3) == pytest.approx([1.0, 1.0])
  # A single-channel file is measured on its own values (the literature's rule).
  np.testing.assert_allclose(psnr_y(g, h), psnr(g[..., 0], h[..., 0]))


def test_psnr_rgb_averages_all_channels():
  a = np.zeros((6, 6, 3))
  b = a.copy()
  b[..., 1] = 3.0  # MSE over 3 channels: 9 / 3 = 3
  assert psnr_rgb(a, b) == pytest.approx(10 * np.log10(65025 / 3))


def test_mismatched_shapes_are_reported():
  with pytest.raises(ValueError, match='differ in shape'):
    psnr(np.zeros((4, 4)), np.zeros((4, 5)))
  with pytest.raises(ValueError, match='at least 11x11'):
    ssim(np.zeros((12, 12)), np.zeros((12, 12)), crop_border=1)


@pytest.mark.parametrize('offset', [(0, 0), (1, 3)])
def test_grid_artifact_measures_a_pattern_locked_to_the_lr_grid_and_nothing_else(offset):
  hr = validation.load_set('set5', 4)[1].hr.astype(np.float64)  # a real photograph
  gray = (hr @ np.array([65.481, 128.553, 24.966]) / 219.0)[..., None]  # Y on gray values
  base = grid_artifact(gray, 4)
  assert base < 0.3  # photographs carry (almost) no pattern of period 4
  pattern = np.random.default_rng(0).standard_normal((4, 4))
  pattern = 2.0 * (pattern - pattern.mean()) / np.sqrt(np.mean((pattern - pattern.mean()) ** 2))
  h, w = gray.shape[:2]
  tiled = np.roll(np.tile(pattern, (h // 4 + 1, w // 4 + 1))[:h, :w], offset, axis=(0, 1))
  gridded = grid_artifact(gray + tiled[..., None], 4)
  assert abs(gridded - 2.0) < 0.1 + base  # an RMS-2 grid reads as ~2 grey levels, at any phase
  # A pattern of another period (5) is not locked to a 4-pixel grid: it averages out.
  other = np.tile(np.arange(5.0) - 2, (h, w // 5 + 1))[:, :w]
  assert grid_artifact(gray + other[..., None], 4) < base + 0.3
  # RGB goes through BT.601 Y: a pattern on all channels reads scaled by Y's gain (219/255).
  rgb = hr + tiled[..., None]
  assert abs(grid_artifact(rgb, 4) - 2.0 * 219 / 255) < 0.1 + base
