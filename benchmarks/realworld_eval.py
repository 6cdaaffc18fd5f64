"""Real-world x4: models on degraded Set5 / Set14 and on a real JPEG photo (issue 23's evaluation).

  python -m benchmarks.realworld_eval [--models srgan_x4 realsrgan_x4] [--json OUT.json] \
      [--figure docs/figures/realworld_jpeg.png] [--write-sets DIR]

Each test set's LR input, made reproducibly from the bundled Set5 / Set14 (x4):

  clean       the sets' own LR files (MATLAB bicubic x1/4), the paper's protocol
  jpeg30/50/70  those LR files saved as JPEG by Pillow (libjpeg) at quality 30 / 50 / 70, 4:2:0
  mixed       HR blurred (isotropic Gaussian, sigma 1.2), MATLAB bicubic x1/4, Gaussian noise of
              sigma 5 grey levels (seeded by the image's index), rounded, JPEG quality 60
and, only when named in --kinds (heavier than anything the web-image share of training draws):
  noise15     the LR files plus Gaussian noise of sigma 15 grey levels (seeded), rounded, JPEG q70
  blur2       HR blurred (isotropic Gaussian, sigma 2.0), MATLAB bicubic x1/4, JPEG quality 80

scored against HR as compare_models does (PSNR-Y / SSIM-Y on BT.601 Y, 4 pixels cropped; LPIPS
v0.1 AlexNet on the same crops; grid). The figure: scikit-image's photographs (the cat, the
coffee cup, the astronaut) downscaled x4 and saved as JPEG at quality 60 -- a web image --,
upscaled x4 by bicubic and each model, crops side by side with the original photograph. --write-sets saves each
degraded set as DIR/NAME/{HR,LR} PNG folders, which `evaluate --data=DIR/NAME` reads.
"""

import argparse
import dataclasses
import io
import json
import sys
from pathlib import Path

import numpy as np
import scipy.ndimage
from PIL import Image, ImageDraw
from skimage import data as skdata

from benchmarks.compare_models import model_methods, score_all
from srgan_jax.common.errors import UserError
from srgan_jax.data import image_io
from srgan_jax.data.imresize import imresize_uint8
from srgan_jax.evaluation import validation
from srgan_jax.nets import lpips

SCALE = 4
KINDS = ('clean', 'jpeg30', 'jpeg50', 'jpeg70', 'mixed')
EXTRA_KINDS = ('noise15', 'blur2')  # scored only when asked for
# (y, x) in LR pixels of each photograph's crop: the cat's eyes, the cup's rim, the face.
PHOTOS = (('chelsea', (22, 38)), ('coffee', (18, 55)), ('astronaut', (12, 40)))
CROP = 40  # LR pixels of each crop (160 after x4)


def jpeg_uint8(img: np.ndarray, quality: int) -> np.ndarray:
  """img saved by Pillow as a baseline JPEG (4:2:0) and read back."""
  buf = io.BytesIO()
  Image.fromarray(img).save(buf, 'JPEG', quality=quality, subsampling=2)
  return np.asarray(Image.open(io.BytesIO(buf.getvalue())).convert('RGB'))


def _uint8(img: np.ndarray) -> np.ndarray:
  return np.clip(np.round(img), 0, 255).astype(np.uint8)


def _blurred_lr(hr: np.ndarray, sigma: float) -> np.ndarray:
  """HR blurred by an isotropic Gaussian of `sigma`, then MATLAB bicubic x1/SCALE."""
  blurred = scipy.ndimage.gaussian_filter(hr.astype(np.float64), (sigma, sigma, 0), mode='mirror')
  return imresize_uint8(_uint8(blurred), scale=1 / SCALE)


def degraded_lr(sample: validation.Sample, kind: str, index: int) -> np.ndarray:
  """The LR input of `kind` for one test image (deterministic)."""
  if kind == 'clean':
    return sample.lr
  if kind in ('jpeg30', 'jpeg50', 'jpeg70'):
    return jpeg_uint8(sample.lr, int(kind[4:]))
  if kind == 'mixed':
    lr = _blurred_lr(sample.hr, 1.2)
    noise = np.random.default_rng([23, index]).normal(0.0, 5.0, lr.shape)
    return jpeg_uint8(_uint8(lr + noise), 60)
  if kind == 'noise15':
    noise = np.random.default_rng([15, index]).normal(0.0, 15.0, sample.lr.shape)
    return jpeg_uint8(_uint8(sample.lr + noise), 70)
  if kind == 'blur2':
    return jpeg_uint8(_blurred_lr(sample.hr, 2.0), 80)
  raise ValueError(f'unknown kind {kind!r}; use one of {KINDS + EXTRA_KINDS}')


def degraded_sets(sets: dict, kinds=KINDS) -> dict:
  """{'KIND/SET': [Sample with that LR]} for each of `kinds` and each set."""
  return {
    f'{kind}/{name}': [
      dataclasses.replace(s, lr=degraded_lr(s, kind, i), lr_from_file=False)
      for i, s in enumerate(samples)
    ]
    for kind in kinds
    for name, samples in sets.items()
  }


def markdown(table: dict) -> str:
  keys = list(next(iter(table.values())))
  rows = ['| LR input | ' + ' | '.join(f'{m} PSNR-Y / SSIM-Y / LPIPS' for m in table) + ' |']
  rows.append('|' + ' --- |' * (len(table) + 1))
  for key in keys:
    cells = [
      f'{t[key]["psnr_y"]:.2f} / {t[key]["ssim_y"]:.4f} / {t[key]["lpips"]:.4f}'
      for t in table.values()
    ]
    rows.append(f'| {key} | ' + ' | '.join(cells) + ' |')
  return '\n'.join(rows)


def photo_figure(methods: dict, path: Path) -> None:
  """Rows: a photograph, MATLAB-bicubic x1/4 and saved as JPEG q60 (a web image), upscaled x4 by
  each method, and the original; zoomed crops, labelled columns."""
  tile = CROP * SCALE
  label_h = 18
  cols = [*methods, 'original photo']
  canvas = Image.new('RGB', (len(cols) * (tile + 4), label_h + len(PHOTOS) * (tile + 4)), 'white')
  draw = ImageDraw.Draw(canvas)
  for c, name in enumerate(cols):
    draw.text((c * (tile + 4) + 4, 3), name, fill='black')
  for r, (photo, (y, x)) in enumerate(PHOTOS):
    hr = getattr(skdata, photo)()[..., :3]
    hr = hr[: hr.shape[0] // SCALE * SCALE, : hr.shape[1] // SCALE * SCALE]
    lr = jpeg_uint8(imresize_uint8(hr, scale=1 / SCALE), 60)
    box = (slice(y * SCALE, (y + CROP) * SCALE), slice(x * SCALE, (x + CROP) * SCALE))
    for c, fn in enumerate([*methods.values(), None]):
      img = hr if fn is None else fn(lr)
      canvas.paste(
        Image.fromarray(np.ascontiguousarray(img[box])), (c * (tile + 4), label_h + r * (tile + 4))
      )
  path.parent.mkdir(parents=True, exist_ok=True)
  image_io.save_png(path, np.asarray(canvas))


def write_sets(sets: dict, out: Path) -> None:
  for key, samples in sets.items():
    folder = out / key.replace('/', '_')
    for s in samples:
      for sub, img in (('HR', s.hr), ('LR', s.lr)):
        (folder / sub).mkdir(parents=True, exist_ok=True)
        image_io.save_png(folder / sub / f'{s.name}.png', img)


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(
    prog='python -m benchmarks.realworld_eval', description=__doc__.splitlines()[0]
  )
  parser.add_argument(
    '--models',
    nargs='+',
    default=['srgan_x4', 'realsrgan_x4'],
    help="shipped names or checkpoint paths; NAME+ adds EDSR's x8 self-ensemble",
  )
  parser.add_argument('--kinds', nargs='+', default=list(KINDS), choices=KINDS + EXTRA_KINDS)
  parser.add_argument('--json', type=Path, default=None)
  parser.add_argument('--figure', type=Path, default=None)
  parser.add_argument('--write-sets', type=Path, default=None)
  args = parser.parse_args(argv)
  try:
    return run(args)
  except UserError as e:  # a bad model name or file: one line, no traceback
    print(f'error: {e}', file=sys.stderr)
    return 2


def run(args) -> int:
  models = model_methods(args.models)  # first: a bad name or file fails before the sets are made
  base = validation.load_sets(['set5', 'set14'], SCALE)
  sets = degraded_sets(base, args.kinds)
  if args.write_sets:
    write_sets(sets, args.write_sets)
  methods = {'bicubic': lambda lr: validation.bicubic(lr, SCALE), **models}
  if args.figure:
    photo_figure(methods, args.figure)
    print(f'figure: {args.figure}')
  table, _, _ = score_all(methods, sets, lpips.make_lpips('alexnet'))
  print(markdown(table))
  if args.json:
    args.json.write_text(json.dumps(table, indent=2) + '\n')
  return 0


if __name__ == '__main__':
  raise SystemExit(main())
