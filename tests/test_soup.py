"""Model soups: the mean of N generators, what loads it, and the refusals."""

import jax
import numpy as np
import pytest

from srgan_jax import interpolate, soup
from srgan_jax.evaluation import inference
from srgan_jax.weights import zoo
from tests.test_interpolate import RRDB, SRRESNET, generator_file, refused


@pytest.mark.parametrize('model', [SRRESNET, RRDB], ids=['srresnet', 'rrdbnet'])
def test_the_soup_is_the_mean_of_its_ingredients_and_loads(model, tmp_path):
  files = [generator_file(tmp_path / f'g{s}.msgpack', model, s) for s in (1, 2, 5)]
  out = tmp_path / 'soup.msgpack'
  assert soup.main([*files, f'--out={out}']) == 0
  got = inference.load_model(str(out))  # what upscale and evaluate do
  ingredients = [zoo.load_generator(f) for f in files]
  for tree in ('params', 'batch_stats'):
    want = jax.tree.map(lambda *xs: np.mean(xs, axis=0), *[g[tree] for g in ingredients])
    have = jax.tree.map(np.asarray, got.variables[tree])
    jax.tree.map(lambda w, h: np.testing.assert_allclose(h, w, rtol=1e-6, atol=1e-7), want, have)
  _, meta = zoo.load_generator_with_meta(str(out))
  assert meta['soup'] == {'ingredients': files, 'steps': [1, 2, 5]} and meta['step'] == 5
  assert meta['phase'] == 'x'  # the ingredients' common phase (generator_file writes 'x')


def test_a_soup_of_two_is_interpolation_at_one_half(tmp_path):
  a, b = (generator_file(tmp_path / f'g{s}.msgpack', SRRESNET, s) for s in (1, 2))
  assert soup.main([a, b, f'--out={tmp_path / "soup"}']) == 0  # an export folder
  assert interpolate.main([a, b, '--alpha=0.5', f'--out={tmp_path / "half.msgpack"}']) == 0
  lr = np.random.default_rng(0).random((1, 9, 7, 3)).astype(np.float32)
  s, h = (
    inference.load_model(str(tmp_path / 'soup')),
    inference.load_model(str(tmp_path / 'half.msgpack')),
  )
  np.testing.assert_allclose(s.predict(s.variables, lr), h.predict(h.variables, lr), atol=1e-6)


def _refused(capsys, tmp_path, argv):
  return refused(capsys, tmp_path, argv, main=soup.main)


def test_one_ingredient_other_architectures_and_missing_files_are_refused(tmp_path, capsys):
  a, b = (generator_file(tmp_path / f'g{s}.msgpack', SRRESNET, s) for s in (1, 2))
  wider = generator_file(tmp_path / 'wider.msgpack', {**SRRESNET, 'features': 16}, 3)
  out = f'--out={tmp_path / "soup.msgpack"}'
  assert 'at least two generators' in _refused(capsys, tmp_path, [a, out])
  err = _refused(capsys, tmp_path, [a, b, wider, out])
  assert 'cannot average different architectures' in err and str(wider) in err
  assert 'no such generator file' in _refused(
    capsys, tmp_path, [a, str(tmp_path / 'no.msgpack'), out]
  )
