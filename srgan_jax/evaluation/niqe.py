"""NIQE (Mittal, Soundararajan and Bovik, IEEE SPL 2013): a no-reference "naturalness" score.

Lower is more natural. Computed as the MATLAB release (niqe_release.zip) does, through
BasicSR's port (Apache-2.0), which reproduces it: the Y channel of BT.601 YCbCr rounded to
integers, 96 x 96 blocks without overlap, MSCN coefficients from a 7 x 7 Gaussian window,
18 AGGD/GGD features per block at two scales (the second after MATLAB's bicubic x0.5), and
the Mahalanobis-like distance between the image's fitted Gaussian and the pristine model.
The pristine model (mean, covariance, window) is the release's `modelparameters.mat`, as
BasicSR ships it (`niqe_pris_params.npz`, provenance in NIQE_PARAMS.md beside it).

The Perceptual Index of PIRM 2018, (10 - Ma + NIQE) / 2, also needs Ma et al.'s regression
forest, which cannot be had offline here: it is not computed (no approximation either).
"""

import functools
import math
from pathlib import Path

import numpy as np
from scipy import ndimage
from scipy.special import gamma

from srgan_jax.data.imresize import imresize_np
from srgan_jax.evaluation import metrics

PARAMS = Path(__file__).resolve().parent / 'niqe_pris_params.npz'
BLOCK = 96


@functools.lru_cache(maxsize=1)
def pristine_model() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """(mu [36], cov [36, 36], 7x7 Gaussian window) of the MATLAB release's pristine model."""
  p = np.load(PARAMS)
  return p['mu_pris_param'], p['cov_pris_param'], p['gaussian_window']


@functools.lru_cache(maxsize=1)
def _gamma_table() -> tuple[np.ndarray, np.ndarray]:
  gam = np.arange(0.2, 10.001, 0.001)
  r = 1.0 / gam
  return gam, np.square(gamma(2 * r)) / (gamma(r) * gamma(3 * r))


def aggd_params(x: np.ndarray) -> tuple[float, float, float]:
  """(alpha, beta_l, beta_r) of an asymmetric generalised Gaussian fitted to x (moment matching)."""
  x = x.ravel()
  gam, r_gam = _gamma_table()
  left, right = np.sqrt(np.mean(x[x < 0] ** 2)), np.sqrt(np.mean(x[x > 0] ** 2))
  gammahat = left / right
  rhat = np.mean(np.abs(x)) ** 2 / np.mean(x**2)
  rhatnorm = rhat * (gammahat**3 + 1) * (gammahat + 1) / (gammahat**2 + 1) ** 2
  alpha = gam[np.argmin((r_gam - rhatnorm) ** 2)]
  scale = np.sqrt(gamma(1 / alpha) / gamma(3 / alpha))
  return alpha, left * scale, right * scale


def block_features(block: np.ndarray) -> list[float]:
  """The 18 features of one block of MSCN coefficients (the paper's Eqs. 7-8)."""
  alpha, bl, br = aggd_params(block)
  feats = [alpha, (bl + br) / 2]
  for shift in ((0, 1), (1, 0), (1, 1), (1, -1)):  # products of neighbours, 4 orientations
    alpha, bl, br = aggd_params(block * np.roll(block, shift, axis=(0, 1)))
    feats += [alpha, (br - bl) * gamma(2 / alpha) / gamma(1 / alpha), bl, br]
  return feats


def niqe_y(y: np.ndarray) -> float:
  """NIQE of a Y (or gray) image [H, W] in [0, 255], already rounded as MATLAB's."""
  mu_p, cov_p, window = pristine_model()
  nh, nw = y.shape[0] // BLOCK, y.shape[1] // BLOCK
  if nh == 0 or nw == 0:
    raise ValueError(f'NIQE needs at least {BLOCK}x{BLOCK} pixels, got {y.shape[1]}x{y.shape[0]}.')
  img = y[: nh * BLOCK, : nw * BLOCK].astype(np.float64)
  per_scale = []
  for s in (1, 2):
    mu = ndimage.convolve(img, window, mode='nearest')
    sigma = np.sqrt(np.abs(ndimage.convolve(img * img, window, mode='nearest') - mu * mu))
    mscn = (img - mu) / (sigma + 1)  # Eq. 1
    b = BLOCK // s
    per_scale.append(
      [
        block_features(mscn[i * b : (i + 1) * b, j * b : (j + 1) * b])
        for j in range(nw)
        for i in range(nh)
      ]
    )
    if s == 1:
      img = imresize_np(img[..., None] / 255.0, scale=0.5)[..., 0] * 255.0
  feats = np.concatenate([np.asarray(f) for f in per_scale], axis=1)
  mu_d = np.nanmean(feats, axis=0)
  cov_d = np.cov(feats[~np.isnan(feats).any(axis=1)], rowvar=False)
  diff = (mu_p - mu_d).ravel()
  return float(math.sqrt(diff @ np.linalg.pinv((cov_p + cov_d) / 2) @ diff))  # Eq. 10


def niqe(img: np.ndarray, crop_border: int = 0) -> float:
  """NIQE of an RGB [H, W, 3] (through BT.601 Y) or gray [H, W, 1] image in [0, 255]."""
  img = np.asarray(img)
  y = img[..., 0].astype(np.float64) if img.shape[-1] == 1 else metrics.rgb_to_y(img)
  if crop_border:
    y = y[crop_border:-crop_border, crop_border:-crop_border]
  return niqe_y(np.round(y))
