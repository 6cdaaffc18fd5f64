"""imresize reproduces MATLAB's bicubic imresize, weights and pixels."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from tests.conftest import hr_lr_pairs
from srgan_jax.data.image_io import load_rgb
from srgan_jax.data.imresize import imresize, imresize_np, imresize_uint8, resize_matrix

# Keys cubic, a = -0.5, evaluated by hand:
#   |x| <= 1:     1.5|x|^3 - 2.5|x|^2 + 1
#   1 < |x| <= 2: -0.5|x|^3 + 2.5|x|^2 - 4|x| + 2
# k(0.25) = 0.0234375 - 0.15625 + 1           = 0.8671875
# k(0.75) = 0.6328125 - 1.40625 + 1           = 0.2265625
# k(1.25) = -0.9765625 + 3.90625 - 5 + 2      = -0.0703125
# k(1.75) = -2.6796875 + 7.65625 - 7 + 2      = -0.0234375
# k(1/3) = 1/18 - 5/18 + 1 = 7/9;   k(2/3) = 4/9 - 10/9 + 1 = 1/3
# k(4/3) = (-32 + 120 - 144 + 54)/27 = -2/27
# k(5/3) = (-62.5 + 187.5 - 180 + 54)/27 = -1/27;   k(1) = k(2) = 0
# k(0.125) = 0.0029296875 - 0.0390625 + 1      = 0.9638671875
# k(0.375) = 0.0791015625 - 0.3515625 + 1      = 0.7275390625
# k(0.625) = 0.3662109375 - 0.9765625 + 1      = 0.3896484375
# k(0.875) = 1.0048828125 - 1.9140625 + 1      = 0.0908203125
# k(1.125) = -0.7119140625 + 3.1640625 - 4.5 + 2 = -0.0478515625
# k(1.375) = -1.2998046875 + 4.7265625 - 5.5 + 2 = -0.0732421875
# k(1.625) = -2.1455078125 + 6.6015625 - 6.5 + 2 = -0.0439453125
# k(1.875) = -3.2958984375 + 8.7890625 - 7.5 + 2 = -0.0068359375


def _row(n, start, values):
  r = np.zeros(n)
  r[start : start + len(values)] = values
  return r


def test_upscale_x2_interior_weights():
  # Output x = 6 (1-based) samples u = 6/2 + 0.5(1 - 1/2) = 3.25: input
  # pixels 2, 3, 4, 5 (1-based) sit at offsets 1.25, 0.25, -0.75, -1.75.
  m = resize_matrix(8, 16, 2.0)
  expected = _row(8, 1, [-0.0703125, 0.8671875, 0.2265625, -0.0234375])
  np.testing.assert_allclose(m[5], expected, atol=1e-12)


def test_upscale_x2_first_row_mirrors_the_border():
  # x = 1: u = 0.75, taps at 1-based -1, 0, 1, 2 with offsets 1.75, 0.75,
  # -0.25, -1.25. Symmetric padding maps -1 -> 2 and 0 -> 1, so
  # column 1 gets 0.2265625 + 0.8671875 and column 2 -0.0234375 - 0.0703125.
  m = resize_matrix(8, 16, 2.0)
  np.testing.assert_allclose(m[0], _row(8, 0, [1.09375, -0.09375]), atol=1e-12)


def test_upscale_x3_weights():
  # x = 5: u = 5/3 + 1/3 = 2 lands on pixel 2 -> identity row (k(1) = 0).
  # x = 6: u = 7/3, pixels 1..4 at offsets 4/3, 1/3, -2/3, -5/3.
  m = resize_matrix(8, 24, 3.0)
  np.testing.assert_allclose(m[4], _row(8, 1, [1.0]), atol=1e-12)
  np.testing.assert_allclose(m[5], _row(8, 0, [-2 / 27, 7 / 9, 1 / 3, -1 / 27]), atol=1e-12)


def test_upscale_x4_weights():
  # x = 9: u = 9/4 + 3/8 = 2.625, pixels 1..4 at 1.625, 0.625, -0.375, -1.375.
  m = resize_matrix(8, 32, 4.0)
  expected = _row(8, 0, [-0.0439453125, 0.3896484375, 0.7275390625, -0.0732421875])
  np.testing.assert_allclose(m[8], expected, atol=1e-12)


def test_downscale_by_2_stretches_the_kernel():
  # Antialiasing: h(d) = 0.5 k(d / 2), width 8. x = 3: u = 2*3 - 0.5 = 5.5,
  # pixels 2..9 (1-based) at offsets 3.5 .. -3.5, i.e. k at +-1.75, +-1.25,
  # +-0.75, +-0.25; those sum to 2, times 0.5 is already normalised.
  m = resize_matrix(16, 8, 0.5)
  half = [-0.0234375, -0.0703125, 0.2265625, 0.8671875]
  expected = _row(16, 1, 0.5 * np.array(half + half[::-1]))
  np.testing.assert_allclose(m[2], expected, atol=1e-12)


def test_downscale_by_3_weights():
  # h(d) = k(d / 3) / 3, width 12. x = 3: u = 3*3 - 1 = 8, pixels 3..13 at
  # offsets 5..-5, k at 5/3, 4/3, 1, 2/3, 1/3, 0, ... summing to 3.
  m = resize_matrix(24, 8, 1 / 3)
  side = [-1 / 27, -2 / 27, 0.0, 1 / 3, 7 / 9]
  expected = _row(24, 2, np.array(side + [1.0] + side[::-1]) / 3)
  np.testing.assert_allclose(m[2], expected, atol=1e-12)


def test_downscale_by_4_weights():
  # h(d) = k(d / 4) / 4, width 16. x = 3: u = 4*3 - 1.5 = 10.5, pixels 3..18
  # at offsets 7.5 .. -7.5, k at 1.875, 1.625, ..., 0.125 on each side.
  m = resize_matrix(32, 8, 0.25)
  side = [
    -0.0068359375,
    -0.0439453125,
    -0.0732421875,
    -0.0478515625,
    0.0908203125,
    0.3896484375,
    0.7275390625,
    0.9638671875,
  ]
  expected = _row(32, 2, np.array(side + side[::-1]) / 4)
  np.testing.assert_allclose(m[2], expected, atol=1e-12)


@pytest.mark.parametrize('scale', [2.0, 3.0, 4.0, 0.5, 1 / 3, 0.25, 0.7])
def test_every_row_sums_to_one(scale):
  m = resize_matrix(37, int(np.ceil(37 * scale)), scale)
  np.testing.assert_allclose(m.sum(axis=1), 1.0, atol=1e-12)


def test_non_square_output_size_is_ceil_of_scale_times_size():
  x = np.zeros((2, 7, 10, 3))
  assert imresize_np(x, scale=1 / 3).shape == (2, 3, 4, 3)
  assert imresize_np(x, scale=2).shape == (2, 14, 20, 3)
  assert imresize(x, output_shape=(5, 21)).shape == (2, 5, 21, 3)


def test_constant_image_stays_constant():
  x = np.full((9, 14, 3), 0.37)
  for kw in ({'scale': 2}, {'scale': 1 / 3}, {'output_shape': (4, 31)}):
    np.testing.assert_allclose(imresize_np(x, **kw), 0.37, atol=1e-12)


def test_scale_one_is_identity():
  x = np.random.default_rng(0).integers(0, 256, (6, 5, 3), dtype=np.uint8)
  np.testing.assert_array_equal(imresize_uint8(x, scale=1), x)


def test_batch_dims_resize_each_image_alike():
  x = np.random.default_rng(1).random((2, 3, 8, 6, 1))
  out = imresize_np(x, scale=0.5)
  np.testing.assert_allclose(out[1, 2], imresize_np(x[1, 2], scale=0.5))


@pytest.mark.parametrize('kw', [{'scale': 2}, {'scale': 1 / 3}, {'output_shape': (20, 9)}])
def test_jitted_jax_matches_float64_numpy(kw):
  x = np.random.default_rng(2).random((2, 13, 17, 3)).astype(np.float32)
  got = jax.jit(lambda v: imresize(v, **kw))(x)
  np.testing.assert_allclose(np.asarray(got), imresize_np(x, **kw), atol=1e-5)


def test_gradient_flows():
  x = jnp.asarray(np.random.default_rng(3).random((12, 10, 3)), jnp.float32)
  g = jax.grad(lambda v: jnp.sum(imresize(v, scale=0.5) ** 2))(x)
  assert g.shape == x.shape and bool(jnp.all(jnp.isfinite(g)))
  assert float(jnp.abs(g).sum()) > 0


def test_uint8_path_rounds_half_away_from_zero_and_saturates():
  # A hard 0 -> 255 edge overshoots (negative lobes): must clip, not wrap.
  x = np.zeros((4, 8, 1), np.uint8)
  x[:, 4:] = 255
  up = imresize_uint8(x, scale=2)
  assert up.dtype == np.uint8 and up.min() == 0 and up.max() == 255
  f = imresize_np(x, scale=2)
  assert f.min() < 0 and f.max() > 255


def test_bad_arguments_say_what_to_do():
  with pytest.raises(ValueError, match='exactly one'):
    imresize_np(np.zeros((4, 4, 1)))
  with pytest.raises(ValueError, match='trailing channel'):
    imresize_np(np.zeros((4, 4)), scale=2)
  with pytest.raises(ValueError, match='uint8'):
    imresize_uint8(np.zeros((4, 4, 1)), scale=2)


@pytest.mark.parametrize('name', ['Set5', 'Set14'])
@pytest.mark.parametrize('scale', [2, 3, 4])
def test_downscaling_hr_reproduces_matlab_lr_files(request, name, scale):
  datasets = request.getfixturevalue('datasets' if scale == 4 else 'shared_datasets')
  mads = []
  for hr_path, lr_path in hr_lr_pairs(datasets, name, scale):
    lr = load_rgb(lr_path).astype(np.float64)
    ours = imresize_uint8(load_rgb(hr_path), scale=1 / scale)
    assert ours.shape == lr.shape, hr_path.name
    mad = np.abs(ours - lr).mean()
    mads.append(mad)
    assert mad < 0.2, f'{hr_path.name}: mean abs diff {mad:.3f}'
  print(
    f'\n{name} x{scale}: LR mean abs diff, mean {np.mean(mads):.4f}, '
    f'worst {max(mads):.4f} grey levels'
  )
