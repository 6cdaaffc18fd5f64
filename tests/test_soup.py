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


def test_a_weighted_soup_is_the_convex_mix_its_weights_say(tmp_path):
  files = [generator_file(tmp_path / f'g{s}.msgpack', SRRESNET, s) for s in (1, 2, 5)]
  weights = (0.75, 0.1875, 0.0625)
  out = tmp_path / 'mix.msgpack'
  assert soup.main([*files, f'--out={out}', '--weights=' + ','.join(map(str, weights))]) == 0
  ingredients = [zoo.load_generator(f) for f in files]
  have = zoo.load_generator(str(out))
  for tree in ('params', 'batch_stats'):
    trees = [g[tree] for g in ingredients]
    want = jax.tree.map(
      lambda *xs: sum(w * np.asarray(x, np.float64) for w, x in zip(weights, xs)), *trees
    )
    got = jax.tree.map(np.asarray, have[tree])
    jax.tree.map(lambda w, h: np.testing.assert_allclose(h, w, rtol=1e-6, atol=1e-7), want, got)
    uniform = jax.tree.map(lambda *xs: np.mean(xs, axis=0), *trees)
    gaps = jax.tree.map(lambda h, u: float(np.abs(h - u).max()), got, uniform)
    assert max(jax.tree.leaves(gaps)) > 1e-3  # the weights, not the uniform mean
  _, meta = zoo.load_generator_with_meta(str(out))
  assert meta['soup']['weights'] == list(weights)
  # two generators weighted 1 - a, a: interpolate's --alpha=a
  a, b = files[:2]
  assert soup.main([a, b, f'--out={tmp_path / "w.msgpack"}', '--weights=0.3,0.7']) == 0
  assert interpolate.main([a, b, '--alpha=0.7', f'--out={tmp_path / "i.msgpack"}']) == 0
  w, i = (zoo.load_generator(str(tmp_path / f)) for f in ('w.msgpack', 'i.msgpack'))
  jax.tree.map(lambda x, y: np.testing.assert_allclose(x, y, atol=1e-7), w, i)


@pytest.mark.parametrize(
  'weights, says',
  [
    ('0.5,0.5', '2 weights for 3 generators'),
    ('1.2,-0.1,-0.1', 'non-negative weights that sum to 1'),
    ('0.5,0.3,0.3', 'non-negative weights that sum to 1'),
    ('0.5,x,0.5', 'numbers separated by commas'),
    ('nan,0.5,0.5', 'non-negative weights that sum to 1'),
  ],
)
def test_bad_weights_are_refused_before_anything_is_written(tmp_path, capsys, weights, says):
  files = [generator_file(tmp_path / f'g{s}.msgpack', SRRESNET, s) for s in (1, 2, 5)]
  out = tmp_path / 'mix.msgpack'
  assert says in _refused(capsys, tmp_path, [*files, f'--out={out}', f'--weights={weights}'])
  assert not out.exists()
