"""Real-ESRGAN's U-Net discriminator with spectral normalisation (nets/unet_discriminator.py):
against a PyTorch transcription of BasicSR's UNetDiscriminatorSN, the spectral norm against
numpy's SVD, and as config.model.discriminator in a train step."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from srgan_jax.nets import srgan, unet_discriminator
from srgan_jax.nets.unet_discriminator import TinyUNetDiscriminatorSN, UNetDiscriminatorSN
from srgan_jax.training import config_checks
from tests.helpers import tiny_config


class _TorchUNetD(torch.nn.Module):
  """basicsr/archs/discriminator_arch.py UNetDiscriminatorSN (skip_connection=True), with the
  spectral norm left out: the test feeds it kernels already divided by sigma."""

  def __init__(self, f):
    super().__init__()
    conv = torch.nn.Conv2d
    self.conv0 = conv(3, f, 3, 1, 1)
    self.conv1 = conv(f, f * 2, 4, 2, 1, bias=False)
    self.conv2 = conv(f * 2, f * 4, 4, 2, 1, bias=False)
    self.conv3 = conv(f * 4, f * 8, 4, 2, 1, bias=False)
    self.conv4 = conv(f * 8, f * 4, 3, 1, 1, bias=False)
    self.conv5 = conv(f * 4, f * 2, 3, 1, 1, bias=False)
    self.conv6 = conv(f * 2, f, 3, 1, 1, bias=False)
    self.conv7 = conv(f, f, 3, 1, 1, bias=False)
    self.conv8 = conv(f, f, 3, 1, 1, bias=False)
    self.conv9 = conv(f, 1, 3, 1, 1)

  def forward(self, x):
    act = lambda t: F.leaky_relu(t, negative_slope=0.2)
    up = lambda t: F.interpolate(t, scale_factor=2, mode='bilinear', align_corners=False)
    x0 = act(self.conv0(x))
    x1 = act(self.conv1(x0))
    x2 = act(self.conv2(x1))
    x3 = act(self.conv3(x2))
    x4 = act(self.conv4(up(x3))) + x2
    x5 = act(self.conv5(up(x4))) + x1
    x6 = act(self.conv6(up(x5))) + x0
    out = act(self.conv7(x6))
    out = act(self.conv8(out))
    return self.conv9(out)


def test_matches_basicsrs_unet_discriminator_with_the_same_normalised_weights():
  d = UNetDiscriminatorSN(features=16)
  x = jax.random.uniform(jax.random.key(0), (2, 32, 40, 3), minval=-1.0, maxval=1.0)
  v = d.init(jax.random.key(1), x)
  logits, updates = d.apply(v, x, train=True, mutable=['batch_stats'])
  assert logits.shape == (2, 32, 40) and logits.dtype == jnp.float32  # a logit per pixel
  ref = _TorchUNetD(16)
  with torch.no_grad():
    for i in range(10):
      p = v['params'][f'conv_{i}']
      w = np.asarray(p['kernel'])
      if f'sn_{i}' in updates['batch_stats']:  # the sigma this call divided by
        w = w / float(updates['batch_stats'][f'sn_{i}'][f'conv_{i}/kernel/sigma'])
      conv = getattr(ref, f'conv{i}')
      conv.weight.copy_(torch.from_numpy(w.transpose(3, 2, 0, 1).copy()))
      if 'bias' in p:
        conv.bias.copy_(torch.from_numpy(np.array(p['bias'])))
    want = ref(torch.from_numpy(np.asarray(x).transpose(0, 3, 1, 2).copy()))[:, 0].numpy()
  assert sorted(updates['batch_stats']) == [f'sn_{i}' for i in range(1, 9)]  # 0 and 9: no SN
  np.testing.assert_allclose(logits, want, atol=2e-5, rtol=1e-4)


def test_power_iteration_finds_each_kernels_spectral_norm():
  d = TinyUNetDiscriminatorSN()
  x = jnp.zeros((1, 16, 16, 3))
  v = d.init(jax.random.key(2), x)
  step = jax.jit(
    lambda s: d.apply({'params': v['params'], 'batch_stats': s}, x, train=True, mutable=True)[1]
  )
  stats = v['batch_stats']
  for _ in range(300):
    stats = step(stats)['batch_stats']
  for i in range(1, 9):
    kernel = np.asarray(v['params'][f'conv_{i}']['kernel'])
    top = np.linalg.svd(kernel.reshape(-1, kernel.shape[-1]), compute_uv=False)[0]
    np.testing.assert_allclose(stats[f'sn_{i}'][f'conv_{i}/kernel/sigma'], top, rtol=1e-3)
  # evaluation (train=False) reads the state and leaves it alone
  _, same = d.apply({'params': v['params'], 'batch_stats': stats}, x, mutable=True)
  jax.tree.map(np.testing.assert_array_equal, same['batch_stats'], stats)


def test_sizes_not_divisible_by_8_are_refused_in_the_config_and_the_module():
  with pytest.raises(ValueError, match='divisible by 8'):
    UNetDiscriminatorSN().init(jax.random.key(0), jnp.zeros((1, 20, 24, 3)))
  c = tiny_config('srgan', **{'model.discriminator': 'unet_sn', 'data.hr_crop': 36})
  with pytest.raises(config_checks.ConfigError, match='multiple of 8') as e:
    config_checks.validate_config(c)
  assert '\n' not in str(e.value)
  c = tiny_config('srgan', **{'model.discriminator': 'patchgan'})
  with pytest.raises(config_checks.ConfigError, match="discriminator='patchgan'"):
    config_checks.validate_config(c)


@pytest.mark.parametrize('gan', ['standard', 'ragan'])
def test_a_train_step_with_the_unet_discriminator_uses_every_pixels_logit(gan):
  from srgan_jax.data import degradations  # pylint: disable=g-import-not-at-top
  from srgan_jax.training import losses, train_states, update_step  # pylint: disable=g-import-not-at-top

  c = tiny_config('srgan', **{'model.discriminator': 'unet_sn', 'data.hr_crop': 32})
  c.loss.gan = gan
  assert isinstance(srgan.make_discriminator(c), UNetDiscriminatorSN)
  g, d = train_states.create_train_states(c, jax.random.key(0))
  hr = jax.random.randint(jax.random.key(1), (4, 32, 32, 3), 0, 256).astype(jnp.uint8)
  content_loss = update_step.make_content_loss(c)
  step = jax.jit(
    lambda g, d, b: update_step.train_step(g, d, b, None, config=c, content_loss=content_loss)
  )
  g2, d2, m = step(g, d, {'hr': hr})

  # D's loss from the logit maps of the same HR and SR, at the old parameters
  @jax.jit  # one program, not op by op (compiling each op's kernel was most of this test)
  def d_logits(g, d):
    key = jax.random.fold_in(jax.random.fold_in(jax.random.key(c.seed), g.step), 2)
    lr, hr01 = degradations.make_lr(key, hr, c.data, 4)
    sr, _ = g.apply_fn(
      {'params': g.params, 'batch_stats': g.batch_stats}, lr, train=True, mutable=['batch_stats']
    )
    pair = jnp.stack([hr01, sr], axis=1).reshape((-1,) + hr01.shape[1:])
    logits, _ = d.apply_fn(
      {'params': d.params, 'batch_stats': d.batch_stats}, pair, train=True, mutable=['batch_stats']
    )
    return logits

  logits = d_logits(g, d)
  real, fake = logits[0::2], logits[1::2]
  assert real.shape == (4, 32, 32)
  want = losses.ragan_discriminator if gan == 'ragan' else losses.discriminator_bce
  np.testing.assert_allclose(m['d_loss'], want(real, fake), rtol=1e-4)
  u = lambda state: state.batch_stats['sn_1']['conv_1/kernel/u']
  assert not np.array_equal(u(d2), u(d))  # one power iteration per training call
  assert int(g2.step) == 1


@pytest.mark.parametrize('shape', [(2, 7, 5, 3), (1, 1, 4, 2), (1, 12, 12, 8)])
def test_bilinear_x2_is_jax_image_resize_in_value_and_gradient(shape):
  x = jax.random.normal(jax.random.key(0), shape)
  out_shape = (shape[0], 2 * shape[1], 2 * shape[2], shape[3])
  resize = lambda h: jax.image.resize(h, out_shape, 'bilinear')
  ct = jax.random.normal(jax.random.key(1), out_shape)
  np.testing.assert_allclose(unet_discriminator.upsample_bilinear_x2(x), resize(x), atol=1e-6)
  grad = lambda f: jax.grad(lambda h: jnp.sum(f(h) * ct))(x)
  np.testing.assert_allclose(grad(unet_discriminator.upsample_bilinear_x2), grad(resize), atol=2e-6)
  # bfloat16 in, bfloat16 out: computed in float32, rounded once
  y16 = unet_discriminator.upsample_bilinear_x2(x.astype(jnp.bfloat16))
  assert y16.dtype == jnp.bfloat16
  want = resize(x.astype(jnp.bfloat16).astype(jnp.float32))
  np.testing.assert_allclose(y16.astype(jnp.float32), want, rtol=2**-8, atol=1e-6)
