"""PSNR and SSIM as the super-resolution literature measures them, and a grid-artifact measure.

Protocol (SRCNN, VDSR, SRGAN, ...): convert RGB in [0, 255] to the Y channel
of ITU-R BT.601 YCbCr, crop `crop_border` (= scale) pixels from each side,
PSNR with peak 255, SSIM of Wang et al. 2004 (11x11 Gaussian window,
sigma 1.5, K1 = 0.01, K2 = 0.03, L = 255, 'valid' filtering as in the
reference `ssim_index.m`).

Single-channel metrics take [..., H, W] and reduce over H, W only, so they
are batched over any leading dims. Inputs may be uint8 or float. One code
path serves two array libraries: JAX arrays in (jit-able, on device) give
JAX results; numpy arrays in give float64 numpy results on the host, which
is what evaluation wants (no per-image-shape compiles, no float32 rounding).

Grayscale: the literature's scripts measure a single-channel *file* on its
own values, not on BT.601 Y (which would squeeze it to [16, 235] and add
~1.3 dB), but an RGB file whose channels happen to be equal on Y like any
RGB image (Set14 has one of each). So `psnr_y`/`ssim_y` take [..., H, W, 1]
as-is and [..., H, W, 3] through Y; `image_io.is_grayscale_file` tells the
caller which a file was, since `load_rgb` always returns 3 channels.
"""

import jax
import jax.numpy as jnp
import numpy as np
from scipy import ndimage

_SSIM_SIZE, _SSIM_SIGMA = 11, 1.5


def _xp(*arrays):
  """jax.numpy if any input is a JAX array (or tracer), else numpy."""
  return jnp if any(isinstance(a, jax.Array) for a in arrays) else np


def _float(x, xp):
  x = xp.asarray(x)
  if xp.issubdtype(x.dtype, xp.floating):
    return x
  return x.astype(np.float64 if xp is np else jnp.float32)


def rgb_to_y(img, round_y: bool = False):
  """BT.601 luma in [16, 235] from RGB [..., 3] in [0, 255] (uint8 or float).

  round_y=True rounds Y to integers, as MATLAB's rgb2ycbcr does on uint8.
  """
  xp = _xp(img)
  img = _float(img, xp)
  if img.shape[-1] != 3:
    raise ValueError(f'rgb_to_y: expected [..., 3] RGB, got shape {img.shape}.')
  y = 16.0 + (65.481 * img[..., 0] + 128.553 * img[..., 1] + 24.966 * img[..., 2]) / 255.0
  return xp.floor(y + 0.5) if round_y else y  # y > 0: MATLAB's round


def _luma(img, round_y):
  """Y of RGB [..., H, W, 3]; a single channel [..., H, W, 1] as it is."""
  xp = _xp(img)
  img = xp.asarray(img)
  if img.shape[-1] == 1:
    return _float(img, xp)[..., 0]
  return rgb_to_y(img, round_y)


def _crop(x, border):
  if border < 0:
    raise ValueError(f'crop_border must be >= 0, got {border}.')
  if border == 0:
    return x
  h, w = x.shape[-2:]
  if h <= 2 * border or w <= 2 * border:
    raise ValueError(f'crop_border={border} leaves nothing of a {h}x{w} image.')
  return x[..., border : h - border, border : w - border]


def _pair(a, b, crop_border):
  xp = _xp(a, b)
  a, b = _float(a, xp), _float(b, xp)
  if a.shape != b.shape:
    raise ValueError(f'images differ in shape: {a.shape} vs {b.shape}.')
  return _crop(a, crop_border), _crop(b, crop_border)


def psnr(a, b, peak: float = 255.0, crop_border: int = 0):
  """PSNR in dB over the last two axes [..., H, W]; inf for identical images."""
  xp = _xp(a, b)
  a, b = _pair(a, b, crop_border)
  mse = xp.mean(xp.square(a - b), axis=(-2, -1))
  with np.errstate(divide='ignore'):
    return 10.0 * xp.log10(peak**2 / mse)


def gaussian_window(size: int = _SSIM_SIZE, sigma: float = _SSIM_SIGMA):
  """1-D normalised Gaussian; its outer product is fspecial('gaussian')."""
  x = np.arange(size, dtype=np.float64) - (size - 1) / 2.0
  g = np.exp(-(x * x) / (2.0 * sigma * sigma))
  return g / g.sum()


def _valid_filter(x, g, axis):
  """'valid' correlation of x with 1-D g along axis, as a sum of k shifts."""
  k, n = len(g), x.shape[axis]
  if n < k:
    raise ValueError(
      f'SSIM needs images at least {k}x{k} after cropping, got {n} pixels along an axis.'
    )
  take = lambda i: x[..., i : i + n - k + 1, :] if axis == -2 else x[..., i : i + n - k + 1]
  return sum(float(g[i]) * take(i) for i in range(k))


def ssim(a, b, crop_border: int = 0):
  """Mean SSIM (Wang et al. 2004) over [..., H, W] in [0, 255]."""
  xp = _xp(a, b)
  a, b = _pair(a, b, crop_border)
  g = gaussian_window()
  blur = lambda x: _valid_filter(_valid_filter(x, g, -2), g, -1)  # separable
  # Second moments are shift invariant: centre first so float32 does not
  # cancel catastrophically in E[x^2] - E[x]^2 with values up to 255^2.
  c = xp.mean((a + b) / 2.0, axis=(-2, -1), keepdims=True)
  ac, bc = a - c, b - c
  mu_a, mu_b = blur(ac), blur(bc)
  var_a = blur(ac * ac) - mu_a * mu_a
  var_b = blur(bc * bc) - mu_b * mu_b
  cov = blur(ac * bc) - mu_a * mu_b
  mu_a, mu_b = mu_a + c, mu_b + c
  c1, c2 = (0.01 * 255.0) ** 2, (0.03 * 255.0) ** 2
  ssim_map = (
    (2 * mu_a * mu_b + c1) * (2 * cov + c2) / ((mu_a**2 + mu_b**2 + c1) * (var_a + var_b + c2))
  )
  return xp.mean(ssim_map, axis=(-2, -1))


def psnr_y(a, b, crop_border: int = 0, round_y: bool = False):
  """PSNR on the BT.601 Y channel of RGB [..., H, W, 3] in [0, 255].

  Single-channel [..., H, W, 1] inputs are measured as they are (see module
  docstring). round_y=True rounds Y to integers like MATLAB's rgb2ycbcr
  on uint8. Default False: on Set5/Set14 bicubic, unrounded Y lands within
  0.01 dB / 0.0007 SSIM of the published table, rounded Y within 0.02 dB /
  0.0007 and lower SSIM on every cell (benchmarks/bicubic_table.py).
  """
  return psnr(_luma(a, round_y), _luma(b, round_y), crop_border=crop_border)


def ssim_y(a, b, crop_border: int = 0, round_y: bool = False):
  """SSIM on BT.601 Y of RGB [..., H, W, 3] (or gray [..., H, W, 1]).

  round_y as in psnr_y.
  """
  return ssim(_luma(a, round_y), _luma(b, round_y), crop_border=crop_border)


def psnr_rgb(a, b, crop_border: int = 0):
  """PSNR over all RGB channels of [..., H, W, 3] in [0, 255]."""
  xp = _xp(a, b)
  a, b = _pair(
    xp.moveaxis(xp.asarray(a), -1, -3),  # [..., C, H, W]
    xp.moveaxis(xp.asarray(b), -1, -3),
    crop_border,
  )
  mse = xp.mean(xp.square(a - b), axis=(-3, -2, -1))
  with np.errstate(divide='ignore'):
    return 10.0 * xp.log10(255.0**2 / mse)


def grid_artifact(img, scale: int, crop_border: int = 0) -> float:
  """RMS (grey levels of Y) of the pattern that repeats with the LR pixel grid.

  The high-pass of Y (Y minus its Gaussian blur, sigma = scale / 2) averaged over
  the scale x scale phases (y mod scale, x mod scale) is the image's mean texture at
  each position within an LR pixel; its RMS about its mean is ~0.15 for photographs
  and smooth SR, ~1 for an SR image overlaid with a fine grid locked to the LR grid
  (a sub-pixel convolution artifact; Aitken et al. 2017, "checkerboard"). numpy only;
  [H, W, 3] through BT.601 Y, [H, W, 1] on its values, cropped as psnr_y.
  """
  y = _crop(_luma(np.asarray(img), False), crop_border).astype(np.float64)
  h, w = y.shape[0] // scale * scale, y.shape[1] // scale * scale
  high = (y - ndimage.gaussian_filter(y, scale / 2, mode='reflect'))[:h, :w]
  pattern = high.reshape(h // scale, scale, w // scale, scale).mean(axis=(0, 2))
  return float(np.sqrt(np.mean(np.square(pattern - pattern.mean()))))
