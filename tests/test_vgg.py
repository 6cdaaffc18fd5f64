"""VGG-19 features, weight conversion and the VGG content loss.

Parity tests build VGG-19 with random weights in torch and in Keras, write the
weights in the real files' layouts, convert them, and require every tap to
match the reference framework on the same [-1, 1] image.
"""

import os

os.environ['KERAS_BACKEND'] = 'jax'  # Keras 3 without TensorFlow

import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import serialization

from srgan_jax import convert_vgg
from srgan_jax.nets import vgg
from srgan_jax.nets.vgg import VGGWeightsError

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
IMAGES = np.random.default_rng(0).uniform(-1, 1, (2, 40, 40, 3)).astype(np.float32)
COMMAND = 'python -m srgan_jax.convert_vgg'
# Keras 3 + NumPy 2 warn about __array__(copy=...) on every get_weights().
pytestmark = pytest.mark.filterwarnings('ignore:__array__ implementation:DeprecationWarning')


def rel_err(a, b):
  a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
  return float(np.max(np.abs(a - b)) / np.max(np.abs(b)))


# --- torchvision layout -------------------------------------------------------


def torch_features(n_convs=16):
  """torchvision's vgg19().features (or vgg16's with n_convs=13), random init."""
  torch = pytest.importorskip('torch', reason='torch parity needs torch==2.13.0')
  blocks = (
    vgg.BLOCK_CHANNELS
    if n_convs == 16
    else ((64,) * 2, (128,) * 2, (256,) * 3, (512,) * 3, (512,) * 3)
  )
  layers, cin = [], 3
  for b, block in enumerate(blocks):
    if b:
      layers.append(torch.nn.MaxPool2d(2, 2))
    for c in block:
      layers += [torch.nn.Conv2d(cin, c, 3, padding=1), torch.nn.ReLU(inplace=False)]
      cin = c
  torch.manual_seed(0)
  return torch.nn.Sequential(*layers)


def torch_state_dict(n_convs=16):
  return {f'features.{k}': v for k, v in torch_features(n_convs).state_dict().items()}


@pytest.fixture(scope='module')
def torch_model_and_file(tmp_path_factory):
  torch = pytest.importorskip('torch', reason='torch parity needs torch==2.13.0')
  features = torch_features()
  src = tmp_path_factory.mktemp('torch') / 'vgg19-dcbb9e9d.pth'
  torch.save({f'features.{k}': v for k, v in features.state_dict().items()}, src)
  dst = src.with_suffix('.msgpack')
  convert_vgg.convert(str(src), str(dst))
  return features, vgg.load_vgg(dst)


@pytest.mark.slow
def test_torchvision_weights_match_torch_on_every_tap(torch_model_and_file):
  torch = pytest.importorskip('torch')
  features, weights = torch_model_and_file
  assert (weights.source, weights.preprocess) == ('torchvision', 'torch')
  # torch side: its own normalisation of the same [-1, 1] image, NCHW.
  x01 = (IMAGES + 1) / 2
  x = (x01 - np.array([0.485, 0.456, 0.406])) / np.array([0.229, 0.224, 0.225])
  h = torch.from_numpy(x.transpose(0, 3, 1, 2).astype(np.float32))
  ref, names = {}, iter(vgg.TAPS)
  with torch.no_grad():
    for layer in features:
      h = layer(h)
      if not isinstance(layer, torch.nn.MaxPool2d):
        ref[next(names)] = h.numpy().transpose(0, 2, 3, 1)
  ours = vgg.VGG19(taps=vgg.TAPS).apply({'params': weights.params}, vgg.preprocess(IMAGES, 'torch'))
  errs = {t: rel_err(ours[t], ref[t]) for t in vgg.TAPS}
  print('\ntorch parity, max relative error per tap:')
  print('\n'.join(f'  {t:8s} {e:.2e}' for t, e in errs.items()))
  assert max(errs.values()) <= 1e-4, errs


# --- Keras Applications layout ------------------------------------------------


def write_keras_h5(path, model, full_model=False):
  """Keras Applications' legacy weights HDF5: root attr layer_names, per-layer attr weight_names.

  The notop weights file uses Keras 1 dataset names (`block1_conv1_W_1:0`); a
  full-model file saved by Keras 2 nests them under `model_weights` and names
  them `block1_conv1/kernel:0`. Both layouts are written here.
  """
  h5py = pytest.importorskip('h5py', reason='Keras parity needs h5py')
  with h5py.File(path, 'w') as f:
    root = f.create_group('model_weights') if full_model else f
    root.attrs['layer_names'] = [l.name.encode() for l in model.layers]
    root.attrs['backend'] = b'tensorflow'
    root.attrs['keras_version'] = b'2.0.8'
    for layer in model.layers:
      g = root.create_group(layer.name)
      values = [np.asarray(w) for w in layer.get_weights()]
      suffixes = ('/kernel:0', '/bias:0') if full_model else ('_W_1:0', '_b_1:0')
      names = [layer.name + x for x in suffixes][: len(values)]
      g.attrs['weight_names'] = [n.encode() for n in names]
      for n, v in zip(names, values):
        g.create_dataset(n, data=v)


@pytest.fixture(scope='module')
def keras_vgg19():
  keras = pytest.importorskip('keras', reason='Keras parity needs keras>=3')
  keras.utils.set_random_seed(1)
  return keras.applications.VGG19(weights=None, include_top=False, input_shape=(40, 40, 3))


@pytest.mark.slow
@pytest.mark.parametrize(
  'full_model', [False, True], ids=['notop-keras1-names', 'full-model-keras2-names']
)
def test_keras_weights_match_keras_on_every_tap(keras_vgg19, tmp_path, full_model):
  keras = pytest.importorskip('keras')
  src = tmp_path / 'vgg19_weights_tf_dim_ordering_tf_kernels_notop.h5'
  write_keras_h5(src, keras_vgg19, full_model)
  # A fresh Keras model reads the file through Keras 3's own legacy-h5 loader.
  model = keras.applications.VGG19(weights=None, include_top=False, input_shape=(40, 40, 3))
  model.load_weights(str(src))
  for a, b in zip(model.get_weights(), keras_vgg19.get_weights()):
    np.testing.assert_array_equal(a, b)
  dst = tmp_path / 'vgg.msgpack'
  convert_vgg.convert(str(src), str(dst))
  weights = vgg.load_vgg(dst)
  assert (weights.source, weights.preprocess) == ('keras', 'caffe')

  x = keras.applications.vgg19.preprocess_input(((IMAGES + 1) / 2 * 255).copy())
  convs = [model.get_layer(f'block{t[4]}_conv{t[6]}') for t in vgg.CONV_NAMES]
  # relu taps are the Conv2D outputs (activation built in); conv taps are the
  # same convolution without the ReLU, computed from each layer's input.
  sub = keras.Model(model.input, [l.output for l in convs] + [l.input for l in convs])
  outs = sub.predict(x, verbose=0)
  ref = {}
  for k, (name, layer) in enumerate(zip(vgg.CONV_NAMES, convs)):
    ref['relu' + name[4:]] = np.asarray(outs[k])
    pre = keras.ops.conv(outs[16 + k], layer.kernel, padding='same') + layer.bias
    ref[name] = np.asarray(pre)
  ours = vgg.VGG19(taps=vgg.TAPS).apply({'params': weights.params}, vgg.preprocess(IMAGES, 'caffe'))
  errs = {t: rel_err(ours[t], ref[t]) for t in vgg.TAPS}
  print(
    f'\nKeras parity ({"full model" if full_model else "notop"} file), max relative error per tap:'
  )
  print('\n'.join(f'  {t:8s} {e:.2e}' for t, e in errs.items()))
  assert max(errs.values()) <= 1e-4, errs


@pytest.mark.slow
def test_caffe_preprocess_matches_keras(keras_vgg19):
  keras = pytest.importorskip('keras')
  ref = keras.applications.vgg19.preprocess_input(((IMAGES + 1) / 2 * 255).copy())
  np.testing.assert_allclose(vgg.preprocess(IMAGES, 'caffe'), ref, atol=1e-4)


# --- taps --------------------------------------------------------------------


def test_only_layers_up_to_the_deepest_tap_get_params():
  params = vgg.VGG19(taps=('relu2_2',)).init(jax.random.key(0), IMAGES[:1])['params']
  assert sorted(params) == ['conv1_1', 'conv1_2', 'conv2_1', 'conv2_2']
  out = vgg.VGG19(taps=('conv1_2', 'relu2_2')).apply({'params': params}, IMAGES)
  assert out['conv1_2'].shape == (2, 40, 40, 64) and out['relu2_2'].shape == (2, 20, 20, 128)


def test_unknown_tap_lists_valid_ones():
  with pytest.raises(ValueError, match='relu5_4'):
    vgg.VGG19(taps=('relu6_1',)).init(jax.random.key(0), IMAGES[:1])


def test_paper_names_map_to_taps():
  assert vgg.paper_taps('vgg22') == ('relu2_2',) and vgg.paper_taps('VGG54') == ('relu5_4',)


# --- content loss ------------------------------------------------------------


@pytest.fixture(scope='module')
def params():
  return vgg.VGG19(taps=('relu5_4',)).init(jax.random.key(0), IMAGES[:1])['params']


def loss_fn(taps=('relu2_2', 'relu5_4')):
  return jax.jit(lambda p, sr, hr: vgg.content_loss(p, sr, hr, preprocess='torch', taps=taps))


def test_loss_is_zero_for_identical_images_and_positive_otherwise(params):
  loss = loss_fn()
  assert float(loss(params, IMAGES, IMAGES)) == 0.0
  assert float(loss(params, IMAGES, np.clip(IMAGES + 0.1, -1, 1))) > 0.0


def test_bfloat16_compute_stays_close_to_float32(params):
  sr, hr = IMAGES, np.clip(IMAGES + 0.2, -1, 1)
  f32 = vgg.content_loss(params, sr, hr, preprocess='torch', taps=('relu2_2',))
  bf16 = vgg.content_loss(params, sr, hr, preprocess='torch', taps=('relu2_2',), dtype=jnp.bfloat16)
  assert bf16.dtype == jnp.float32
  np.testing.assert_allclose(bf16, f32, rtol=5e-2)


def test_feature_scale_is_loss_times_its_square(params):
  a = vgg.content_loss(
    params, IMAGES, -IMAGES, preprocess='caffe', taps=('relu1_2',), feature_scale=1.0
  )
  b = vgg.content_loss(params, IMAGES, -IMAGES, preprocess='caffe', taps=('relu1_2',))
  np.testing.assert_allclose(b, a / 12.75**2, rtol=1e-5)


@pytest.mark.slow
def test_step_along_minus_gradient_lowers_the_loss(params):
  loss = loss_fn()
  hr = jnp.asarray(IMAGES)
  sr = jnp.clip(hr + 0.3 * jax.random.normal(jax.random.key(1), hr.shape), -1, 1)
  g = jax.grad(loss, argnums=1)(params, sr, hr)
  step = 1e-2 / float(jnp.max(jnp.abs(g)))
  assert float(loss(params, sr - step * g, hr)) < float(loss(params, sr, hr))


@pytest.mark.slow
def test_no_gradient_reaches_vgg_params(params):
  hr = jnp.asarray(IMAGES)
  state = {'gen': jnp.float32(0.5), 'vgg': params}  # a one-scalar "generator"

  def objective(s):
    return vgg.content_loss(
      s['vgg'], jnp.tanh(s['gen'] + hr), hr, preprocess='torch', taps=('relu2_2',)
    )

  grads = jax.grad(objective)(state)
  assert all(float(jnp.max(jnp.abs(g))) == 0.0 for g in jax.tree.leaves(grads['vgg']))
  opt = optax.adam(1e-2)
  updates, _ = opt.update(grads, opt.init(state), state)
  new = optax.apply_updates(state, updates)
  assert float(new['gen']) != 0.5
  jax.tree.map(np.testing.assert_array_equal, new['vgg'], params)


# --- user errors: one line, names the file and the conversion command ----------


def assert_one_line_error(exc, path):
  msg = str(exc.value)
  assert '\n' not in msg and COMMAND in msg, msg
  if path is not None:
    assert str(path) in msg, msg


def test_no_path_configured():
  with pytest.raises(VGGWeightsError) as e:
    vgg.load_vgg(None)
  assert_one_line_error(e, None)
  assert 'no VGG weights path configured' in str(e.value)


def test_missing_file(tmp_path):
  for fn in (vgg.load_vgg, lambda p: convert_vgg.convert(p, str(tmp_path / 'out'))):
    with pytest.raises(VGGWeightsError) as e:
      fn(str(tmp_path / 'nope.msgpack'))
    assert_one_line_error(e, tmp_path / 'nope.msgpack')


def test_random_and_truncated_files(tmp_path, torch_model_and_file):
  junk = tmp_path / 'junk.bin'
  junk.write_bytes(np.random.default_rng(0).bytes(4096))
  good = tmp_path / 'good.msgpack'
  good.write_bytes(vgg.encode(torch_model_and_file[1].params, 'torchvision', 'torch'))
  cut = tmp_path / 'cut.msgpack'
  cut.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
  for bad in (junk, cut):
    with pytest.raises(VGGWeightsError) as e:
      vgg.load_vgg(bad)
    assert_one_line_error(e, bad)
  with pytest.raises(VGGWeightsError) as e:
    convert_vgg.convert(str(junk), str(tmp_path / 'out'))
  assert_one_line_error(e, junk)


def test_unconverted_file_passed_to_load_vgg(tmp_path):
  torch = pytest.importorskip('torch')
  src = tmp_path / 'vgg19.pth'
  torch.save(torch_state_dict(), src)
  with pytest.raises(VGGWeightsError, match='unconverted') as e:
    vgg.load_vgg(src)
  assert_one_line_error(e, src)


def bad_state_dicts():
  twelve = {k: v for k, v in torch_state_dict(13).items() if not k.startswith('features.28.')}
  truncated = {k: v for k, v in torch_state_dict().items() if not k.startswith('features.34.')}
  wrong = torch_state_dict()
  wrong['features.0.weight'] = wrong['features.0.weight'][:, :, :2, :2]
  no_bias = torch_state_dict()
  del no_bias['features.16.bias']
  return {
    '12-convs': twelve,
    'truncated': truncated,
    'wrong-shape': wrong,
    'no-bias': no_bias,
    'not-a-dict': [1, 2],
  }


@pytest.mark.parametrize('case', ['12-convs', 'truncated', 'wrong-shape', 'no-bias', 'not-a-dict'])
def test_bad_torch_files_are_refused(tmp_path, case):
  torch = pytest.importorskip('torch')
  src, dst = tmp_path / f'{case}.pth', tmp_path / 'out.msgpack'
  torch.save(bad_state_dicts()[case], src)
  with pytest.raises(VGGWeightsError) as e:
    convert_vgg.convert(str(src), str(dst))
  assert_one_line_error(e, src)
  assert not dst.exists() and os.listdir(tmp_path) == [src.name]  # no half-written output
  if case == '12-convs':
    assert 'VGG-19 has 16, VGG-16 13' in str(e.value)


def test_full_torch_checkpoint_dict_is_accepted(tmp_path):
  torch = pytest.importorskip('torch')
  src = tmp_path / 'ckpt.pth'
  torch.save({'state_dict': {'module.' + k: v for k, v in torch_state_dict().items()}}, src)
  assert '16 conv layers' in convert_vgg.convert(str(src), str(tmp_path / 'out'))


@pytest.mark.slow  # builds Keras models (importing Keras takes seconds)
def test_keras_vgg16_converts_as_vgg16_and_bad_keras_files_are_refused(tmp_path, keras_vgg19):
  keras = pytest.importorskip('keras')
  vgg16 = keras.applications.VGG16(weights=None, include_top=False, input_shape=(40, 40, 3))
  src = tmp_path / 'vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5'
  write_keras_h5(src, vgg16)
  assert 'VGG-16 (13 conv layers)' in convert_vgg.convert(str(src), str(tmp_path / 'vgg16.msgpack'))
  weights = vgg.load_vgg(tmp_path / 'vgg16.msgpack', arch='vgg16')
  assert (weights.arch, weights.preprocess) == ('vgg16', 'caffe')
  kernel = vgg16.get_layer('block5_conv3').get_weights()[0]
  np.testing.assert_array_equal(weights.params['conv5_3']['kernel'], kernel)
  h5 = tmp_path / 'cut.h5'
  write_keras_h5(h5, keras_vgg19)
  h5.write_bytes(h5.read_bytes()[:5000])  # truncated HDF5
  with pytest.raises(VGGWeightsError) as e:
    convert_vgg.convert(str(h5), str(tmp_path / 'out'))
  assert_one_line_error(e, h5)


@pytest.mark.parametrize('case', ['vgg16', 'truncated', 'wrong-shape', 'not-vgg19', 'old-format'])
def test_bad_converted_files_are_refused(tmp_path, params, case):
  full = dict(params)
  meta = {'format_version': 1, 'source': 'torchvision', 'preprocess': 'torch', 'arch': 'vgg19'}
  if case == 'vgg16':
    full = {k: v for k, v in full.items() if k not in ('conv3_4', 'conv4_4', 'conv5_4')}
  elif case == 'truncated':
    del full['conv5_4']
  elif case == 'wrong-shape':
    full['conv2_1'] = {'kernel': np.zeros((3, 3, 64, 64)), 'bias': np.zeros(64)}
  elif case == 'not-vgg19':
    meta['arch'] = 'vgg16'
  else:
    meta['format_version'] = 0
  path = tmp_path / f'{case}.msgpack'
  path.write_bytes(
    serialization.msgpack_serialize({'params': jax.tree.map(np.asarray, full), 'meta': meta})
  )
  with pytest.raises(VGGWeightsError) as e:
    vgg.load_vgg(path)
  assert_one_line_error(e, path)


def test_missing_converter_dependency_says_what_to_install(tmp_path, monkeypatch):
  src = tmp_path / 'vgg19.h5'
  src.write_bytes(convert_vgg.HDF5_MAGIC + bytes(64))
  monkeypatch.setitem(sys.modules, 'h5py', None)  # makes `import h5py` fail
  with pytest.raises(VGGWeightsError, match=r"pip install 'srgan-jax\[convert\]'") as e:
    convert_vgg.convert(str(src), str(tmp_path / 'out'))
  assert_one_line_error(e, src)


@pytest.mark.subprocess
def test_cli_exits_2_with_just_the_message(tmp_path):
  junk = tmp_path / 'random.pth'
  junk.write_bytes(b'not weights at all')
  run = subprocess.run(
    [sys.executable, '-m', 'srgan_jax.convert_vgg', str(junk), str(tmp_path / 'out')],
    cwd=REPO,
    capture_output=True,
    text=True,
    env={**os.environ, 'PYTHONPATH': REPO},
  )
  assert run.returncode == 2 and run.stdout == ''
  lines = run.stderr.strip().splitlines()
  assert len(lines) == 1 and str(junk) in lines[0] and COMMAND in lines[0], run.stderr


def test_cli_converts_and_prints_a_summary(tmp_path, capsys):
  torch = pytest.importorskip('torch')
  src = tmp_path / 'vgg19-dcbb9e9d.pth'
  torch.save(torch_state_dict(), src)
  assert convert_vgg.main([str(src), str(tmp_path / 'vgg19.msgpack')]) == 0
  out = capsys.readouterr().out
  assert '16 conv layers' in out and 'torchvision' in out and "'torch'" in out


def test_training_content_loss_runs_vgg_in_the_compute_dtype(params, monkeypatch):
  from srgan_jax.training import update_step
  from srgan_jax.kernels import onednn_conv
  from tests.helpers import tiny_config

  monkeypatch.setattr(
    onednn_conv, 'applies', lambda *a: False
  )  # convs as lax primitives in the jaxpr

  sr = jnp.zeros((1, 32, 32, 3))
  for dtype in ('float32', 'bfloat16'):
    config = tiny_config('srgan', **{'model.compute_dtype': dtype, 'loss.content': 'vgg22'})
    loss_fn = update_step.make_content_loss(config, vgg_preprocess='torch')
    jaxpr = jax.make_jaxpr(loss_fn)(sr, sr, params)
    conv_dtypes = {
      e.invars[0].aval.dtype for e in jaxpr.jaxpr.eqns if e.primitive.name == 'conv_general_dilated'
    }
    assert conv_dtypes == {jnp.dtype(dtype)}, (dtype, conv_dtypes)
    assert jaxpr.out_avals[0].dtype == jnp.float32
