"""Bicubic, SRResNet and SRGAN side by side: PSNR-Y, SSIM-Y and LPIPS on Set5/Set14, and a crop figure.

  python -m benchmarks.compare_models [--models srresnet_x4 srgan_x4] [--datasets DIR] \
      [--figure docs/figures/x4_comparison.png] [--json OUT.json] [--per-image]

Models are shipped names (srgan_jax.model_zoo), generator files, or training
workdirs; a trailing '+' (srresnet_x4+) scores that model with EDSR's x8
self-ensemble (inference.self_ensemble). Prints a markdown table (the SR
literature's protocol: Y channel, 4-pixel border cropped; LPIPS v0.1 AlexNet on
the same crops, lower is better) and writes, like Figure 2 of Ledig et al.,
zoomed crops of
bicubic | each model | HR for a few images. DIR (holding Set5/ and Set14/ at x4)
defaults to the bundled sets (srgan_jax/evaluation/sets). About 2 minutes on 2
CPU cores. --per-image adds a row per image (PSNR-Y / LPIPS of each method) and
the per-image figures to the JSON: which images a set's mean comes from.
"""

import argparse
import json
import os
import sys
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from srgan_jax.common.errors import UserError
from srgan_jax.data import image_io
from srgan_jax.evaluation import inference, validation
from srgan_jax.nets import lpips

SCALE = 4
# (set, image index, (y, x) of a 64-pixel HR crop): baboon fur, zebra grass, comic headdress.
CROPS = (('Set14', 0, (330, 30)), ('Set14', 13, (300, 420)), ('Set14', 4, (40, 90)))
CROP = 64
ZOOM = 3


def score_all(methods: dict, sets: dict, lpips_fn) -> tuple[dict, dict, dict]:
  """({method: {set: {metric: mean}}}, {method: {set: [uint8 SR per image]}},
  {method: {set: {image name: {metric: value}}}})."""
  table, images, per_image = {}, {}, {}
  for name, upscale in methods.items():
    table[name], images[name], per_image[name] = {}, {}, {}
    for set_name, samples in sets.items():
      srs = [upscale(s.lr) for s in samples]
      per = [validation.score(sr, s, SCALE, lpips_fn) for sr, s in zip(srs, samples)]
      table[name][set_name] = {m: float(np.mean([p[m] for p in per])) for m in per[0]}
      images[name][set_name] = srs
      per_image[name][set_name] = {
        s.name: {m: float(v) for m, v in p.items()} for s, p in zip(samples, per)
      }
  return table, images, per_image


def markdown(table: dict, hr_grid: dict) -> str:
  """The table: PSNR-Y / SSIM-Y / LPIPS / grid per set, and HR's grid as the last row."""
  sets = list(next(iter(table.values())))
  head = '| method | ' + ' | '.join(f'{s} PSNR-Y / SSIM-Y / LPIPS / grid' for s in sets) + ' |'
  rows = [head, '|' + ' --- |' * (len(sets) + 1)]
  for name, per_set in table.items():
    cells = [
      f'{m["psnr_y"]:.2f} / {m["ssim_y"]:.4f} / {m["lpips"]:.4f} / {m["grid"]:.2f}'
      for m in per_set.values()
    ]
    rows.append(f'| {name} | ' + ' | '.join(cells) + ' |')
  rows.append('| HR | ' + ' | '.join(f'- / - / - / {hr_grid[s]:.2f}' for s in sets) + ' |')
  return '\n'.join(rows)


def per_image_markdown(per_image: dict) -> str:
  """A row per image (set/name): PSNR-Y / LPIPS of each method."""
  methods = list(per_image)
  rows = ['| image | ' + ' | '.join(f'{m} PSNR-Y / LPIPS' for m in methods) + ' |']
  rows.append('|' + ' --- |' * (len(methods) + 1))
  for set_name, images in per_image[methods[0]].items():
    for image in images:
      cells = [per_image[m][set_name][image] for m in methods]
      row = ' | '.join(f'{c["psnr_y"]:.2f} / {c["lpips"]:.4f}' for c in cells)
      rows.append(f'| {set_name}/{image} | {row} |')
  return '\n'.join(rows)


def figure(images: dict, sets: dict, path: Path) -> None:
  """Rows of zoomed crops: bicubic | model ... | HR, labelled."""
  cols = list(images) + ['HR']
  tile = CROP * ZOOM
  label_h = 18
  canvas = Image.new('RGB', (len(cols) * (tile + 4), label_h + len(CROPS) * (tile + 4)), 'white')
  draw = ImageDraw.Draw(canvas)
  for c, name in enumerate(cols):
    draw.text((c * (tile + 4) + 4, 3), name, fill='black')
  for r, (set_name, idx, (y, x)) in enumerate(CROPS):
    hr = sets[set_name][idx].hr
    y, x = min(y, hr.shape[0] - CROP), min(x, hr.shape[1] - CROP)
    for c, name in enumerate(cols):
      img = hr if name == 'HR' else images[name][set_name][idx]
      crop = Image.fromarray(np.ascontiguousarray(img[y : y + CROP, x : x + CROP]))
      canvas.paste(
        crop.resize((tile, tile), Image.NEAREST), (c * (tile + 4), label_h + r * (tile + 4))
      )
  path.parent.mkdir(parents=True, exist_ok=True)
  image_io.save_png(path, np.asarray(canvas))


def model_methods(specs) -> dict:
  """{name: uint8 LR -> uint8 SR} for shipped names or checkpoint paths; NAME+ is that model with
  EDSR's x8 self-ensemble (inference.self_ensemble), named with its '+'."""
  methods = {}
  for spec in specs:
    base = spec.removesuffix('+')
    model = inference.load_model(base, ensemble=spec.endswith('+'))
    name = (Path(base).stem if os.sep in base else base) + '+' * model.self_ensemble
    methods[name] = lambda lr, m=model: validation.to_uint8(
      inference.upscale_float(m, lr.astype(np.float32) / 255.0, None)
    )
  return methods


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(
    prog='python -m benchmarks.compare_models', description=__doc__.splitlines()[0]
  )
  parser.add_argument(
    '--models',
    nargs='+',
    default=['srresnet_x4', 'srgan_x4'],
    help="shipped names or checkpoint paths; a trailing '+' (srresnet_x4+) adds EDSR's x8 "
    'self-ensemble',
  )
  parser.add_argument('--datasets', type=Path, default=validation.BUNDLED['set5'].parent)
  parser.add_argument(
    '--figure', type=Path, default=None, help='PNG of zoomed crops (bicubic | models | HR)'
  )
  parser.add_argument('--json', type=Path, default=None, help='write the table as JSON')
  parser.add_argument(
    '--per-image',
    action='store_true',
    help="also a row per image, and the JSON's 'per_image': {method: {set: {image: metrics}}}",
  )
  args = parser.parse_args(argv)
  try:
    return run(args)
  except UserError as e:  # a bad model or folder: one line, no traceback
    print(f'error: {e}', file=sys.stderr)
    return 2


def run(args) -> int:
  models = model_methods(args.models)  # first: a bad name or file fails before the sets load
  sets = validation.load_sets([args.datasets / 'Set5', args.datasets / 'Set14'], SCALE)
  methods = {'bicubic': lambda lr: validation.bicubic(lr, SCALE), **models}
  table, images, per_image = score_all(methods, sets, lpips.make_lpips('alexnet'))
  hr_grid = {n: float(np.mean([validation.hr_grid(s, SCALE) for s in v])) for n, v in sets.items()}
  print(markdown(table, hr_grid))
  if args.per_image:
    print('\n' + per_image_markdown(per_image))
  if args.json:
    out = {**table, 'HR': {'grid': hr_grid}}
    if args.per_image:
      out['per_image'] = per_image
    args.json.write_text(json.dumps(out, indent=2) + '\n')
  if args.figure:
    figure(images, sets, args.figure)
    print(f'figure: {args.figure}')
  return 0


if __name__ == '__main__':
  raise SystemExit(main())
