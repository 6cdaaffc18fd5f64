"""benchmarks/realworld_eval's degraded test inputs: reproducible, and degraded as documented;
benchmarks/compare_models' command line."""

import json

import numpy as np
import pytest
import scipy.ndimage
from PIL import Image

from benchmarks import compare_models, realworld_eval
from srgan_jax.evaluation import validation


@pytest.fixture(scope='module')
def set5():
  return validation.load_set('set5', 4)


def _detail(img: np.ndarray) -> float:
  """Variance of the Laplacian of the grey image: how much fine detail is left."""
  return float(scipy.ndimage.laplace(img.astype(np.float64).mean(-1)).var())


@pytest.mark.parametrize('kind', realworld_eval.KINDS + realworld_eval.EXTRA_KINDS)
def test_each_kind_is_reproducible_and_the_lr_size(set5, kind):
  sample = set5[2]
  a, b = (realworld_eval.degraded_lr(sample, kind, 2) for _ in range(2))
  assert a.dtype == np.uint8 and a.shape == sample.lr.shape
  np.testing.assert_array_equal(a, b)


def test_noise15_adds_noise_of_about_sigma_15(set5):
  # Against the clean LR, noise15's error power is JPEG q70's own (the jpeg70 kind) plus the
  # part of the sigma-15 noise that JPEG q70 keeps (it drops much of the finest): 6-15 levels.
  for i, sample in enumerate(set5):
    noisy, jpeg_alone = (
      (realworld_eval.degraded_lr(sample, k, i).astype(np.float64) - sample.lr).var()
      for k in ('noise15', 'jpeg70')
    )
    kept = np.sqrt(noisy - jpeg_alone)
    assert 6.0 < kept < 15.0, (i, kept)
  other = realworld_eval.degraded_lr(set5[0], 'noise15', 1)  # the seed is the image's index
  assert not np.array_equal(other, realworld_eval.degraded_lr(set5[0], 'noise15', 0))


def test_blur2_leaves_less_detail_than_mixed_and_clean(set5):
  for i, sample in enumerate(set5):
    clean, mixed, blur2 = (
      _detail(realworld_eval.degraded_lr(sample, k, i)) for k in ('clean', 'mixed', 'blur2')
    )
    assert blur2 < clean and blur2 < mixed, (i, clean, mixed, blur2)


def test_an_unknown_kind_is_an_error(set5):
  with pytest.raises(ValueError, match='unknown kind'):
    realworld_eval.degraded_lr(set5[0], 'jpgg', 0)


@pytest.mark.parametrize('cli', [realworld_eval, compare_models], ids=lambda m: m.__name__)
def test_a_missing_model_file_is_a_one_line_error(cli, tmp_path, capsys):
  assert cli.main(['--models', str(tmp_path / 'nope.msgpack')]) == 2
  err = capsys.readouterr().err.strip()
  assert err.startswith('error: ') and 'nope.msgpack' in err and '\n' not in err


def test_a_missing_datasets_folder_is_a_one_line_error(tmp_path, capsys):
  argv = ['--models', 'srgan_x4', '--datasets', str(tmp_path / 'nowhere')]
  assert compare_models.main(argv) == 2
  err = capsys.readouterr().err.strip()
  assert err.startswith('error: ') and 'nowhere' in err and '\n' not in err


def test_per_image_rows_are_what_the_set_means_average(tmp_path, capsys):
  """--per-image: every image of every set scored per method, and their mean is the table's."""
  from skimage import data  # pylint: disable=g-import-not-at-top

  photos = {'astronaut': data.astronaut()[100:164, 180:244], 'coffee': data.coffee()[:64, 200:264]}
  for set_name in ('Set5', 'Set14'):
    (tmp_path / set_name).mkdir()
    for name, img in photos.items():
      Image.fromarray(img).save(tmp_path / set_name / f'{name}.png')
  out = tmp_path / 'table.json'
  argv = ['--models', 'srgan_x4', '--datasets', str(tmp_path), '--per-image', '--json', str(out)]
  assert compare_models.main(argv) == 0
  printed = capsys.readouterr().out
  table = json.loads(out.read_text())
  for method in ('bicubic', 'srgan_x4'):
    for set_name in ('Set5', 'Set14'):
      per = table['per_image'][method][set_name]
      assert sorted(per) == sorted(photos)
      for metric in ('psnr_y', 'lpips'):
        mean = np.mean([per[name][metric] for name in photos])
        assert mean == pytest.approx(table[method][set_name][metric], rel=1e-9)
      for name in photos:
        assert f'| {set_name}/{name} |' in printed
  # each row is its own image's: bicubic's PSNR-Y recomputed here, image by image
  for sample in validation.load_sets([tmp_path / 'Set5'], 4)['Set5']:
    psnr = validation.score(validation.bicubic(sample.lr, 4), sample, 4)['psnr_y']
    assert table['per_image']['bicubic']['Set5'][sample.name]['psnr_y'] == pytest.approx(psnr)
  # the SR model and bicubic differ image by image (rows are not copies of one method)
  assert (
    table['per_image']['srgan_x4']['Set5']['coffee']
    != table['per_image']['bicubic']['Set5']['coffee']
  )
