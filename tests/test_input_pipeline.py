"""The input pipeline: seeded, resumable, sharded HR crops from demo, folder and TFDS sources."""

import io
import logging
import pathlib
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from srgan_jax.data import sources, pipeline
from srgan_jax.common.errors import UserError
from tests.helpers import cpu_devices_env, tiny_config

CROP = 16
REPO = pathlib.Path(__file__).resolve().parents[1]


def _png_bytes(array) -> bytes:
  buf = io.BytesIO()
  Image.fromarray(array).save(buf, format='PNG')
  return buf.getvalue()


def _id_image(k: int, h: int = 20, w: int = 24) -> np.ndarray:
  """An image whose every pixel is 10 * k: any crop of it says which image it came from."""
  return np.full((h, w, 3), 10 * k, np.uint8)


def _ids(batch) -> list[int]:
  hr = batch['hr']
  assert all((crop == crop.flat[0]).all() for crop in hr)
  return [int(crop.flat[0]) // 10 for crop in hr]


@pytest.fixture(scope='module')
def id_folder(tmp_path_factory):
  """8 identifiable images in a nested folder."""
  root = tmp_path_factory.mktemp('ids')
  (root / 'sub').mkdir()
  for k in range(8):
    Image.fromarray(_id_image(k)).save(root / ('sub' if k % 2 else '.') / f'{k}.png')
  return root


@pytest.fixture(scope='module')
def noise_folder(tmp_path_factory):
  """6 textured images, so that crops at different offsets differ."""
  root = tmp_path_factory.mktemp('noise')
  rng = np.random.default_rng(0)
  for k in range(6):
    Image.fromarray(rng.integers(0, 256, (40, 48, 3), dtype=np.uint8)).save(root / f'{k}.png')
  return root


def _config(folder, **overrides):
  return tiny_config(
    **{'data.source': f'folder:{folder}', 'data.hr_crop': CROP, 'data.batch_size': 4, **overrides}
  )


def _take(it, n):
  return [next(it)['hr'].copy() for _ in range(n)]


def test_batches_are_uint8_crops_of_the_configured_shape(noise_folder):
  batch = next(pipeline.create_train_iterator(_config(noise_folder)))
  assert set(batch) == {'hr'}
  assert batch['hr'].shape == (4, CROP, CROP, 3) and batch['hr'].dtype == np.uint8


def test_the_same_seed_gives_the_same_batches_and_another_seed_differs(noise_folder):
  a = _take(pipeline.create_train_iterator(_config(noise_folder, seed=1)), 4)
  b = _take(pipeline.create_train_iterator(_config(noise_folder, seed=1)), 4)
  c = _take(pipeline.create_train_iterator(_config(noise_folder, seed=2)), 4)
  np.testing.assert_array_equal(np.stack(a), np.stack(b))
  assert not np.array_equal(np.stack(a), np.stack(c))


@pytest.mark.parametrize('shards', [{}, dict(num_shards=2, local_shards=[0, 1])])
def test_a_restored_iterator_continues_the_uninterrupted_sequence(noise_folder, shards):
  config = _config(noise_folder)
  uninterrupted = pipeline.create_train_iterator(config, **shards)
  _take(uninterrupted, 3)
  state = uninterrupted.get_state()
  expected = _take(uninterrupted, 5)  # crosses epoch boundaries (6 images, batch 4)
  resumed = pipeline.create_train_iterator(config, **shards)
  resumed.set_state(state)
  np.testing.assert_array_equal(np.stack(_take(resumed, 5)), np.stack(expected))


def test_every_epoch_visits_every_image_once_in_a_new_order(id_folder):
  it = pipeline.create_train_iterator(_config(id_folder))  # 8 images, batch 4
  epochs = [sum((_ids(next(it)) for _ in range(2)), []) for _ in range(4)]
  for epoch in epochs:
    assert sorted(epoch) == list(range(8))
  assert len({tuple(e) for e in epochs}) == 4, epochs


def test_data_shards_are_disjoint_and_together_cover_the_data(id_folder):
  config = _config(id_folder)  # global batch 4: 2 per shard
  seen = []
  for s in range(2):
    it = pipeline.create_train_iterator(config, num_shards=2, local_shards=[s])
    first_epoch = sum((_ids(next(it)) for _ in range(2)), [])  # 4 images per shard
    assert len(set(first_epoch)) == 4
    more = sum((_ids(next(it)) for _ in range(6)), [])
    assert set(more) == set(first_epoch)  # a shard never strays outside its images
    seen.append(set(first_epoch))
  assert not seen[0] & seen[1]
  assert seen[0] | seen[1] == set(range(8))


def test_two_processes_together_batch_exactly_what_one_process_of_both_shards_batches(noise_folder):
  config = _config(noise_folder)
  one = _take(pipeline.create_train_iterator(config, num_shards=2, local_shards=[0, 1]), 5)
  halves = [
    _take(pipeline.create_train_iterator(config, p, 2, num_shards=2, local_shards=[p]), 5)
    for p in range(2)
  ]
  for t in range(5):  # crosses epochs: 3 images per shard, 2 crops per shard and step
    np.testing.assert_array_equal(np.concatenate([halves[0][t], halves[1][t]]), one[t])


def test_seeking_a_step_gives_the_batch_that_iterating_to_it_gives(noise_folder):
  config = _config(noise_folder)
  iterated = _take(pipeline.create_train_iterator(config, num_shards=2, local_shards=[0, 1]), 7)
  for t in (0, 3, 6):
    it = pipeline.create_train_iterator(config, num_shards=2, local_shards=[0, 1])
    pipeline.seek(it, t)
    np.testing.assert_array_equal(next(it)['hr'], iterated[t])


_ROWS_TO_DEVICES = """
import sys, jax, numpy as np
from jax.sharding import NamedSharding, PartitionSpec as P
sys.path.insert(0, sys.argv[1])
from srgan_jax.data import pipeline
from srgan_jax.training import update_step
from tests.helpers import tiny_config
config = tiny_config(**{'data.source': 'folder:' + sys.argv[2], 'data.hr_crop': 16,
                        'data.batch_size': 8})
mesh = update_step.make_mesh()
local = [i for i, d in enumerate(mesh.devices.flat) if d.process_index == jax.process_index()]
it = pipeline.create_train_iterator(config, num_shards=4, local_shards=local)
batch = jax.make_array_from_process_local_data(NamedSharding(mesh, P('data')), next(it)['hr'])
position = {d: i for i, d in enumerate(mesh.devices.flat)}
for shard in batch.addressable_shards:
  s = position[shard.device]
  alone = next(pipeline.create_train_iterator(config, num_shards=4, local_shards=[s]))['hr']
  np.testing.assert_array_equal(np.asarray(shard.data), alone)
print('checked', len(batch.addressable_shards))
"""


@pytest.mark.slow
@pytest.mark.subprocess
def test_shard_s_rows_of_the_global_batch_land_on_mesh_device_s(noise_folder):
  env = cpu_devices_env(4)
  r = subprocess.run(
    [sys.executable, '-c', _ROWS_TO_DEVICES, str(REPO), str(noise_folder)],
    env=env,
    capture_output=True,
    text=True,
    timeout=120,
  )
  assert r.returncode == 0 and 'checked 4' in r.stdout, r.stderr[-3000:]


def _symmetry(crop, original):
  """Which of the 8 flips/rotations maps original to crop (None if none does)."""
  for flip in (0, 1):
    for k in range(4):
      if np.array_equal(np.rot90(original[:, ::-1] if flip else original, k), crop):
        return flip, k
  return None


@pytest.mark.parametrize('augment', [True, False])
def test_augmentation_covers_all_flips_and_rotations_only_when_enabled(tmp_path, augment):
  original = np.arange(CROP * CROP * 3, dtype=np.uint16).reshape(CROP, CROP, 3).astype(np.uint8)
  original[..., 0] = (
    np.arange(CROP)[:, None] * 7 + np.arange(CROP)[None, :]
  )  # no symmetry of its own
  Image.fromarray(original).save(tmp_path / 'one.png')
  it = pipeline.create_train_iterator(
    _config(tmp_path, **{'data.batch_size': 16, 'data.augment': augment})
  )
  found = {_symmetry(crop, original) for batch in _take(it, 6) for crop in batch}
  assert None not in found
  assert found == ({(f, k) for f in (0, 1) for k in range(4)} if augment else {(0, 0)})


def _ramp_slopes(crop):
  """Grey levels per pixel of the R (x ramp) and G (y ramp) channels inside a crop."""
  c = crop.astype(np.float64)[4:-4, 4:-4]  # inside: away from the resize's edge pixels
  t = np.arange(c.shape[0]) - (c.shape[0] - 1) / 2
  return (c[:, :, 0] @ t).mean() / (t @ t), (c[:, :, 1].T @ t).mean() / (t @ t)


def test_scale_augmentation_shrinks_random_larger_squares_seeded_and_off_at_one(tmp_path):
  """A photo of ramps (R = x, G = y grey levels): a crop of an r x r square shrunk to P x P
  has slope r / P in both directions, so the slopes say which scale each crop was taken at."""
  y, x = np.mgrid[:120, :160]
  ramps = np.stack([x, y, np.full_like(x, 128)], -1).astype(np.uint8)
  Image.fromarray(ramps).save(tmp_path / 'ramps.png')

  def crops(min_scale):
    config = _config(
      tmp_path, **{'data.batch_size': 16, 'data.augment': False, 'data.scale_augment': min_scale}
    )
    return np.concatenate(_take(pipeline.create_train_iterator(config), 4))

  shrunk = crops(0.5)
  slopes = np.array([_ramp_slopes(c) for c in shrunk])
  np.testing.assert_allclose(slopes[:, 0], slopes[:, 1], atol=0.02)  # squares, not rectangles
  assert slopes.min() > 0.98 and slopes.max() < 2.02  # scales in [0.5, 1]
  assert slopes.max() - slopes.min() > 0.6  # spread over the range, not one scale
  np.testing.assert_array_equal(crops(0.5), shrunk)  # a pure function of the seed
  for crop in crops(1.0):  # off: plain sub-images, as without the option
    assert (np.diff(crop[..., 0].astype(int), axis=1) == 1).all()
    assert (np.diff(crop[..., 1].astype(int), axis=0) == 1).all()


def _bad_and_odd_files(root):
  """Files a real photo folder may hold; returns how many are usable after conversion."""
  rgb = np.random.default_rng(0).integers(0, 256, (32, 40, 3), dtype=np.uint8)
  Image.fromarray(rgb).save(root / 'rgb.png')
  Image.fromarray(rgb).convert('L').save(root / 'gray.png')
  Image.fromarray(rgb).convert('RGBA').save(root / 'rgba.png')
  Image.fromarray(rgb).convert('P').save(root / 'palette.png')
  Image.fromarray((rgb[..., 0].astype(np.uint16) * 257)).save(root / 'gray16.png')
  Image.fromarray(rgb).convert('CMYK').save(root / 'cmyk.jpg')
  exif = Image.Exif()
  exif[0x0112] = 6  # orientation: rotate 90 degrees clockwise to display
  Image.fromarray(rgb).save(root / 'rotated.jpg', exif=exif)
  Image.fromarray(rgb[:8, :8]).save(root / 'smaller_than_crop.png')
  good = _png_bytes(rgb)
  (root / 'truncated.png').write_bytes(good[: len(good) // 2])
  (root / 'corrupt.jpg').write_bytes(b'\xff\xd8\xff' + bytes(range(256)) * 4)
  (root / 'notes.webp').write_text('not an image at all')
  (root / 'README.txt').write_text('ignored: no image extension')
  return 7, 4  # usable, skipped


def test_bad_or_odd_files_are_converted_or_skipped_with_a_warning_and_training_continues(
  tmp_path, caplog
):
  usable, bad = _bad_and_odd_files(tmp_path)
  config = _config(tmp_path)
  with caplog.at_level(logging.WARNING):
    images = sources.load_shard(config.data.source, config.data, CROP)
  assert len(images) == usable
  assert all(im.dtype == np.uint8 and im.ndim == 3 and im.shape[-1] == 3 for im in images)
  assert sorted(im.shape[:2] for im in images).count((40, 32)) == 1  # the EXIF-rotated photo
  skips = [r.getMessage() for r in caplog.records if 'skipping' in r.getMessage()]
  assert len(skips) == bad and f'({bad} skipped so far)' in skips[-1]
  assert any('without an image extension' in r.getMessage() for r in caplog.records)
  it = pipeline.create_train_iterator(config)
  assert all(b.shape == (4, CROP, CROP, 3) for b in _take(it, 4))


def test_several_folders_train_on_the_images_of_all_of_them(tmp_path):
  for k in range(6):
    (tmp_path / f'f{k % 2}').mkdir(exist_ok=True)
    Image.fromarray(_id_image(k)).save(tmp_path / f'f{k % 2}' / f'{k}.png')
  spec = f'folder:{tmp_path / "f0"},{tmp_path / "f1"}'
  it = pipeline.create_train_iterator(_config(tmp_path / 'f0', **{'data.source': spec}))
  assert sorted(sum((_ids(next(it)) for _ in range(3)), [])) == sorted(2 * list(range(6)))
  data = _config(tmp_path).data
  with pytest.raises(UserError, match='does not exist'):  # one missing folder of several
    sources.open_source(f'folder:{tmp_path / "f0"},{tmp_path / "nope"}', data)
  with pytest.raises(UserError, match='twice'):  # a folder inside another: images counted twice
    sources.open_source(f'folder:{tmp_path},{tmp_path / "f1"}', data)


def test_an_empty_or_all_bad_folder_is_a_one_line_user_error(tmp_path):
  (tmp_path / 'empty').mkdir()
  with pytest.raises(UserError, match='no images'):
    pipeline.create_train_iterator(_config(tmp_path / 'empty'))
  (tmp_path / 'bad').mkdir()
  (tmp_path / 'bad' / 'a.png').write_bytes(b'garbage')
  Image.fromarray(_id_image(1, 8, 8)).save(tmp_path / 'bad' / 'small.png')
  with pytest.raises(UserError, match='none of the 2 images') as e:
    pipeline.create_train_iterator(_config(tmp_path / 'bad'))
  assert '\n' not in str(e.value)
  with pytest.raises(UserError, match='does not exist'):
    pipeline.create_train_iterator(_config(tmp_path / 'missing'))


def test_more_data_shards_than_images_or_shards_over_the_ram_budget_is_a_user_error(id_folder):
  with pytest.raises(UserError, match='fewer than the 16 data shards'):
    pipeline.create_train_iterator(_config(id_folder, **{'data.batch_size': 16}), 0, 16)
  with pytest.raises(UserError, match='fewer than the 16 data shards'):  # one process, 16 devices
    pipeline.create_train_iterator(
      _config(id_folder, **{'data.batch_size': 16}), num_shards=16, local_shards=list(range(16))
    )
  with pytest.raises(UserError, match='cache_gb'):
    pipeline.create_train_iterator(_config(id_folder, **{'data.cache_gb': 1e-6}))


@pytest.fixture(scope='module')
def tfds_dir(tmp_path_factory):
  """A prepared ArrayRecord TFDS dataset of 8 identifiable images, built without TensorFlow."""
  root = tmp_path_factory.mktemp('tfds')
  sources.write_tfds_dataset(
    str(root),
    'tiny_hr',
    {
      'train': [_png_bytes(_id_image(k)) for k in range(8)],
      'validation': [_png_bytes(_id_image(20, 40, 40))],
    },
  )
  return root


def test_a_tfds_source_is_read_by_random_access_and_sharded(tfds_dir):
  config = tiny_config(
    **{
      'data.source': 'tfds:tiny_hr',
      'data.tfds_data_dir': str(tfds_dir),
      'data.hr_crop': CROP,
      'data.batch_size': 4,
    }
  )
  seen = []
  for p in range(2):
    it = pipeline.create_train_iterator(config, process_index=p, process_count=2)
    seen.append(set(_ids(next(it)) + _ids(next(it))))
  assert not seen[0] & seen[1] and seen[0] | seen[1] == set(range(8))
  config.data.val_source = 'tfds:tiny_hr:validation'
  val = pipeline.load_val_crops(config)
  assert val.shape == (2, 32, 32, 3) and (val == 200).all()


def test_tfds_mistakes_are_one_line_user_errors_that_say_what_to_do(tfds_dir, tmp_path):
  def error(source, data_dir=str(tfds_dir), **overrides):
    config = tiny_config(**{'data.source': source, 'data.tfds_data_dir': data_dir, **overrides})
    with pytest.raises(UserError) as e:
      pipeline.create_train_iterator(config)
    assert '\n' not in str(e.value)
    return str(e.value)

  assert 'tfds build div2k/bicubic_x4 --file_format=array_record --data_dir=' in error(
    'tfds:div2k/bicubic_x4', str(tmp_path)
  )
  assert 'no split' in error('tfds:tiny_hr:test')
  assert "tfds_feature to one of ['hr']" in error('tfds:tiny_hr', **{'data.tfds_feature': 'lr'})
  assert 'neither a registered dataset' in error('tfds:no_such_dataset_xyz')
  assert 'unknown data source' in error('imagenet')


def test_the_demo_source_and_validation_crops():
  config = tiny_config()
  assert next(pipeline.create_train_iterator(config))['hr'].shape == (4, 24, 24, 3)
  assert pipeline.load_val_crops(config).shape == (2, 32, 32, 3)


def test_streaming_gives_the_same_batches_as_the_ram_cache(noise_folder):
  shards = dict(num_shards=2, local_shards=[0, 1])
  cached = _take(pipeline.create_train_iterator(_config(noise_folder), **shards), 4)
  streamed = _take(
    pipeline.create_train_iterator(_config(noise_folder, **{'data.stream': True}), **shards),
    4,
  )
  np.testing.assert_array_equal(np.stack(streamed), np.stack(cached))


def test_streaming_replaces_bad_files_met_mid_run_with_one_warning_each_and_stays_step_indexed(
  tmp_path, caplog
):
  _, bad = _bad_and_odd_files(tmp_path)
  config = _config(tmp_path, **{'data.stream': True, 'data.decode_threads': 2})
  with caplog.at_level(logging.WARNING):
    it = pipeline.create_train_iterator(config)
    _take(it, 3)
    state = it.get_state()
    expected = _take(it, 6)  # 9 batches x 4 crops > 3 epochs of the 11 images
  skips = [r.getMessage() for r in caplog.records if 'skipping' in r.getMessage()]
  assert len(skips) == bad and f'({bad} skipped so far)' in skips[-1]
  resumed = pipeline.create_train_iterator(config)
  resumed.set_state(state)
  np.testing.assert_array_equal(np.stack(_take(resumed, 6)), np.stack(expected))
  sought = pipeline.create_train_iterator(config)  # a bad visit's substitute is fixed too
  pipeline.seek(sought, 5)
  np.testing.assert_array_equal(np.stack(_take(sought, 4)), np.stack(expected[2:]))


def test_streaming_an_all_bad_folder_is_a_user_error_at_start(tmp_path):
  for name in ('a.png', 'b.jpg'):
    (tmp_path / name).write_bytes(b'garbage')
  with pytest.raises(UserError, match='none of the 2 images'):
    pipeline.create_train_iterator(_config(tmp_path, **{'data.stream': True}))
