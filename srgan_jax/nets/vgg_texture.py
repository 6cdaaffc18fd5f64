"""EnhanceNet's texture loss on VGG maps (Sajjadi et al., ICCV 2017, Sec. 4.3).

Gram matrices G(phi) = phi^T phi of feature maps over local windows: the second-order
statistics (which features occur together) of each window's texture, not where they are.
`nets.vgg.content_loss` takes the maps from its own VGG pass.
"""

from typing import Mapping, Sequence

import jax
import jax.numpy as jnp


def tap_stride(tap: str) -> int:
  """Image pixels per position of a tap's map: 2^(i-1) for block i (a 2x2 max-pool between blocks)."""
  return 2 ** (int(tap[len('conv') if tap.startswith('conv') else len('relu')]) - 1)


def patch_gram(features: jax.Array, patch: int) -> jax.Array:
  """Gram matrices of non-overlapping patch x patch windows: (N, H/p, W/p, C, C), float32.

  Each is F^T F / p^2 for the window's p^2 x C features F (patch 0: the whole map, one window).
  """
  f = features.astype(jnp.float32)
  n, h, w, c = f.shape
  p_h, p_w = (h, w) if patch == 0 else (patch, patch)
  f = f.reshape(n, h // p_h, p_h, w // p_w, p_w, c).transpose(0, 1, 3, 2, 4, 5)
  f = f.reshape(n, h // p_h, w // p_w, p_h * p_w, c)
  return jnp.einsum('nyxpc,nyxpd->nyxcd', f, f) / (p_h * p_w)


def texture_loss(
  f_sr: Mapping[str, jax.Array],
  f_hr: Mapping[str, jax.Array],
  taps: Sequence[str],
  patch: int = 16,
  feature_scale: float = 1 / 12.75,
) -> jax.Array:
  """EnhanceNet's texture loss L_T (Sajjadi et al., ICCV 2017, Sec. 4.3): the squared distance
  of SR's and HR's Gram matrices G(phi) = phi^T phi, taken over local windows of `patch` x
  `patch` image pixels (EnhanceNet: 16; 0: the whole crop, BasicSR's style loss) so that
  textures match where they are, not only on average.

  f_sr, f_hr: VGG feature maps by tap (NHWC). Features are rescaled by `feature_scale` as in
  the content loss and each Gram is averaged over its window's positions; the loss is the mean
  over batch, windows and Gram entries, summed over `taps`.
  """
  loss = jnp.zeros((), jnp.float32)
  for tap in taps:
    window = patch // tap_stride(tap)  # the window in this map's positions
    g_sr = patch_gram(feature_scale * f_sr[tap].astype(jnp.float32), window)
    g_hr = patch_gram(feature_scale * f_hr[tap].astype(jnp.float32), window)
    loss = loss + jnp.mean(jnp.square(g_sr - g_hr))
  return loss
