"""Single-file generators and the shipped models: export, load, integrity, and one-line errors."""

import dataclasses
import hashlib
import subprocess
import sys

import numpy as np
import pytest

from srgan_jax.evaluation import inference
from srgan_jax.weights import zoo
from srgan_jax import upscale
from srgan_jax.evaluation import validation
from tests.conftest import REPO
from tests.tiny_checkpoint import tiny_workdir


@pytest.fixture(scope='module')
def exported(tmp_path_factory):
  workdir = tiny_workdir(tmp_path_factory)
  out = tmp_path_factory.mktemp('zoo') / 'tiny.msgpack'
  summary = zoo.export(workdir, out, {'data': 'demo'})
  assert 'srresnet x4 step 2' in summary and hashlib.sha256(out.read_bytes()).hexdigest() in summary
  return workdir, out


def test_an_exported_file_is_the_same_generator_as_its_checkpoint(exported):
  workdir, path = exported
  a, b = inference.load_model(workdir), inference.load_model(str(path))
  assert (b.scale, b.step, b.phase, b.halo) == (a.scale, a.step, a.phase, a.halo)
  lr = np.random.default_rng(0).random((1, 13, 11, 3)).astype(np.float32)
  np.testing.assert_array_equal(
    np.asarray(a.predict(a.variables, lr)), np.asarray(b.predict(b.variables, lr))
  )


@pytest.mark.parametrize('damage', ['truncated', 'garbage', 'not-a-generator'])
def test_a_damaged_generator_file_is_a_one_line_error(exported, tmp_path, damage):
  _, path = exported
  bad = tmp_path / 'bad.msgpack'
  data = path.read_bytes()
  bad.write_bytes(
    {
      'truncated': data[: len(data) // 2],
      'garbage': b'\x00' * 100,
      'not-a-generator': zoo.serialization.msgpack_serialize({'meta': {'x': 1}}),
    }[damage]
  )
  with pytest.raises(zoo.ModelZooError) as e:
    inference.load_model(str(bad))
  assert '\n' not in str(e.value) and str(bad) in str(e.value)


def test_a_corrupt_or_missing_shipped_file_is_a_one_line_error(exported, tmp_path, monkeypatch):
  _, path = exported
  copy = tmp_path / 'weights'
  copy.mkdir()
  (copy / 'tiny.msgpack').write_bytes(path.read_bytes())
  digest = hashlib.sha256(path.read_bytes()).hexdigest()
  monkeypatch.setattr(zoo, 'WEIGHTS_DIR', copy)
  monkeypatch.setitem(zoo.MODELS, 'tiny_x4', ('tiny.msgpack', digest, 'a test model'))
  assert inference.load_model('tiny_x4').scale == 4  # intact: loads
  data = bytearray(path.read_bytes())
  data[len(data) // 2] ^= 1  # one flipped bit
  (copy / 'tiny.msgpack').write_bytes(bytes(data))
  with pytest.raises(zoo.ModelZooError, match='corrupt .SHA-256 mismatch.; reinstall'):
    inference.load_model('tiny_x4')
  (copy / 'tiny.msgpack').unlink()
  with pytest.raises(zoo.ModelZooError, match='is missing'):
    inference.load_model('tiny_x4')


@pytest.mark.subprocess
def test_unknown_model_names_are_one_line_errors(capsys, tmp_path):
  assert upscale.main(['x.png', '--model=srgan_x5', f'--out={tmp_path}']) == 2
  err = capsys.readouterr().err.strip()
  assert err.startswith('error:') and len(err.splitlines()) == 1 and 'srgan_x5' in err
  r = subprocess.run(
    [sys.executable, '-m', 'srgan_jax.evaluate', '--model=nope', '--data=x', f'--out={tmp_path}'],
    cwd=REPO,
    capture_output=True,
    text=True,
  )
  assert r.returncode == 2 and r.stderr.strip().count('\n') == 0 and 'nope' in r.stderr


def test_export_refuses_bad_destinations_and_writes_nothing(exported, tmp_path):
  workdir, _ = exported
  with pytest.raises(zoo.ModelZooError, match='.msgpack'):
    zoo.export(workdir, tmp_path / 'g.bin')
  with pytest.raises(zoo.ModelZooError, match='no such folder'):
    zoo.export(workdir, tmp_path / 'nope' / 'g.msgpack')
  assert list(tmp_path.iterdir()) == []


# Models trained for photos from the wild (Real-ESRGAN's degradations): judged on a JPEG input
# and by LPIPS, as their cards are; on clean bicubic LR they trade PSNR away by design.
REAL_WORLD = ('realsrgan_x4',)


def _jpeg(img: np.ndarray, quality: int) -> np.ndarray:
  import io  # pylint: disable=g-import-not-at-top

  from PIL import Image  # pylint: disable=g-import-not-at-top

  buf = io.BytesIO()
  Image.fromarray(img).save(buf, 'JPEG', quality=quality, subsampling=2)
  return np.asarray(Image.open(io.BytesIO(buf.getvalue())).convert('RGB'))


@pytest.mark.parametrize('name', sorted(zoo.MODELS))
def test_each_shipped_model_loads_and_beats_bicubic_on_a_set5_image(name, datasets):
  model = inference.load_model(name)
  assert model.scale == 4 and model.step > 0
  sample = validation.load_set(datasets / 'Set5', 4)[2]  # butterfly: edges everywhere
  lpips_fn, metric = None, 'psnr_y'
  if name in REAL_WORLD:  # the LR as a web page holds it: JPEG at quality 50
    from srgan_jax.nets import lpips  # pylint: disable=g-import-not-at-top

    sample = dataclasses.replace(sample, lr=_jpeg(sample.lr, 50))
    lpips_fn, metric = lpips.make_lpips('alexnet'), 'lpips'
  sr = validation.to_uint8(
    inference.upscale_float(model, sample.lr.astype(np.float32) / 255.0, None)
  )
  ours = validation.score(sr, sample, 4, lpips_fn)[metric]
  bicubic = validation.score(validation.bicubic(sample.lr, 4), sample, 4, lpips_fn)[metric]
  assert (ours < bicubic) if metric == 'lpips' else (ours > bicubic), (name, ours, bicubic)


def test_the_shipped_model_cards_name_their_file_and_checksum():
  for name, (file, digest, _) in zoo.MODELS.items():
    card = (zoo.WEIGHTS_DIR / file).with_suffix('.md').read_text()
    assert digest in card and name in card
