"""Reading and writing images for training and evaluation.

`load_rgb` turns whatever Pillow can open into RGB uint8 [H, W, 3], applying
EXIF orientation, and raises `ImageReadError` (one line, names the file) for
anything corrupt, truncated or not an image. `save_png` writes atomically.
"""

import io
from typing import Callable, TypeVar

import numpy as np
from etils import epath
from PIL import Image, ImageFile, ImageOps

from srgan_jax.common import files
from srgan_jax.common.errors import UserError

T = TypeVar('T')

IMAGE_EXTENSIONS = ('.png', '.jpg', '.jpeg', '.bmp', '.tif', '.tiff', '.webp')


class ImageReadError(UserError):
  """An image file could not be read; the message names the file."""


def _to_rgb_uint8(img: Image.Image) -> np.ndarray:
  """Pillow image of any common mode -> RGB uint8; alpha is dropped."""
  mode = img.mode
  if mode.startswith('I;16') or mode == 'I':
    # 16-bit gray: v / 257 maps 65535 -> 255 exactly; round, do not truncate.
    # 'I' (32-bit) is taken to hold 16-bit values, as PNG and TIFF use it.
    v = np.asarray(img).astype(np.float64)
    gray = np.floor(np.clip(v, 0, 65535) / 257.0 + 0.5).astype(np.uint8)
  elif mode == 'F':
    # Float gray is taken to be in [0, 255], as Pillow's own convert('L').
    gray = np.floor(np.clip(np.asarray(img), 0, 255) + 0.5).astype(np.uint8)
  elif mode in ('1', 'L', 'LA', 'La'):
    gray = np.asarray(img.getchannel(0).convert('L'))
  else:
    if mode in ('P', 'PA'):  # via RGBA so palette transparency is honoured
      img = img.convert('RGBA')
    return np.ascontiguousarray(np.asarray(img.convert('RGB')))
  return np.repeat(gray[..., None], 3, axis=-1)


def load_rgb(path) -> np.ndarray:
  """Reads an image file as RGB uint8 [H, W, 3], EXIF orientation applied.

  Grayscale is replicated to 3 channels, alpha is dropped (not composited),
  palette and CMYK are converted, 16-bit gray is scaled by 1/257 and rounded.
  Truncated files fail even if ImageFile.LOAD_TRUNCATED_IMAGES was set.
  """
  return decode_image(path, _to_rgb_uint8)


def decode_image(path, decode: Callable[[Image.Image], T]) -> T:
  """decode(image) of the file at path, opened strictly, EXIF orientation applied.

  Any failure (missing, truncated, not an image) is an ImageReadError naming the file.
  """
  path = epath.Path(path)  # local or gs:// alike
  # Pillow reads this module global at load time; force strict decoding and
  # restore it (not thread-safe against code that toggles it concurrently).
  lenient = ImageFile.LOAD_TRUNCATED_IMAGES
  ImageFile.LOAD_TRUNCATED_IMAGES = False
  try:
    with path.open('rb') as f, Image.open(f) as img:
      img.load()
      img = ImageOps.exif_transpose(img)
      return decode(img)
  except FileNotFoundError:
    raise ImageReadError(f'{path}: no such file; check the path.') from None
  except Exception as e:  # pylint: disable=broad-except  # edge: Pillow raises many types
    reason = str(e).splitlines()[0] if str(e) else type(e).__name__
    raise ImageReadError(
      f'{path}: not a readable image ({reason}); replace or remove the file.'
    ) from None
  finally:
    ImageFile.LOAD_TRUNCATED_IMAGES = lenient


def is_grayscale_file(path) -> bool:
  """True if the file stores one gray channel (optionally with alpha).

  The SR evaluation protocol scores such files on their gray values rather
  than on BT.601 Y; see srgan_jax.metrics.
  """
  try:
    with epath.Path(path).open('rb') as f, Image.open(f) as img:
      return img.getbands()[0] in ('1', 'L', 'I', 'F') or img.mode.startswith('I;16')
  except FileNotFoundError:
    raise ImageReadError(f'{path}: no such file; check the path.') from None
  except Exception as e:  # pylint: disable=broad-except
    raise ImageReadError(f'{path}: not a readable image ({e}).') from None


def list_images(root) -> list[epath.Path]:
  """All image files under `root` (recursive, local or gs://), by extension, sorted."""
  root = epath.Path(root)
  if not root.is_dir():
    raise FileNotFoundError(f'{root}: not a directory; pass a folder of images.')
  return sorted(
    folder / f
    for folder, _, files in root.walk()
    for f in files
    if epath.Path(f).suffix.lower() in IMAGE_EXTENSIONS
  )


def save_png(path, image) -> None:
  """Writes uint8 [H, W], [H, W, 1|2|3|4] or uint16 [H, W] as PNG; never leaves a partial file.

  The data goes to a temp file in the same folder, then os.replace swaps it
  in, so readers see either the old file or the complete new one.
  """
  image = np.asarray(image)
  if image.ndim == 3 and image.shape[-1] == 1:
    image = image[..., 0]
  if image.dtype == np.uint16 and image.ndim == 2:  # 16-bit gray
    image = image.astype('<u2')
  elif image.dtype != np.uint8:
    raise ValueError(
      f'save_png: expected uint8 pixels (or uint16 gray), got {image.dtype}; clip and round first.'
    )
  if not (image.ndim == 2 or (image.ndim == 3 and image.shape[-1] in (2, 3, 4))):
    raise ValueError(f'save_png: expected [H, W] or [H, W, 1|2|3|4], got {image.shape}.')
  buf = io.BytesIO()
  Image.fromarray(image).save(buf, format='PNG')
  files.write_atomic(path, buf.getvalue())
