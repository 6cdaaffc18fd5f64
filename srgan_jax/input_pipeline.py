"""HR training crops as uint8 batches: a seeded, resumable Grain pipeline.

The host ships uint8 HR crops only; the LR input is made on the device inside
the train step (`srgan_jax.train.degrade`), by MATLAB-conformant bicubic
downscaling. Interface used by the trainer:

  create_train_iterator(config, process_index, process_count) -> iterator
      yielding {'hr': uint8 [local_batch, P, P, 3]}, with get_state/set_state
      (a Grain DatasetIterator, checkpointed beside the train states);
  load_val_crops(config) -> uint8 [N, V, V, 3] fixed validation crops.

The pipeline, per process (Grain MapDataset, so every element is a pure function
of its index and the seed, and the iterator state is just the next index):

  this process's disjoint shard of the images, decoded once into RAM
  (`data_sources.load_shard`; why RAM and not per-crop decoding is explained there)
  -> a seeded permutation of the images, a new one every epoch, forever
  -> one random P x P crop per image visit, random flip and 90-degree rotation
  -> batch -> background threads prefetch whole batches.

With config.data.stream (data sets too large for RAM), each visit decodes its
image instead, in `decode_threads` Grain threads; a bad image met mid-run is
dropped with a warning, and batches are assembled after the drop.

The paper crops each mini-batch's 16 random 96x96 HR sub-images from distinct
training images; one crop per image visit gives exactly that within an epoch.
"""

import functools
import os

import grain
import numpy as np

from srgan_jax import data_sources
from srgan_jax.errors import UserError


def random_crop(image: np.ndarray, size: int, rng: np.random.Generator, augment: bool) -> np.ndarray:
  """A random size x size HR sub-image, with a random flip and 90-degree rotation."""
  h, w = image.shape[:2]
  y, x = rng.integers(0, h - size + 1), rng.integers(0, w - size + 1)
  crop = image[y:y + size, x:x + size]
  if augment:  # the 8 symmetries of the square: flip or not, times 4 rotations
    if rng.integers(2):
      crop = crop[:, ::-1]
    crop = np.rot90(crop, k=int(rng.integers(4)))
  return np.ascontiguousarray(crop)


def process_seed(seed: int, process_index: int) -> int:
  """Independent data seeds per process (their shards differ; their crops should too)."""
  return int(np.random.SeedSequence([seed, process_index]).generate_state(1)[0])


def epoch_permutation(seed: int, epoch: int, n: int) -> np.ndarray:
  """The order in which epoch `epoch` visits the n images."""
  return np.random.default_rng([seed, epoch]).permutation(n)


def visit_order(n: int, seed: int) -> grain.MapDataset:
  """Endless MapDataset of image positions: a new seeded permutation of range(n) every epoch.

  Element i is epoch_permutation(seed, i // n)[i % n], a pure function of i, so
  the iterator state is just the next index. (Not Grain's MapDataset.shuffle: its
  index_shuffle costs ~2 ms per element on 16 images and ~0.1 ms on 800, which
  alone would cap a small set at ~500 crops/s.)
  """
  permutation = functools.lru_cache(maxsize=2)(lambda epoch: epoch_permutation(seed, epoch, n))
  return grain.MapDataset.range(n).repeat().map_with_index(lambda i, _: permutation(i // n)[i % n])


def crop_dataset(images: list[np.ndarray], config, seed: int, local_batch: int) -> grain.MapDataset:
  """The endless MapDataset of batches {'hr': uint8 [local_batch, P, P, 3]} over cached images."""
  size, augment = config.data.hr_crop, config.data.augment
  return (visit_order(len(images), seed)
          .random_map(lambda j, rng: {'hr': random_crop(images[j], size, rng, augment)}, seed=seed)
          .batch(local_batch, drop_remainder=True))


def create_train_iterator(config, process_index: int = 0, process_count: int = 1):
  """An endless, seeded, resumable iterator of this process's share of the global batch."""
  data = config.data
  if data.batch_size % process_count:
    raise UserError(f'data.batch_size={data.batch_size} must be divisible by the {process_count} processes.')
  local_batch = data.batch_size // process_count
  seed = process_seed(config.seed, process_index)
  shard = dict(process_index=process_index, process_count=process_count)
  if not data.stream:  # decode once, crop from RAM; threads prefetch whole batches
    images = data_sources.load_shard(data.source, data, data.hr_crop, **shard)
    ds = crop_dataset(images, config, seed, local_batch)
    return iter(ds.to_iter_dataset(grain.ReadOptions(num_threads=data.prefetch_threads,
                                                     prefetch_buffer_size=data.prefetch_batches)))
  # Stream: decode on every visit in decode threads; Grain drops the None of a bad image.
  n, load = data_sources.stream_shard(data.source, data, data.hr_crop, **shard)

  def crop(j, rng):
    image = load(j)
    return None if image is None else {'hr': random_crop(image, data.hr_crop, rng, data.augment)}
  ds = visit_order(n, seed).random_map(crop, seed=seed).to_iter_dataset(grain.ReadOptions(
      num_threads=data.decode_threads or os.cpu_count() or 1,
      prefetch_buffer_size=data.prefetch_batches * local_batch))
  return iter(ds.batch(local_batch, drop_remainder=True))


def load_val_crops(config) -> np.ndarray:
  """num_val_images fixed val_crop x val_crop crops, spread over the validation images."""
  size, n = config.data.val_crop, config.data.num_val_images
  images = data_sources.load_shard(config.data.val_source, config.data, size, limit=n, val=True)
  per_image = -(-n // len(images))
  crops = []
  for i in range(n):
    im = images[i % len(images)]
    k = i // len(images)  # k-th crop of this image, along its diagonal
    t = (k + 0.5) / per_image
    y = int(round(t * (im.shape[0] - size)))
    x = int(round(t * (im.shape[1] - size)))
    crops.append(im[y:y + size, x:x + size])
  return np.stack(crops)
