"""Network interpolation (ESRGAN Section 3.4): the blend, what loads it, and the refusals."""

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from srgan_jax.nets import generators
from srgan_jax.evaluation import inference
from srgan_jax import interpolate
from srgan_jax.weights import zoo

RRDB = {'arch': 'rrdbnet', 'scale': 4, 'num_blocks': 1, 'features': 8, 'growth': 4, 'tiny': False}
SRRESNET = {'arch': 'srresnet', 'scale': 4, 'num_blocks': 2, 'features': 8, 'tiny': False}


def generator_file(path, model, seed):
  g = generators.make_generator(ml_collections.ConfigDict(model))
  v = g.init(jax.random.key(seed), jnp.zeros((1, 8, 8, 3)))
  if 'batch_stats' in v:  # non-trivial BN statistics, so that their blend matters
    v = {**v, 'batch_stats': jax.tree.map(lambda a: a + 0.1 * seed + 0.5, v['batch_stats'])}
  variables = {'params': v['params'], 'batch_stats': v.get('batch_stats', {})}
  path.write_bytes(zoo.encode(variables, {'model': model, 'phase': 'x', 'step': seed}))
  return str(path)


@pytest.fixture(params=[RRDB, SRRESNET], ids=['rrdbnet', 'srresnet'])
def pair(request, tmp_path):
  model = request.param
  return generator_file(tmp_path / 'psnr.msgpack', model, 1), generator_file(
    tmp_path / 'gan.msgpack', model, 2
  )


@pytest.mark.parametrize('out', ['blend.msgpack', 'export_dir'])
def test_the_blend_is_one_minus_alpha_psnr_plus_alpha_gan_and_loads(pair, tmp_path, out):
  psnr, gan = pair
  dst = tmp_path / out
  assert interpolate.main([psnr, gan, '--alpha=0.8', f'--out={dst}']) == 0
  model = inference.load_model(str(dst))  # what upscale and evaluate do
  a, b = zoo.load_generator(psnr), zoo.load_generator(gan)
  for tree in ('params', 'batch_stats'):
    want = jax.tree.map(lambda x, y: 0.2 * x + 0.8 * y, a[tree], b[tree])
    got = jax.tree.map(np.asarray, model.variables[tree])
    jax.tree.map(lambda w, g: np.testing.assert_allclose(g, w, rtol=1e-6, atol=1e-7), want, got)
  assert model.phase == 'interpolated' and model.step == 2  # the more-trained side's (seed 2)


def test_alpha_zero_and_one_are_the_two_generators(pair, tmp_path):
  psnr, gan = pair
  lr = np.random.default_rng(0).random((1, 9, 7, 3)).astype(np.float32)
  for alpha, source in ((0, psnr), (1, gan)):
    dst = tmp_path / f'a{alpha}.msgpack'
    assert interpolate.main([psnr, gan, f'--alpha={alpha}', f'--out={dst}']) == 0
    blended, original = inference.load_model(str(dst)), inference.load_model(source)
    np.testing.assert_array_equal(
      np.asarray(blended.predict(blended.variables, lr)),
      np.asarray(original.predict(original.variables, lr)),
    )


def refused(capsys, tmp_path, argv, main=interpolate.main):
  """main(argv)'s one-line error (exit 2), after checking that it wrote nothing."""
  before = sorted(p.name for p in tmp_path.iterdir())
  assert main(argv) == 2
  err = capsys.readouterr().err.strip()
  assert err.startswith('error:') and '\n' not in err
  assert sorted(p.name for p in tmp_path.iterdir()) == before  # nothing written
  return err


def test_different_architectures_are_refused(tmp_path, capsys):
  rrdb = generator_file(tmp_path / 'rrdb.msgpack', RRDB, 1)
  srres = generator_file(tmp_path / 'srres.msgpack', SRRESNET, 2)
  wider = generator_file(tmp_path / 'wider.msgpack', {**RRDB, 'features': 16}, 3)
  for other in (srres, wider):
    for out in ('x.msgpack', 'dir'):
      err = refused(capsys, tmp_path, [rrdb, other, f'--out={tmp_path / out}'])
      assert 'cannot interpolate different architectures' in err and 'rrdbnet x4' in err


def test_bad_alpha_destination_and_inputs(pair, tmp_path, capsys):
  psnr, gan = pair
  assert '--alpha=1.5' in refused(
    capsys, tmp_path, [psnr, gan, '--alpha=1.5', f'--out={tmp_path / "x"}']
  )
  (tmp_path / 'full').mkdir()
  (tmp_path / 'full' / 'keep.txt').write_text('mine')
  err = refused(capsys, tmp_path, [psnr, gan, f'--out={tmp_path / "full"}'])
  assert 'not an empty folder' in err and (tmp_path / 'full' / 'keep.txt').read_text() == 'mine'
  err = refused(
    capsys, tmp_path, [psnr, str(tmp_path / 'nope.msgpack'), f'--out={tmp_path / "y.msgpack"}']
  )
  assert 'no such generator file' in err
