"""A model soup (Wortsman et al., ICML 2022): the uniform average of generators fine-tuned from one start.

  python -m srgan_jax.soup RUN_A/checkpoints/600 RUN_B/checkpoints/700 ... --out=soup.msgpack

theta_soup = (theta_1 + ... + theta_n) / n, parameter by parameter (BatchNorm
statistics too), as network interpolation (srgan_jax.interpolate) with n
generators and equal weights. Averaging works where the generators share a
basin: fine-tunes of one checkpoint with other losses, rates or seeds (not
independently trained networks). Each ingredient is anything upscale's
--checkpoint takes (a workdir, checkpoint, export, generator file or shipped
model's name); all must be one architecture. --out as interpolate's: a
.msgpack file or a new folder that receives an export.

--weights=w_1,...,w_n (non-negative, summing to 1) makes a weighted soup, sum_i w_i
theta_i: network interpolation among n generators (a convex combination; with two,
`--weights=1-a,a` is interpolate's --alpha=a). The uniform soup is the default.
"""

import argparse
import sys

import numpy as np

from srgan_jax import interpolate
from srgan_jax.common.errors import UserError
from srgan_jax.nets import generators


def parse_weights(text: str, n: int) -> list[float]:
  """--weights' 'w_1,...,w_n' -> floats; UserError unless n non-negative numbers summing to 1."""
  try:
    weights = [float(w) for w in text.split(',')]
  except ValueError:
    raise UserError(
      f'--weights={text}: use numbers separated by commas, e.g. 0.5,0.3,0.2.'
    ) from None
  if len(weights) != n:
    raise UserError(f'--weights={text}: {len(weights)} weights for {n} generators; give one each.')
  if min(weights) < 0 or not np.isfinite(weights).all() or abs(sum(weights) - 1) > 1e-6:
    raise UserError(f'--weights={text}: use non-negative weights that sum to 1 (a convex mix).')
  return weights


def soup(specs, weights=None) -> tuple[dict, dict]:
  """(averaged variables, meta) of two or more generators of one architecture; weights: None
  (the uniform soup) or one per generator, non-negative, summing to 1 (parse_weights)."""
  if len(specs) < 2:
    raise UserError(f'a soup needs at least two generators, got {len(specs)}; name them all.')
  variables, metas, model = interpolate.load_same_architecture(
    specs, verb='average', why='a soup needs one architecture'
  )
  phases = {m.get('phase') for m in metas}
  steps = [int(m.get('step', 0)) for m in metas]
  meta = {
    'model': model,
    'phase': phases.pop() if len(phases) == 1 else 'soup',  # e.g. 'srgan' for SRGAN fine-tunes
    'step': max(steps),  # the most-trained ingredient's
    'soup': {'ingredients': [str(s) for s in specs], 'steps': steps},
  }
  if weights is not None:
    meta['soup']['weights'] = list(weights)
  return interpolate.average(variables, weights), meta


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(
    prog='python -m srgan_jax.soup', description=__doc__.splitlines()[0]
  )
  parser.add_argument('ingredients', nargs='+', help='generators of one architecture (two or more)')
  parser.add_argument('--out', required=True, help='a new folder (an export) or FILE.msgpack')
  parser.add_argument(
    '--weights', default='', help='w_1,...,w_n: a weighted soup (>= 0, sum 1; default uniform)'
  )
  args = parser.parse_args(argv)
  try:
    weights = parse_weights(args.weights, len(args.ingredients)) if args.weights else None
    interpolate.check_destination(args.out)
    variables, meta = soup(args.ingredients, weights)
    interpolate.write(variables, meta, args.out)
  except UserError as e:
    print(f'error: {e}', file=sys.stderr)
    return 2
  kind = 'weighted mean' if weights else 'mean'
  print(
    f'wrote the {kind} of {len(args.ingredients)} generators ({generators.label(meta["model"])}) '
    f'to {args.out}'
  )
  return 0


if __name__ == '__main__':
  sys.exit(main())
