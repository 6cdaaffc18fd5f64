"""How the paper's convolutions run fast on XLA:CPU; what they compute is unchanged.

  * `compiler_options`: the XLA options every jitted SRGAN function is compiled
    with (convolutions on XLA's multi-threaded kernels, not YNNPACK's).
  * `SubpixelOutputConv`: the k9n3s1 output conv applied after the last pixel
    shuffle, computed on the coarse grid before it.

Measured in `python -m srgan_jax.benchmark` (README, Performance).
"""

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

# jaxlib 0.10's XLA:CPU hands dots, reductions and convolutions to YNNPACK by
# default. On the paper's conv shapes YNNPACK's convolutions use one core (a
# 16x24x24x64 k3n64 conv: 4.7 ms on one core, 5.2 ms on two) and its kernel
# gradients run 3x slower than XLA's own multi-threaded (Eigen) convolutions
# (2.8 ms forward, 4.6 ms kernel gradient on two cores). Dots and reductions
# stay with YNNPACK, where they are faster.
_YNN_FUSION_TYPES = 'LIBRARY_FUSION_TYPE_INDIVIDUAL_DOT,LIBRARY_FUSION_TYPE_REDUCE'


def compiler_options(platform: str | None = None) -> dict[str, str]:
  """`jax.jit(..., compiler_options=...)` for `platform` (default: JAX's default backend)."""
  if (platform or jax.default_backend()) != 'cpu':
    return {}
  return {'xla_cpu_experimental_ynn_fusion_type': _YNN_FUSION_TYPES}


# ----------------------------------------------------------------------------
# The output conv on the coarse grid.

def _polyphase_selection(k: int, r: int) -> np.ndarray:
  """S[d, u, p, a] = 1 where tap a of a k-tap kernel on the r-times finer grid links
  input phase u at coarse offset d to output phase p: a - k//2 = r*d + u - p."""
  half = k // 2
  reach = (half + r - 1) // r
  s = np.zeros((2 * reach + 1, r, r, k), np.float32)
  for d in range(-reach, reach + 1):
    for u in range(r):
      for p in range(r):
        a = r * d + u - p + half
        if 0 <= a < k:
          s[d + reach, u, p, a] = 1.0
  return s


class SubpixelOutputConv(nn.Module):
  """The k9n3s1 output conv of pixel_shuffle(z, r), computed on z's coarse grid (unshuffled).

  conv9x9(shuffle(z)) == shuffle(conv_KxK(z, W')) with W' the polyphase rearrangement
  of the same 9x9 kernel (K = 5 for r = 2): one conv with r*r*C inputs and r*r*3
  outputs instead of a 3-output conv on r*r times the pixels, and no shuffle of the
  64-channel map. Parameters are the 9x9 kernel and bias of the plain conv.
  """
  features: int = 3
  kernel_size: int = 9
  factor: int = 2
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, z):
    r, k = self.factor, self.kernel_size
    cin = z.shape[-1] // (r * r)
    kernel = self.param('kernel', nn.initializers.lecun_normal(), (k, k, cin, self.features))
    bias = self.param('bias', nn.initializers.zeros_init(), (self.features,))
    s = jnp.asarray(_polyphase_selection(k, r), kernel.dtype)
    w = jnp.einsum('yuPa,xvQb,abco->yxcuvoPQ', s, s, kernel)
    w = w.reshape(s.shape[0], s.shape[0], cin * r * r, self.features * r * r)
    z, w = z.astype(self.dtype), w.astype(self.dtype)
    y = lax.conv_general_dilated(z, w, (1, 1), 'SAME', dimension_numbers=('NHWC', 'HWIO', 'NHWC'))
    return y + jnp.repeat(bias, r * r).astype(self.dtype)  # the caller pixel-shuffles
