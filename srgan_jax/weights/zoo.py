"""Trained generators shipped with the package, and the single-file generator format.

  python -m srgan_jax.upscale photo.jpg --out=up/                   # a shipped model
  python -m srgan_jax.upscale photo.jpg --model=srgan_x4 --out=up/
  python -m srgan_jax.upscale web_photo.jpg --model=realsrgan_x4 --out=up/   # JPEG, noise, blur
  python -m srgan_jax.model_zoo export runs/srresnet_x4 srresnet.msgpack   # your own run

A generator file is msgpack of {'params', 'batch_stats', 'meta'}: G's
variables (the parameter names of the generator, models.Generator or
esrgan_models) and meta = {'format': 'srgan_jax.generator', 'format_version',
'model': {arch, scale, num_blocks, features, tiny, ...: generators.describe},
'phase', 'step', ...}; a 'model' without 'arch' is the paper's SRResNet. Anything that takes a checkpoint
(`--checkpoint`, `--workdir`, `config.generator_init`) also takes such a file
or a shipped model's name. Shipped files are checked against the SHA-256 in
MODELS before use; each has a model card beside it (srgan_jax/weights/NAME.md).
"""

import argparse
import hashlib
import json
import sys
from pathlib import Path

import numpy as np
from flax import serialization

from srgan_jax.common.errors import UserError

FORMAT = 'srgan_jax.generator'
FORMAT_VERSION = 1
WEIGHTS_DIR = Path(__file__).resolve().parent  # the shipped .msgpack files and cards
# name -> (file in WEIGHTS_DIR, its SHA-256, one line for --help and logs)
MODELS: dict[str, tuple[str, str, str]] = {
  'srresnet_x4': (
    'srresnet_x4.msgpack',
    '043cba7f942033117ea0623736480727e65624c72ed3b166a50fe21b86888489',
    "SRResNet x4 v5 (the paper's G, pixel MSE): v4 (35.5k steps), 3.55k GAN steps (srgan_x4 "
    'v5), then 3k steps of pixel MSE on 533 images: Set5 31.09 dB, Set14 27.85 dB PSNR-Y',
  ),
  'srgan_x4': (
    'srgan_x4.msgpack',
    'ae6e8922c61669af315102d057bd3b6946648c86792f3108cca4ac887bb517d7',
    'SRGAN x4 v9 from srresnet_x4 v4 (VGG-16 phi_2,2 + pixel MSE + grid term + adversarial; '
    "the paper's D, then a U-Net D), 3.55k steps on 533 images, soups of fine-tunes with "
    "EnhanceNet's texture loss and a local power spectrum term, 0.8 : 0.2 with srresnet_x4 v5: "
    'Set5 LPIPS 0.116 vs SRResNet 0.181',
  ),
  'realsrgan_x4': (
    'realsrgan_x4.msgpack',
    '4374c375a1dbdb757fd3d07c31137466518edfdfc409c94ca6d6c1e1ba0685a5',
    "realsrgan_x4 v6, for photos from the wild (JPEG, noise, blur): the paper's G, trained on "
    "Real-ESRGAN's degradations, then web images (192-px crops of 533 images); a soup of v5 and "
    "a fine-tune of it with EnhanceNet's texture loss",
  ),
}
DEFAULT_MODEL = 'srresnet_x4'


class ModelZooError(UserError):
  """A shipped model or generator file is unknown, missing or corrupt."""


def names() -> tuple[str, ...]:
  return tuple(MODELS)


def is_model_name(spec) -> bool:
  return isinstance(spec, str) and spec in MODELS


def is_generator_file(spec) -> bool:
  """A shipped model name, or a path to a single-file generator (.msgpack)."""
  if is_model_name(spec):
    return True
  p = Path(str(spec))
  return p.suffix == '.msgpack' and not p.is_dir()


def model_path(name: str) -> Path:
  if name not in MODELS:
    raise ModelZooError(
      f'unknown model {name!r}; shipped models: {", ".join(MODELS) or "none"} '
      '(or pass --checkpoint=DIR of your own run).'
    )
  return WEIGHTS_DIR / MODELS[name][0]


def _decode(data: bytes, where: str) -> tuple[dict, dict]:
  try:
    tree = serialization.msgpack_restore(data)
  except Exception as e:  # pylint: disable=broad-except  # msgpack raises many types on bad bytes
    raise ModelZooError(
      f'{where}: not a readable generator file ({type(e).__name__}); it is truncated or corrupt.'
    ) from None
  meta = tree.get('meta') if isinstance(tree, dict) else None
  if not isinstance(meta, dict) or meta.get('format') != FORMAT:
    raise ModelZooError(
      f'{where}: not a srgan_jax generator file (no {FORMAT!r} meta); export one '
      'with `python -m srgan_jax.model_zoo export CHECKPOINT FILE`.'
    )
  if meta.get('format_version') != FORMAT_VERSION:
    raise ModelZooError(
      f'{where}: generator file format version {meta.get("format_version")!r}; '
      f'this srgan_jax reads version {FORMAT_VERSION}.'
    )
  variables = {'params': tree.get('params', {}), 'batch_stats': tree.get('batch_stats', {})}
  return variables, meta


def load_file(spec) -> tuple[dict, dict]:
  """(G variables as numpy, meta) of a shipped model name or a generator .msgpack file."""
  if is_model_name(spec):
    path = model_path(spec)
    if not path.is_file():
      raise ModelZooError(f'the shipped model {spec} is missing ({path}); reinstall srgan-jax.')
    data = path.read_bytes()
    if hashlib.sha256(data).hexdigest() != MODELS[spec][1]:
      raise ModelZooError(
        f'the shipped model {spec} ({path}) is corrupt (SHA-256 mismatch); reinstall srgan-jax.'
      )
    where = f'{spec} ({path})'
  else:
    path = Path(str(spec))
    if not path.is_file():
      raise ModelZooError(f'{spec}: no such generator file.')
    data, where = path.read_bytes(), str(spec)
  variables, meta = _decode(data, where)
  meta = {**meta, 'source': where}
  return variables, meta


def encode(variables: dict, meta: dict) -> bytes:
  """The bytes of a generator file holding `variables` ({'params', 'batch_stats'})."""
  as_np = lambda tree: {
    k: as_np(v) if isinstance(v, dict) else np.asarray(v, np.float32) for k, v in tree.items()
  }
  return serialization.msgpack_serialize(
    {
      'params': as_np(dict(variables['params'])),
      'batch_stats': as_np(dict(variables['batch_stats'])),
      'meta': {**meta, 'format': FORMAT, 'format_version': FORMAT_VERSION},
    }
  )


def export(checkpoint, out, extra_meta: dict | None = None) -> str:
  """Writes the generator of a workdir / checkpoint / export dir as one file; returns a summary."""
  from srgan_jax.common import files  # pylint: disable=g-import-not-at-top

  variables, meta = load_generator_with_meta(checkpoint)
  model = meta.get('model') if isinstance(meta, dict) else None
  if not model:
    raise ModelZooError(f'{checkpoint}: its meta has no model description; cannot export it.')
  keep = {
    'model': model,
    'phase': meta.get('phase', 'generator'),
    'step': meta.get('step'),
    **(extra_meta or {}),
  }
  out = Path(out)
  if out.suffix != '.msgpack':
    raise ModelZooError(f'{out}: a generator file must end in .msgpack.')
  if not out.parent.is_dir():
    raise ModelZooError(f'{out.parent}: no such folder.')
  data = encode(variables, keep)
  files.write_atomic(out, data)  # never a half-written file
  n = sum(np.size(v) for v in _leaves(variables['params']))
  return (
    f'exported {keep["phase"]} x{model["scale"]} step {keep["step"]} ({n:,} parameters) from '
    f'{checkpoint} to {out} ({len(data) / 1e6:.1f} MB, sha256 {hashlib.sha256(data).hexdigest()})'
  )


def _leaves(tree):
  for v in tree.values():
    yield from (_leaves(v) if isinstance(v, dict) else (v,))


# ----------------------------------------------------------------------------
# Any generator: a shipped model's name, a generator file or a run's checkpoint.
# (checkpoint_files reads checkpoints only; JAX and Orbax load only when one is read.)


def has_generator(spec) -> bool:
  """Whether `spec` names a shipped model, a generator file or a dir holding a checkpoint."""
  if is_generator_file(spec):
    return is_model_name(spec) or Path(str(spec)).is_file()
  from srgan_jax.weights import checkpoint_files  # pylint: disable=g-import-not-at-top

  return checkpoint_files.has_generator(spec)


def load_generator_with_meta(spec) -> tuple[dict, dict]:
  """(G variables as host arrays, meta); meta['model'] gives scale, num_blocks, features, tiny.

  spec: a shipped model's name, a generator .msgpack file, a workdir, its
  checkpoints/ or export/ dir, or one step dir.
  """
  if is_generator_file(spec):
    return load_file(spec)
  from srgan_jax.weights import checkpoint_files  # pylint: disable=g-import-not-at-top

  return checkpoint_files.load_generator_with_meta(spec)


def load_generator(spec) -> dict:
  """{'params', 'batch_stats'} of G from anything `load_generator_with_meta` takes."""
  return load_generator_with_meta(spec)[0]


def generator_metadata(spec) -> tuple[dict, dict]:
  """(leaf shapes of G's variables, meta); a checkpoint's arrays are not read."""
  from srgan_jax.weights import checkpoint_files  # pylint: disable=g-import-not-at-top

  if is_generator_file(spec):  # one small file: read it
    variables, meta = load_file(spec)
    return checkpoint_files.leaf_shapes(variables), meta
  return checkpoint_files.generator_metadata(spec)


def describe_model(model) -> str:
  """'arch srresnet, scale 4, num_blocks 16, features 64, tiny False' of a model config or meta."""
  keys = ('arch', 'scale', 'num_blocks', 'features', 'growth', 'output', 'tiny')
  return ', '.join(f'{k} {model[k]}' for k in keys if k in model)


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(
    prog='python -m srgan_jax.model_zoo',
    description='Shipped generators; export a run as one file.',
  )
  sub = parser.add_subparsers(dest='cmd', required=True)
  sub.add_parser('list', help='the shipped models')
  ex = sub.add_parser('export', help="write a checkpoint's generator as one .msgpack file")
  ex.add_argument('checkpoint', help='a training workdir, checkpoints/ or export/ dir, or step dir')
  ex.add_argument('out', help='output file (.msgpack)')
  ex.add_argument('--meta', default='{}', help="extra JSON fields for the file's meta")
  args = parser.parse_args(argv)
  try:
    if args.cmd == 'list':
      for name, (file, _, about) in MODELS.items():
        print(f'{name}: {about} ({WEIGHTS_DIR / file})')
    else:
      print(export(args.checkpoint, args.out, json.loads(args.meta)))
  except (UserError, json.JSONDecodeError) as e:
    print(f'error: {e}', file=sys.stderr)
    return 2
  return 0


if __name__ == '__main__':
  sys.exit(main())
