"""A PyTorch twin of `srgan_jax.models` and `srgan_jax.update_step.train_step`, for benchmarking only.

Same layers as the Flax modules (no bias before BN, one PReLU slope, PyTorch's
pixel-shuffle channel order, TF-style 'SAME' padding for D's stride-2 convs),
same losses (pixel MSE, VGG-19 feature MSE x 1/12.75^2, logit BCE), same step
(one G forward, one D forward on interleaved [HR, SR], G and D gradients from
the same forward pass, Adam) and the same on-device MATLAB bicubic degradation.
`load_flax_generator` / `load_flax_discriminator` copy Flax variables in, so a
test can check that both frameworks compute the same function.

torch is an optional extra (`pip install -e '.[benchmark]'`); only
`srgan_jax.benchmark` and its tests import this module.
"""

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from srgan_jax.nets import srgan, vgg
from srgan_jax.data.imresize import resize_matrix


def _bn(c):
  return nn.BatchNorm2d(c, momentum=0.1, eps=1e-5)  # Flax momentum 0.9


def _prelu():
  return nn.PReLU(1, init=0.25)


class ResidualBlock(nn.Module):
  def __init__(self, c):
    super().__init__()
    self.conv1, self.bn1, self.act = nn.Conv2d(c, c, 3, padding=1, bias=False), _bn(c), _prelu()
    self.conv2, self.bn2 = nn.Conv2d(c, c, 3, padding=1, bias=False), _bn(c)

  def forward(self, x):
    return x + self.bn2(self.conv2(self.act(self.bn1(self.conv1(x)))))


class Generator(nn.Module):
  """SRResNet, as `srgan.Generator`."""

  def __init__(self, scale=4, num_blocks=16, features=64):
    super().__init__()
    c = features
    self.conv_in, self.act_in = nn.Conv2d(3, c, 9, padding=4), _prelu()
    self.blocks = nn.Sequential(*[ResidualBlock(c) for _ in range(num_blocks)])
    self.conv_mid, self.bn_mid = nn.Conv2d(c, c, 3, padding=1, bias=False), _bn(c)
    self.up = nn.Sequential(
      *[
        nn.Sequential(nn.Conv2d(c, c * f * f, 3, padding=1), nn.PixelShuffle(f), _prelu())
        for f in srgan.upsample_factors(scale)
      ]
    )
    self.conv_out = nn.Conv2d(c, 3, 9, padding=4)

  def forward(self, lr):
    x = skip = self.act_in(self.conv_in(lr))
    x = self.bn_mid(self.conv_mid(self.blocks(x))) + skip
    return torch.tanh(self.conv_out(self.up(x)))


class _SameConv(nn.Conv2d):
  """k3 conv with TF/Flax 'SAME' padding: stride 2 pads one pixel at the bottom/right only."""

  def forward(self, x):
    if self.stride[0] == 2:
      return F.conv2d(F.pad(x, (0, 1, 0, 1)), self.weight, self.bias, self.stride)
    return F.conv2d(x, self.weight, self.bias, self.stride, padding=1)


class Discriminator(nn.Module):
  """As `srgan.Discriminator`; `hr_size` fixes the Dense input (HWC-flattened, as in Flax)."""

  def __init__(
    self,
    hr_size,
    features=(64, 64, 128, 128, 256, 256, 512, 512),
    strides=(1, 2, 1, 2, 1, 2, 1, 2),
    dense_features=1024,
  ):
    super().__init__()
    layers, cin, size = [], 3, hr_size
    for i, (f, s) in enumerate(zip(features, strides)):
      layers.append(_SameConv(cin, f, 3, stride=s, bias=(i == 0)))
      if i > 0:
        layers.append(_bn(f))
      layers.append(nn.LeakyReLU(0.2))
      cin, size = f, -(-size // s)
    self.features = nn.Sequential(*layers)
    self.dense_0 = nn.Linear(size * size * cin, dense_features)
    self.dense_1 = nn.Linear(dense_features, 1)

  def forward(self, x):
    x = self.features(x).permute(0, 2, 3, 1).flatten(1)  # HWC order, like Flax's reshape
    return self.dense_1(F.leaky_relu(self.dense_0(x), 0.2))[:, 0]


class VGG19(nn.Module):
  """VGG-19 features up to relu5_4 (the paper's VGG54), frozen."""

  def __init__(self):
    super().__init__()
    layers, cin = [], 3
    for b, block in enumerate(vgg.BLOCK_CHANNELS):
      if b:
        layers.append(nn.MaxPool2d(2))
      for c in block:
        layers += [nn.Conv2d(cin, c, 3, padding=1), nn.ReLU()]
        cin = c
    self.features = nn.Sequential(*layers)
    self.requires_grad_(False)

  def forward(self, x):
    return self.features(x)


# ----------------------------------------------------------------------------
# Copying Flax variables in (HWIO -> OIHW).


def _t(a):
  return torch.from_numpy(np.array(a, np.float32))


def _conv(conv, p):
  conv.weight.data = _t(np.transpose(np.asarray(p['kernel']), (3, 2, 0, 1)))
  if 'bias' in p:
    conv.bias.data = _t(p['bias'])


def _bn_in(bn, p, s):
  bn.weight.data, bn.bias.data = _t(p['scale']), _t(p['bias'])
  bn.running_mean.data, bn.running_var.data = _t(s['mean']), _t(s['var'])


def _prelu_in(act, p):
  act.weight.data = _t(np.reshape(p['negative_slope'], (1,)))


def load_flax_generator(net: Generator, variables) -> Generator:
  p, s = variables['params'], variables['batch_stats']
  _conv(net.conv_in, p['conv_in'])
  _prelu_in(net.act_in, p['PReLU_0'])
  for i, blk in enumerate(net.blocks):
    bp, bs = p[f'res_{i}'], s[f'res_{i}']
    _conv(blk.conv1, bp['Conv_0'])
    _bn_in(blk.bn1, bp['BatchNorm_0'], bs['BatchNorm_0'])
    _prelu_in(blk.act, bp['PReLU_0'])
    _conv(blk.conv2, bp['Conv_1'])
    _bn_in(blk.bn2, bp['BatchNorm_1'], bs['BatchNorm_1'])
  _conv(net.conv_mid, p['conv_mid'])
  _bn_in(net.bn_mid, p['bn_mid'], s['bn_mid'])
  for i, up in enumerate(net.up):
    _conv(up[0], p[f'up_{i}']['Conv_0'])
    _prelu_in(up[2], p[f'up_{i}']['PReLU_0'])
  _conv(net.conv_out, p['conv_out'])
  return net


def load_flax_discriminator(net: Discriminator, variables) -> Discriminator:
  p, s = variables['params'], variables['batch_stats']
  convs = [m for m in net.features if isinstance(m, nn.Conv2d)]
  bns = [m for m in net.features if isinstance(m, nn.BatchNorm2d)]
  for i, conv in enumerate(convs):
    _conv(conv, p[f'conv_{i}'])
    if i > 0:
      _bn_in(bns[i - 1], p[f'bn_{i}'], s[f'bn_{i}'])
  for name in ('dense_0', 'dense_1'):
    getattr(net, name).weight.data = _t(np.asarray(p[name]['kernel']).T)
    getattr(net, name).bias.data = _t(p[name]['bias'])
  return net


# ----------------------------------------------------------------------------
# The step.

_MEAN = torch.tensor(vgg.TORCH_MEAN).view(1, 3, 1, 1)
_STD = torch.tensor(vgg.TORCH_STD).view(1, 3, 1, 1)


def vgg_content_loss(vgg_net, sr, hr, feature_scale=1 / 12.75):
  """As `vgg.content_loss(..., preprocess='torch', taps=('relu5_4',))`."""
  mean, std = _MEAN.to(sr.device), _STD.to(sr.device)
  pre = lambda x: ((x + 1) * 0.5 - mean) / std
  with torch.no_grad():
    f_hr = vgg_net(pre(hr))
  diff = feature_scale * (vgg_net(pre(sr)).float() - f_hr.float())
  return torch.mean(torch.square(diff))


class Degrade:
  """uint8 NHWC HR crops -> (LR in [0, 1], HR in [-1, 1]), NCHW: MATLAB bicubic, as `imresize.degrade`."""

  def __init__(self, hr_size, scale, memory_format, device='cpu'):
    m = _t(resize_matrix(hr_size, hr_size // scale, 1.0 / scale)).to(device)
    self.m, self.memory_format = m, memory_format

  def __call__(self, hr_uint8):
    hr01 = hr_uint8.to(self.m.device).permute(0, 3, 1, 2).float() / 255.0
    lr = torch.einsum('oh,nchw,pw->ncop', self.m, hr01, self.m).clamp(0, 1)
    lr = torch.round(lr * 255.0) / 255.0
    return (
      lr.contiguous(memory_format=self.memory_format),
      (hr01 * 2 - 1).contiguous(memory_format=self.memory_format),
    )


def make_step(
  g,
  d,
  vgg_net,
  *,
  hr_size,
  scale,
  lr=1e-4,
  adversarial_weight=1e-3,
  channels_last=False,
  device='cpu',
  autocast_dtype=None,
  l1_01=False,
):
  """(uint8 HR batch) -> metrics: one SRResNet (d is None) or SRGAN update, in place.

  l1_01: G returns [0, 1] images (BasicSR's RRDBNet) and the content loss is L1
  against the HR in [0, 1], as ESRGAN's PSNR-oriented step (update_step with 'l1').

  autocast_dtype=torch.bfloat16: the forward passes under `torch.autocast` (fp32
  parameters and Adam state), PyTorch's counterpart of `compute_dtype='bfloat16'`.
  """
  fmt = torch.channels_last if channels_last else torch.contiguous_format
  device = torch.device(device)
  if device.type == 'cpu':
    # XLA:CPU runs with denormals flushed to zero; without this a saturating D's tiny
    # gradients make PyTorch's Adam updates crawl.
    torch.set_flush_denormal(True)
  for net in (g, d, vgg_net):
    if net is not None:
      net.to(device=device, memory_format=fmt).train()
  degrade = Degrade(hr_size, scale, fmt, device)
  autocast = lambda: torch.autocast(
    device.type, dtype=autocast_dtype, enabled=autocast_dtype is not None
  )
  g_opt = torch.optim.Adam(g.parameters(), lr=lr, betas=(0.9, 0.999), eps=1e-8)
  d_opt = torch.optim.Adam(d.parameters(), lr=lr, betas=(0.9, 0.999), eps=1e-8) if d else None

  def content(sr, hr):
    if l1_01:
      return F.l1_loss(sr, (hr + 1) * 0.5)
    return vgg_content_loss(vgg_net, sr, hr) if vgg_net is not None else F.mse_loss(sr, hr)

  def step(hr_uint8):
    lr_img, hr = degrade(hr_uint8)
    g_opt.zero_grad(set_to_none=True)
    with autocast():
      sr = g(lr_img)
      if d is None:
        loss = content(sr.float(), hr)
    if d is None:
      loss.backward()
      g_opt.step()
      return {'g_loss': loss.detach()}
    with autocast():
      pair = (
        torch.stack([hr.to(sr.dtype), sr], 1).flatten(0, 1).contiguous(memory_format=fmt)
      )  # [HR, SR]
      real, fake = d(pair).float().view(-1, 2).T
      c = content(sr, hr)
    g_loss = c + adversarial_weight * -F.logsigmoid(fake).mean()
    d_loss = -F.logsigmoid(real).mean() - F.logsigmoid(-fake).mean()
    g_params, d_params = list(g.parameters()), list(d.parameters())
    g_grads = torch.autograd.grad(g_loss, g_params, retain_graph=True)  # through D, into G
    d_grads = torch.autograd.grad(d_loss, d_params)  # D's own loss
    for p, gr in zip(g_params, g_grads):
      p.grad = gr
    for p, gr in zip(d_params, d_grads):
      p.grad = gr
    g_opt.step()
    d_opt.step()
    return {'g_loss': g_loss.detach(), 'd_loss': d_loss.detach()}

  return step
