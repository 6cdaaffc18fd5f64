"""HR training crops as uint8 batches, from the bundled demo photographs or a folder.

The host ships uint8 HR crops only; the LR input is made on the device inside
the train step (`srgan_jax.train.degrade`), by MATLAB-conformant bicubic
downscaling. Interface used by the trainer:

  create_train_iterator(config, process_index, process_count) -> iterator
      yielding {'hr': uint8 [local_batch, P, P, 3]}, with get_state/set_state
      (a Grain DatasetIterator, checkpointed beside the train states);
  load_val_crops(config) -> uint8 [N, V, V, 3] fixed validation crops.
"""

import os

import grain
import numpy as np
from absl import logging

from srgan_jax.errors import UserError

# Natural photographs that scikit-image installs with the package (no download).
DEMO_TRAIN = ('astronaut.png', 'chelsea.png', 'rocket.jpg', 'motorcycle_left.png',
              'motorcycle_right.png', 'hubble_deep_field.jpg')
DEMO_VAL = ('coffee.png',)


def _demo_paths(names):
  import skimage  # pylint: disable=g-import-not-at-top
  root = os.path.join(os.path.dirname(skimage.__file__), 'data')
  return [os.path.join(root, n) for n in names]


def source_paths(spec: str, *, val: bool = False) -> list[str]:
  """Image paths for a data-source spec: 'demo' or 'folder:/path'."""
  from srgan_jax import image_io  # pylint: disable=g-import-not-at-top
  if spec == 'demo':
    return _demo_paths(DEMO_VAL if val else DEMO_TRAIN)
  if spec.startswith('folder:'):
    root = spec[len('folder:'):]
    if not os.path.isdir(root):
      raise UserError(f'data folder {root!r} does not exist; set config.data.source=folder:/path/to/HR/images.')
    paths = image_io.list_images(root)
    if not paths:
      raise UserError(f'no images (PNG/JPEG/BMP/TIFF/WebP) under {root!r}; point config.data.source at a folder of HR images.')
    return paths
  raise UserError(f'unknown data source {spec!r}; use "demo" or "folder:/path".')


def load_images(paths: list[str], min_size: int) -> list[np.ndarray]:
  """Decodes every image once (uint8 RGB); skips unreadable or too-small ones with a warning."""
  from srgan_jax import image_io  # pylint: disable=g-import-not-at-top
  images, skipped = [], 0
  for p in paths:
    try:
      im = image_io.load_rgb(p)
    except image_io.ImageReadError as e:
      skipped += 1
      logging.warning('skipping %s (%d skipped so far)', e, skipped)
      continue
    if min(im.shape[:2]) < min_size:
      skipped += 1
      logging.warning('skipping %s: %dx%d is smaller than the %d-pixel crop (%d skipped so far)',
                      p, im.shape[1], im.shape[0], min_size, skipped)
      continue
    images.append(im)
  if not images:
    raise UserError(f'none of the {len(paths)} images could be used (unreadable or smaller than {min_size} px).')
  return images


def random_crop(image: np.ndarray, size: int, rng: np.random.Generator, augment: bool) -> np.ndarray:
  """A random size x size HR sub-image, with a random flip and 90-degree rotation."""
  h, w = image.shape[:2]
  y, x = rng.integers(0, h - size + 1), rng.integers(0, w - size + 1)
  crop = image[y:y + size, x:x + size]
  if augment:
    if rng.integers(2):
      crop = crop[:, ::-1]
    crop = np.rot90(crop, k=int(rng.integers(4)))
  return np.ascontiguousarray(crop)


def create_train_iterator(config, process_index: int = 0, process_count: int = 1):
  """An endless, seeded, resumable iterator of this process's share of the global batch."""
  if config.data.batch_size % process_count:
    raise UserError(f'data.batch_size={config.data.batch_size} must be divisible by the {process_count} processes.')
  local_batch = config.data.batch_size // process_count
  images = load_images(source_paths(config.data.source), config.data.hr_crop)
  ds = (grain.MapDataset.source(images)
        .shuffle(seed=config.seed)
        .repeat()  # endless; reshuffled each epoch
        # Crops are drawn before sharding, so element k is the same crop whatever the number
        # of processes: N processes then see the same global batches as one process.
        .random_map(lambda im, rng: random_crop(im, config.data.hr_crop, rng, config.data.augment),
                    seed=config.seed)
        [process_index::process_count]  # this process's disjoint shard: elements p, p + n, ...
        .map(lambda crop: {'hr': crop})
        .batch(local_batch, drop_remainder=True))
  ds = ds.to_iter_dataset(grain.ReadOptions(num_threads=2, prefetch_buffer_size=4))
  return iter(ds)


def load_val_crops(config) -> np.ndarray:
  """num_val_images fixed val_crop x val_crop crops, spread over the validation images."""
  size, n = config.data.val_crop, config.data.num_val_images
  images = load_images(source_paths(config.data.val_source, val=True), size)
  crops = []
  for i in range(n):
    im = images[i % len(images)]
    k = i // len(images)  # k-th crop of this image, along its diagonal
    per_image = -(-n // len(images))
    t = (k + 0.5) / per_image
    y = int(round(t * (im.shape[0] - size)))
    x = int(round(t * (im.shape[1] - size)))
    crops.append(im[y:y + size, x:x + size])
  return np.stack(crops)
