"""HR crops/s of the input pipeline on 2K images, next to the crops/s the train step consumes.

Makes 16 DIV2K-sized (2040x1356) photographic PNGs in a temp dir (mosaics of
scikit-image's bundled photos, upscaled, with mild sensor-like noise so they
compress like real photos), then measures, with the default config (batch 16,
96x96 crops, flips and rotations):

  - decoding one 2K PNG (what a decode-per-crop loader would pay per crop);
  - the folder source: start-up (parallel decode into RAM) and crops/s;
  - the folder source with data.stream (decoding on every visit, all cores);
  - the TFDS source, on the same images packed into a local ArrayRecord dataset;
  - the SRResNet train step (B = 16, x4, MSE) on this machine: crops/s = 16 / step time.

  python -m benchmarks.loader_throughput [--batches 200] [--steps 3] [--no_step]

Nothing is downloaded. About 1-2 minutes on 2 CPU cores, most of it the train step.
"""

import argparse
import io
import os
import tempfile
import time

import numpy as np
from PIL import Image

from configs import default
from srgan_jax.data import sources, image_io, pipeline

PHOTOS = (
  'astronaut.png',
  'chelsea.png',
  'coffee.png',
  'rocket.jpg',
  'motorcycle_left.png',
  'motorcycle_right.png',
  'hubble_deep_field.jpg',
  'retina.jpg',
)
W, H = 2040, 1356  # a typical DIV2K HR image


def make_2k_pngs(n: int) -> list[bytes]:
  """n photographic 2040x1356 PNGs: 2x2 mosaics of upscaled photos plus noise (sigma 2)."""
  import skimage  # pylint: disable=g-import-not-at-top

  root = os.path.join(os.path.dirname(skimage.__file__), 'data')
  quads = [
    Image.fromarray(image_io.load_rgb(os.path.join(root, p))).resize(
      (W // 2, H // 2), Image.BICUBIC
    )
    for p in PHOTOS
  ]
  rng = np.random.default_rng(0)
  out = []
  for k in range(n):
    canvas = np.empty((H, W, 3), np.uint8)
    for q in range(4):
      tile = np.asarray(quads[(k + q) % len(quads)])
      if (k >> q) & 1:
        tile = tile[:, ::-1]
      y, x = (q // 2) * (H // 2), (q % 2) * (W // 2)
      canvas[y : y + H // 2, x : x + W // 2] = tile
    noisy = np.clip(canvas + rng.normal(0, 2, canvas.shape), 0, 255).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(noisy).save(buf, format='PNG')
    out.append(buf.getvalue())
  return out


def loader_rate(config, batches: int) -> tuple[float, float]:
  """(start-up seconds, crops/s over `batches` batches after the first)."""
  t0 = time.perf_counter()
  it = pipeline.create_train_iterator(config)
  next(it)
  startup = time.perf_counter() - t0
  t0 = time.perf_counter()
  for _ in range(batches):
    next(it)
  return startup, batches * config.data.batch_size / (time.perf_counter() - t0)


def step_rate(config, steps: int) -> float:
  """Crops/s of the jitted SRResNet step (compile and one warm-up step excluded)."""
  import jax  # pylint: disable=g-import-not-at-top
  from jax.sharding import NamedSharding, PartitionSpec as P  # pylint: disable=g-import-not-at-top
  from srgan_jax.training import train_states  # pylint: disable=g-import-not-at-top
  from srgan_jax.training import update_step  # pylint: disable=g-import-not-at-top

  mesh = update_step.make_mesh()
  g_state, d_state = train_states.create_train_states(config, jax.random.key(0))
  step = update_step.make_jitted_step(config, mesh, update_step.make_content_loss(config))
  batch = next(pipeline.create_train_iterator(config))
  batch = {'hr': jax.device_put(batch['hr'], NamedSharding(mesh, P('data')))}
  g_state, d_state, m = step(g_state, d_state, batch, None)
  jax.block_until_ready(m)
  t0 = time.perf_counter()
  for _ in range(steps):
    g_state, d_state, m = step(g_state, d_state, batch, None)
  jax.block_until_ready(m)
  return steps * config.data.batch_size / (time.perf_counter() - t0)


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--images', type=int, default=16)
  parser.add_argument('--batches', type=int, default=200, help='batches timed per source')
  parser.add_argument('--stream_batches', type=int, default=4, help='batches timed streaming')
  parser.add_argument('--steps', type=int, default=3, help='train steps timed')
  parser.add_argument('--no_step', action='store_true', help='skip timing the train step')
  args = parser.parse_args()

  config = default.get_config()  # the paper: batch 16, 96x96 HR crops, x4, B = 16
  config.phase, config.loss.content = 'srresnet', 'mse'
  pngs = make_2k_pngs(args.images)
  rows = []
  with tempfile.TemporaryDirectory() as tmp:
    folder = os.path.join(tmp, 'hr')
    os.mkdir(folder)
    for k, data in enumerate(pngs):
      with open(os.path.join(folder, f'{k:04d}.png'), 'wb') as f:
        f.write(data)
    for k in range(2):  # warm the page cache and Pillow
      image_io.load_rgb(os.path.join(folder, f'{k:04d}.png'))
    t0 = time.perf_counter()
    for k in range(8):
      image_io.load_rgb(os.path.join(folder, f'{k % args.images:04d}.png'))
    decode = (time.perf_counter() - t0) / 8
    rows.append(('decode one 2K PNG per crop (per core)', '', 1 / decode))

    config.data.source = f'folder:{folder}'
    startup, rate = loader_rate(config, args.batches)
    rows.append((f'folder source, {args.images} images cached', f'{startup:.2f}', rate))

    config.data.stream = True
    startup, rate = loader_rate(config, args.stream_batches)
    rows.append(('folder source, stream (decode on every visit)', f'{startup:.2f}', rate))
    config.data.stream = False

    sources.write_tfds_dataset(os.path.join(tmp, 'tfds'), 'bench_hr', {'train': pngs})
    config.data.source, config.data.tfds_data_dir = 'tfds:bench_hr', os.path.join(tmp, 'tfds')
    startup, rate = loader_rate(config, args.batches)
    rows.append((f'tfds source (ArrayRecord), {args.images} images cached', f'{startup:.2f}', rate))

  config.data.source = 'demo'
  if not args.no_step:
    rows.append(
      (
        f'SRResNet train step consumes (B={config.model.num_blocks}, '
        f'batch {config.data.batch_size})',
        '',
        step_rate(config, args.steps),
      )
    )

  mb = np.mean([len(p) for p in pngs]) / 2**20
  print(
    f'\n{args.images} PNGs of {W}x{H} ({mb:.1f} MB each), crops {config.data.hr_crop}x'
    f'{config.data.hr_crop}, batch {config.data.batch_size}, {os.cpu_count()} CPU cores\n'
  )
  print(f'| {"what":58s} | start-up s | HR crops/s |')
  print(f'| {"-" * 58} | ---------- | ---------- |')
  for what, startup, rate in rows:
    print(f'| {what:58s} | {startup:>10s} | {rate:10.1f} |')


if __name__ == '__main__':
  main()
