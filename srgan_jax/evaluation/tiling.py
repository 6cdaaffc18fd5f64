"""Seamless tiled inference of the generator: bounded memory, same result as one pass.

Why tiling is exact here. In inference mode every BatchNorm is a fixed
per-channel affine map, so each SR pixel depends only on the LR pixels within
the generator's receptive field. Every convolution zero-pads its own input
('SAME'), so an LR window whose edges are either image edges or at least
`receptive_radius` LR pixels away from the pixels we keep gives those pixels
exactly as a whole-image pass would (up to float rounding).

So windows are never padded: near an image edge the window is shifted inward
to stay inside the image (padding with zeros once at the input is *not* the
same as zero-padding every layer). All windows of an image share one shape,
(min(tile, H), min(tile, W)), so a jitted generator compiles once per such
shape: once for every image larger than the tile.
"""

from collections.abc import Callable

import numpy as np

from srgan_jax.nets import generators


def receptive_radius(model_config) -> int:
  """LR pixels of context each side that one SR pixel depends on (rounded up; generators.py)."""
  return generators.receptive_radius(model_config)


def windows(size: int, tile: int, halo: int) -> list[tuple[int, int, int, int]]:
  """(window_start, window_stop, keep_start, keep_stop) along one axis of `size` LR pixels.

  Windows have length min(tile, size) and lie inside [0, size); the kept
  ranges tile [0, size) exactly, and each kept pixel is at least `halo`
  pixels from any window edge that is not an image edge.
  """
  if size <= tile:
    return [(0, size, 0, size)]
  core = tile - 2 * halo
  if core < 1:
    raise ValueError(
      f'tile={tile} leaves no core with a halo of {halo} on each side; '
      f'use a tile of at least {2 * halo + 16}.'
    )
  out = []
  keep_start = 0
  while keep_start < size:
    keep_stop = min(keep_start + core, size)
    # Interior window: halo before the kept run; shifted to stay in the image.
    start = min(max(keep_start - halo, 0), size - tile)
    if keep_start == 0:
      # The first window runs from the image edge, so it can keep more.
      keep_stop = min(tile - halo, size)
    if start + tile == size:
      keep_stop = size  # reaches the far image edge: keep everything up to it
    out.append((start, start + tile, keep_start, keep_stop))
    keep_start = keep_stop
  return out


def upscale_tiled(
  predict: Callable[[np.ndarray], np.ndarray], lr: np.ndarray, scale: int, tile: int, halo: int
) -> np.ndarray:
  """SR [H*s, W*s, C] of LR [H, W, C] from `predict` ([1, h, w, C] -> [1, h*s, w*s, C]).

  `predict` sees windows of one shape per image (see the module docstring).
  """
  h, w, _ = lr.shape
  out = None
  for y0, y1, ky0, ky1 in windows(h, tile, halo):
    for x0, x1, kx0, kx1 in windows(w, tile, halo):
      sr = np.asarray(predict(lr[None, y0:y1, x0:x1]))[0]
      if out is None:
        out = np.empty((h * scale, w * scale, sr.shape[-1]), sr.dtype)
      out[ky0 * scale : ky1 * scale, kx0 * scale : kx1 * scale] = sr[
        (ky0 - y0) * scale : (ky1 - y0) * scale, (kx0 - x0) * scale : (kx1 - x0) * scale
      ]
  return out
