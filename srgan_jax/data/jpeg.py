"""Baseline JPEG compression and decompression in JAX, as libjpeg does it, jittable, per sample.

A JPEG round trip at quality q, for the degradation model (`data.degradations`):

  RGB -> YCbCr (JFIF, rounded to 8-bit samples)
  -> chroma 4:2:0: 2x2 means with libjpeg's alternating rounding bias (1, 2)
  -> 8x8 blocks, level shift -128, DCT-II (orthonormal: JPEG's F(u, v))
  -> divide by the Annex K tables scaled by quality as libjpeg does, round
  -> multiply back, inverse DCT, +128, round and clip
  -> chroma upsampled by libjpeg's "fancy" triangle filter (its default)
  -> RGB, rounded and clipped: what a decoder hands back.

Partial blocks and MCUs are filled by repeating the last row and column, as
libjpeg does; with `valid` sizes an image may sit in the top-left corner of a
larger array (what lies beyond is ignored and comes back as junk). libjpeg's
integer DCTs round differently from these float ones: `benchmarks/jpeg_vs_pillow.py`
measures the PSNR between the two decoders' outputs (docs/degradations.md).
"""

import jax.numpy as jnp
import numpy as np

# ITU-T T.81 Annex K tables K.1 (luminance) and K.2 (chrominance), natural order.
LUMA_TABLE = np.array(
  [
    [16, 11, 10, 16, 24, 40, 51, 61],
    [12, 12, 14, 19, 26, 58, 60, 55],
    [14, 13, 16, 24, 40, 57, 69, 56],
    [14, 17, 22, 29, 51, 87, 80, 62],
    [18, 22, 37, 56, 68, 109, 103, 77],
    [24, 35, 55, 64, 81, 104, 113, 92],
    [49, 64, 78, 87, 103, 121, 120, 101],
    [72, 92, 95, 98, 112, 100, 103, 99],
  ],
  np.int32,
)
CHROMA_TABLE = np.array(
  [
    [17, 18, 24, 47, 99, 99, 99, 99],
    [18, 21, 26, 66, 99, 99, 99, 99],
    [24, 26, 56, 99, 99, 99, 99, 99],
    [47, 66, 99, 99, 99, 99, 99, 99],
    [99, 99, 99, 99, 99, 99, 99, 99],
    [99, 99, 99, 99, 99, 99, 99, 99],
    [99, 99, 99, 99, 99, 99, 99, 99],
    [99, 99, 99, 99, 99, 99, 99, 99],
  ],
  np.int32,
)


def dct_matrix() -> np.ndarray:
  """The 8x8 orthonormal DCT-II matrix D: a block's coefficients are D @ block @ D.T."""
  u, x = np.meshgrid(np.arange(8), np.arange(8), indexing='ij')
  d = np.cos((2 * x + 1) * u * np.pi / 16) * np.sqrt(2 / 8)
  d[0] /= np.sqrt(2)
  return d.astype(np.float32)


def quant_tables(quality):
  """libjpeg's jpeg_set_quality(q, force_baseline=TRUE): (luma, chroma) int tables [..., 8, 8]."""
  q = jnp.clip(jnp.asarray(quality, jnp.int32), 1, 100)[..., None, None]
  scale = jnp.where(q < 50, 5000 // q, 200 - 2 * q)
  table = lambda base: jnp.clip((jnp.asarray(base) * scale + 50) // 100, 1, 255)
  return table(LUMA_TABLE), table(CHROMA_TABLE)


def fill_beyond(x, valid_h, valid_w):
  """[B, H, W, C] with rows >= valid_h and columns >= valid_w repeating the last valid one."""
  h, w = x.shape[1:3]
  rows = jnp.minimum(jnp.arange(h)[None, :], jnp.asarray(valid_h).reshape(-1, 1) - 1)
  cols = jnp.minimum(jnp.arange(w)[None, :], jnp.asarray(valid_w).reshape(-1, 1) - 1)
  x = jnp.take_along_axis(x, rows[:, :, None, None], axis=1)
  return jnp.take_along_axis(x, cols[:, None, :, None], axis=2)


def rgb_to_ycbcr(rgb):
  """JFIF YCbCr of 0..255 RGB (full range, chroma centred at 128), rounded as libjpeg's tables."""
  r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
  y = 0.299 * r + 0.587 * g + 0.114 * b
  cb = -0.168735892 * r - 0.331264108 * g + 0.5 * b + 128.0
  cr = 0.5 * r - 0.418687589 * g - 0.081312411 * b + 128.0
  return jnp.clip(jnp.floor(jnp.stack([y, cb, cr], -1) + 0.5), 0, 255)


def ycbcr_to_rgb(ycc):
  y, cb, cr = ycc[..., 0], ycc[..., 1] - 128.0, ycc[..., 2] - 128.0
  rgb = jnp.stack([y + 1.402 * cr, y - 0.344136286 * cb - 0.714136286 * cr, y + 1.772 * cb], -1)
  return jnp.clip(jnp.floor(rgb + 0.5), 0, 255)


def downsample_420(c):
  """[B, H, W] (H, W even) -> [B, H/2, W/2]: libjpeg's h2v2_downsample, bias 1, 2, 1, 2, ..."""
  b, h, w = c.shape
  sums = c.reshape(b, h // 2, 2, w // 2, 2).sum(axis=(2, 4))
  bias = jnp.where(jnp.arange(w // 2) % 2 == 0, 1.0, 2.0)
  return jnp.floor((sums + bias) / 4.0)


def upsample_420(c):
  """[B, h, w] -> [B, 2h, 2w]: libjpeg's h2v2_fancy_upsample (triangle filter, edges repeated)."""
  up = jnp.concatenate([c[:, :1], c[:, :-1]], axis=1)  # the row above (the first repeated)
  down = jnp.concatenate([c[:, 1:], c[:, -1:]], axis=1)
  # Column sums of output rows 2i (with row i-1) and 2i+1 (with row i+1), interleaved.
  colsum = jnp.stack([3 * c + up, 3 * c + down], axis=2).reshape(c.shape[0], -1, c.shape[2])
  left = jnp.concatenate([colsum[:, :, :1], colsum[:, :, :-1]], axis=2)
  right = jnp.concatenate([colsum[:, :, 1:], colsum[:, :, -1:]], axis=2)
  even = jnp.floor((3 * colsum + left + 8) / 16)
  odd = jnp.floor((3 * colsum + right + 7) / 16)
  return jnp.stack([even, odd], axis=3).reshape(colsum.shape[0], colsum.shape[1], -1)


def _blocks_roundtrip(plane, table):
  """[B, H, W] samples (H, W multiples of 8), [B, 8, 8] table -> decoded samples, 8x8 blocks."""
  b, h, w = plane.shape
  d = jnp.asarray(dct_matrix())
  blocks = plane.reshape(b, h // 8, 8, w // 8, 8) - 128.0
  coef = jnp.einsum('ux,bixjy,vy->biujv', d, blocks, d)
  t = table.astype(jnp.float32)[:, None, :, None, :]
  coef = jnp.round(coef / t) * t  # quantisation: the only loss of information
  rec = jnp.einsum('ux,biujv,vy->bixjy', d, coef, d) + 128.0
  return jnp.clip(jnp.round(rec), 0, 255).reshape(b, h, w)


def jpeg(images01, quality, valid_h=None, valid_w=None):
  """A JPEG round trip (4:2:0, baseline tables at `quality`) of [B, H, W, 3] images in [0, 1].

  quality: int, scalar or [B] (1..100, as libjpeg); valid_h / valid_w: scalars or [B], the
  image's size in the top-left corner (default: all of it). Returns [B, H, W, 3] float32 in
  [0, 1] on 8-bit levels.
  """
  b, h, w, _ = images01.shape
  valid_h = h if valid_h is None else valid_h
  valid_w = w if valid_w is None else valid_w
  ph, pw = -(-h // 16) * 16, -(-w // 16) * 16  # whole MCUs of 16 x 16
  x = jnp.clip(jnp.floor(images01.astype(jnp.float32) * 255.0 + 0.5), 0, 255)
  x = jnp.pad(x, ((0, 0), (0, ph - h), (0, pw - w), (0, 0)))
  ycc = rgb_to_ycbcr(fill_beyond(x, valid_h, valid_w))
  luma_t, chroma_t = quant_tables(jnp.broadcast_to(jnp.asarray(quality), (b,)))
  y = _blocks_roundtrip(ycc[..., 0], luma_t)
  chroma = []
  for k in (1, 2):
    small = _blocks_roundtrip(downsample_420(ycc[..., k]), chroma_t)
    # The decoder upsamples the chroma of the image's own size, repeating its last sample.
    ch = (jnp.asarray(valid_h) + 1) // 2
    cw = (jnp.asarray(valid_w) + 1) // 2
    small = fill_beyond(small[..., None], ch, cw)[..., 0]
    chroma.append(upsample_420(small))
  rgb = ycbcr_to_rgb(jnp.stack([y, *chroma], axis=-1))
  return rgb[:, :h, :w] / 255.0
