"""load_rgb turns any common image file into RGB uint8 or fails in one line."""

import os

import numpy as np
import pytest
from PIL import Image, ImageFile

from srgan_jax.data import image_io
from srgan_jax.data.image_io import (
  IMAGE_EXTENSIONS,
  ImageReadError,
  is_grayscale_file,
  list_images,
  load_rgb,
  save_png,
)


def _noise(shape, seed=0):
  return np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8)


def _check_rgb(x, h, w):
  assert x.dtype == np.uint8 and x.shape == (h, w, 3)


def test_rgb_png_round_trips(tmp_path):
  x = _noise((7, 9, 3))
  Image.fromarray(x).save(tmp_path / 'a.png')
  np.testing.assert_array_equal(load_rgb(tmp_path / 'a.png'), x)
  assert not is_grayscale_file(tmp_path / 'a.png')


def test_grayscale_becomes_three_equal_channels(tmp_path):
  g = _noise((5, 6))
  Image.fromarray(g, 'L').save(tmp_path / 'g.png')
  x = load_rgb(tmp_path / 'g.png')
  _check_rgb(x, 5, 6)
  for c in range(3):
    np.testing.assert_array_equal(x[..., c], g)
  assert is_grayscale_file(tmp_path / 'g.png')


def test_alpha_is_dropped_not_composited(tmp_path):
  Image.new('RGBA', (3, 2), (200, 100, 50, 0)).save(tmp_path / 'rgba.png')
  np.testing.assert_array_equal(load_rgb(tmp_path / 'rgba.png'), np.full((2, 3, 3), [200, 100, 50]))
  Image.new('LA', (3, 2), (77, 0)).save(tmp_path / 'la.png')
  np.testing.assert_array_equal(load_rgb(tmp_path / 'la.png'), np.full((2, 3, 3), 77))


def test_palette_with_transparency_keeps_its_colours(tmp_path):
  p = Image.new('P', (4, 2))
  p.putpalette([10, 20, 30, 240, 120, 0] + [0] * 762)
  p.putpixel((3, 1), 1)
  p.info['transparency'] = 0
  p.save(tmp_path / 'p.png', transparency=0)
  assert Image.open(tmp_path / 'p.png').mode == 'P'
  x = load_rgb(tmp_path / 'p.png')
  _check_rgb(x, 2, 4)
  assert tuple(x[0, 0]) == (10, 20, 30) and tuple(x[1, 3]) == (240, 120, 0)


def test_16_bit_png_is_rounded_v_over_257(tmp_path):
  # Low-byte truncation would give v & 255; taking the high byte v >> 8.
  # Correct is round(v / 257): 128 -> 0, 129 -> 1, 385 -> 1, 32767 -> 127,
  # 32896 -> 128, 65406 -> 254 (254.498), 65535 -> 255.
  v = np.array([[0, 128, 129, 385, 32767, 32896, 65406, 65535]], np.uint16)
  Image.fromarray(v).save(tmp_path / 'd.png')
  assert Image.open(tmp_path / 'd.png').mode.startswith('I')
  x = load_rgb(tmp_path / 'd.png')
  expected = np.floor(v / 257 + 0.5).astype(np.uint8)
  np.testing.assert_array_equal(expected, [[0, 0, 1, 1, 127, 128, 254, 255]])
  np.testing.assert_array_equal(x[..., 0], expected)
  np.testing.assert_array_equal(x[..., 2], expected)


def test_float_tiff_is_read_as_0_to_255(tmp_path):
  f = np.array([[-3.0, 0.4, 12.6, 300.0]], np.float32)
  Image.fromarray(f, 'F').save(tmp_path / 'f.tif')
  np.testing.assert_array_equal(load_rgb(tmp_path / 'f.tif')[..., 1], [[0, 0, 13, 255]])


def test_cmyk_jpeg_becomes_rgb(tmp_path):
  Image.new('CMYK', (16, 16), (0, 255, 255, 0)).save(tmp_path / 'c.jpg', quality=95)
  assert Image.open(tmp_path / 'c.jpg').mode == 'CMYK'
  x = load_rgb(tmp_path / 'c.jpg')
  _check_rgb(x, 16, 16)
  assert np.abs(x.astype(int) - [255, 0, 0]).max() <= 8  # red, up to JPEG error


def test_exif_orientation_is_applied(tmp_path):
  # Stored 40 wide x 20 high, left half red. Orientation 6 means "rotate 90
  # degrees clockwise to display": 20 wide x 40 high, red in the top half.
  img = np.zeros((20, 40, 3), np.uint8)
  img[:, :20] = [255, 0, 0]
  exif = Image.Exif()
  exif[0x0112] = 6
  Image.fromarray(img).save(tmp_path / 'r.jpg', exif=exif, quality=95)
  x = load_rgb(tmp_path / 'r.jpg')
  _check_rgb(x, 40, 20)
  assert x[5, 10, 0] > 200 and x[35, 10, 0] < 50


def test_truncated_png_fails_with_one_line_naming_the_file(tmp_path, monkeypatch):
  Image.fromarray(_noise((64, 64, 3))).save(tmp_path / 'cut.png')
  data = (tmp_path / 'cut.png').read_bytes()
  (tmp_path / 'cut.png').write_bytes(data[: len(data) // 2])
  # Even when someone switched Pillow to lenient mode, truncation is an error.
  monkeypatch.setattr(ImageFile, 'LOAD_TRUNCATED_IMAGES', True)
  with pytest.raises(ImageReadError, match='cut.png') as e:
    load_rgb(tmp_path / 'cut.png')
  assert '\n' not in str(e.value) and e.value.__cause__ is None
  assert e.value.__suppress_context__
  assert ImageFile.LOAD_TRUNCATED_IMAGES is True  # restored
  assert isinstance(e.value, ValueError)


def test_text_file_named_png_fails(tmp_path):
  (tmp_path / 'notes.png').write_text('not an image\n')
  with pytest.raises(ImageReadError, match='notes.png'):
    load_rgb(tmp_path / 'notes.png')


def test_missing_file_fails(tmp_path):
  with pytest.raises(ImageReadError, match='no such file'):
    load_rgb(tmp_path / 'gone.png')


def test_list_images_recurses_filters_and_sorts(tmp_path):
  names = [
    'b.jpg',
    'a.PNG',
    'notes.txt',
    'sub/d.WebP',
    'sub/deeper/e.tif',
    'sub/x.jpeg',
    'z.bmp',
    'y.TIFF',
    'noext',
  ]
  for n in names:
    (tmp_path / n).parent.mkdir(parents=True, exist_ok=True)
    (tmp_path / n).write_bytes(b'')
  (tmp_path / 'dir.png').mkdir()  # a folder with an image-like name
  got = [p.relative_to(tmp_path).as_posix() for p in list_images(tmp_path)]
  assert got == [
    'a.PNG',
    'b.jpg',
    'sub/d.WebP',
    'sub/deeper/e.tif',
    'sub/x.jpeg',
    'y.TIFF',
    'z.bmp',
  ]
  assert set(IMAGE_EXTENSIONS) == {'.png', '.jpg', '.jpeg', '.bmp', '.tif', '.tiff', '.webp'}
  with pytest.raises(FileNotFoundError, match='not a directory'):
    list_images(tmp_path / 'nope')


def test_save_png_writes_atomically(tmp_path, monkeypatch):
  out = tmp_path / 'out.png'
  first, second = _noise((6, 5, 3), 1), _noise((6, 5), 2)
  save_png(out, first)
  save_png(out, second)  # overwrite
  np.testing.assert_array_equal(np.asarray(Image.open(out)), second)
  assert os.listdir(tmp_path) == ['out.png']

  # A failure mid-write leaves the old file whole and no temp file behind.
  def explode(*args, **kwargs):
    raise OSError('disk full')

  monkeypatch.setattr(image_io.Image.Image, 'save', explode)
  with pytest.raises(OSError, match='disk full'):
    save_png(out, first)
  assert os.listdir(tmp_path) == ['out.png']
  np.testing.assert_array_equal(np.asarray(Image.open(out)), second)


def test_save_png_rejects_non_uint8(tmp_path):
  with pytest.raises(ValueError, match='uint8'):
    save_png(tmp_path / 'x.png', np.zeros((4, 4, 3), np.float32))
  assert os.listdir(tmp_path) == []
