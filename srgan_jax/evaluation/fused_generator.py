"""SRResNet inference with BatchNorm folded into the convolutions and each conv's bias, skip sum and
PReLU fused into one oneDNN call (its post-ops).

In inference BN is a per-channel affine map with its running statistics,
BN(z) = gamma (z - mu) / sqrt(var + eps) + beta, so conv -> BN is one conv with the
kernel scaled by s = gamma / sqrt(var + eps) per output channel and bias beta - mu s
(folded in float32, then cast to the compute dtype like any kernel). What is left of
each layer of Figure 4 (top) — bias, PReLU, the residual blocks' and the long skip's
sums — runs inside the convolution's kernel in float32 and is rounded once, instead
of as three or four passes over a bfloat16 map (XLA:CPU widens each element to
float32 and back in each). Same parameters as `srgan.Generator` (read by their
names), same results within the compute dtype's rounding (tested); the pixel
shuffles and the output's tanh / clamp are `srgan`'s own.
"""

from typing import Any

import jax
import jax.numpy as jnp

from srgan_jax.kernels import fast_conv
from srgan_jax.kernels import onednn_conv
from srgan_jax.nets import srgan

_EPS = 1e-5  # srgan._BN's epsilon


def fold_bn(kernel, bn_params, bn_stats):
  """conv (no bias) -> BN in inference == conv with this (kernel, bias), in float32."""
  s = bn_params['scale'] * jax.lax.rsqrt(bn_stats['var'] + _EPS)
  return kernel * s, bn_params['bias'] - bn_stats['mean'] * s


def _conv(x, kernel, bias, residual=None, slope=None):
  pads = jax.lax.padtype_to_pads(x.shape[1:3], kernel.shape[:2], (1, 1), 'SAME')
  return onednn_conv.conv_fused(x, kernel.astype(x.dtype), bias, residual, slope, pads=pads)


def apply(generator: srgan.Generator, variables: dict, lr: jax.Array) -> jax.Array:
  """generator.apply(variables, lr, train=False), each layer fused: SR in [-1, 1], float32."""
  p, st, dtype = variables['params'], variables['batch_stats'], generator.dtype
  slope = lambda tree: tree['PReLU_0']['negative_slope']
  x = lr.astype(dtype)
  x = skip = _conv(
    x, p['conv_in']['kernel'], p['conv_in']['bias'], slope=slope(p)
  )  # k9n64s1, PReLU
  for i in range(generator.num_blocks):  # conv, BN, PReLU, conv, BN, + x
    b, s = p[f'res_{i}'], st[f'res_{i}']
    y = _conv(
      x, *fold_bn(b['Conv_0']['kernel'], b['BatchNorm_0'], s['BatchNorm_0']), slope=slope(b)
    )
    x = _conv(y, *fold_bn(b['Conv_1']['kernel'], b['BatchNorm_1'], s['BatchNorm_1']), residual=x)
  x = _conv(x, *fold_bn(p['conv_mid']['kernel'], p['bn_mid'], st['bn_mid']), residual=skip)
  factors = srgan.upsample_factors(generator.scale)
  subpixel_out = factors[-1] == 2  # as srgan.Generator: the last shuffle after the output conv
  for i, f in enumerate(factors):  # conv, PReLU (elementwise: before the shuffle), shuffle
    up = p[f'up_{i}']
    x = _conv(x, up['Conv_0']['kernel'], up['Conv_0']['bias'], slope=slope(up))
    if not (i == len(factors) - 1 and subpixel_out):
      x = srgan.pixel_shuffle(x, f)
  out = p['conv_out']
  if subpixel_out:
    r = factors[-1]
    kernel = fast_conv.polyphase_kernel(out['kernel'], r)
    x = srgan.pixel_shuffle(_conv(x, kernel, jnp.repeat(out['bias'], r * r)), r)
  else:
    x = _conv(x, out['kernel'], out['bias'])
  return srgan.output_activation(x, generator.output)


def applies(generator: Any) -> bool:
  """Whether `apply` is the faster inference for `generator`: the paper's SRResNet computing in
  bfloat16 on one CPU device with oneDNN's bf16 kernels (float32 keeps the module's exact path)."""
  return (
    isinstance(generator, srgan.Generator)
    and jnp.dtype(generator.dtype) == jnp.bfloat16
    and jax.default_backend() == 'cpu'
    and jax.device_count() == 1
    and onednn_conv.status()[0]
    and onednn_conv.isa() in onednn_conv.BF16_ISAS
    and onednn_conv.fused_enabled()
  )
