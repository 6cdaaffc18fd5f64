"""Network interpolation (ESRGAN, Wang et al. 2018, Section 3.4): one knob between PSNR and GAN.

  python -m srgan_jax.interpolate PSNR GAN --alpha=0.8 --out=DIR
  python -m srgan_jax.upscale photo.jpg --checkpoint=DIR --out=up/

theta_interp = (1 - alpha) * theta_PSNR + alpha * theta_GAN, parameter by
parameter (BatchNorm statistics too): PSNR is the first argument (e.g. the
pre-trained SRResNet / RRDBNet), GAN the second (the same generator after
adversarial training); alpha = 0 gives PSNR, 1 gives GAN; ESRGAN shows 0.8.
Both are anything upscale's --checkpoint takes (a workdir, checkpoint, export,
generator file or shipped model's name) and must be the same architecture.

--out: a .msgpack path writes the single-file format (srgan_jax.model_zoo);
any other path is a new (or empty) folder that receives an export, as a
training run writes one (DIR/0/generator, DIR/0/meta). Either way `upscale
--checkpoint=OUT` and `evaluate --checkpoint=OUT` load it.
"""

import argparse
import sys
from pathlib import Path

import numpy as np

from srgan_jax.weights import checkpoint_files
from srgan_jax.nets import generators
from srgan_jax.common import files
from srgan_jax.weights import zoo
from srgan_jax.common.errors import UserError


def _model(meta, spec) -> dict:
  model = meta.get('model') if isinstance(meta, dict) else None
  if not model:
    raise UserError(f'{spec}: its meta has no model description; cannot tell its architecture.')
  return generators.describe(model)


def average(trees: list, weights=None) -> dict:
  """The element-wise (weighted) mean of variable trees of one structure (in float64, stored as
  float32); weights: None (uniform) or one per tree, summing to 1. Interpolation is the mean of
  two weighted 1 - alpha, alpha; a soup (srgan_jax.soup) the mean of n."""
  if isinstance(trees[0], dict):
    return {k: average([t[k] for t in trees], weights) for k in trees[0]}
  return np.average([np.asarray(t, np.float64) for t in trees], axis=0, weights=weights).astype(
    np.float32
  )


def load_same_architecture(
  specs, verb: str = 'interpolate', why: str = 'network interpolation needs one architecture'
) -> tuple[list[dict], list[dict], dict]:
  """(variables, metas, model) of generators that must be one architecture with equal arrays;
  UserError naming the first that is not."""
  loaded = [zoo.load_generator_with_meta(spec) for spec in specs]
  models = [_model(meta, spec) for (_, meta), spec in zip(loaded, specs)]
  shapes = [checkpoint_files.leaf_shapes(v) for v, _ in loaded]
  for spec, model, shape in zip(specs[1:], models[1:], shapes[1:]):
    if model != models[0]:
      raise UserError(
        f'cannot {verb} different architectures: {specs[0]} is {generators.label(models[0])}, '
        f'{spec} is {generators.label(model)}; {why}.'
      )
    if shape != shapes[0]:
      k = next(k for k in sorted(set(shapes[0]) | set(shape)) if shapes[0].get(k) != shape.get(k))
      raise UserError(
        f'{specs[0]} and {spec} describe one architecture but their arrays differ '
        f'({k}: {shapes[0].get(k)} vs {shape.get(k)}); one of them is damaged.'
      )
  return [dict(v) for v, _ in loaded], [m for _, m in loaded], models[0]


def interpolate(psnr_spec, gan_spec, alpha: float) -> tuple[dict, dict]:
  """(blended variables, meta) of two generators; UserError if they are not one architecture."""
  if not 0.0 <= alpha <= 1.0:
    raise UserError(f'--alpha={alpha}: use a weight in [0, 1] (0: the PSNR model, 1: the GAN).')
  (psnr, gan), metas, model = load_same_architecture([psnr_spec, gan_spec])
  steps = [int(m.get('step', 0)) for m in metas]
  meta = {
    'model': model,
    'phase': 'interpolated',
    'step': max(steps),  # the more-trained side's, as a soup's
    'interpolation': {
      'alpha': alpha,
      'psnr': str(psnr_spec),
      'gan': str(gan_spec),
      'steps': steps,
    },
  }
  return average([psnr, gan], [1.0 - alpha, alpha]), meta


def write(variables: dict, meta: dict, out) -> None:
  """A generator file (OUT.msgpack) or an export folder (OUT/0/{generator, meta})."""
  out = Path(out)
  if out.suffix == '.msgpack':
    files.write_atomic(out, zoo.encode(variables, meta))
    return
  import orbax.checkpoint as ocp  # pylint: disable=g-import-not-at-top

  with ocp.CheckpointManager(
    out.resolve(), options=ocp.CheckpointManagerOptions(create=True)
  ) as mngr:
    mngr.save(
      0,
      args=ocp.args.Composite(
        generator=ocp.args.StandardSave(variables), meta=ocp.args.JsonSave(meta)
      ),
    )
    mngr.wait_until_finished()


def check_destination(out) -> None:
  out = Path(out)
  if not out.parent.is_dir():
    raise UserError(f'{out.parent}: no such folder.')
  if out.suffix != '.msgpack' and out.exists() and (not out.is_dir() or any(out.iterdir())):
    raise UserError(f'{out}: exists and is not an empty folder; pass a new folder or FILE.msgpack.')


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(
    prog='python -m srgan_jax.interpolate', description=__doc__.splitlines()[0]
  )
  parser.add_argument('psnr', help='the PSNR-oriented generator (alpha = 0)')
  parser.add_argument('gan', help='the GAN generator of the same architecture (alpha = 1)')
  parser.add_argument('--alpha', type=float, default=0.8, help="the GAN's weight (default 0.8)")
  parser.add_argument('--out', required=True, help='a new folder (an export) or FILE.msgpack')
  args = parser.parse_args(argv)
  try:
    check_destination(args.out)
    variables, meta = interpolate(args.psnr, args.gan, args.alpha)
    write(variables, meta, args.out)
  except UserError as e:
    print(f'error: {e}', file=sys.stderr)
    return 2
  print(
    f'wrote {1 - args.alpha:g} x {args.psnr} + {args.alpha:g} x {args.gan} '
    f'({generators.label(meta["model"])}) to {args.out}'
  )
  return 0


if __name__ == '__main__':
  sys.exit(main())
