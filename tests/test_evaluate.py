"""Evaluation: the bicubic baseline reproduces the published table; outputs and errors are usable."""

import csv
import json
import pathlib
import re

import numpy as np
import pytest
from PIL import Image

from benchmarks.bicubic_table import PUBLISHED  # ../shared/datasets/README.md
from srgan_jax import evaluate
from srgan_jax.evaluation import validation
from tests.tiny_checkpoint import tiny_workdir


@pytest.mark.slow
@pytest.mark.parametrize('scale', [4, 2, 3])
def test_bicubic_reproduces_the_published_set5_set14_table(request, scale):
  datasets = request.getfixturevalue('datasets' if scale == 4 else 'shared_datasets')
  r = evaluate.evaluate(
    [datasets / 'Set5', datasets / 'Set14'],
    None,
    scale=scale,
    method='bicubic',
    lpips=None,
    log=lambda *_: None,
  )
  rows = []
  for name in ('Set5', 'Set14'):
    m = r['datasets'][name]['mean']
    rows.append((name, scale, m['psnr_y'], m['ssim_y'], *PUBLISHED[name, scale]))
  print('\nset    x  ours PSNR / SSIM   published')
  for name, scale, p, s, pp, ps in rows:
    print(f'{name:6} {scale}  {p:6.2f} / {s:.4f}   {pp:6.2f} / {ps:.4f}')
  for name, scale, p, s, pp, ps in rows:
    assert abs(p - pp) <= 0.05 and abs(s - ps) <= 0.002, (name, scale, p, s)


def test_a_set_root_a_srf_folder_and_hr_lr_subfolders_name_the_same_images(datasets, tmp_path):
  a = validation.load_sets([datasets / 'Set5'], 4)['Set5']
  b = validation.load_sets([datasets / 'Set5' / 'image_SRF_4'], 4)['Set5']
  assert [s.name for s in a] == [s.name for s in b] and all(s.lr_from_file for s in a)
  (tmp_path / 'HR').mkdir()
  (tmp_path / 'LR').mkdir()
  for s in a[:2]:
    Image.fromarray(s.hr).save(tmp_path / 'HR' / f'{s.name}.png')
    Image.fromarray(s.lr).save(tmp_path / 'LR' / f'{s.name}.png')
  c = validation.load_sets([tmp_path], 4)[tmp_path.name]
  assert all(np.array_equal(x.lr, y.lr) and x.lr_from_file for x, y in zip(a, c))


def _hr_folder(root: pathlib.Path, sizes=((50, 61), (45, 40))) -> pathlib.Path:
  root.mkdir(parents=True)
  rng = np.random.default_rng(0)
  for i, (h, w) in enumerate(sizes):
    base = np.linspace(0, 255, w)[None, :, None] * np.ones((h, 1, 3))
    img = np.clip(base + rng.normal(0, 20, (h, w, 3)), 0, 255).astype(np.uint8)
    Image.fromarray(img).save(root / f'img{i}.png')
  return root


def test_hr_only_folders_get_matlab_lr_from_hr_cropped_to_a_multiple_of_the_scale(tmp_path):
  s = validation.load_sets([_hr_folder(tmp_path / 'hr')], 4)['hr'][0]
  assert s.hr.shape == (48, 60, 3) and s.lr.shape == (12, 15, 3) and not s.lr_from_file


@pytest.fixture(scope='module')
def workdir(tmp_path_factory):
  return tiny_workdir(tmp_path_factory)


def test_evaluate_a_checkpoint_writes_json_csv_report_and_keeps_other_files(workdir, tmp_path):
  data = _hr_folder(tmp_path / 'mine')
  out = tmp_path / 'out'
  out.mkdir()
  (out / 'notes.txt').write_text('keep')
  assert (
    evaluate.main(
      ['--workdir', str(workdir), '--data', str(data), '--out', str(out), '--tile', '30']
    )
    == 0
  )
  assert (out / 'notes.txt').read_text() == 'keep'
  r = json.loads((out / 'results.json').read_text())
  assert r['scale'] == 4 and r['step'] == 2 and r['method'] == 'srresnet'
  d = r['datasets']['mine']
  assert d['num_images'] == 2
  assert set(d['mean']) == {'psnr_y', 'ssim_y', 'psnr_rgb', 'grid', 'lpips'} and d['hr_grid'] >= 0
  assert r['lpips_net'] == 'alexnet'
  assert all(
    set(i) >= {'name', 'psnr_y', 'ssim_y', 'psnr_rgb', 'lpips', 'bicubic'} for i in d['images']
  )
  assert all('lpips' in i['bicubic'] for i in d['images']) and 'lpips' in d['bicubic_mean']
  rows = list(csv.DictReader((out / 'results.csv').open()))
  assert [r['name'] for r in rows] == ['img0', 'img1', 'MEAN']
  assert float(rows[-1]['psnr_y']) == pytest.approx(d['mean']['psnr_y'], abs=1e-5)
  assert float(rows[-1]['lpips']) == pytest.approx(d['mean']['lpips'], abs=1e-6)
  with Image.open(out / 'mine' / 'img0.png') as im:
    assert im.size == (60, 48)
  page = (out / 'report.html').read_text()
  srcs = re.findall(r'src="([^"]+)"', page)
  assert len(srcs) == 2 * 6 and all((out / s).is_file() for s in srcs)
  assert '<th>LPIPS</th>' in page and f'{d["mean"]["lpips"]:.4f}' in page


def test_lpips_none_leaves_it_out(workdir, tmp_path):
  out = tmp_path / 'out'
  assert (
    evaluate.main(
      [
        '--workdir',
        str(workdir),
        '--data',
        str(_hr_folder(tmp_path / 'm')),
        '--out',
        str(out),
        '--lpips',
        'none',
      ]
    )
    == 0
  )
  r = json.loads((out / 'results.json').read_text())
  assert (
    'lpips' not in r['datasets']['m']['mean'] and 'LPIPS' not in (out / 'report.html').read_text()
  )


def test_all_steps_writes_a_metric_per_checkpoint_and_a_plot(workdir, tmp_path):
  out = tmp_path / 'out'
  assert (
    evaluate.main(
      [
        '--workdir',
        str(workdir),
        '--all-steps',
        '--data',
        str(_hr_folder(tmp_path / 'd')),
        '--out',
        str(out),
      ]
    )
    == 0
  )
  steps = json.loads((out / 'steps.json').read_text())
  assert [s['step'] for s in steps] == [1, 2] and all('d/psnr_y' in s for s in steps)
  assert next(csv.reader((out / 'steps.csv').open()))[:2] == ['step', 'd/psnr_y']
  assert (
    '<polyline' in (out / 'steps.svg').read_text() and '<svg' in (out / 'report.html').read_text()
  )


def test_evaluate_sets_gives_the_trainer_one_mean_per_set_and_metric(workdir, tmp_path):
  from srgan_jax.evaluation import inference

  model = inference.load_model(workdir)
  sets = validation.load_sets([_hr_folder(tmp_path / 'v')], 4)
  scores = validation.evaluate_sets(model.predict, model.variables, sets, 4)
  assert set(scores) == {'v/psnr_y', 'v/ssim_y', 'v/psnr_rgb', 'v/grid'} and all(
    np.isfinite(list(scores.values()))
  )
  from srgan_jax.nets import lpips

  fn = lpips.make_lpips('alexnet')
  with_lpips = validation.evaluate_sets(model.predict, model.variables, sets, 4, fn)
  # LPIPS on the same border-cropped images as PSNR: the mean of the per-image values.
  per = [
    fn(validation.super_resolve(model.predict, model.variables, s.lr)[4:-4, 4:-4], s.hr[4:-4, 4:-4])
    for s in sets['v']
  ]
  assert with_lpips['v/lpips'] == pytest.approx(np.mean(per), rel=1e-6)
  assert with_lpips['v/psnr_y'] == scores['v/psnr_y']


def _one_line_error(capsys):
  err = capsys.readouterr().err.strip()
  assert err.startswith('error:') and len(err.splitlines()) == 1, err
  return err


def test_a_scale_that_is_not_the_checkpoints_is_a_one_line_error(workdir, tmp_path, capsys):
  data = _hr_folder(tmp_path / 'd')
  assert (
    evaluate.main(
      ['--workdir', str(workdir), '--scale', '2', '--data', str(data), '--out', str(tmp_path / 'o')]
    )
    == 2
  )
  assert 'x4' in _one_line_error(capsys)


def test_a_checkpoint_of_another_architecture_is_a_one_line_error(workdir, tmp_path, capsys):
  import shutil
  from srgan_jax.weights import checkpoint_files

  step = pathlib.Path(str(checkpoint_files.resolve_generator_dir(workdir)))
  fake = tmp_path / 'fake' / '2'
  shutil.copytree(step, fake)
  meta_file = next(
    p for p in (fake / 'meta').rglob('*') if p.is_file() and 'scale' in p.read_text(errors='ignore')
  )
  meta = json.loads(meta_file.read_text())
  meta['model']['tiny'], meta['model']['num_blocks'] = False, 3
  meta_file.write_text(json.dumps(meta))
  assert (
    evaluate.main(
      [
        '--checkpoint',
        str(fake),
        '--data',
        str(_hr_folder(tmp_path / 'd')),
        '--out',
        str(tmp_path / 'o'),
      ]
    )
    == 2
  )
  assert 'architecture' in _one_line_error(capsys)


@pytest.mark.parametrize(
  'case', ['empty', 'missing', 'mismatched_sizes', 'all_unreadable', 'no_checkpoint']
)
def test_bad_data_is_a_one_line_error(tmp_path, capsys, case):
  d = tmp_path / 'd'
  d.mkdir()
  args = ['--method', 'bicubic', '--scale', '4']
  if case == 'mismatched_sizes':
    Image.fromarray(np.zeros((40, 40, 3), np.uint8)).save(d / 'a_HR.png')
    Image.fromarray(np.zeros((20, 20, 3), np.uint8)).save(d / 'a_LR.png')  # x2, not x4
  elif case == 'all_unreadable':
    (d / 'a.png').write_bytes(b'junk')
  elif case == 'missing':
    d = tmp_path / 'nope'
  elif case == 'no_checkpoint':
    args = ['--workdir', str(d)]
  assert evaluate.main(args + ['--data', str(d), '--out', str(tmp_path / 'o')]) == 2
  _one_line_error(capsys)


def test_an_unreadable_image_among_good_ones_is_skipped_with_a_warning(tmp_path, capsys):
  d = _hr_folder(tmp_path / 'd')
  (d / 'bad.png').write_bytes(b'junk')
  assert (
    evaluate.main(
      ['--method', 'bicubic', '--scale', '4', '--data', str(d), '--out', str(tmp_path / 'o')]
    )
    == 0
  )
  assert 'warning: skipping bad' in capsys.readouterr().out
  assert (
    json.loads((tmp_path / 'o' / 'results.json').read_text())['datasets']['d']['num_images'] == 2
  )


def test_set5_and_set14_name_the_bundled_sets_unless_a_folder_of_that_name_is_here(
  tmp_path, monkeypatch
):
  sets = validation.load_sets(['set5', 'SET14'], 4)
  assert {k: len(v) for k, v in sets.items()} == {'Set5': 5, 'Set14': 14}
  assert all(s.lr_from_file for s in sets['Set14']) and sum(s.gray for s in sets['Set14']) == 1
  monkeypatch.chdir(tmp_path)
  _hr_folder(tmp_path / 'set5')  # the user's own folder called set5 wins
  assert len(validation.load_sets(['set5'], 4)['set5']) == 2
