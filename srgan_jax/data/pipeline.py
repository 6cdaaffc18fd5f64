"""HR training crops as uint8 batches: a seeded, resumable Grain pipeline.

The host ships uint8 HR crops only; the LR input is made on the device inside
the train step (`srgan_jax.imresize.degrade`), by MATLAB-conformant bicubic
downscaling. Interface used by the trainer:

  create_train_iterator(config, process_index, process_count, num_shards=,
                        local_shards=) -> iterator
      yielding {'hr': uint8 [local_batch, P, P, 3]}, with get_state/set_state
      (a Grain DatasetIterator, checkpointed beside the train states);
  seek(iterator, steps_done) -> places it at a step (a restore without its state);
  load_val_crops(config) -> uint8 [N, V, V, 3] fixed validation crops.

One data shard per device (per position of the 1-D 'data' mesh), D in all:
shard s holds images s::D. Each shard is its own endless crop stream (Grain
MapDatasets, so element k of shard s is a pure function of (seed, s, k)):

  the shard's images, decoded once into RAM by the process that owns the device
  (`sources.load_shards`; why RAM and not per-crop decoding is explained there)
  -> a seeded permutation of the images, a new one every epoch, forever
  -> one random P x P crop per image visit, random flip and 90-degree rotation
     (with data.scale_augment < 1, the crop is a random larger square shrunk to P x P).

The process's batch of step t takes crops t*b ... t*b + b - 1 (b = B / D) of
each of its shards, in mesh order, so `jax.make_array_from_process_local_data`
puts shard s's rows on device s: the global batch of step t is the same for
every process topology with the same D (changing D changes the stream). The
process iterator is a MapDataset over step indices, threads prefetch whole
batches, and its state is just the next step.

With config.data.stream (data sets too large for RAM), each visit decodes its
image instead, in `decode_threads` Grain threads; a visit of a bad image found
mid-run takes the image of the shard's next good visit (one warning per bad
image), so batches stay a pure function of the step.

The paper crops each mini-batch's 16 random 96x96 HR sub-images from distinct
training images; one crop per image visit gives exactly that within an epoch.
"""

import functools
import os

import grain
import numpy as np
from PIL import Image

from srgan_jax.data import sources
from srgan_jax.common.errors import UserError


def random_crop(
  image: np.ndarray, size: int, rng: np.random.Generator, augment: bool, min_scale: float = 1.0
) -> np.ndarray:
  """A random size x size HR sub-image, with a random flip and 90-degree rotation.

  min_scale < 1 (scale augmentation): the sub-image is a random r x r square,
  r = size / s for s uniform in [min_scale, 1] (s >= size / the image's short side),
  shrunk to size x size by antialiased bicubic (Pillow's): the same photographs
  seen at many scales, as multi-scale training sets are made (e.g. BasicSR's
  DIV2K / DF2K sub-images). 1.0 draws nothing more: the crops of a run without it.
  """
  h, w = image.shape[:2]
  region = size
  if min_scale < 1.0:
    s = rng.uniform(max(min_scale, size / min(h, w)), 1.0)
    region = min(max(size, round(size / s)), h, w)
  y, x = rng.integers(0, h - region + 1), rng.integers(0, w - region + 1)
  crop = image[y : y + region, x : x + region]
  if region != size:
    crop = np.asarray(Image.fromarray(crop).resize((size, size), Image.Resampling.BICUBIC))
  if augment:  # the 8 symmetries of the square: flip or not, times 4 rotations
    if rng.integers(2):
      crop = crop[:, ::-1]
    crop = np.rot90(crop, k=int(rng.integers(4)))
  return np.ascontiguousarray(crop)


def shard_seed(seed: int, shard: int) -> int:
  """Independent data seeds per data shard (their images differ; their crops should too)."""
  return int(np.random.SeedSequence([seed, shard]).generate_state(1)[0])


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


def crop_dataset(images: grain.MapDataset, config, seed: int) -> grain.MapDataset:
  """The endless MapDataset of one shard's crops {'hr': uint8 [P, P, 3]}; crop k is seeded by k."""
  size, augment = config.data.hr_crop, config.data.augment
  min_scale = config.data.get('scale_augment', 1.0)
  return images.random_map(
    lambda im, rng: {'hr': random_crop(im, size, rng, augment, min_scale)}, seed=seed
  )


def cached_stream(images: list[np.ndarray], config, seed: int) -> grain.MapDataset:
  """One shard's crop stream over its images decoded into RAM."""
  return crop_dataset(visit_order(len(images), seed).map(lambda j: images[j]), config, seed)


def decoding_stream(n: int, load, config, seed: int) -> grain.MapDataset:
  """One shard's crop stream, decoding its image on every visit.

  Visit k of a bad image (load returns None) takes the image of the next good
  visit instead, so element k is still a pure function of (seed, shard, k).
  """
  order = visit_order(n, seed)

  def image(k, j):
    while (im := load(j)) is None:  # the shard has a good image: checked at start
      k += 1
      j = order[k]
    return im

  return crop_dataset(order.map_with_index(image), config, seed)


def step_dataset(streams: list[grain.MapDataset], per_shard: int) -> grain.MapDataset:
  """Endless MapDataset of this process's batches, element t the batch of step t.

  The batch of step t is, for each local shard in ascending order, its crops
  t * per_shard ... (t + 1) * per_shard - 1: a pure function of t, whichever
  process builds it and however many steps came before.
  """

  def batch(t):
    return {'hr': np.stack([s[t * per_shard + i]['hr'] for s in streams for i in range(per_shard)])}

  return grain.MapDataset.range(_ENDLESS).map(batch)


_ENDLESS = 1 << 62  # steps; MapDataset.range needs an end


def create_train_iterator(
  config,
  process_index: int = 0,
  process_count: int = 1,
  *,
  num_shards: int | None = None,
  local_shards: list[int] | None = None,
):
  """An endless, seeded, resumable iterator of this process's share of the global batch.

  There are `num_shards` data shards, one per device of the mesh (default: one per
  process), each with its own crop stream; this process decodes and batches its
  `local_shards` (default: [process_index]), which must be the mesh positions of
  its devices, ascending. The global batch of step t is then the same for every
  process topology with the same num_shards.
  """
  data = config.data
  num_shards = process_count if num_shards is None else num_shards
  local_shards = [process_index] if local_shards is None else sorted(local_shards)
  if data.batch_size % num_shards:
    raise UserError(
      f'data.batch_size={data.batch_size} must be divisible by the {num_shards} '
      'data shards (one per device).'
    )
  per_shard = data.batch_size // num_shards
  seeds = [shard_seed(config.seed, s) for s in local_shards]
  if not data.stream:  # decode once, crop from RAM; threads prefetch whole batches
    shards = sources.load_shards(data.source, data, data.hr_crop, local_shards, num_shards)
    streams = [cached_stream(images, config, seed) for images, seed in zip(shards, seeds)]
    threads = data.prefetch_threads
  else:  # decode on every visit, in decode threads (each prepares whole batches)
    shards = sources.stream_shards(data.source, data, data.hr_crop, local_shards, num_shards)
    streams = [decoding_stream(n, load, config, seed) for (n, load), seed in zip(shards, seeds)]
    threads = data.decode_threads or os.cpu_count() or 1
  return iter(
    step_dataset(streams, per_shard).to_iter_dataset(
      grain.ReadOptions(num_threads=threads, prefetch_buffer_size=data.prefetch_batches)
    )
  )


def seek(train_iter, steps_done: int) -> None:
  """Places a train iterator after `steps_done` batches: where a run at that step continues."""
  train_iter.set_state({**train_iter.get_state(), 'next_index': steps_done})


def load_val_crops(config) -> np.ndarray:
  """num_val_images fixed val_crop x val_crop crops, spread over the validation images."""
  size, n = config.data.val_crop, config.data.num_val_images
  images = sources.load_shard(config.data.val_source, config.data, size, limit=n, val=True)
  per_image = -(-n // len(images))
  crops = []
  for i in range(n):
    im = images[i % len(images)]
    k = i // len(images)  # k-th crop of this image, along its diagonal
    t = (k + 0.5) / per_image
    y = int(round(t * (im.shape[0] - size)))
    x = int(round(t * (im.shape[1] - size)))
    crops.append(im[y : y + size, x : x + size])
  return np.stack(crops)
