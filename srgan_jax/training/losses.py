"""SRGAN losses (Ledig et al. 2017, Section 2.2).

Perceptual loss  l^SR = l^SR_X + 1e-3 * l^SR_Gen   (Eq. 3)
  * content loss l^SR_X: pixel MSE (Eq. 4) or the VGG loss on feature maps
    phi_i,j of a frozen ImageNet VGG-19 (Eq. 5; `srgan_jax.vgg`);
  * adversarial loss l^SR_Gen = -log D(G(I^LR))  (Eq. 6), the non-saturating form.
Discriminator: binary cross-entropy on real (HR) and fake (SR) images (Eq. 2).

All adversarial terms take D's logits and use log-sigmoid, never log(sigmoid(.)),
so they stay finite when D saturates.
"""

import jax
import jax.numpy as jnp
import numpy as np


def pixel_mse(sr: jnp.ndarray, hr: jnp.ndarray) -> jnp.ndarray:
  """l^SR_MSE: mean squared error over all pixels and channels (Eq. 4)."""
  return jnp.mean(jnp.square(sr.astype(jnp.float32) - hr.astype(jnp.float32)))


def generator_adversarial(fake_logits: jnp.ndarray) -> jnp.ndarray:
  """l^SR_Gen = mean over the batch of -log D(G(I^LR)) (Eq. 6)."""
  return -jnp.mean(jax.nn.log_sigmoid(fake_logits))


def discriminator_bce(real_logits: jnp.ndarray, fake_logits: jnp.ndarray) -> jnp.ndarray:
  """-log D(I^HR) - log(1 - D(G(I^LR))), each averaged over the batch (Eq. 2)."""
  # log(1 - sigmoid(z)) = log_sigmoid(-z).
  return -jnp.mean(jax.nn.log_sigmoid(real_logits)) - jnp.mean(jax.nn.log_sigmoid(-fake_logits))


# ----------------------------------------------------------------------------
# ESRGAN (Wang et al. 2018): pixel terms on [0, 1] images and the relativistic average GAN.


def pixel_loss(kind: str, sr: jnp.ndarray, hr: jnp.ndarray) -> jnp.ndarray:
  """BasicSR's L1Loss / MSELoss ('l1' / 'mse') on [0, 1] images; sr and hr are in [-1, 1].

  (The paper's content 'mse' is pixel_mse on the [-1, 1] images: 4x this 'mse'.)
  """
  d = (sr.astype(jnp.float32) - hr.astype(jnp.float32)) * 0.5  # the difference in [0, 1] units
  if kind == 'l1':
    return jnp.mean(jnp.abs(d))
  if kind == 'mse':
    return jnp.mean(jnp.square(d))
  raise ValueError(f'unknown pixel loss {kind!r}; use l1 or mse')


def ragan_generator(real_logits: jnp.ndarray, fake_logits: jnp.ndarray) -> jnp.ndarray:
  """L^Ra_G = -E[log(1 - D_Ra(x_r, x_f))] - E[log D_Ra(x_f, x_r)], halved (ESRGAN Eq. 2).

  D_Ra(x_r, x_f) = sigmoid(C(x_r) - E[C(x_f)]), means over the batch; G's gradient
  reaches it through the fake logits in both terms.
  """
  rel_real = real_logits - jnp.mean(fake_logits)
  rel_fake = fake_logits - jnp.mean(real_logits)
  return -(jnp.mean(jax.nn.log_sigmoid(-rel_real)) + jnp.mean(jax.nn.log_sigmoid(rel_fake))) / 2


def ragan_discriminator(real_logits: jnp.ndarray, fake_logits: jnp.ndarray) -> jnp.ndarray:
  """L^Ra_D = -E[log D_Ra(x_r, x_f)] - E[log(1 - D_Ra(x_f, x_r))], halved (ESRGAN Eq. 1)."""
  rel_real = real_logits - jnp.mean(fake_logits)
  rel_fake = fake_logits - jnp.mean(real_logits)
  return -(jnp.mean(jax.nn.log_sigmoid(rel_real)) + jnp.mean(jax.nn.log_sigmoid(-rel_fake))) / 2


# ----------------------------------------------------------------------------
# The grid term: the pattern that repeats with the LR pixel grid, SR's against HR's.


def _gaussian_taps(sigma: float) -> np.ndarray:
  """scipy.ndimage.gaussian_filter's 1-D kernel (truncate=4)."""
  radius = int(4.0 * sigma + 0.5)
  k = np.exp(-0.5 * (np.arange(-radius, radius + 1) / sigma) ** 2)
  return k / k.sum()


def _blur(y: jnp.ndarray, taps: np.ndarray, axis: int) -> jnp.ndarray:
  """1-D convolution along `axis` with mirrored edges (scipy's mode='reflect')."""
  r = len(taps) // 2
  pad = [(0, 0)] * y.ndim
  pad[axis] = (r, r)
  yp = jnp.pad(y, pad, mode='symmetric')
  n = y.shape[axis]
  return sum(float(w) * jax.lax.slice_in_dim(yp, i, i + n, axis=axis) for i, w in enumerate(taps))


def gaussian_lowpass(images: jnp.ndarray, sigma: float) -> jnp.ndarray:
  """[N, H, W, ...] images (float32) blurred along H and W by a Gaussian of `sigma` pixels
  (scipy.ndimage.gaussian_filter, mirrored edges): the low frequencies of frequency separation
  (Fritsche et al., ICCVW 2019); `images - gaussian_lowpass(images, sigma)` are the high ones."""
  taps = _gaussian_taps(sigma)
  x = images.astype(jnp.float32)
  return _blur(_blur(x, taps, 1), taps, 2)


def grid_pattern(images: jnp.ndarray, scale: int) -> jnp.ndarray:
  """[N, s, s]: each image's high-pass luma (grey levels, BT.601 Y of [-1, 1] RGB, minus its
  Gaussian blur with sigma = s / 2) averaged over the positions of each LR-grid phase (y mod s,
  x mod s), about its mean. The RMS of one is `metrics.grid_artifact` of that image."""
  y = _luma_grey(images)
  high = y - gaussian_lowpass(y, scale / 2)
  n, h, w = high.shape
  h, w = h // scale * scale, w // scale * scale
  phases = high[:, :h, :w].reshape(n, h // scale, scale, w // scale, scale).mean(axis=(1, 3))
  return phases - phases.mean(axis=(1, 2), keepdims=True)


def grid_loss(sr: jnp.ndarray, hr: jnp.ndarray, scale: int) -> jnp.ndarray:
  """Mean over the batch of the squared difference of SR's and HR's grid patterns (grey levels^2):
  zero where SR repeats with the LR pixel grid no more than HR does; about grid^2 for a grid."""
  return jnp.mean(jnp.square(grid_pattern(sr, scale) - grid_pattern(hr, scale)))


def _luma_grey(images: jnp.ndarray) -> jnp.ndarray:
  """[N, H, W]: BT.601 luma of [-1, 1] RGB in grey levels (float32)."""
  x = (images.astype(jnp.float32) + 1.0) * 127.5
  return (65.481 * x[..., 0] + 128.553 * x[..., 1] + 24.966 * x[..., 2]) / 255.0


def _ring_weights(window: int) -> np.ndarray:
  """[w * (w/2 + 1), w/2]: the mean over each ring of integer radius 1..w/2 (DC left out, the
  corners beyond w/2 in the last ring) of a w x w spectrum held as rfft2's half plane (its inner
  columns stand for two bins each)."""
  ky, kx = np.fft.fftfreq(window) * window, np.arange(window // 2 + 1)
  radius = np.clip(np.round(np.hypot(ky[:, None], kx[None, :])), 0, window // 2).astype(int)
  bins = np.where((kx == 0) | (kx == window // 2), 1.0, 2.0)[None, :] * np.ones((window, 1))
  rings = [np.where(radius == r, bins, 0.0).ravel() for r in range(1, window // 2 + 1)]
  return np.stack([m / m.sum() for m in rings], axis=1)


def local_power_spectrum(images: jnp.ndarray, window: int) -> jnp.ndarray:
  """[N, H/w, W/w, w/2]: each w x w tile's radial power spectrum (Durall et al., CVPR 2020's
  azimuthal integration): luma in grey levels, Hann-windowed, orthonormal 2-D DFT, |.|^2 averaged
  over rings of radius 1..w/2 (a crop not a multiple of w loses its last rows and columns)."""
  y = _luma_grey(images)
  n, h, w = y.shape
  h, w = h // window * window, w // window * window
  tiles = y[:, :h, :w].reshape(n, h // window, window, w // window, window).transpose(0, 1, 3, 2, 4)
  hann = np.hanning(window + 2)[1:-1]
  power = jnp.square(jnp.abs(jnp.fft.rfft2(tiles * np.outer(hann, hann), norm='ortho')))
  return power.reshape(power.shape[:3] + (-1,)) @ jnp.asarray(_ring_weights(window), jnp.float32)


def spectrum_loss(sr: jnp.ndarray, hr: jnp.ndarray, window: int, eps: float = 0.1) -> jnp.ndarray:
  """Mean |log(P_SR + eps) - log(P_HR + eps)| of the tiles' radial power spectra
  (local_power_spectrum; eps in grey levels^2, about 8-bit rounding's noise power 1/12).
  Phase-free, it asks for HR's energy per frequency band and place, not HR's pixels: on smooth HR
  with film grain it is least for SR with grain of HR's strength, where a pixel MSE prefers no
  grain (its mean)."""
  log_power = lambda x: jnp.log(local_power_spectrum(x, window) + eps)
  return jnp.mean(jnp.abs(log_power(sr) - log_power(hr)))


# ----------------------------------------------------------------------------
# LDL (Liang et al., CVPR 2022, "Details or Artifacts"): a pixel term weighted where SR looks
# like an artifact, BasicSR's get_refined_artifact_map (images in [0, 1], as BasicSR's).


def _local_variance(r: jnp.ndarray, ksize: int) -> jnp.ndarray:
  """[N, H, W, 1]: the unbiased variance of r over each pixel's ksize x ksize window, edges
  mirrored without repeating the edge (torch's 'reflect')."""
  p = (ksize - 1) // 2
  rp = jnp.pad(r, ((0, 0), (p, p), (p, p), (0, 0)), mode='reflect')
  window = lambda x: jax.lax.reduce_window(
    x, 0.0, jax.lax.add, (1, ksize, ksize, 1), (1,) * 4, 'VALID'
  )
  n = ksize * ksize
  s, s2 = window(rp), window(rp * rp)
  return jnp.maximum(s2 - s * s / n, 0.0) / (n - 1)


def artifact_map(
  hr: jnp.ndarray, sr: jnp.ndarray, sr_ema: jnp.ndarray, ksize: int = 7
) -> jnp.ndarray:
  """M [N, H, W, 1] of LDL (Eq. 6-8) for [-1, 1] images: R = |HR - SR| summed over channels on
  [0, 1]; M = var(R over the image)^(1/5) x R's local variance, and 0 where SR is closer to HR
  than G's moving average (SR_EMA) is: there the detail is a stable one, not an artifact."""
  f = lambda x: (x.astype(jnp.float32) + 1.0) * 0.5
  r_sr = jnp.sum(jnp.abs(f(hr) - f(sr)), axis=-1, keepdims=True)
  r_ema = jnp.sum(jnp.abs(f(hr) - f(sr_ema)), axis=-1, keepdims=True)
  patch = jnp.var(r_sr, axis=(1, 2, 3), keepdims=True, ddof=1) ** 0.2
  m = patch * _local_variance(r_sr, ksize)
  return jnp.where(r_sr < r_ema, 0.0, m)


def artifact_loss(sr: jnp.ndarray, hr: jnp.ndarray, sr_ema: jnp.ndarray) -> jnp.ndarray:
  """LDL's L_artif = mean |M * SR - M * HR| on [0, 1] images (BasicSR's L1Loss), M held fixed
  (a weighting map: no gradient through it)."""
  m = jax.lax.stop_gradient(artifact_map(hr, sr, sr_ema))
  d = (sr.astype(jnp.float32) - hr.astype(jnp.float32)) * 0.5
  return jnp.mean(jnp.abs(m * d))
