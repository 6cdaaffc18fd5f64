"""Analytic FLOPs of the networks and steps (multiply-add = 2 FLOPs; convs and dense layers only).

MFU = these FLOPs / time / the matmul peak measured in the same run (measure.py).
"""

from srgan_jax.nets import generators
from srgan_jax.nets import srgan
from srgan_jax.nets import vgg


def conv_flops(k, cin, cout, h_out, w_out):
  return 2 * k * k * cin * cout * h_out * w_out


def generator_flops(lr_hw, scale, num_blocks, features):
  """One forward pass of G on one LR image."""
  h, w = lr_hw
  f = features
  total = conv_flops(9, 3, f, h, w)  # k9n64s1
  total += (2 * num_blocks + 1) * conv_flops(3, f, f, h, w)  # residual blocks + conv_mid
  for r in srgan.upsample_factors(scale):
    total += conv_flops(3, f, f * r * r, h, w)
    h, w = h * r, w * r
  return total + conv_flops(9, f, 3, h, w)  # k9n3s1


def rrdbnet_flops(lr_hw, num_blocks, features, growth):
  """One forward pass of ESRGAN's RRDBNet (x4) on one LR image."""
  h, w = lr_hw
  f, g = features, growth
  rdb = sum(conv_flops(3, f + i * g, g, h, w) for i in range(4)) + conv_flops(3, f + 4 * g, f, h, w)
  total = conv_flops(3, 3, f, h, w) + 3 * num_blocks * rdb + conv_flops(3, f, f, h, w)
  total += conv_flops(3, f, f, 2 * h, 2 * w)  # conv_up1 after the first nearest x2
  total += 2 * conv_flops(3, f, f, 4 * h, 4 * w)  # conv_up2, conv_hr
  return total + conv_flops(3, f, 3, 4 * h, 4 * w)  # conv_last


def any_generator_flops(model_config, lr_hw):
  """generator_flops or rrdbnet_flops, per config.model.arch (with the tiny sizes)."""
  d = generators.resolved(model_config)
  if d['arch'] == 'rrdbnet':
    return rrdbnet_flops(lr_hw, d['num_blocks'], d['features'], d['growth'])
  if d['arch'] != 'srresnet':
    raise ValueError(f'no analytic FLOPs for {d["arch"]}')
  return generator_flops(lr_hw, d['scale'], d['num_blocks'], d['features'])


def discriminator_flops(hw, features, strides, dense_features):
  h, w = hw
  total, cin = 0, 3
  for f, s in zip(features, strides):
    h, w = -(-h // s), -(-w // s)
    total += conv_flops(3, cin, f, h, w)
    cin = f
  return total + 2 * h * w * cin * dense_features + 2 * dense_features


def vgg54_flops(hw):
  h, w = hw
  total, cin = 0, 3
  for b, block in enumerate(vgg.BLOCK_CHANNELS):
    if b:
      h, w = h // 2, w // 2
    for c in block:
      total += conv_flops(3, cin, c, h, w)
      cin = c
  return total


def step_flops(config):
  """Analytic FLOPs of one update: a trained net costs ~3x its forward (fwd + 2 bwd)."""
  n, hr, s = config.data.batch_size, config.data.hr_crop, config.model.scale
  g = n * any_generator_flops(config.model, (hr // s, hr // s))
  if config.phase == 'srresnet':
    return 3 * g
  d_model = srgan.make_discriminator(config)
  d = (
    2 * n * discriminator_flops((hr, hr), d_model.features, d_model.strides, d_model.dense_features)
  )  # D sees [HR, SR]
  # VGG: forward on SR and HR, backward w.r.t. the SR input only (~1 more forward of SR).
  return 3 * g + 3 * d + 3 * n * vgg54_flops((hr, hr))
