"""Importing PyTorch generators: each published layout computes what its reference computes.

The references are srgan_jax/benchmark/torch_archs.py (written to BasicSR's and
SRGAN-PyTorch's arch code; BasicSR itself, when installed, is checked too).
Outputs are compared in [0, 1] on random weights and images: max |diff| <= 1e-5.
"""

import importlib.util
import re

import numpy as np
import pytest
from PIL import Image

torch = pytest.importorskip('torch', reason='reading .pth files needs torch (the test extra)')

from srgan_jax import convert_generator  # noqa: E402
from srgan_jax.evaluation import inference  # noqa: E402
from srgan_jax import upscale  # noqa: E402
from srgan_jax.benchmark import torch_archs as ta  # noqa: E402
from srgan_jax.weights import zoo  # noqa: E402

TOL = 1e-5


def reference_output(net, lr):
  with torch.no_grad():
    return net(torch.from_numpy(lr).permute(0, 3, 1, 2)).permute(0, 2, 3, 1).numpy()


def converted_output(path, lr):
  model = inference.load_model(str(path))  # what upscale / evaluate load
  return (np.asarray(model.predict(model.variables, lr)) + 1.0) / 2.0, model


def parity(tmp_path, net, state, name='g', lr_shape=(2, 11, 13, 3)):
  """(max |ours - reference| in [0, 1], reference max, the loaded model, summary line)."""
  src, dst = tmp_path / f'{name}.pth', tmp_path / f'{name}.msgpack'
  torch.save(state, src)
  summary = convert_generator.convert(src, dst)
  lr = np.random.default_rng(1).random(lr_shape).astype(np.float32)
  ours, model = converted_output(dst, lr)
  ref = reference_output(net, lr)
  assert ours.shape == ref.shape
  print(f'{summary}: max |diff| {np.abs(ours - ref).max():.2e}')  # the parity figure (-s)
  return float(np.abs(ours - ref).max()), float(np.abs(ref).max()), model, summary


@pytest.mark.slow
def test_basicsr_rrdbnet_x4_full_size_prefers_params_ema(tmp_path):
  """ESRGAN's / Real-ESRGAN's x4 generator: 23 RRDBs, 64 features, growth 32."""
  ema, live = ta.randomize_(ta.RRDBNet(), seed=0), ta.randomize_(ta.RRDBNet(), seed=1)
  diff, peak, model, summary = parity(
    tmp_path, ema, {'params': live.state_dict(), 'params_ema': ema.state_dict()}
  )
  assert diff <= TOL and 0.1 < peak < 10  # outputs of a realistic size, not all clipped
  assert "'params_ema'" in summary and '16,697,987 parameters' in summary
  assert (model.scale, model.halo, model.phase) == (4, 349, 'imported')


@pytest.mark.parametrize('nb,nf,gc', [(2, 16, 8), (3, 32, 16)])
def test_basicsr_rrdbnet_other_sizes_from_params(tmp_path, nb, nf, gc):
  net = ta.randomize_(ta.RRDBNet(nf, nb, gc))
  diff, _, model, summary = parity(tmp_path, net, {'params': net.state_dict()})
  assert diff <= TOL and f'{nb} blocks, {nf} features, growth {gc}' in summary


def esrgan_2019_keys(state):
  """BasicSR names -> the ESRGAN repository's RRDBNet_arch.py names (same modules)."""
  out = {}
  for k, v in state.items():
    k = re.sub(r'^body\.(\d+)\.rdb(\d)\.', r'RRDB_trunk.\1.RDB\2.', k)
    k = {'conv_body': 'trunk_conv', 'conv_up1': 'upconv1', 'conv_up2': 'upconv2'}.get(
      k.split('.')[0], k.split('.')[0]
    ) + k[len(k.split('.')[0]) :]
    out[k.replace('conv_hr.', 'HRconv.')] = v
  return out


def esrgan_2018_keys(state, nb):
  """BasicSR names -> RRDB_ESRGAN_x4.pth's sequential names (architecture.py, 2018)."""
  top = {'conv_first': 'model.0', 'conv_body': f'model.1.sub.{nb}', 'conv_up1': 'model.3'}
  top.update({'conv_up2': 'model.6', 'conv_hr': 'model.8', 'conv_last': 'model.10'})
  out = {}
  for k, v in state.items():
    m = re.match(r'body\.(\d+)\.rdb(\d)\.conv(\d)\.(\w+)$', k)
    if m:
      out[f'model.1.sub.{m[1]}.RDB{m[2]}.conv{m[3]}.0.{m[4]}'] = v
    else:
      first, rest = k.split('.', 1)
      out[f'{top[first]}.{rest}'] = v
  return out


@pytest.mark.parametrize('layout', ['ESRGAN RRDBNet', 'ESRGAN RRDBNet 2018'])
def test_the_esrgan_repositorys_layouts(tmp_path, layout):
  net = ta.randomize_(ta.RRDBNet(16, 3, 8))
  state = net.state_dict()
  state = esrgan_2019_keys(state) if layout == 'ESRGAN RRDBNet' else esrgan_2018_keys(state, 3)
  state = {f'module.{k}': v for k, v in state.items()}  # as saved from DataParallel
  diff, _, _, summary = parity(tmp_path, net, state)
  assert diff <= TOL and summary.startswith(f'converted {layout} (')


@pytest.mark.parametrize('scale', [2, 3, 4])
def test_basicsr_msrresnet(tmp_path, scale):
  net = ta.randomize_(ta.MSRResNet(num_feat=32, num_block=4, upscale=scale))
  diff, peak, model, summary = parity(tmp_path, net, {'params': net.state_dict()})
  assert diff <= TOL and peak > 0.1 and model.scale == scale
  assert 'BasicSR MSRResNet' in summary


def test_basicsr_msrresnet_x4_full_size_bare_state_dict(tmp_path):
  net = ta.randomize_(ta.MSRResNet())
  diff, _, _, summary = parity(tmp_path, net, net.state_dict())
  assert diff <= TOL and '1,517,571 parameters' in summary and '(the file;' in summary


@pytest.mark.parametrize('scale', [2, 4, 8])
@pytest.mark.parametrize('names', ['conv1', 'conv_block1'])
def test_srgan_pytorch_srresnet(tmp_path, scale, names):
  net = ta.randomize_(ta.SRGANPyTorchSRResNet(channels=32, num_rcb=3, upscale_factor=scale))
  with torch.no_grad():
    net.conv3.bias += 0.5  # most outputs inside the clamp's [0, 1], so the comparison sees them
  state = net.state_dict()
  if names == 'conv_block1':  # the repository's 2021-22 names of the same modules
    state = {re.sub(r'^conv(\d)\.', r'conv_block\1.', k): v for k, v in state.items()}
  diff, _, model, summary = parity(tmp_path, net, {'state_dict': state, 'epoch': 3})
  assert diff <= TOL and model.scale == scale and 'output clamp' in summary
  lr = np.random.default_rng(1).random((2, 11, 13, 3)).astype(np.float32)
  ref = reference_output(net, lr)
  assert 0.05 < np.mean((ref > 0) & (ref < 1))  # not all clipped


@pytest.mark.skipif(
  importlib.util.find_spec('basicsr') is None,
  reason='BasicSR is not installed (pip install basicsr pulls a CUDA torch and torchvision); '
  'the same check runs against torch_archs.RRDBNet above',
)
def test_against_basicsr_itself(tmp_path):  # pragma: no cover - optional dependency
  from basicsr.archs.rrdbnet_arch import RRDBNet  # pylint: disable=g-import-not-at-top

  net = ta.randomize_(RRDBNet(3, 3, scale=4, num_feat=16, num_block=2, num_grow_ch=8))
  diff, _, _, _ = parity(tmp_path, net, {'params_ema': net.state_dict()})
  assert diff <= TOL


# ----------------------------------------------------------------------------
# What a user can get wrong: one line, nothing written.


def _fails(tmp_path, capsys, src, *extra):
  dst = tmp_path / 'out' / 'g.msgpack'
  dst.parent.mkdir(exist_ok=True)
  assert convert_generator.main([str(src), str(dst), *extra]) == 2
  err = capsys.readouterr().err.strip()
  assert err.startswith('error:') and '\n' not in err
  assert list(dst.parent.iterdir()) == []  # nothing written
  return err


def test_an_unknown_layout_names_what_it_found(tmp_path, capsys):
  src = tmp_path / 'srvgg.pth'  # Real-ESRGAN's SRVGGNetCompact: another architecture
  torch.save({'params': {f'body.{i}.weight': torch.zeros(4, 4, 3, 3) for i in range(3)}}, src)
  err = _fails(tmp_path, capsys, src)
  assert 'unknown generator layout: 3 tensors under body' in err and 'RRDBNet' in err


def test_a_scale_that_does_not_match_the_weights(tmp_path, capsys):
  net = ta.randomize_(ta.MSRResNet(num_feat=8, num_block=1, upscale=3))
  src = tmp_path / 'msr.pth'
  torch.save(net.state_dict(), src)
  err = _fails(tmp_path, capsys, src, '--scale=4')
  assert '--scale=4, but its weights are a x3 BasicSR MSRResNet' in err


def test_rrdbnet_x2_with_pixel_unshuffled_input_is_refused(tmp_path, capsys):
  state = ta.RRDBNet(8, 1, 4).state_dict()
  state['conv_first.weight'] = torch.zeros(8, 12, 3, 3)  # RealESRGAN_x2plus: 3 x 2 x 2 inputs
  src = tmp_path / 'x2.pth'
  torch.save({'params_ema': state}, src)
  assert 'an RRDBNet for scale 2' in _fails(tmp_path, capsys, src)


def test_missing_extra_and_damaged_files(tmp_path, capsys):
  state = ta.RRDBNet(8, 2, 4).state_dict()
  incomplete = {k: v for k, v in state.items() if 'conv_hr' not in k}
  extra = {**state, 'body.0.rdb1.conv6.weight': torch.zeros(1)}
  for name, obj in (('incomplete', incomplete), ('extra', extra)):
    torch.save(obj, tmp_path / f'{name}.pth')
  assert 'without the tensor conv_hr.weight' in _fails(
    tmp_path, capsys, tmp_path / 'incomplete.pth'
  )
  assert 'conv6' in _fails(tmp_path, capsys, tmp_path / 'extra.pth')
  data = (tmp_path / 'extra.pth').read_bytes()
  (tmp_path / 'cut.pth').write_bytes(data[: len(data) // 2])
  assert 'torch.load failed' in _fails(tmp_path, capsys, tmp_path / 'cut.pth')
  assert 'no such file' in _fails(tmp_path, capsys, tmp_path / 'nope.pth')
  net = ta.RRDBNet(8, 1, 4)
  torch.save(net.state_dict(), tmp_path / 'ok.pth')
  assert convert_generator.main([str(tmp_path / 'ok.pth'), str(tmp_path / 'g.bin')]) == 2
  assert not (tmp_path / 'g.bin').exists()


def test_upscale_runs_an_imported_rrdbnet_tiled_and_seam_free(tmp_path):
  net = ta.randomize_(ta.RRDBNet(8, 1, 4))
  torch.save({'params_ema': net.state_dict()}, tmp_path / 'g.pth')
  convert_generator.convert(tmp_path / 'g.pth', tmp_path / 'g.msgpack')
  model = inference.load_model(str(tmp_path / 'g.msgpack'))
  lr = np.random.default_rng(0).random((2 * model.halo + 13, 2 * model.halo + 4, 3))
  whole = inference.upscale_float(model, lr, None)
  tiled = inference.upscale_float(model, lr, 2 * model.halo + 5)
  assert np.abs(tiled - whole).max() < 1e-5
  np.testing.assert_allclose(
    (whole + 1) / 2, reference_output(net, lr[None].astype(np.float32))[0], atol=TOL
  )
  from PIL import Image  # pylint: disable=g-import-not-at-top

  Image.fromarray((lr * 255).astype(np.uint8)).save(tmp_path / 'photo.png')
  args = ['photo.png', f'--checkpoint={tmp_path / "g.msgpack"}', f'--out={tmp_path / "up"}']
  assert upscale.main([str(tmp_path / args[0]), *args[1:], f'--tile={2 * model.halo + 5}']) == 0
  out = Image.open(tmp_path / 'up' / 'photo_x4.png')
  assert out.size == (lr.shape[1] * 4, lr.shape[0] * 4)


def test_the_default_tile_leaves_a_core_for_rrdbnets_wide_receptive_field():
  """upscale / evaluate without --tile: 256 for the paper's G, wider where the halo needs it."""
  from types import SimpleNamespace  # pylint: disable=g-import-not-at-top

  assert inference.default_tile(SimpleNamespace(halo=40)) == inference.DEFAULT_TILE  # unchanged
  for halo in (349, 200, 100):  # RRDBNet 23 blocks: 349
    tile = inference.default_tile(SimpleNamespace(halo=halo))
    assert tile - 2 * halo >= inference.DEFAULT_TILE // 2  # a core of at least 128 LR pixels


def test_a_file_that_is_not_a_pytorch_checkpoint_is_named_in_one_line(tmp_path, capsys):
  png = tmp_path / 'photo.pth'
  Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(png, format='PNG')
  (tmp_path / 'notes.pth').write_text('not weights\n')
  shipped = str(zoo.model_path('srresnet_x4'))
  for path, what in (
    (png, 'is a PNG image'),
    (tmp_path / 'notes.pth', 'is a text file'),
    (shipped, 'is a msgpack file (a srgan_jax generator file? use it as it is'),
  ):
    message = _fails(tmp_path, capsys, path)
    assert what in message and 'not a PyTorch checkpoint' in message, message
    assert 'torch.save' in message and '\n' not in message.strip()
