"""`BatchNorm`: Flax's nn.BatchNorm, with its training-mode bfloat16 maps on oneDNN's kernels.

The same module to Flax (a subclass: same fields, parameter names `scale` / `bias`,
batch statistics `mean` / `var`, running averages, the name `BatchNorm_k`), so
checkpoints and exports do not change. In training (batch statistics) on a bfloat16
NHWC map on one CPU device with dtype=bfloat16 it calls `onednn_bn.batch_norm`
(float32 statistics and normalisation, y rounded once to bfloat16: what Flax computes);
everything else (float32, inference with the running averages, initialisation,
several devices, a mask or other axes) is nn.BatchNorm's own code.
"""

import flax.linen as nn
import jax.numpy as jnp

from srgan_jax.kernels import onednn_bn


class BatchNorm(nn.BatchNorm):
  @nn.compact
  def __call__(self, x, use_running_average: bool | None = None, *, mask=None):
    running = nn.merge_param('use_running_average', self.use_running_average, use_running_average)
    if running or mask is not None or self.is_initializing() or not self._fast(x):
      return super().__call__(x, use_running_average, mask=mask)
    c = x.shape[-1]
    ra_mean = self.variable('batch_stats', 'mean', lambda s: jnp.zeros(s, jnp.float32), (c,))
    ra_var = self.variable('batch_stats', 'var', lambda s: jnp.ones(s, jnp.float32), (c,))
    scale = self.param('scale', self.scale_init, (c,), self.param_dtype)
    bias = self.param('bias', self.bias_init, (c,), self.param_dtype)
    y, mean, var = onednn_bn.batch_norm(x, scale, bias, float(self.epsilon))
    ra_mean.value = self.momentum * ra_mean.value + (1 - self.momentum) * mean
    ra_var.value = self.momentum * ra_var.value + (1 - self.momentum) * var
    return y

  def _fast(self, x) -> bool:
    """Flax's defaults that the oneDNN path computes, on a map it takes."""
    return (
      self.axis == -1
      and self.axis_name is None
      and self.use_bias
      and self.use_scale
      and self.force_float32_reductions
      and self.param_dtype == jnp.float32
      and self.dtype is not None
      and jnp.dtype(self.dtype) == x.dtype
      and onednn_bn.applies(x, self.epsilon)
    )
