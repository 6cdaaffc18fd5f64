"""EDSR's x8 geometric self-ensemble: inference.self_ensemble and the --self-ensemble flags."""

import json

import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image

from srgan_jax import evaluate, upscale
from srgan_jax.evaluation import inference
from tests.tiny_checkpoint import tiny_workdir


@pytest.fixture(scope='module')
def workdir(tmp_path_factory):
  return tiny_workdir(tmp_path_factory)


def _lr(h=10, w=13, seed=0):
  return np.random.default_rng(seed).uniform(0, 1, (1, h, w, 3)).astype(np.float32)


def test_the_ensemble_of_an_equivariant_upscaler_is_that_upscaler():
  # Nearest-neighbour x4 commutes with every flip and rotation: each of the 8 passes, turned back,
  # must land on the same pixels (a wrong inverse rotation would not, even on a square image).
  def nearest(_, lr):
    return jnp.repeat(jnp.repeat(lr, 4, axis=1), 4, axis=2) * 2 - 1

  lr = _lr()
  np.testing.assert_allclose(
    np.asarray(inference.self_ensemble(nearest)(None, lr)), np.asarray(nearest(None, lr)), atol=1e-6
  )


def test_the_ensemble_of_a_generator_commutes_with_flips_and_rotations(workdir):
  plain = inference.load_model(workdir)
  ens = inference.load_model(workdir, ensemble=True)
  assert ens.self_ensemble and not plain.self_ensemble
  lr = _lr()
  sr = np.asarray(ens.predict(ens.variables, lr))
  assert sr.shape == (1, 40, 52, 3) and sr.dtype == np.float32
  # G alone is not equivariant (random 3x3 kernels): the ensemble is a different image ...
  assert np.abs(sr - np.asarray(plain.predict(plain.variables, lr))).max() > 1e-3
  # ... which the 8 transforms of LR only permute.
  for turn in (lambda x: x[:, :, ::-1], lambda x: x[:, ::-1], lambda x: np.rot90(x, 1, (1, 2))):
    sr_t = np.asarray(ens.predict(ens.variables, np.ascontiguousarray(turn(lr))))
    np.testing.assert_allclose(sr_t, turn(sr), atol=2e-5)


def test_upscale_with_self_ensemble_of_a_mirrored_photo_is_the_mirrored_upscale(workdir, tmp_path):
  rng = np.random.default_rng(1)
  img = rng.integers(0, 256, (29, 37, 3), dtype=np.uint8)
  Image.fromarray(img).save(tmp_path / 'a.png')
  Image.fromarray(img[:, ::-1]).save(tmp_path / 'b.png')
  for name, extra in (('ens', ['--self-ensemble']), ('plain', [])):
    args = [str(tmp_path / 'a.png'), str(tmp_path / 'b.png'), '--workdir', str(workdir)]
    assert upscale.main([*args, '--out', str(tmp_path / name), '--tile', '30', *extra]) == 0
  read = lambda name, stem: np.asarray(Image.open(tmp_path / name / f'{stem}_x4.png')).astype(int)
  assert read('ens', 'a').shape == (116, 148, 3)
  assert np.abs(read('ens', 'a') - read('ens', 'b')[:, ::-1]).max() <= 1  # tiled, rounded
  assert np.abs(read('ens', 'a') - read('plain', 'a')).max() > 1


def test_evaluate_records_the_self_ensemble_and_bicubic_refuses_it(workdir, tmp_path, capsys):
  hr = tmp_path / 'hr'
  hr.mkdir()
  Image.fromarray(np.random.default_rng(2).integers(0, 256, (48, 60, 3), dtype=np.uint8)).save(
    hr / 'x.png'
  )
  results = {}
  for name, extra in (('ens', ['--self-ensemble']), ('plain', [])):
    out = tmp_path / name
    args = ['--workdir', str(workdir), '--data', str(hr), '--out', str(out), '--lpips', 'none']
    assert evaluate.main([*args, *extra]) == 0
    results[name] = json.loads((out / 'results.json').read_text())
  assert results['ens']['self_ensemble'] and not results['plain']['self_ensemble']
  psnr = {n: r['datasets']['hr']['mean']['psnr_y'] for n, r in results.items()}
  assert psnr['ens'] != pytest.approx(psnr['plain'], abs=1e-3)
  args = ['--method=bicubic', '--scale=4', '--data', str(hr), '--out', str(tmp_path / 'b')]
  assert evaluate.main([*args, '--self-ensemble']) == 2
  err = capsys.readouterr().err.strip()
  assert err.startswith('error:') and len(err.splitlines()) == 1 and 'self-ensemble' in err
