"""MATLAB-compatible bicubic `imresize` for images shaped [..., H, W, C].

Reproduces MATLAB's `imresize(x, scale, 'bicubic')`: Keys cubic kernel with
a = -0.5, antialiasing when shrinking, MATLAB's index arithmetic and mirror
boundary. The SR literature makes its LR images and its "bicubic" baseline
with exactly this function, so matching it is what makes PSNR comparable.

Resizing is separable: one (out x in) weight matrix per spatial axis, built
in numpy from static shapes at trace time (`resize_matrix`), then applied by
matmul. The JAX path (`imresize`) is jit-able and differentiable; the numpy
path (`imresize_np`, `imresize_uint8`) runs in float64 on the host for
evaluation.

`degrade` is the SR literature's degradation built on it: the LR image the
train step (and the sample grid) feeds G from an HR crop.
"""

import math

import jax.numpy as jnp
import numpy as np


def cubic(x):
  """Keys (1981) cubic convolution kernel with a = -0.5, as in MATLAB."""
  ax = np.abs(x)
  ax2, ax3 = ax * ax, ax * ax * ax
  near = (1.5 * ax3 - 2.5 * ax2 + 1.0) * (ax <= 1)
  far = (-0.5 * ax3 + 2.5 * ax2 - 4.0 * ax + 2.0) * ((ax > 1) & (ax <= 2))
  return near + far


def resize_matrix(in_size: int, out_size: int, scale: float) -> np.ndarray:
  """Dense float64 (out_size, in_size) matrix W with resized = W @ signal.

  Mirrors MATLAB's `contributions(...)` for the bicubic kernel: output pixel
  x (1-based) samples input coordinate u = x / scale + 0.5 * (1 - 1 / scale);
  when shrinking, the kernel is stretched by 1 / scale (antialiasing).
  """
  width = 4.0
  kernel = cubic
  if scale < 1:  # antialias: h(x) = scale * cubic(scale * x), width 4 / scale
    width = 4.0 / scale
    kernel = lambda x: scale * cubic(scale * x)
  x = np.arange(1, out_size + 1, dtype=np.float64)
  u = x / scale + 0.5 * (1.0 - 1.0 / scale)
  left = np.floor(u - width / 2.0)
  taps = int(math.ceil(width)) + 2
  idx = left[:, None] + np.arange(taps)[None, :]  # 1-based, may fall outside
  weights = kernel(u[:, None] - idx)
  weights = weights / weights.sum(axis=1, keepdims=True)
  # Symmetric boundary: index sequence 1..n, n..1 repeated (MATLAB's `aux`).
  aux = np.concatenate([np.arange(in_size), np.arange(in_size)[::-1]])
  idx = aux[np.mod(idx - 1, 2 * in_size).astype(np.int64)]
  # MATLAB drops tap columns whose weights are all zero; with a dense matrix
  # such taps add exact zeros, so scattering them is the same thing.
  keep = np.any(weights != 0, axis=0)
  weights, idx = weights[:, keep], idx[:, keep]
  mat = np.zeros((out_size, in_size), np.float64)
  rows = np.broadcast_to(np.arange(out_size)[:, None], idx.shape)
  np.add.at(mat, (rows, idx), weights)
  return mat


def _plan(in_hw, scale, output_shape):
  """Returns [(axis, weight matrix)] in MATLAB's order (smallest scale first)."""
  if (scale is None) == (output_shape is None):
    raise ValueError('imresize: pass exactly one of scale= or output_shape=.')
  if output_shape is not None:
    out_hw = tuple(int(s) for s in output_shape)
    if len(out_hw) != 2 or min(out_hw) < 1:
      raise ValueError(f'imresize: output_shape must be (height, width) >= 1, got {output_shape}.')
    scales = tuple(o / i for o, i in zip(out_hw, in_hw))
  else:
    scales = tuple(np.broadcast_to(np.asarray(scale, np.float64), (2,)).tolist())
    if min(scales) <= 0:
      raise ValueError(f'imresize: scale must be positive, got {scale}.')
    out_hw = tuple(int(math.ceil(s * i)) for s, i in zip(scales, in_hw))
  order = sorted(range(2), key=lambda d: scales[d])  # stable: H first on ties
  return [(d, resize_matrix(in_hw[d], out_hw[d], scales[d])) for d in order]


def _check_rank(shape):
  if len(shape) < 3:
    raise ValueError(
      f'imresize: expected [..., H, W, C], got shape {tuple(shape)}; '
      'add a trailing channel axis for grayscale.'
    )


def _apply_np(x, d, mat):
  axis = x.ndim - 3 + d  # H or W of [..., H, W, C]
  return np.moveaxis(np.tensordot(mat, x, axes=([1], [axis])), 0, axis)


def imresize(images, scale=None, output_shape=None):
  """MATLAB bicubic imresize in JAX; float in, float out, no clipping.

  Args:
    images: float array [..., H, W, C] (any leading batch dims).
    scale: factor for both axes, or a (scale_h, scale_w) pair; the output
      size is ceil(scale * size).
    output_shape: (out_h, out_w) instead of scale.
  """
  images = jnp.asarray(images)
  _check_rank(images.shape)
  if not jnp.issubdtype(images.dtype, jnp.floating):
    images = images.astype(jnp.float32)
  out = images
  for d, mat in _plan(images.shape[-3:-1], scale, output_shape):
    m = jnp.asarray(mat, images.dtype)
    if d == 0:
      out = jnp.einsum('oh,...hwc->...owc', m, out)
    else:
      out = jnp.einsum('ow,...hwc->...hoc', m, out)
  return out


def imresize_np(images, scale=None, output_shape=None, round_between=False):
  """Numpy float64 twin of `imresize` (same weights, same order).

  round_between=True rounds and clips to [0, 255] after each axis, as
  MATLAB does for uint8 input (its resize kernel returns the input class).
  """
  x = np.asarray(images, np.float64)
  _check_rank(x.shape)
  for d, mat in _plan(x.shape[-3:-1], scale, output_shape):
    x = _apply_np(x, d, mat)
    if round_between:
      x = _round_uint8(x).astype(np.float64)
  return x


def _round_uint8(x):
  # MATLAB's double -> uint8: round half away from zero, saturate.
  return np.clip(np.sign(x) * np.floor(np.abs(x) + 0.5), 0, 255).astype(np.uint8)


def imresize_uint8(images_uint8, scale=None, output_shape=None):
  """MATLAB `imresize` on uint8 images: float64 math, rounded, uint8 out."""
  x = np.asarray(images_uint8)
  if x.dtype != np.uint8:
    raise ValueError(f'imresize_uint8: expected uint8 input, got {x.dtype}.')
  return _round_uint8(imresize_np(x, scale, output_shape, round_between=True))


def degrade(hr_uint8, scale: int, quantize: bool):
  """uint8 HR crops -> (LR in [0, 1], HR in [-1, 1]): MATLAB bicubic x1/scale, on device.

  The LR images of the SR benchmarks are made this way (and stored as 8-bit
  files: quantize=True rounds LR to 8-bit levels as they are).
  """
  hr01 = jnp.asarray(hr_uint8).astype(jnp.float32) / 255.0
  lr = jnp.clip(imresize(hr01, scale=1.0 / scale), 0.0, 1.0)
  if quantize:  # LR images in the wild are 8-bit, as are the benchmark LR files
    lr = jnp.round(lr * 255.0) / 255.0
  return lr, hr01 * 2.0 - 1.0
