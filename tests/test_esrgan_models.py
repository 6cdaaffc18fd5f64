"""ESRGAN-family generators: parameter counts by hand, upsampling by index, exact tiling."""

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from srgan_jax.nets import esrgan
from srgan_jax.nets import generators
from srgan_jax.nets import srgan
from srgan_jax.evaluation import tiling


def n_params(tree) -> int:
  return sum(int(np.prod(x.shape)) for x in jax.tree.leaves(tree))


def conv(k, cin, cout, bias=True):
  return k * k * cin * cout + (cout if bias else 0)


def shapes(model_config, lr=8):
  g = generators.make_generator(ml_collections.ConfigDict(model_config))
  return jax.eval_shape(g.init, jax.random.key(0), jnp.zeros((1, lr, lr, 3)))


def test_rrdbnet_x4_has_esrgans_16_697_987_parameters():
  nf, gc, nb = 64, 32, 23
  # A dense block: conv_i sees nf + (i-1) gc channels and adds gc; conv5 maps back to nf.
  rdb = sum(conv(3, nf + i * gc, gc) for i in range(4)) + conv(3, nf + 4 * gc, nf)
  assert rdb == 18_464 + 27_680 + 36_896 + 46_112 + 110_656 == 239_808
  rrdb = 3 * rdb  # three dense blocks, no parameters in the residual scaling
  # conv_first, B RRDBs, conv_body, conv_up1, conv_up2, conv_hr, conv_last
  expected = conv(3, 3, nf) + nb * rrdb + 4 * conv(3, nf, nf) + conv(3, nf, 3)
  assert expected == 1_792 + 16_546_752 + 147_712 + 1_731 == 16_697_987
  s = shapes({'arch': 'rrdbnet', 'scale': 4, 'num_blocks': nb, 'features': nf, 'growth': gc})
  assert n_params(s['params']) == expected
  assert 'batch_stats' not in s  # no BatchNorm (ESRGAN Section 3.1)


@pytest.mark.parametrize('nb,nf,gc', [(2, 16, 8), (5, 32, 12)])
def test_rrdbnet_blocks_widths_and_growth_are_configurable(nb, nf, gc):
  rdb = sum(conv(3, nf + i * gc, gc) for i in range(4)) + conv(3, nf + 4 * gc, nf)
  expected = conv(3, 3, nf) + nb * 3 * rdb + 4 * conv(3, nf, nf) + conv(3, nf, 3)
  s = shapes({'arch': 'rrdbnet', 'scale': 4, 'num_blocks': nb, 'features': nf, 'growth': gc})
  assert n_params(s['params']) == expected


@pytest.mark.parametrize('scale', [2, 3, 4])
def test_msrresnet_parameter_count(scale):
  nf, nb = 64, 16
  block = 2 * conv(3, nf, nf)  # conv, ReLU, conv: biases, no BN
  ups = 2 * conv(3, nf, 4 * nf) if scale == 4 else conv(3, nf, scale * scale * nf)
  expected = conv(3, 3, nf) + nb * block + ups + conv(3, nf, nf) + conv(3, nf, 3)
  s = shapes({'arch': 'msrresnet', 'scale': scale, 'num_blocks': nb, 'features': nf})
  assert n_params(s['params']) == expected
  if scale == 4:  # BasicSR's MSRResNet x4 (num_feat 64, num_block 16)
    assert expected == 1_792 + 1_181_696 + 295_424 + 36_928 + 1_731 == 1_517_571


def test_the_papers_srresnet_keeps_its_parameter_names():
  """Shipped weights and user checkpoints depend on these names (a file format)."""
  s = shapes({'scale': 4, 'num_blocks': 2, 'features': 8})
  assert sorted(s['params']) == [
    'PReLU_0',
    'bn_mid',
    'conv_in',
    'conv_mid',
    'conv_out',
    'res_0',
    'res_1',
    'up_0',
    'up_1',
  ]
  assert sorted(s['params']['res_0']) == [
    'BatchNorm_0',
    'BatchNorm_1',
    'Conv_0',
    'Conv_1',
    'PReLU_0',
  ]
  assert isinstance(
    generators.make_generator({'scale': 4, 'num_blocks': 2, 'features': 8}), srgan.Generator
  )


@pytest.mark.parametrize(
  'arch,scale', [('rrdbnet', 4), ('msrresnet', 2), ('msrresnet', 3), ('msrresnet', 4)]
)
def test_output_shape_and_dtype(arch, scale):
  cfg = {'arch': arch, 'scale': scale, 'num_blocks': 1, 'features': 8, 'growth': 4}
  g = generators.make_generator(ml_collections.ConfigDict(cfg))
  x = jax.random.uniform(jax.random.key(0), (2, 7, 5, 3))
  y = g.apply(g.init(jax.random.key(1), x), x)
  assert y.shape == (2, 7 * scale, 5 * scale, 3) and y.dtype == jnp.float32


def test_clamped_srresnet_output_is_the_clip_of_the_same_conv():
  cfg = {'scale': 4, 'num_blocks': 1, 'features': 8}
  tanh = srgan.Generator(**cfg)
  clamp = srgan.Generator(**cfg, output='clamp')
  x = jax.random.uniform(jax.random.key(0), (1, 6, 6, 3))
  v = tanh.init(jax.random.key(1), x)
  pre = jnp.arctanh(jnp.clip(tanh.apply(v, x), -1 + 1e-6, 1 - 1e-6))  # the conv's output
  y = clamp.apply(v, x)
  np.testing.assert_allclose(y, 2 * jnp.clip(pre, 0, 1) - 1, atol=1e-4)
  assert float(y.min()) >= -1 and float(y.max()) <= 1


def test_nearest_and_bilinear_upsampling_match_pytorchs_index_rules():
  x = np.random.default_rng(0).random((1, 3, 4, 2)).astype(np.float32)
  near = np.asarray(esrgan.upsample_nearest(jnp.asarray(x), 2))
  for i in range(6):
    for j in range(8):
      np.testing.assert_array_equal(near[0, i, j], x[0, i // 2, j // 2])
  r = 4
  bil = np.asarray(esrgan.upsample_bilinear(jnp.asarray(x), r))
  for i in range(3 * r):
    for j in range(4 * r):
      # align_corners=False: source (i + 0.5) / r - 0.5, clamped at 0 and at the last pixel
      sy, sx = (max((i + 0.5) / r - 0.5, 0.0), max((j + 0.5) / r - 0.5, 0.0))
      y0, x0 = min(int(sy), 2), min(int(sx), 3)
      y1, x1 = min(y0 + 1, 2), min(x0 + 1, 3)
      ty, tx = sy - y0, sx - x0
      want = (
        x[0, y0, x0] * (1 - ty) * (1 - tx)
        + x[0, y0, x1] * (1 - ty) * tx
        + x[0, y1, x0] * ty * (1 - tx)
        + x[0, y1, x1] * ty * tx
      )
      np.testing.assert_allclose(bil[0, i, j], want, atol=1e-6)


def test_receptive_radii_by_hand():
  # RRDBNet x4, B = 23: 1 + 15 x 23 + 1 = 347 k3 convs at LR; at x2 conv_up1 (1); at x4 conv_up2,
  # conv_hr, conv_last (3): 3 x4-pixels -> 2 x2-pixels, + 1 -> 2 LR pixels: 349.
  rrdb = {'arch': 'rrdbnet', 'scale': 4, 'num_blocks': 23, 'features': 64, 'growth': 32}
  assert tiling.receptive_radius(rrdb) == 349
  # MSRResNet x4, B = 16: 1 + 32 + 1 (upconv1) = 34 at LR; upconv2 at x2; conv_hr, conv_last at x4.
  msr = {'arch': 'msrresnet', 'scale': 4, 'num_blocks': 16, 'features': 64}
  assert tiling.receptive_radius(msr) == 34 + 1
  # Unchanged for the paper's SRResNet (test_upscale pins 40 for x4).
  assert tiling.receptive_radius({'scale': 4, 'num_blocks': 16, 'features': 64}) == 40


TINY_CONFIGS = [
  {'arch': 'rrdbnet', 'scale': 4, 'num_blocks': 1, 'features': 8, 'growth': 4},
  {'arch': 'msrresnet', 'scale': 4, 'num_blocks': 2, 'features': 8},
  {'arch': 'msrresnet', 'scale': 3, 'num_blocks': 2, 'features': 8},
  {'arch': 'msrresnet', 'scale': 2, 'num_blocks': 1, 'features': 8},
  {'scale': 4, 'num_blocks': 2, 'features': 8, 'output': 'clamp'},
  {'scale': 3, 'num_blocks': 2, 'features': 8},
]


@pytest.mark.slow
@pytest.mark.parametrize('cfg', TINY_CONFIGS)
def test_the_receptive_radius_is_exactly_the_reach_of_the_input_gradient(cfg):
  """With positive weights and inputs nothing cancels: the gradient's support is the field."""
  g = generators.make_generator(ml_collections.ConfigDict(cfg))
  halo, s = tiling.receptive_radius(cfg), cfg['scale']
  size = 2 * halo + 7
  v = g.init(jax.random.key(0), jnp.zeros((1, 8, 8, 3)))
  # (small for SRResNet, whose clamp or tanh would otherwise saturate and zero the gradient)
  k = 1.0 if generators.arch_of(cfg) != 'srresnet' else 0.03
  v = jax.tree.map(lambda a: k * (jnp.abs(a) + 0.01), v)
  lr = jnp.full((1, size, size, 3), 0.5)
  c = size // 2  # the s x s SR pixels of LR pixel (c, c), all sub-pixel phases
  grad = jax.grad(lambda x: g.apply(v, x)[0, c * s : (c + 1) * s, c * s : (c + 1) * s].sum())(lr)
  rows, cols = np.nonzero(np.asarray(grad[0]).sum(-1))
  assert max(np.abs(rows - c).max(), np.abs(cols - c).max()) == halo


@pytest.mark.parametrize('cfg', TINY_CONFIGS)
def test_tiled_inference_is_exact_for_every_arch(cfg):
  g = generators.make_generator(ml_collections.ConfigDict(cfg))
  v = g.init(jax.random.key(0), jnp.zeros((1, 8, 8, 3)))
  predict = jax.jit(lambda x: g.apply(v, x))
  halo = tiling.receptive_radius(cfg)
  lr = np.random.default_rng(0).random((2 * halo + 9, 2 * halo + 5, 3)).astype(np.float32)
  whole = np.asarray(predict(lr[None]))[0]
  for tile in (2 * halo + 1, 2 * halo + 6):
    tiled = tiling.upscale_tiled(predict, lr, cfg['scale'], tile, halo)
    assert np.abs(tiled - whole).max() < 1e-5, tile


@pytest.mark.parametrize(
  'cfg,match',
  [
    ({'arch': 'esrgan', 'scale': 4, 'num_blocks': 1, 'features': 8}, 'model.arch'),
    (
      {'arch': 'rrdbnet', 'scale': 2, 'num_blocks': 1, 'features': 8, 'growth': 4},
      r'rrdbnet.s scale must be one of \[4\]',
    ),
    ({'arch': 'msrresnet', 'scale': 8, 'num_blocks': 1, 'features': 8}, 'model.scale'),
    ({'arch': 'rrdbnet', 'scale': 4, 'num_blocks': 1, 'features': 8, 'growth': 0}, 'growth'),
    ({'scale': 4, 'num_blocks': 1, 'features': 8, 'output': 'sigmoid'}, 'model.output'),
  ],
)
def test_bad_model_configs_are_one_line_errors(cfg, match):
  with pytest.raises(ValueError, match=match) as e:
    generators.check(cfg)
  assert '\n' not in str(e.value)
