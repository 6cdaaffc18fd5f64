"""Where HR training images come from, decoded once into RAM as uint8 RGB arrays.

A data-source spec names one of three sources (`config.data.source`):

  'demo'                 the natural photographs bundled with scikit-image;
  'folder:/path'         every PNG/JPEG/BMP/TIFF/WebP under /path (recursive);
  'folder:/a,/b'         the images of several folders, in that order (e.g. the
                         533 photographs of train291 + extra242);
  'tfds:NAME[:split]'    a prepared TFDS dataset in ArrayRecord format, read by
                         random access (`builder.as_data_source`, no TensorFlow).

`load_shards` decodes data shards of a source once, in parallel threads, and
returns the arrays; the input pipeline cuts every training crop from them. There
is one data shard per device (shard s: records s::num_devices), and each process
decodes only the shards of its own devices.

Why decode once and cache rather than decode per crop: one 2040x1356 PNG takes ~0.1 s to decode
on one core (benchmarks/loader_throughput.py), i.e. ~10 crops/s per core, while
an accelerator consumes hundreds of 96x96 crops/s; cutting crops from cached
arrays runs at ~7,000 crops/s on one thread. The price is RAM and start-up time:
DIV2K's 800 training images are ~6.9 GB decoded (divided among the processes)
and take ~0.1 s each to decode, threads scaling with cores (~40 s on 2 cores).
`config.data.cache_gb` bounds the RAM of a process; shards that would exceed it
are a one-line UserError at start.

Bad input never stops a run mid-way: every file is decoded up front. A file that
cannot be decoded, or is smaller than the crop, is skipped with a warning and a
running count (which files a shard holds does not depend on decoding, so all
processes agree on it; each shard then drops its own bad files); grayscale,
RGBA, palette, 16-bit, CMYK and EXIF-rotated images are converted (by
`image_io.load_rgb` for files). An empty or all-bad source, or an
unprepared TFDS dataset, is a one-line UserError before training starts.
"""

import concurrent.futures
import os
import re
import threading
from typing import Callable

import numpy as np
from absl import logging
from etils import epath

from srgan_jax.data import image_io
from srgan_jax.common.errors import UserError

# Natural photographs that scikit-image installs with the package (no download).
DEMO_TRAIN = (
  'astronaut.png',
  'chelsea.png',
  'rocket.jpg',
  'motorcycle_left.png',
  'motorcycle_right.png',
  'hubble_deep_field.jpg',
)
DEMO_VAL = ('coffee.png',)

# A source: record names (for messages) and a loader of record i -> uint8 [H, W, 3],
# raising image_io.ImageReadError for a record that cannot be decoded.
Source = tuple[list[str], Callable[[int], np.ndarray]]


def _demo_source(arg: str, *, val: bool, **unused) -> Source:
  del arg, unused
  import skimage  # pylint: disable=g-import-not-at-top

  root = os.path.join(os.path.dirname(skimage.__file__), 'data')
  paths = [os.path.join(root, n) for n in (DEMO_VAL if val else DEMO_TRAIN)]
  return paths, lambda i: image_io.load_rgb(paths[i])


def _folder_source(arg: str, **unused) -> Source:
  """Every image under each of the comma-separated folders of `arg`, folder by folder."""
  del unused
  roots = [r for r in arg.split(',') if r]
  paths = [p for root in roots for p in _folder_images(root)]
  if len(set(paths)) < len(paths):
    raise UserError(
      f'config.data.source=folder:{arg} lists an image twice (one folder inside another?); '
      'name each folder once.'
    )
  return paths, lambda i: image_io.load_rgb(paths[i])


def _folder_images(root: str) -> list[str]:
  """The image files under one folder (a one-line UserError for a missing or empty one)."""
  if not epath.Path(root).is_dir():  # epath: local or gs:// alike
    raise UserError(
      f'data folder {root!r} does not exist; set config.data.source=folder:/path/to/HR/images '
      '(several folders: folder:/a,/b).'
    )
  paths = [str(p) for p in image_io.list_images(root)]
  others = sum(len(files) for _, _, files in epath.Path(root).walk()) - len(paths)
  if others:
    logging.warning(
      'ignoring %d files under %s without an image extension %s',
      others,
      root,
      image_io.IMAGE_EXTENSIONS,
    )
  if not paths:
    raise UserError(
      f'no images (PNG/JPEG/BMP/TIFF/WebP) under {root!r}; '
      'point config.data.source at a folder of HR images.'
    )
  return paths


def _as_rgb_uint8(image: np.ndarray) -> np.ndarray:
  """A decoded TFDS image of 1, 3 or 4 channels, uint8 or uint16 -> RGB uint8."""
  image = np.asarray(image)
  if image.ndim == 2:
    image = image[..., None]
  if image.dtype == np.uint16:  # 65535 -> 255 exactly, rounded (as image_io)
    image = np.floor(image / 257.0 + 0.5).astype(np.uint8)
  if image.dtype != np.uint8 or image.ndim != 3 or image.shape[-1] not in (1, 3, 4):
    raise ValueError(f'expected an [H, W, 1|3|4] uint8 image, got {image.dtype} {image.shape}')
  if image.shape[-1] == 1:
    return np.repeat(image, 3, axis=-1)
  return np.ascontiguousarray(image[..., :3])  # alpha dropped, as image_io does


def tfds_prepare_hint(name: str, data_dir: str) -> str:
  flag = f' --data_dir={data_dir}' if data_dir else ''
  return (
    f'prepare it once with `pip install tensorflow-cpu && tfds build {name} '
    f'--file_format=array_record{flag}` (TensorFlow is needed only for that step; '
    'see README "Data")'
  )


def parse_tfds_spec(arg: str) -> tuple[str, str]:
  """'div2k/bicubic_x4[:1.0.0][:split]' -> (name with optional version, split)."""
  name, _, split = arg.rpartition(':')
  if not name or re.fullmatch(r'\d+\.\d+\.\d+', split):  # no split given
    return arg, 'train'
  return name, split


def _tfds_source(arg: str, *, tfds_feature: str, tfds_data_dir: str, **unused) -> Source:
  """A prepared ArrayRecord TFDS split, decoded with TFDS's own (PIL) image decoder."""
  del unused
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top

  name, split = parse_tfds_spec(arg)
  data_dir = tfds_data_dir or None
  try:
    builder = tfds.builder(name, data_dir=data_dir)
  except tfds.core.registered.DatasetNotFoundError:
    raise UserError(
      f'TFDS dataset {name!r} is neither a registered dataset nor prepared under '
      f'data_dir={tfds_data_dir or "~/tensorflow_datasets"}; check the name or '
      'config.data.tfds_data_dir.'
    ) from None
  if not builder.is_prepared():
    raise UserError(
      f'TFDS dataset {name!r} is not prepared under {builder.data_dir}; '
      f'{tfds_prepare_hint(name, tfds_data_dir)}.'
    )
  file_format = getattr(builder.info.file_format, 'value', builder.info.file_format)
  if file_format not in ('array_record', 'parquet'):
    raise UserError(
      f'TFDS dataset {name!r} in {builder.data_dir} is stored as {file_format}, which '
      'has no random access; rebuild it with --file_format=array_record into another '
      f'data_dir: {tfds_prepare_hint(name, tfds_data_dir)}.'
    )
  if split not in builder.info.splits:
    raise UserError(
      f'TFDS dataset {name!r} has no split {split!r}; use one of '
      f'{sorted(builder.info.splits)} (config.data.source=tfds:{name}:SPLIT).'
    )
  features = builder.info.features
  if tfds_feature not in features or not isinstance(features[tfds_feature], tfds.features.Image):
    images = [k for k, v in features.items() if isinstance(v, tfds.features.Image)]
    raise UserError(
      f'TFDS dataset {name!r} has no image feature {tfds_feature!r}; set '
      f'config.data.tfds_feature to one of {images}.'
    )
  ds = builder.as_data_source(split=split)
  names = [f'{name}:{split}[{i}]' for i in range(len(ds))]

  def load(i):
    try:
      return _as_rgb_uint8(ds[i][tfds_feature])
    except Exception as e:  # pylint: disable=broad-except  # edge: a corrupt record
      raise image_io.ImageReadError(f'{names[i]}: not a readable image ({e}).') from None

  return names, load


# Source registry, by the spec's prefix ('tfds:NAME' -> _tfds_source('NAME', ...)).
SOURCES = {'demo': _demo_source, 'folder': _folder_source, 'tfds': _tfds_source}


def open_source(spec: str, data_config, *, val: bool = False) -> Source:
  """The records of a data-source spec: 'demo', 'folder:/path[,/path...]' or 'tfds:NAME[:split]'."""
  kind, _, arg = spec.partition(':')
  if kind not in SOURCES or (kind != 'demo' and not arg):
    raise UserError(
      f'unknown data source {spec!r}; use "demo", "folder:/path" or "tfds:NAME[:split]".'
    )
  return SOURCES[kind](
    arg, val=val, tfds_feature=data_config.tfds_feature, tfds_data_dir=data_config.tfds_data_dir
  )


def _shard_indices(spec: str, names: list[str], shard: int, num_shards: int) -> list[int]:
  """Record indices of data shard `shard`: every num_shards-th record, starting at `shard`."""
  if len(names) < num_shards:  # checked on every process, so all of them stop
    raise UserError(
      f'{spec!r} has {len(names)} images, fewer than the {num_shards} data shards '
      '(one per device); every device needs its own images.'
    )
  return list(range(len(names)))[shard::num_shards]


def _decode_usable(load, names: list[str], i: int, min_size: int):
  """(image, None) for a usable record i, else (None, why it is skipped)."""
  try:
    im = load(i)
  except image_io.ImageReadError as e:
    return None, str(e)
  if min(im.shape[:2]) < min_size:
    return (
      None,
      f'{names[i]}: {im.shape[1]}x{im.shape[0]} is smaller than the {min_size}-pixel crop',
    )
  return im, None


def _none_usable(spec: str, n: int, min_size: int, shard: int, num_shards: int) -> UserError:
  where = f' in data shard {shard} of {num_shards}' if num_shards > 1 else ''
  fix = '; remove the bad files or use fewer devices' if num_shards > 1 else ''
  return UserError(
    f'none of the {n} images of {spec!r}{where} could be used (unreadable or '
    f'smaller than {min_size} px; see the warnings above){fix}.'
  )


def stream_shards(
  spec: str, data_config, min_size: int, shards: list[int] = (0,), num_shards: int = 1
) -> list[tuple[int, Callable[[int], np.ndarray | None]]]:
  """(n, load) of each of `shards`, for decoding its n images on every visit, without a RAM cache.

  load(j) decodes the shard's j-th image, or returns None (with one warning per
  image and a running count) for a bad or too-small one; an image once found bad
  is not decoded again. For sets too large for RAM whose images decode fast (e.g.
  ImageNet JPEGs). Raises UserError at start if a shard has no usable image (it
  decodes until it finds one).
  """
  names, load = open_source(spec, data_config)
  lock, skipped = threading.Lock(), set()

  def shard_loader(indices):
    def load_or_none(j):
      i = indices[j]
      if i in skipped:
        return None
      im, reason = _decode_usable(load, names, i, min_size)
      if im is not None:
        return im
      with lock:  # warn once per image, not on every visit
        if i not in skipped:
          skipped.add(i)
          logging.warning('skipping %s (%d skipped so far)', reason, len(skipped))
      return None

    return load_or_none

  result = []
  for s in shards:
    indices = _shard_indices(spec, names, s, num_shards)
    load_or_none = shard_loader(indices)
    if all(load_or_none(j) is None for j in range(len(indices))):  # stops at the first good one
      raise _none_usable(spec, len(indices), min_size, s, num_shards)
    result.append((len(indices), load_or_none))
  return result


def load_shards(
  spec: str,
  data_config,
  min_size: int,
  shards: list[int] = (0,),
  num_shards: int = 1,
  *,
  limit: int | None = None,
  val: bool = False,
) -> list[list[np.ndarray]]:
  """Decodes data shards `shards` (records s::num_shards) of a source, skipping bad records.

  Which records a shard holds depends only on the record list, never on decoding;
  each shard then drops its own unreadable or too-small records (with a warning),
  so the shards are the same whichever process decodes them. At most `limit`
  usable images are kept in all (None: all). Raises UserError if a shard has no
  usable image or the decoded shards together would exceed data_config.cache_gb.
  """
  names, load = open_source(spec, data_config, val=val)
  indices = [
    (k, i) for k, s in enumerate(shards) for i in _shard_indices(spec, names, s, num_shards)
  ]
  budget = data_config.cache_gb * 2**30
  images, skipped, used_bytes, kept = [[] for _ in shards], 0, 0, 0

  # PIL decodes with the GIL released, so threads decode in parallel. Submitted in
  # bounded windows so shards larger than the budget stop early, not after decoding.
  workers = data_config.decode_threads or os.cpu_count() or 1
  with concurrent.futures.ThreadPoolExecutor(workers) as pool:
    for start in range(0, len(indices), 4 * workers):
      window = indices[start : start + 4 * workers]
      decoded = pool.map(lambda ki: _decode_usable(load, names, ki[1], min_size), window)
      for (k, _), (im, error) in zip(window, decoded):
        if im is None:
          skipped += 1
          logging.warning('skipping %s (%d skipped so far)', error, skipped)
          continue
        used_bytes += im.nbytes
        if used_bytes > budget:
          raise UserError(
            f'the decoded images of {spec!r} (the data shards of this process) '
            f'exceed config.data.cache_gb={data_config.cache_gb:g} after {kept} of '
            f'{len(indices)}; raise it if the host has the RAM, use more processes, '
            'or set config.data.stream=True.'
          )
        images[k].append(im)
        kept += 1
        if limit is not None and kept >= limit:
          break
      if limit is not None and kept >= limit:
        break
  for k, s in enumerate(shards):
    if not images[k]:
      raise _none_usable(spec, sum(kk == k for kk, _ in indices), min_size, s, num_shards)
  logging.info(
    '%s: %d images decoded into RAM (%.2f GB), %d skipped, data shards %s of %d',
    spec,
    kept,
    used_bytes / 2**30,
    skipped,
    list(shards),
    num_shards,
  )
  return images


def load_shard(
  spec: str, data_config, min_size: int, *, limit: int | None = None, val: bool = False
) -> list[np.ndarray]:
  """Every usable record of a source (one shard of one), e.g. the validation images."""
  return load_shards(spec, data_config, min_size, limit=limit, val=val)[0]


def write_tfds_dataset(
  data_dir: str, name: str, splits: dict[str, list[bytes]], feature: str = 'hr'
) -> None:
  """Packs encoded images (PNG/JPEG bytes) into a prepared ArrayRecord TFDS dataset.

  No TensorFlow needed; `tfds:NAME:SPLIT` with tfds_data_dir=data_dir then reads it.
  The tests and benchmarks/loader_throughput.py use it for small local datasets.
  """
  import io  # pylint: disable=g-import-not-at-top
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top

  def info(self):
    return tfds.core.DatasetInfo(
      builder=self,
      features=tfds.features.FeaturesDict({feature: tfds.features.Image(shape=(None, None, 3))}),
    )

  def split_generators(self, dl_manager):
    del dl_manager
    return {split: self._generate_examples(images) for split, images in splits.items()}

  def generate_examples(self, images):
    del self
    for i, data in enumerate(images):
      yield i, {feature: io.BytesIO(data)}

  builder_cls = type(
    'LocalImages',
    (tfds.core.GeneratorBasedBuilder,),
    {
      'name': name,
      'VERSION': tfds.core.Version('1.0.0'),
      '_info': info,
      '_split_generators': split_generators,
      '_generate_examples': generate_examples,
      # No source file or checksums to look up (TFDS's lookup would need importlib_resources).
      'code_path': None,
      '__module__': __name__,
    },
    skip_registration=True,
  )
  builder_cls(data_dir=data_dir, file_format='array_record').download_and_prepare()
