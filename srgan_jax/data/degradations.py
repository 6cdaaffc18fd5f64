"""Real-ESRGAN's high-order degradation model (Wang et al., ICCVW 2021), jitted, on device.

From clean HR crops to LR inputs that look like photos from the wild, each sample with
its own random parameters drawn from one key (the train step's: seeded and resumable):

  first order   blur (data.blur kernels) -> resize (up / down / keep; area, bilinear or
                bicubic) -> noise (Gaussian or Poisson, colour or grey) -> JPEG
  second order  blur (with second_blur_prob) -> resize to (HR / scale) x s2 -> noise, then
                either [resize to the LR size -> sinc filter -> JPEG]
                or     [JPEG -> resize to the LR size -> sinc filter], half the time each
  -> clip and round to 8-bit levels.

JAX needs static shapes but each sample's intermediate size is random: an image of valid
size (h, w) sits in the top-left corner of a canvas of the largest size it can reach, and
each operation reads only the valid part (resize matrices built for its size, blur with
reflected borders, JPEG repeating the last row and column as libjpeg). Resizing is torch's
F.interpolate (align_corners=False, no antialiasing, bicubic a = -0.75) as Real-ESRGAN
calls it; the degradation is data, so nothing here is differentiated.

Differences from Real-ESRGAN's code, chosen and documented (docs/degradations.md): JPEG
qualities are integers (a real encoder's), the resize scale and mode are drawn per sample
(Real-ESRGAN draws them per batch), Poisson noise counts an image's distinct values as its
number of values (what Real-ESRGAN's torch.unique finds in a blurred float image), and the
HR target is sharpened only with config.loss.usm_target (Real-ESRGAN's USM of the ground truth).
"""

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from srgan_jax.data import blur, imresize
from srgan_jax.data.jpeg import jpeg

MODES = ('area', 'bilinear', 'bicubic')
DEGRADATIONS = ('bicubic', 'realesrgan')  # config.data.degradation


def defaults() -> ml_collections.ConfigDict:
  """Real-ESRGAN's parameters (options/train_realesrgan_x4plus.yml), names as there."""
  p = ml_collections.ConfigDict()
  kernel_prob = (0.45, 0.25, 0.12, 0.03, 0.12, 0.03)  # blur.FAMILIES
  p.kernel_prob, p.sinc_prob, p.blur_sigma = kernel_prob, 0.1, (0.2, 3.0)
  p.betag_range, p.betap_range = (0.5, 4.0), (1.0, 2.0)
  p.second_blur_prob = 0.8
  p.kernel_prob2, p.sinc_prob2, p.blur_sigma2 = kernel_prob, 0.1, (0.2, 1.5)
  p.betag_range2, p.betap_range2 = (0.5, 4.0), (1.0, 2.0)
  p.final_sinc_prob = 0.8
  p.resize_prob, p.resize_range = (0.2, 0.7, 0.1), (0.15, 1.5)  # up, down, keep
  p.gaussian_noise_prob, p.noise_range, p.poisson_scale_range = 0.5, (1.0, 30.0), (0.05, 3.0)
  p.gray_noise_prob, p.jpeg_range = 0.4, (30, 95)
  p.resize_prob2, p.resize_range2 = (0.3, 0.4, 0.3), (0.3, 1.2)
  p.gaussian_noise_prob2, p.noise_range2, p.poisson_scale_range2 = 0.5, (1.0, 25.0), (0.05, 2.5)
  p.gray_noise_prob2, p.jpeg_range2 = 0.4, (30, 95)
  # Not Real-ESRGAN's: the share of samples made the web image's way instead (MATLAB bicubic
  # x1/scale, then one JPEG at a quality in light_jpeg_range); 0 is Real-ESRGAN's model alone.
  p.light_prob, p.light_jpeg_range = 0.0, (30, 95)
  return p


def _cubic(d, a=-0.75):
  d = jnp.abs(d)
  near = ((a + 2) * d - (a + 3)) * d * d + 1
  far = ((a * d - 5 * a) * d + 8 * a) * d - 4 * a
  return jnp.where(d <= 1, near, jnp.where(d < 2, far, 0.0))


def resize_matrix(n_in, n_out, size_in: int, size_out: int, mode):
  """Per-sample [B, size_out, size_in] matrices of torch's F.interpolate from n_in to n_out samples.

  n_in, n_out, mode: [B] (mode an index into MODES). Rows >= n_out are zero; columns >= n_in
  are never read.
  """
  n_in = jnp.asarray(n_in, jnp.float32)[:, None, None]
  n_out = jnp.asarray(n_out, jnp.float32)[:, None, None]
  o = jnp.arange(size_out, dtype=jnp.float32)[None, :, None]
  i = jnp.arange(size_in, dtype=jnp.float32)[None, None, :]
  ratio = n_in / n_out
  last = n_in - 1
  # area (adaptive average pooling): the mean of inputs floor(o r) .. ceil((o + 1) r) - 1
  start, end = jnp.floor(o * ratio), jnp.ceil((o + 1) * ratio)
  area = ((i >= start) & (i < end)) / (end - start)
  # bilinear: source coordinate clamped at 0, neighbours clamped at the last sample
  src = jnp.maximum((o + 0.5) * ratio - 0.5, 0.0)
  i0 = jnp.minimum(jnp.floor(src), last)
  frac = src - i0
  bilinear = (i == i0) * (1 - frac) + (i == jnp.minimum(i0 + 1, last)) * frac
  # bicubic (a = -0.75): taps floor(src) - 1 .. + 2, each clamped into the image
  src = (o + 0.5) * ratio - 0.5
  base = jnp.floor(src)
  bicubic = sum(
    (i == jnp.clip(base + t, 0, last)) * _cubic(src - (base + t)) for t in (-1, 0, 1, 2)
  )
  m = jnp.asarray(mode)[:, None, None]
  mat = jnp.where(m == 0, area, jnp.where(m == 1, bilinear, bicubic))
  return jnp.where(o < n_out, mat, 0.0)


def resize(x, valid_in, valid_out, size_out, mode):
  """[B, H, W, C] with valid (h, w) sizes -> [B, *size_out, C] holding valid_out sizes."""
  (hi, wi), (ho, wo) = valid_in, valid_out
  mh = resize_matrix(hi, ho, x.shape[1], size_out[0], mode)
  mw = resize_matrix(wi, wo, x.shape[2], size_out[1], mode)
  x = jnp.einsum('boh,bhwc->bowc', mh, x)
  return jnp.einsum('bpw,bowc->bopc', mw, x)


def gaussian_noise(z, sigma):
  """N(0, sigma^2) noise from standard normals z (sigma [B] in [0, 1] units)."""
  return z * sigma[:, None, None, None]


def poisson_noise(z, x, scale, valid_h, valid_w):
  """scale * (Poisson(x v) / v - x), v the image's count of values rounded up to 2^k.

  Poisson counts drawn by their normal approximation from standard normals z (mean and
  variance x v, rounded, >= 0): jax.random.poisson's rejection loops cost ~25x more on the
  CPU, and the counts are large (v >= 2^8) wherever the noise shows."""
  count = (valid_h * valid_w * x.shape[-1]).astype(jnp.float32)[:, None, None, None]
  vals = 2.0 ** jnp.ceil(jnp.log2(count))
  lam = jnp.clip(x, 0, 1) * vals
  return scale[:, None, None, None] * (
    jnp.maximum(jnp.round(lam + jnp.sqrt(lam) * z), 0.0) / vals - x
  )


def random_noise(key, x, valid_h, valid_w, gaussian_prob, sigma_range, poisson_range, gray_prob):
  """Real-ESRGAN's noise step: Gaussian (sigma in grey levels) or Poisson, colour or grey; clipped.

  Grey noise is one draw for the three channels (Poisson's: of the image's luma, BT.601)."""
  b = x.shape[0]
  ks = jax.random.split(key, 6)
  sigma = jax.random.uniform(ks[0], (b,), minval=sigma_range[0], maxval=sigma_range[1]) / 255.0
  scale = jax.random.uniform(ks[1], (b,), minval=poisson_range[0], maxval=poisson_range[1])
  gray = jax.random.bernoulli(ks[2], gray_prob, (b,))[:, None, None, None]
  use_gaussian = jax.random.bernoulli(ks[3], gaussian_prob, (b,))[:, None, None, None]
  z = jax.random.normal(ks[4], x.shape)  # one draw serves every kind (each sample uses one)
  luma = jnp.sum(x * jnp.asarray([0.299, 0.587, 0.114]), axis=-1, keepdims=True)
  poisson = jnp.where(
    gray,
    poisson_noise(z[..., :1], luma, scale, valid_h, valid_w),
    poisson_noise(z, x, scale, valid_h, valid_w),
  )
  gaussian = gaussian_noise(jnp.where(gray, z[..., :1], z), sigma)
  return jnp.clip(x + jnp.where(use_gaussian, gaussian, poisson), 0.0, 1.0)


def random_scale(key, b: int, probs, lo_hi):
  """Per-sample resize factors: up (U(1, hi)), down (U(lo, 1)) or keep (1), with probs."""
  k1, k2, k3 = jax.random.split(key, 3)
  kind = jax.random.choice(k1, 3, (b,), p=jnp.asarray(probs) / np.sum(probs))
  up = jax.random.uniform(k2, (b,), minval=1.0, maxval=lo_hi[1])
  down = jax.random.uniform(k3, (b,), minval=lo_hi[0], maxval=1.0)
  return jnp.where(kind == 0, up, jnp.where(kind == 1, down, 1.0))


def _kernel_params(p, suffix: str) -> dict:
  return {
    'kernel_prob': p['kernel_prob' + suffix],
    'sigma': p['blur_sigma' + suffix],
    'betag': p['betag_range' + suffix],
    'betap': p['betap_range' + suffix],
    'sinc_prob': p['sinc_prob' + suffix],
  }


def _noise_params(p, suffix: str) -> list:
  """random_noise's (gaussian_prob, sigma_range, poisson_range, gray_prob) of one order."""
  names = ('gaussian_noise_prob', 'noise_range', 'poisson_scale_range', 'gray_noise_prob')
  return [p[name + suffix] for name in names]


def _quality(key, b, lo_hi):
  return jax.random.randint(key, (b,), lo_hi[0], lo_hi[1] + 1)


def realesrgan(key, hr01, scale: int, p):
  """[B, P, Q, 3] HR in [0, 1] -> [B, P / scale, Q / scale, 3] degraded LR in [0, 1], 8-bit levels."""
  b, h, w, _ = hr01.shape
  lr_hw = (h // scale, w // scale)
  ks = jax.random.split(key, 16)
  mode = lambda k: jax.random.randint(k, (b,), 0, len(MODES))
  full = lambda n: jnp.full((b,), n, jnp.int32)
  # First order: blur, resize (canvas: the largest size reachable), noise, JPEG.
  x = blur.filter2d(hr01.astype(jnp.float32), blur.random_kernels(ks[0], b, _kernel_params(p, '')))
  s1 = random_scale(ks[1], b, p['resize_prob'], p['resize_range'])
  size1 = (int(h * p['resize_range'][1]), int(w * p['resize_range'][1]))
  n1 = [jnp.clip(jnp.floor(n * s1).astype(jnp.int32), 1, c) for n, c in zip((h, w), size1)]
  x = resize(x, (full(h), full(w)), n1, size1, mode(ks[2]))
  x = random_noise(ks[3], x, *n1, *_noise_params(p, ''))
  x = jpeg(x, _quality(ks[4], b, p['jpeg_range']), *n1)
  # Second order.
  blurred = blur.filter2d(x, blur.random_kernels(ks[5], b, _kernel_params(p, '2')), *n1)
  x = jnp.where(
    jax.random.bernoulli(ks[6], p['second_blur_prob'], (b,))[:, None, None, None], blurred, x
  )
  s2 = random_scale(ks[7], b, p['resize_prob2'], p['resize_range2'])
  size2 = tuple(max(1, int(n * p['resize_range2'][1])) for n in lr_hw)
  n2 = [jnp.clip(jnp.floor(n * s2).astype(jnp.int32), 1, c) for n, c in zip(lr_hw, size2)]
  x = resize(x, n1, n2, size2, mode(ks[8]))
  x = random_noise(ks[9], x, *n2, *_noise_params(p, '2'))
  # Last: resize to the LR size + sinc, and JPEG, in random order.
  sinc = blur.random_final_sinc(ks[10], b, p['final_sinc_prob'])
  quality, final_mode = _quality(ks[11], b, p['jpeg_range2']), mode(ks[12])
  lr_valid = (full(lr_hw[0]), full(lr_hw[1]))
  then_jpeg = jpeg(blur.filter2d(resize(x, n2, lr_valid, lr_hw, final_mode), sinc), quality)
  jpeg_first = blur.filter2d(resize(jpeg(x, quality, *n2), n2, lr_valid, lr_hw, final_mode), sinc)
  order = jax.random.bernoulli(ks[13], 0.5, (b,))[:, None, None, None]
  x = jnp.where(order, then_jpeg, jpeg_first)
  x = jnp.clip(jnp.round(x * 255.0), 0, 255) / 255.0
  if p.get('light_prob', 0.0) > 0:  # static: Real-ESRGAN's model alone computes as before
    light = jax.random.bernoulli(ks[14], p['light_prob'], (b,))[:, None, None, None]
    x = jnp.where(light, light_lr(ks[15], hr01, scale, p['light_jpeg_range']), x)
  return x


def light_lr(key, hr01, scale: int, jpeg_range):
  """A web image: MATLAB bicubic x1/scale on 8-bit levels, then JPEG at a quality per sample."""
  lr = jnp.round(jnp.clip(imresize.imresize(hr01, scale=1.0 / scale), 0.0, 1.0) * 255.0) / 255.0
  return jpeg(lr, _quality(key, hr01.shape[0], jpeg_range))


def make_lr(key, hr_uint8, data, scale: int):
  """uint8 HR crops -> (LR in [0, 1], HR in [-1, 1]) by config.data.degradation.

  'bicubic': the paper's (MATLAB bicubic, imresize.degrade); 'realesrgan': the model above
  with the parameters of config.data.realesrgan, drawn from key."""
  if data.get('degradation', 'bicubic') == 'realesrgan':
    hr01 = jnp.asarray(hr_uint8).astype(jnp.float32) / 255.0
    return realesrgan(key, hr01, scale, data.realesrgan), hr01 * 2.0 - 1.0
  return imresize.degrade(hr_uint8, scale, data.quantize_lr)


def check(data, scale: int) -> None:
  """ValueError naming the first config.data.degradation / .realesrgan field out of range."""
  kind = data.get('degradation', 'bicubic')
  if kind not in DEGRADATIONS:
    raise ValueError(f'data.degradation={kind!r}; use one of {DEGRADATIONS}.')
  if kind != 'realesrgan':
    return
  p = data.get('realesrgan')
  if p is None:
    raise ValueError(
      'data.realesrgan is missing; set it to degradations.defaults() (configs/default.py).'
    )
  unknown = sorted(set(p) - set(defaults()))
  if unknown:
    raise ValueError(
      f'data.realesrgan.{unknown[0]} is not a parameter; see degradations.defaults().'
    )

  missing = sorted(set(defaults()) - set(p) - {'light_prob', 'light_jpeg_range'})
  if missing:
    raise ValueError(
      f'data.realesrgan.{missing[0]} is missing; start from degradations.defaults().'
    )

  def fail(name, why):
    raise ValueError(f'data.realesrgan.{name}={p[name]!r}: {why}.')

  for name in (
    'sinc_prob',
    'second_blur_prob',
    'final_sinc_prob',
    'gaussian_noise_prob',
    'gray_noise_prob',
    'sinc_prob2',
    'gaussian_noise_prob2',
    'gray_noise_prob2',
    'light_prob',
  ):
    if name not in p:  # light_*: optional (0: Real-ESRGAN's model alone)
      continue
    if not 0.0 <= p[name] <= 1.0:
      fail(name, 'use a probability in [0, 1]')
  for name, n in (('kernel_prob', 6), ('kernel_prob2', 6), ('resize_prob', 3), ('resize_prob2', 3)):
    if len(p[name]) != n or min(p[name]) < 0 or sum(p[name]) <= 0:
      fail(name, f'use {n} weights >= 0, not all 0')
  for name, hi, zero in (  # zero: whether low may be 0 (no noise); a kernel's shape may not
    ('blur_sigma', 50, False),
    ('blur_sigma2', 50, False),
    ('betag_range', 50, False),
    ('betag_range2', 50, False),
    ('betap_range', 50, False),
    ('betap_range2', 50, False),
    ('noise_range', 255, True),
    ('noise_range2', 255, True),
    ('poisson_scale_range', 100, True),
    ('poisson_scale_range2', 100, True),
  ):
    r = p[name]
    if len(r) != 2 or not (0 <= r[0] if zero else 0 < r[0]) or not r[0] <= r[1] <= hi:
      fail(name, f'use (low, high) with 0 {"<=" if zero else "<"} low <= high <= {hi}')
  for name in ('jpeg_range', 'jpeg_range2', 'light_jpeg_range'):
    if name not in p:
      continue
    r = p[name]
    if len(r) != 2 or not all(isinstance(q, int) for q in r) or not 1 <= r[0] <= r[1] <= 100:
      fail(name, "use integer qualities (low, high) with 1 <= low <= high <= 100 (libjpeg's scale)")
  for name, hi in (('resize_range', 4.0), ('resize_range2', 4.0)):
    r = p[name]
    if len(r) != 2 or not 0 < r[0] <= 1.0 <= r[1] <= hi:
      fail(name, f'use (down, up) with 0 < down <= 1 <= up <= {hi}')
  if data.hr_crop // scale * p['resize_range2'][0] < 1 or data.hr_crop * p['resize_range'][0] < 1:
    raise ValueError(
      f"data.hr_crop={data.hr_crop} is too small for data.realesrgan's resize ranges."
    )
