"""PyTorch generators in the layouts their published weights use (benchmark and parity tests only).

  * `RRDBNet`, `MSRResNet`: written to BasicSR 1.4's basicsr/archs/rrdbnet_arch.py
    and srresnet_arch.py (module names, so state_dict keys, and forward passes
    as there; ESRGAN's and Real-ESRGAN's x4 weights load into `RRDBNet`).
  * `SRGANPyTorchSRResNet`: Lornatang/SRGAN-PyTorch's model.py SRResNet
    (conv1 / trunk.N.rcb / conv2 / upsampling.N.upsample_block / conv3, output
    clamped to [0, 1]).

They are the reference that `srgan_jax.convert_generator` is checked against
(tests/test_convert_generator.py) where BasicSR itself is not installed (its
package pulls a CUDA torch and torchvision), and the PyTorch side of the
benchmark's RRDBNet figures. Inputs and outputs are NCHW images in [0, 1].
"""

import math

import torch
import torch.nn.functional as F
from torch import nn


def _lrelu(slope):
  return nn.LeakyReLU(negative_slope=slope, inplace=True)


class ResidualDenseBlock(nn.Module):
  def __init__(self, num_feat=64, num_grow_ch=32):
    super().__init__()
    for i in range(1, 5):
      setattr(self, f'conv{i}', nn.Conv2d(num_feat + (i - 1) * num_grow_ch, num_grow_ch, 3, 1, 1))
    self.conv5 = nn.Conv2d(num_feat + 4 * num_grow_ch, num_feat, 3, 1, 1)
    self.lrelu = _lrelu(0.2)

  def forward(self, x):
    maps = [x]
    for i in range(1, 5):
      maps.append(self.lrelu(getattr(self, f'conv{i}')(torch.cat(maps, 1))))
    return self.conv5(torch.cat(maps, 1)) * 0.2 + x


class RRDB(nn.Module):
  def __init__(self, num_feat, num_grow_ch=32):
    super().__init__()
    self.rdb1 = ResidualDenseBlock(num_feat, num_grow_ch)
    self.rdb2 = ResidualDenseBlock(num_feat, num_grow_ch)
    self.rdb3 = ResidualDenseBlock(num_feat, num_grow_ch)

  def forward(self, x):
    return self.rdb3(self.rdb2(self.rdb1(x))) * 0.2 + x


class RRDBNet(nn.Module):
  """BasicSR's RRDBNet at scale 4 (num_in_ch = num_out_ch = 3)."""

  def __init__(self, num_feat=64, num_block=23, num_grow_ch=32):
    super().__init__()
    self.conv_first = nn.Conv2d(3, num_feat, 3, 1, 1)
    self.body = nn.Sequential(*[RRDB(num_feat, num_grow_ch) for _ in range(num_block)])
    self.conv_body = nn.Conv2d(num_feat, num_feat, 3, 1, 1)
    self.conv_up1 = nn.Conv2d(num_feat, num_feat, 3, 1, 1)
    self.conv_up2 = nn.Conv2d(num_feat, num_feat, 3, 1, 1)
    self.conv_hr = nn.Conv2d(num_feat, num_feat, 3, 1, 1)
    self.conv_last = nn.Conv2d(num_feat, 3, 3, 1, 1)
    self.lrelu = _lrelu(0.2)

  def forward(self, x):
    feat = self.conv_first(x)
    feat = feat + self.conv_body(self.body(feat))
    feat = self.lrelu(self.conv_up1(F.interpolate(feat, scale_factor=2, mode='nearest')))
    feat = self.lrelu(self.conv_up2(F.interpolate(feat, scale_factor=2, mode='nearest')))
    return self.conv_last(self.lrelu(self.conv_hr(feat)))


class ResidualBlockNoBN(nn.Module):
  def __init__(self, num_feat=64):
    super().__init__()
    self.conv1 = nn.Conv2d(num_feat, num_feat, 3, 1, 1)
    self.conv2 = nn.Conv2d(num_feat, num_feat, 3, 1, 1)
    self.relu = nn.ReLU(inplace=True)

  def forward(self, x):
    return x + self.conv2(self.relu(self.conv1(x)))


class MSRResNet(nn.Module):
  """BasicSR's MSRResNet (x2, x3, x4)."""

  def __init__(self, num_feat=64, num_block=16, upscale=4):
    super().__init__()
    self.upscale = upscale
    self.conv_first = nn.Conv2d(3, num_feat, 3, 1, 1)
    self.body = nn.Sequential(*[ResidualBlockNoBN(num_feat) for _ in range(num_block)])
    r = 2 if upscale == 4 else upscale
    self.upconv1 = nn.Conv2d(num_feat, num_feat * r * r, 3, 1, 1)
    if upscale == 4:
      self.upconv2 = nn.Conv2d(num_feat, num_feat * 4, 3, 1, 1)
    self.pixel_shuffle = nn.PixelShuffle(r)
    self.conv_hr = nn.Conv2d(num_feat, num_feat, 3, 1, 1)
    self.conv_last = nn.Conv2d(num_feat, 3, 3, 1, 1)
    self.lrelu = _lrelu(0.1)

  def forward(self, x):
    out = self.body(self.lrelu(self.conv_first(x)))
    out = self.lrelu(self.pixel_shuffle(self.upconv1(out)))
    if self.upscale == 4:
      out = self.lrelu(self.pixel_shuffle(self.upconv2(out)))
    out = self.conv_last(self.lrelu(self.conv_hr(out)))
    return out + F.interpolate(x, scale_factor=self.upscale, mode='bilinear', align_corners=False)


class _ResidualConvBlock(nn.Module):
  def __init__(self, channels):
    super().__init__()
    self.rcb = nn.Sequential(
      nn.Conv2d(channels, channels, 3, 1, 1, bias=False),
      nn.BatchNorm2d(channels),
      nn.PReLU(),
      nn.Conv2d(channels, channels, 3, 1, 1, bias=False),
      nn.BatchNorm2d(channels),
    )

  def forward(self, x):
    return self.rcb(x) + x


class _UpsampleBlock(nn.Module):
  def __init__(self, channels):
    super().__init__()
    self.upsample_block = nn.Sequential(
      nn.Conv2d(channels, channels * 4, 3, 1, 1), nn.PixelShuffle(2), nn.PReLU()
    )

  def forward(self, x):
    return self.upsample_block(x)


class SRGANPyTorchSRResNet(nn.Module):
  """Lornatang/SRGAN-PyTorch's SRResNet (x2, x4, x8: log2(scale) x2 blocks)."""

  def __init__(self, channels=64, num_rcb=16, upscale_factor=4):
    super().__init__()
    self.conv1 = nn.Sequential(nn.Conv2d(3, channels, 9, 1, 4), nn.PReLU())
    self.trunk = nn.Sequential(*[_ResidualConvBlock(channels) for _ in range(num_rcb)])
    self.conv2 = nn.Sequential(
      nn.Conv2d(channels, channels, 3, 1, 1, bias=False), nn.BatchNorm2d(channels)
    )
    n_up = int(math.log2(upscale_factor))
    self.upsampling = nn.Sequential(*[_UpsampleBlock(channels) for _ in range(n_up)])
    self.conv3 = nn.Conv2d(channels, 3, 9, 1, 4)

  def forward(self, x):
    out1 = self.conv1(x)
    out = self.conv2(self.trunk(out1)) + out1
    return torch.clamp(self.conv3(self.upsampling(out)), 0.0, 1.0)


def randomize_(net: nn.Module, seed: int = 0, gain: float = 0.5) -> nn.Module:
  """Random weights of a realistic size (and BN statistics, PReLU slopes) for parity checks.

  Conv weights ~ N(0, (gain / sqrt(fan_in))^2): with gain 0.5 a 23-block RRDBNet's
  output stays O(1) like a trained one's (at 1 it grows to ~40; BasicSR's
  0.1-scaled init would make most layers nearly the identity).
  """
  g = torch.Generator().manual_seed(seed)
  with torch.no_grad():
    for m in net.modules():
      if isinstance(m, nn.Conv2d):
        fan_in = m.weight[0].numel()
        m.weight.copy_(torch.randn(m.weight.shape, generator=g) * gain / math.sqrt(fan_in))
        if m.bias is not None:
          m.bias.copy_(0.1 * torch.randn(m.bias.shape, generator=g))
      elif isinstance(m, nn.BatchNorm2d):
        m.weight.copy_(0.5 + torch.rand(m.weight.shape, generator=g))
        m.bias.copy_(0.1 * torch.randn(m.bias.shape, generator=g))
        m.running_mean.copy_(0.1 * torch.randn(m.running_mean.shape, generator=g))
        m.running_var.copy_(0.5 + torch.rand(m.running_var.shape, generator=g))
      elif isinstance(m, nn.PReLU):
        m.weight.copy_(0.1 + 0.3 * torch.rand(m.weight.shape, generator=g))
  return net.eval()
