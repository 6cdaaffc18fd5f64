"""Upscales image files of any size with a trained generator, tile by tile.

  python -m srgan_jax.upscale photo.jpg --out=upscaled/          # the shipped SRResNet x4
  python -m srgan_jax.upscale photo.jpg --model=srgan_x4 --out=upscaled/
  python -m srgan_jax.upscale photo.jpg scans/ --workdir=runs/srgan_x4 --out=upscaled/

Each input (a file, or a folder searched recursively) becomes OUT/STEM_xS.png.
Existing files in OUT are never deleted; each output appears atomically.

  * Size: any. The LR image is cut into windows of --tile pixels whose halo
    covers the generator's receptive field, so memory is bounded and the result
    equals a whole-image pass (srgan_jax/evaluation/tiling.py). One compile per window
    shape: once for every image larger than the tile.
  * Grayscale: replicated to RGB for G; the output is gray (BT.601 luma of G's
    RGB, normalised so that gray in gives the same gray out).
  * Alpha (RGBA, LA, palette transparency): colour through G, alpha by MATLAB
    bicubic imresize; the output keeps its alpha channel.
  * 16-bit gray (Pillow reads 16-bit PNG/TIFF only as gray): fed to G as floats
    v / 65535, without rounding to 8 bits, and written as a 16-bit PNG.
    (Pillow decodes 16-bit RGB files to 8 bits itself; those come out 8-bit.)
"""

import argparse
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image

from srgan_jax.data import image_io
from srgan_jax.weights import zoo
from srgan_jax.common.errors import UserError
from srgan_jax.data.imresize import imresize_np

DEFAULT_TILE = 256


def read_image(path) -> tuple[np.ndarray, np.ndarray | None, bool, int]:
  """(rgb float [H, W, 3] in [0, 1], alpha float [H, W] in [0, 1] or None, gray, bits)."""
  return image_io.decode_image(path, _decode)


def _decode(img: Image.Image) -> tuple[np.ndarray, np.ndarray | None, bool, int]:
  mode = img.mode
  if mode.startswith('I;16') or mode == 'I':  # 16-bit gray (PNG/TIFF)
    v = np.clip(np.asarray(img).astype(np.float64), 0, 65535) / 65535.0
    return np.repeat(v[..., None], 3, -1), None, True, 16
  if mode == 'P':
    img = img.convert('RGBA' if 'transparency' in img.info else 'RGB')
  elif mode == 'PA':
    img = img.convert('RGBA')
  bands = img.getbands()
  gray = bands[0] in ('1', 'L', 'F') and 'R' not in bands
  alpha = None
  if 'A' in bands:
    alpha = np.asarray(img.getchannel('A'), np.float64) / 255.0
  if gray:
    g = np.asarray(img.getchannel(0).convert('L'), np.float64) / 255.0
    return np.repeat(g[..., None], 3, -1), alpha, True, 8
  return np.asarray(img.convert('RGB'), np.float64) / 255.0, alpha, False, 8


def _quantize(x01: np.ndarray, bits: int) -> np.ndarray:
  peak = 2**bits - 1
  q = np.clip(np.floor(np.asarray(x01, np.float64) * peak + 0.5), 0, peak)
  return q.astype(np.uint16 if bits == 16 else np.uint8)


def upscale_image(
  model, rgb01, alpha01, gray: bool, tile: int | None
) -> tuple[np.ndarray, np.ndarray | None]:
  """(colour [H*s, W*s, 3|1] in [0, 1], alpha [H*s, W*s] in [0, 1] or None)."""
  from srgan_jax.evaluation import inference  # pylint: disable=g-import-not-at-top
  from srgan_jax.evaluation import validation  # pylint: disable=g-import-not-at-top

  sr = (inference.upscale_float(model, rgb01, tile).astype(np.float64) + 1.0) / 2.0
  if gray:
    sr = validation.to_gray(sr)
  a = None
  if alpha01 is not None:
    a = np.clip(imresize_np(alpha01[..., None], scale=model.scale)[..., 0], 0.0, 1.0)
  return np.clip(sr, 0.0, 1.0), a


def expand_inputs(inputs) -> list[Path]:
  files = []
  for p in map(Path, inputs):
    if p.is_dir():
      found = image_io.list_images(p)
      if not found:
        raise UserError(
          f'{p}: no images in this folder (extensions {", ".join(image_io.IMAGE_EXTENSIONS)}).'
        )
      files += found
    elif p.exists():
      files.append(p)
    else:
      raise UserError(f'{p}: no such file or folder.')
  return files


def output_path(out: Path, src: Path, scale: int) -> Path:
  return out / f'{src.stem}_x{scale}.png'


def upscale_files(inputs, out, model, tile: int | None = DEFAULT_TILE, log=print) -> int:
  """Upscales every input into `out`; returns how many failed (each reported with a warning)."""
  files = expand_inputs(inputs)
  out = Path(out)
  targets = [output_path(out, f, model.scale) for f in files]
  seen = {}
  for f, t in zip(files, targets):
    if t in seen:
      raise UserError(
        f'{seen[t]} and {f} would both be written to {t}; rename one or run them separately.'
      )
    seen[t] = f
  out.mkdir(parents=True, exist_ok=True)
  failed = 0
  for i, (src, dst) in enumerate(zip(files, targets), 1):
    t0 = time.time()
    try:
      rgb, alpha, gray, bits = read_image(src)
    except image_io.ImageReadError as e:
      log(f'[{i}/{len(files)}] warning: skipped: {e}')
      failed += 1
      continue
    colour, a = upscale_image(model, rgb, alpha, gray, tile)
    if bits == 16:
      image_io.save_png(dst, _quantize(colour[..., 0], 16))
    else:
      pix = _quantize(colour, 8)
      if a is not None:  # gray: [H, W, 2] (LA); colour: [H, W, 4] (RGBA)
        pix = np.concatenate([pix, _quantize(a[..., None], 8)], axis=-1)
      image_io.save_png(dst, pix)
    h, w = rgb.shape[:2]
    log(
      f'[{i}/{len(files)}] {src} {w}x{h} -> {dst} {w * model.scale}x{h * model.scale} '
      f'({time.time() - t0:.1f}s)'
    )
  return failed


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(
    prog='python -m srgan_jax.upscale', description=__doc__.splitlines()[0]
  )
  parser.add_argument('inputs', nargs='+', metavar='IN', help='image files or folders')
  src = parser.add_mutually_exclusive_group()
  src.add_argument(
    '--model',
    help='a shipped model: '
    + ', '.join(f'{n} ({about})' for n, (_, _, about) in zoo.MODELS.items())
    + f'; the default without --workdir/--checkpoint is {zoo.DEFAULT_MODEL}',
  )
  src.add_argument('--workdir', help='training workdir (its latest checkpoint)')
  src.add_argument(
    '--checkpoint', help='a checkpoints/ or export/ dir, one step dir, or a generator .msgpack file'
  )
  parser.add_argument('--out', required=True, help='output folder (created; other files kept)')
  parser.add_argument(
    '--tile',
    type=int,
    help=f'LR window side incl. halo (0: whole image in one pass; default {DEFAULT_TILE}, '
    'or 2 x halo + 256 for generators with a wide receptive field such as RRDBNet)',
  )
  parser.add_argument(
    '--dtype',
    choices=('float32', 'bfloat16'),
    default='float32',
    help="G's compute dtype: float32 (exact) or bfloat16 (faster on CPUs with bf16 units)",
  )
  parser.add_argument(
    '--self-ensemble',
    action='store_true',
    help="average G over the 8 flips / rotations of the image (EDSR's '+'): 8x the time, "
    'a little more PSNR for PSNR-oriented models such as srresnet_x4',
  )
  args = parser.parse_args(argv)
  from srgan_jax.evaluation import inference  # pylint: disable=g-import-not-at-top
  from srgan_jax.kernels import onednn_conv  # pylint: disable=g-import-not-at-top

  onednn_conv.prepare()  # built or loaded here, where its cost and failure show
  try:
    source = args.workdir or args.checkpoint or args.model or zoo.DEFAULT_MODEL
    model = inference.load_model(source, args.dtype, args.self_ensemble)
    if source in zoo.MODELS:
      print(f'model: {source} ({zoo.MODELS[source][2]})')
    tile = inference.default_tile(model) if args.tile is None else args.tile
    if tile and tile < 2 * model.halo + 1:
      raise UserError(
        f'--tile={args.tile} is too small for a receptive radius of {model.halo} LR pixels; '
        f'use at least {2 * model.halo + 16} (or 0 for whole images).'
      )
    failed = upscale_files(args.inputs, args.out, model, tile or None)
    if failed:
      raise UserError(
        f'{failed} input(s) could not be read (see the warnings above); the others were written.'
      )
  except UserError as e:
    print(f'error: {e}', file=sys.stderr)
    return 2
  return 0


if __name__ == '__main__':
  sys.exit(main())
