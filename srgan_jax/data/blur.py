"""Random blur kernels of Real-ESRGAN (Wang et al., ICCVW 2021), drawn per sample in JAX.

Each kernel lives on a K x K grid (K = 21, Real-ESRGAN's), zero outside its own odd
size k in 7..K, and sums to 1. The families, with their probabilities in Real-ESRGAN:

  iso / aniso                    Gaussian, exp(-d' S^-1 d / 2)                0.45 / 0.25
  generalized_iso / _aniso       exp(-(d' S^-1 d / 2)^beta), beta in [0.5, 4]  0.12 / 0.03
  plateau_iso / _aniso           1 / (1 + (d' S^-1 d)^beta), beta in [1, 2]    0.12 / 0.03

with S = R(theta) diag(sx^2, sy^2) R(theta)', sx, sy in the sigma range (iso: sx = sy,
theta = 0). With probability sinc_prob the kernel is instead a 2-D sinc (circular low-pass,
cut-off omega_c), which makes the ringing of sharpening and of JPEG's dropped frequencies.
`filter2d` applies one kernel per sample with reflected borders, as Real-ESRGAN's filter2D.
"""

import jax
import jax.numpy as jnp
import numpy as np

KERNEL_SIZE = 21  # Real-ESRGAN's grid; sizes 7, 9, ..., 21 drawn uniformly
FAMILIES = (
  'iso',
  'aniso',
  'generalized_iso',
  'generalized_aniso',
  'plateau_iso',
  'plateau_aniso',
)


def _grid(size: int):
  r = np.arange(size, dtype=np.float32) - size // 2
  return np.meshgrid(r, r, indexing='ij')  # (y, x)


def _masked_normalised(kernel, k):
  """kernel [..., K, K] restricted to its centred k x k window (k odd, per sample), sum 1."""
  y, x = _grid(kernel.shape[-1])
  half = (jnp.asarray(k) // 2)[..., None, None]
  inside = (jnp.abs(y) <= half) & (jnp.abs(x) <= half)
  kernel = jnp.where(inside, kernel, 0.0)
  return kernel / jnp.sum(kernel, axis=(-2, -1), keepdims=True)


def bessel_j1(x, points: int = 256):
  """J1(x) = (1/pi) int_0^pi cos(t - x sin t) dt (Bessel's integral), midpoint rule.

  Exact to ~1e-6 for |x| < 60 (the sinc kernels need |x| <= pi * 15)."""
  t = (np.arange(points, dtype=np.float32) + 0.5) * (np.pi / points)
  return jnp.mean(jnp.cos(t - jnp.asarray(x)[..., None] * np.sin(t)), axis=-1)


def sinc_kernel(omega_c, k, size: int = KERNEL_SIZE):
  """Circular low-pass kernel: omega_c J1(omega_c r) / (2 pi r), its centre omega_c^2 / (4 pi)."""
  y, x = _grid(size)
  r = np.sqrt(x * x + y * y)
  w = jnp.asarray(omega_c)[..., None, None]
  safe = np.where(r == 0, 1.0, r).astype(np.float32)
  kernel = jnp.where(r == 0, w**2 / (4 * np.pi), w * bessel_j1(w * safe) / (2 * np.pi * safe))
  return _masked_normalised(kernel, k)


def shaped_kernel(family, sx, sy, theta, beta, k, size: int = KERNEL_SIZE):
  """Gaussian-family kernel [..., K, K]; family an index into FAMILIES (per sample)."""
  y, x = _grid(size)
  c, s = jnp.cos(theta)[..., None, None], jnp.sin(theta)[..., None, None]
  u, v = c * x + s * y, -s * x + c * y  # d in the rotated frame
  q = (u / sx[..., None, None]) ** 2 + (v / sy[..., None, None]) ** 2  # d' S^-1 d
  b = beta[..., None, None]
  f = jnp.asarray(family)[..., None, None]
  gaussian = jnp.exp(-0.5 * q)
  generalized = jnp.exp(-0.5 * q**b)
  plateau = 1.0 / (1.0 + q**b)
  kernel = jnp.where(f < 2, gaussian, jnp.where(f < 4, generalized, plateau))
  return _masked_normalised(kernel, k)


def random_kernels(key, n: int, p) -> jnp.ndarray:
  """n kernels [n, K, K] drawn as Real-ESRGAN's random_mixed_kernels / circular_lowpass_kernel.

  p: a mapping with kernel_prob (6 family weights), sigma (lo, hi), betag (lo, hi),
  betap (lo, hi), sinc_prob.
  """
  ks = jax.random.split(key, 10)
  sizes = 2 * jax.random.randint(ks[0], (n,), 3, KERNEL_SIZE // 2 + 1) + 1
  probs = jnp.asarray(p['kernel_prob'], jnp.float32)
  family = jax.random.choice(ks[1], len(FAMILIES), (n,), p=probs / probs.sum())
  lo, hi = p['sigma']
  sx = jax.random.uniform(ks[2], (n,), minval=lo, maxval=hi)
  aniso = family % 2 == 1
  sy = jnp.where(aniso, jax.random.uniform(ks[3], (n,), minval=lo, maxval=hi), sx)
  theta = jnp.where(aniso, jax.random.uniform(ks[4], (n,), minval=-np.pi, maxval=np.pi), 0.0)

  def beta(k, lo_hi):  # half the time in [lo, 1), half in [1, hi], as Real-ESRGAN
    below = jax.random.uniform(k, (n,), minval=lo_hi[0], maxval=1.0)
    above = jax.random.uniform(jax.random.fold_in(k, 1), (n,), minval=1.0, maxval=lo_hi[1])
    return jnp.where(jax.random.bernoulli(jax.random.fold_in(k, 2), 0.5, (n,)), below, above)

  b = jnp.where(family < 4, beta(ks[5], p['betag']), beta(ks[6], p['betap']))
  shaped = shaped_kernel(family, sx, sy, theta, b, sizes)
  # Sinc: cut-off in [pi/3, pi] for small kernels, [pi/5, pi] from 13 taps up.
  omega = jax.random.uniform(ks[7], (n,), minval=np.pi / 3, maxval=np.pi)
  omega = jnp.where(
    sizes < 13, omega, jax.random.uniform(ks[8], (n,), minval=np.pi / 5, maxval=np.pi)
  )
  sinc = sinc_kernel(omega, sizes)
  use_sinc = jax.random.bernoulli(ks[9], p['sinc_prob'], (n,))[:, None, None]
  return jnp.where(use_sinc, sinc, shaped)


def random_final_sinc(key, n: int, prob: float) -> jnp.ndarray:
  """Real-ESRGAN's final sinc filter: with prob, a sinc kernel (omega_c in [pi/3, pi]); else identity."""
  k1, k2, k3 = jax.random.split(key, 3)
  sizes = 2 * jax.random.randint(k1, (n,), 3, KERNEL_SIZE // 2 + 1) + 1
  sinc = sinc_kernel(jax.random.uniform(k2, (n,), minval=np.pi / 3, maxval=np.pi), sizes)
  pulse = jnp.zeros((KERNEL_SIZE, KERNEL_SIZE)).at[KERNEL_SIZE // 2, KERNEL_SIZE // 2].set(1.0)
  return jnp.where(jax.random.bernoulli(k3, prob, (n,))[:, None, None], sinc, pulse)


def reflect_index(i, n):
  """Index i (any integer) into 0..n-1 by reflection without repeating the edge (... 2 1 0 1 2 ...)."""
  period = 2 * jnp.maximum(n - 1, 1)
  i = jnp.mod(i, period)
  return jnp.where(i < n, i, period - i)


def reflect_pad(x, pad: int, valid_h, valid_w):
  """[B, H, W, C] -> [B, H + 2 pad, W + 2 pad, C]: the valid top-left image reflected at its edges."""
  b, h, w, _ = x.shape
  vh = jnp.broadcast_to(jnp.asarray(valid_h), (b,))[:, None]
  vw = jnp.broadcast_to(jnp.asarray(valid_w), (b,))[:, None]
  rows = reflect_index(jnp.arange(-pad, h + pad)[None, :], vh)
  cols = reflect_index(jnp.arange(-pad, w + pad)[None, :], vw)
  x = jnp.take_along_axis(x, rows[:, :, None, None], axis=1)
  return jnp.take_along_axis(x, cols[:, None, :, None], axis=2)


def filter2d(x, kernels, valid_h=None, valid_w=None):
  """Each sample of [B, H, W, C] correlated with its own kernel [B, K, K], reflected borders.

  As Real-ESRGAN's filter2D (torch's conv2d on a reflect-padded image), computed by FFT: the
  circular convolution of the padded image with the flipped kernel, of which the H x W
  window that never wraps around is the linear correlation (21 x 21 taps: ~25x faster than a
  grouped convolution on the CPU).
  """
  h, w = x.shape[1:3]
  size = kernels.shape[-1]
  pad = size // 2
  padded = reflect_pad(x, pad, h if valid_h is None else valid_h, w if valid_w is None else valid_w)
  ph, pw = h + 2 * pad, w + 2 * pad
  spectrum = jnp.fft.rfft2(jnp.moveaxis(padded, -1, 1), s=(ph, pw))  # [B, C, ph, pw/2+1]
  kernel = jnp.fft.rfft2(kernels[:, None, ::-1, ::-1].astype(jnp.float32), s=(ph, pw))
  out = jnp.fft.irfft2(spectrum * kernel, s=(ph, pw))[:, :, 2 * pad :, 2 * pad :]
  return jnp.moveaxis(out, 1, -1).astype(x.dtype)


def usm_sharpen(x, weight: float = 0.5, threshold: float = 10.0, radius: int = 51):
  """Unsharp masking of [B, H, W, C] images in [0, 1], as BasicSR's USMSharp (Real-ESRGAN's HR target).

  x + weight (x - G x), clipped to [0, 1], kept where |x - G x| > threshold grey levels, the
  mask softened by the same Gaussian G: radius 51 (Real-ESRGAN's 50, made odd), sigma as
  OpenCV's getGaussianKernel(51, 0) (8.0), reflected borders (H, W > radius // 2).
  """
  sigma = 0.3 * ((radius - 1) * 0.5 - 1) + 0.8
  taps = np.exp(-((np.arange(radius) - radius // 2) ** 2) / (2 * sigma**2))
  taps /= taps.sum()
  kernel = jnp.broadcast_to(
    jnp.asarray(np.outer(taps, taps), jnp.float32), (x.shape[0], radius, radius)
  )
  residual = x - filter2d(x, kernel)
  soft_mask = filter2d((jnp.abs(residual) * 255.0 > threshold).astype(x.dtype), kernel)
  sharp = jnp.clip(x + weight * residual, 0.0, 1.0)
  return soft_mask * sharp + (1.0 - soft_mask) * x
