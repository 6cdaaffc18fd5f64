"""Benchmark sets (Set5, Set14, folders) and the SR protocol's scores of a generator on them.

Used by `python -m srgan_jax.evaluate` and, every N steps, by the trainer:

  sets = load_sets(('set5',), scale=4)   # once
  scores = evaluate_sets(predict_fn, variables, sets, scale=4)
  # {'Set5/psnr_y': 28.9, 'Set5/ssim_y': 0.82, 'Set5/psnr_rgb': 27.1, 'Set5/grid': 0.12}

A data spec is `set5` or `set14` (the x4 sets bundled in evaluation/sets/, unless a
folder of that name exists where the command runs) or a folder in one of these layouts:
  * paired files `*_HR.png` + `*_LR.png` (the SelfExSR layout of Set5/Set14);
  * a set root holding `image_SRF_{scale}/` with such pairs;
  * `HR/` and `LR/` subfolders with the same file names (LR may be absent);
  * a plain folder of HR images.
Without an LR file, LR is MATLAB's bicubic `imresize(hr, 1/scale)` (our
`imresize_uint8`) of HR cropped to a multiple of the scale. A grayscale HR file
is scored on its gray values, as the literature's scripts do (see metrics.py).
"""

import dataclasses
import re
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from srgan_jax.data import image_io
from srgan_jax.evaluation import metrics
from srgan_jax.evaluation import niqe as niqe_lib
from srgan_jax.common.errors import UserError
from srgan_jax.data.imresize import imresize_uint8

METRICS = ('psnr_y', 'ssim_y', 'psnr_rgb', 'grid')  # grid: metrics.grid_artifact of SR
# Set5 and Set14 at x4 as the SelfExSR collection has them (evaluation/sets/README.md).
BUNDLED = {
  'set5': Path(__file__).resolve().parent / 'sets' / 'Set5',
  'set14': Path(__file__).resolve().parent / 'sets' / 'Set14',
}
LPIPS = 'lpips'  # added to METRICS' scores when an LPIPS function is given
NIQE = 'niqe'  # added when asked (no-reference, niqe.py; lower is more natural)


@dataclasses.dataclass(frozen=True)
class Sample:
  """One test image: LR and HR as RGB uint8, HR = scale x LR in size."""

  name: str
  lr: np.ndarray
  hr: np.ndarray
  gray: bool  # the HR file is single-channel: scored on its gray values
  lr_from_file: bool


def set_name(path) -> str:
  """'Set5' for .../Set5 and .../Set5/image_SRF_4; the folder name otherwise."""
  path = Path(path).resolve()
  if re.fullmatch(r'image_SRF_\d+', path.name) or path.name in ('HR', 'LR'):
    return path.parent.name
  return path.name


def _pairs(folder: Path, scale: int) -> list[tuple[str, Path, Path | None]]:
  """(name, hr_path, lr_path or None) for a data spec folder, in name order."""
  srf = folder / f'image_SRF_{scale}'
  if srf.is_dir():
    folder = srf
  elif any(folder.glob('image_SRF_*')):
    have = sorted(p.name for p in folder.glob('image_SRF_*'))
    raise UserError(
      f'{folder} has {", ".join(have)} but no image_SRF_{scale}; pass --scale to match one of them.'
    )
  hr_files = sorted(folder.glob('*_HR.png'))
  if hr_files:
    out = []
    for hr in hr_files:
      lr = hr.with_name(hr.name[: -len('_HR.png')] + '_LR.png')
      out.append((hr.name[: -len('_HR.png')], hr, lr if lr.is_file() else None))
    return out
  if (folder / 'HR').is_dir():
    lr_dir = folder / 'LR'
    out = []
    for hr in image_io.list_images(folder / 'HR'):
      rel = hr.relative_to(folder / 'HR')
      lr = lr_dir / rel
      if not lr.is_file():  # same stem with another extension
        lr = (
          next(iter(sorted((lr_dir / rel.parent).glob(rel.stem + '.*'))), None)
          if (lr_dir / rel.parent).is_dir()
          else None
        )
      out.append((str(rel.with_suffix('')), hr, lr))
    return out
  return [
    (str(p.relative_to(folder).with_suffix('')), p, None) for p in image_io.list_images(folder)
  ]


def resolve(spec) -> Path:
  """The folder a data spec names: a bundled set's for `set5` / `set14` (any case), unless a
  folder of that name exists here; the spec as a path otherwise."""
  path = Path(spec)
  if str(spec).lower() in BUNDLED and not path.is_dir():
    return BUNDLED[str(spec).lower()]
  return path


def load_set(spec, scale: int) -> list[Sample]:
  """The samples of one data spec; unreadable files are skipped with a warning.

  Raises UserError for a missing or empty folder, a folder where no image
  could be read, or an LR file whose size is not HR / scale.
  """
  folder = resolve(spec)
  if not folder.is_dir():
    raise UserError(
      f'--data={spec}: not a folder; pass set5 or set14 (bundled), a folder of HR images, a '
      'Set5-style folder of *_HR.png/*_LR.png pairs, or one with HR/ and LR/ subfolders.'
    )
  pairs = _pairs(folder, scale)
  if not pairs:
    raise UserError(
      f'--data={spec}: no images found (extensions {", ".join(image_io.IMAGE_EXTENSIONS)}).'
    )
  samples = []
  for name, hr_path, lr_path in pairs:
    try:
      hr = image_io.load_rgb(hr_path)
      gray = image_io.is_grayscale_file(hr_path)
      lr = image_io.load_rgb(lr_path) if lr_path is not None else None
    except image_io.ImageReadError as e:
      warnings.warn(f'skipping {name}: {e}', stacklevel=2)
      continue
    if lr is None:
      h, w = hr.shape[0] // scale * scale, hr.shape[1] // scale * scale
      if min(h, w) < 2 * scale + 11:  # SSIM's window must fit after the border crop
        warnings.warn(
          f'skipping {hr_path}: {hr.shape[1]}x{hr.shape[0]} is too small to score at x{scale}.',
          stacklevel=2,
        )
        continue
      hr = hr[:h, :w]
      lr = imresize_uint8(hr, scale=1 / scale)
    elif hr.shape[:2] != (lr.shape[0] * scale, lr.shape[1] * scale):
      raise UserError(
        f'{hr_path} is {hr.shape[1]}x{hr.shape[0]} but its LR {lr_path} is '
        f'{lr.shape[1]}x{lr.shape[0]}: HR must be exactly {scale} x LR; '
        f'check --scale (or the image_SRF_N folder) matches the data.'
      )
    samples.append(Sample(name, lr, hr, gray, lr_path is not None))
  if not samples:
    raise UserError(f'--data={spec}: none of its {len(pairs)} images could be read.')
  return samples


def load_sets(specs: Sequence, scale: int) -> dict[str, list[Sample]]:
  """{set name: samples} for each data spec; repeated names get a suffix."""
  if not specs:
    raise UserError(
      'no --data given; pass at least one set, e.g. --data=set5 (bundled) or a folder.'
    )
  sets = {}
  for spec in specs:
    name = base = set_name(resolve(spec))
    i = 2
    while name in sets:
      name, i = f'{base}_{i}', i + 1
    sets[name] = load_set(spec, scale)
  return sets


def to_gray(rgb: np.ndarray) -> np.ndarray:
  """[..., 3] -> [..., 1] BT.601 luma normalised to gray levels (R = G = B = v gives v)."""
  rgb = np.asarray(rgb, np.float64)
  return ((65.481 * rgb[..., 0] + 128.553 * rgb[..., 1] + 24.966 * rgb[..., 2]) / 219.0)[..., None]


def score(
  sr: np.ndarray,
  sample: Sample,
  scale: int,
  lpips_fn: Callable | None = None,
  with_niqe: bool = False,
) -> dict[str, float]:
  """The SR protocol's psnr_y, ssim_y (gray files on gray) and psnr_rgb of uint8 SR vs HR, and
  SR's grid artifact (metrics.grid_artifact; HR's own is hr_grid).

  With lpips_fn ((a, b) uint8 -> float, srgan_jax.lpips.make_lpips), also 'lpips'
  on the same border-cropped images (gray files on their gray values).
  """
  if sample.gray:
    a = np.clip(np.floor(to_gray(sr) + 0.5), 0, 255)  # the gray PNG one would save
    b = sample.hr[..., :1]
  else:
    a, b = sr, sample.hr
  out = {
    'psnr_y': float(metrics.psnr_y(a, b, crop_border=scale)),
    'ssim_y': float(metrics.ssim_y(a, b, crop_border=scale)),
    'psnr_rgb': float(metrics.psnr_rgb(sr, sample.hr, crop_border=scale)),
    'grid': metrics.grid_artifact(a, scale, crop_border=scale),
  }
  if lpips_fn is not None:
    crop = lambda x: np.asarray(x)[scale:-scale, scale:-scale].astype(np.uint8)
    out[LPIPS] = float(lpips_fn(crop(a), crop(b)))
  if with_niqe:
    out[NIQE] = niqe_lib.niqe(a, crop_border=scale)
  return out


def hr_grid(sample: Sample, scale: int) -> float:
  """HR's own grid_artifact (the reference for SR's), on the pixels `score` measures."""
  hr = sample.hr[..., :1] if sample.gray else sample.hr
  return metrics.grid_artifact(hr, scale, crop_border=scale)


def hr_niqe(sample: Sample, scale: int) -> float:
  """HR's own NIQE, on the pixels `score` measures."""
  hr = sample.hr[..., :1] if sample.gray else sample.hr
  return niqe_lib.niqe(hr, crop_border=scale)


def to_uint8(sr_m11) -> np.ndarray:
  """Generator output in [-1, 1] -> uint8 [0, 255], rounded."""
  x = (np.asarray(sr_m11, np.float64) + 1.0) * 127.5
  return np.clip(np.floor(x + 0.5), 0, 255).astype(np.uint8)


def bicubic(lr_uint8: np.ndarray, scale: int) -> np.ndarray:
  """The literature's bicubic baseline: MATLAB imresize of the uint8 LR by `scale`."""
  return imresize_uint8(lr_uint8, scale=scale)


def super_resolve(predict_fn: Callable, variables, lr_uint8: np.ndarray) -> np.ndarray:
  """uint8 SR of one uint8 LR image; predict_fn(variables, [1, h, w, 3] in [0, 1]) -> [-1, 1]."""
  lr = lr_uint8.astype(np.float32)[None] / 255.0
  return to_uint8(np.asarray(predict_fn(variables, lr))[0])


def evaluate_sets(
  predict_fn: Callable,
  variables,
  sets: dict[str, list[Sample]],
  scale: int,
  lpips_fn: Callable | None = None,
) -> dict[str, float]:
  """{'SET/psnr_y', 'SET/ssim_y', 'SET/psnr_rgb', 'SET/grid' (, 'SET/lpips'): means} for each set.

  predict_fn(variables, lr) maps [1, h, w, 3] in [0, 1] to [1, h*s, w*s, 3]
  in [-1, 1] with BN in inference mode (e.g. inference.jit_predict() bound to
  the generator's apply_fn). Each image shape compiles once per process.
  """
  out = {}
  for name, samples in sets.items():
    per = [score(super_resolve(predict_fn, variables, s.lr), s, scale, lpips_fn) for s in samples]
    for m in per[0]:
      out[f'{name}/{m}'] = float(np.mean([p[m] for p in per]))
  return out
