"""Upscaling files: tiling is exact, sizes are scale x input, modes and bit depth survive."""

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest
from PIL import Image

from srgan_jax.nets import generators
from srgan_jax.evaluation import tiling
from srgan_jax import upscale
from tests.tiny_checkpoint import tiny_workdir

TINY_X4 = {'scale': 4, 'num_blocks': 2, 'features': 8, 'tiny': True}


def _random_generator(model_config, seed=0):
  """G with random weights and non-trivial BN statistics and affine parameters."""
  g = generators.make_generator(ml_collections.ConfigDict(model_config))
  v = g.init(jax.random.key(seed), jnp.zeros((1, 8, 8, 3)))
  keys = iter(jax.random.split(jax.random.key(seed + 1), 1000))
  jitter = lambda x: (
    jax.random.uniform(next(keys), x.shape, minval=0.5, maxval=1.5) * x
    + jax.random.normal(next(keys), x.shape) * 0.1
  )
  params = jax.tree_util.tree_map_with_path(
    lambda p, x: (
      jitter(x) if 'BatchNorm' in jax.tree_util.keystr(p) or 'bn_' in jax.tree_util.keystr(p) else x
    ),
    v['params'],
  )
  stats = jax.tree.map(
    lambda x: jax.random.uniform(next(keys), x.shape, minval=0.3, maxval=2.0), v['batch_stats']
  )
  return jax.jit(lambda x: g.apply({'params': params, 'batch_stats': stats}, x, train=False))


def test_receptive_radius_of_srresnet_x4_is_40_lr_pixels():
  # 4 (k9) + 2 x 16 blocks + 1 (conv_mid) + 1 + 1/2 (two k3 upsampling convs) + 4/4 (k9 at SR).
  assert tiling.receptive_radius({'scale': 4, 'num_blocks': 16, 'features': 64}) == 40
  assert tiling.receptive_radius(TINY_X4) == 12


@pytest.mark.parametrize('scale', [pytest.param(4, marks=pytest.mark.slow), 3])
def test_tiled_inference_equals_one_pass_on_an_odd_sized_image(scale):
  cfg = {**TINY_X4, 'scale': scale}
  predict = _random_generator(cfg)
  halo = tiling.receptive_radius(cfg)
  lr = np.random.default_rng(0).random((37, 29, 3)).astype(np.float32)
  whole = np.asarray(predict(lr[None]))[0]
  for tile in (2 * halo + 1, 31):  # both axes tiled; rows only
    tiled = tiling.upscale_tiled(predict, lr, scale, tile, halo)
    assert tiled.shape == whole.shape
    assert np.abs(tiled - whole).max() < 1e-4, tile


def test_a_halo_smaller_than_the_receptive_field_leaves_seams():
  predict = _random_generator(TINY_X4)
  lr = np.random.default_rng(1).random((37, 29, 3)).astype(np.float32)
  whole = np.asarray(predict(lr[None]))[0]
  assert np.abs(tiling.upscale_tiled(predict, lr, 4, 12, 3) - whole).max() > 1e-2


def test_windows_cover_the_axis_once_with_one_window_length():
  for size in range(1, 80):
    w = tiling.windows(size, 30, 8)
    kept = [i for _, _, a, b in w for i in range(a, b)]
    assert kept == list(range(size))
    assert {b - a for a, b, _, _ in w} == {min(size, 30)}
    for a, b, ka, kb in w:
      assert 0 <= a and b <= size
      assert a == 0 or ka - a >= 8
      assert b == size or b - kb >= 8


# ----------------------------------------------------------------------------
# The command line on a tiny trained checkpoint.


@pytest.fixture(scope='module')
def workdir(tmp_path_factory):
  return tiny_workdir(tmp_path_factory)


@pytest.fixture(scope='module')
def inputs(tmp_path_factory):
  d = tmp_path_factory.mktemp('upscale_in')
  rng = np.random.default_rng(0)
  Image.fromarray(rng.integers(0, 256, (29, 37, 3), dtype=np.uint8)).save(d / 'rgb.png')
  Image.fromarray(rng.integers(0, 256, (21, 17), dtype=np.uint8)).save(d / 'gray.png')
  Image.fromarray(rng.integers(0, 256, (19, 23, 4), dtype=np.uint8)).save(d / 'rgba.png')
  Image.fromarray(rng.integers(0, 256, (13, 11, 2), dtype=np.uint8)).save(d / 'la.png')
  Image.fromarray(rng.integers(0, 65536, (15, 18), dtype=np.uint16)).save(d / 'deep.png')
  Image.fromarray(rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)).save(d / 'photo.jpg')
  return d


def test_upscale_writes_scale_x_input_and_keeps_mode_bit_depth_and_other_files(
  workdir, inputs, tmp_path, capsys
):
  out = tmp_path / 'out'
  out.mkdir()
  (out / 'keep.txt').write_text('mine')
  assert (
    upscale.main([str(inputs), '--workdir', str(workdir), '--out', str(out), '--tile', '30']) == 0
  )
  assert (out / 'keep.txt').read_text() == 'mine'
  expect = {
    'rgb': ('RGB', 29, 37),
    'gray': ('L', 21, 17),
    'rgba': ('RGBA', 19, 23),
    'la': ('LA', 13, 11),
    'photo': ('RGB', 16, 16),
  }
  for stem, (mode, h, w) in expect.items():
    with Image.open(out / f'{stem}_x4.png') as im:
      assert (im.mode, im.size) == (mode, (4 * w, 4 * h)), stem
  with Image.open(out / 'deep_x4.png') as im:
    assert im.mode.startswith('I') and im.size == (72, 60)
    assert np.asarray(im).max() > 255  # 16 bits written, not 8
  lines = [l for l in capsys.readouterr().out.splitlines() if l.startswith('[')]
  assert len(lines) == 6 and lines[0].startswith('[1/6]') and lines[-1].startswith('[6/6]')
  assert not list(out.glob('.*.tmp'))


def test_rgba_alpha_is_the_bicubic_upscale_of_the_input_alpha(workdir, inputs, tmp_path):
  from srgan_jax.data.imresize import imresize_np

  assert (
    upscale.main([str(inputs / 'rgba.png'), '--workdir', str(workdir), '--out', str(tmp_path)]) == 0
  )
  alpha_in = np.asarray(Image.open(inputs / 'rgba.png'))[..., 3:]
  alpha_out = np.asarray(Image.open(tmp_path / 'rgba_x4.png'))[..., 3:]
  expected = np.clip(np.round(imresize_np(alpha_in, scale=4)), 0, 255)  # clipped once, at the end
  assert np.abs(alpha_out.astype(int) - expected).max() <= 1


def test_tiled_and_whole_image_files_agree(workdir, inputs, tmp_path):
  for tile, name in ((30, 'a'), (0, 'b')):
    assert (
      upscale.main(
        [
          str(inputs / 'rgb.png'),
          '--workdir',
          str(workdir),
          '--out',
          str(tmp_path / name),
          '--tile',
          str(tile),
        ]
      )
      == 0
    )
  a = np.asarray(Image.open(tmp_path / 'a' / 'rgb_x4.png')).astype(int)
  b = np.asarray(Image.open(tmp_path / 'b' / 'rgb_x4.png')).astype(int)
  assert np.abs(a - b).max() <= 1  # float noise may flip a rounding, no seams


def test_an_unreadable_file_is_skipped_the_others_written_and_the_exit_is_an_error(
  workdir, inputs, tmp_path, capsys
):
  bad = tmp_path / 'bad.png'
  bad.write_bytes(b'not a png')
  rc = upscale.main(
    [str(bad), str(inputs / 'gray.png'), '--workdir', str(workdir), '--out', str(tmp_path / 'o')]
  )
  err = capsys.readouterr()
  assert rc == 2 and (tmp_path / 'o' / 'gray_x4.png').is_file()
  assert (
    'skipped' in err.out and err.err.startswith('error:') and len(err.err.strip().splitlines()) == 1
  )


@pytest.mark.parametrize('case', ['no_checkpoint', 'empty_folder', 'missing_input', 'tiny_tile'])
def test_bad_input_is_a_one_line_error(workdir, tmp_path, capsys, case):
  (tmp_path / 'empty').mkdir()
  img = tmp_path / 'x.png'
  Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(img)
  args = {
    'no_checkpoint': [str(img), '--workdir', str(tmp_path / 'empty')],
    'empty_folder': [str(tmp_path / 'empty'), '--workdir', str(workdir)],
    'missing_input': [str(tmp_path / 'nope.png'), '--workdir', str(workdir)],
    'tiny_tile': [str(img), '--workdir', str(workdir), '--tile', '10'],
  }[case]
  assert upscale.main(args + ['--out', str(tmp_path / 'o')]) == 2
  err = capsys.readouterr().err.strip()
  assert err.startswith('error:') and len(err.splitlines()) == 1, err


def test_bf16_inference_of_the_shipped_model_is_within_a_grey_level_of_float32(tmp_path):
  from srgan_jax.evaluation import inference, validation  # pylint: disable=g-import-not-at-top

  lr = validation.load_set('set5', 4)[2].lr[:40, :48]  # butterfly: edges everywhere
  Image.fromarray(lr).save(tmp_path / 'b.png')
  outs = {}
  for dtype in ('float32', 'bfloat16'):
    args = [str(tmp_path / 'b.png'), '--model=srresnet_x4', f'--dtype={dtype}', '--tile=0']
    assert upscale.main(args + ['--out', str(tmp_path / dtype)]) == 0
    outs[dtype] = np.asarray(Image.open(tmp_path / dtype / 'b_x4.png')).astype(float)
  diff = np.abs(outs['bfloat16'] - outs['float32'])
  assert outs['float32'].shape == (160, 192, 3) and 0 < diff.mean() < 0.7 and diff.max() <= 6
  with pytest.raises(inference.UserError, match='--dtype=float16: use one of'):
    inference.load_model('srresnet_x4', 'float16')
