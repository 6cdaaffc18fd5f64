"""The paper's networks: shapes, parameter counts by hand, pixel shuffle by index."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from srgan_jax.nets import srgan


def n_params(tree) -> int:
  return sum(int(np.prod(x.shape)) for x in jax.tree.leaves(tree))


def conv(k, cin, cout, bias=True):
  return k * k * cin * cout + (cout if bias else 0)


@pytest.mark.parametrize('scale', [2, 3, 4, 8])
def test_generator_output_shape_and_its_last_layer_is_tanh_of_the_k9n3_conv(scale):
  g = srgan.Generator(scale=scale, num_blocks=2, features=16)
  x = jax.random.uniform(jax.random.key(0), (2, 7, 5, 3))
  variables = g.init(jax.random.key(1), x)
  assert g.apply(variables, x).shape == (2, 7 * scale, 5 * scale, 3)
  # With the k9n3s1 conv's kernel zeroed, every SR pixel is tanh(that conv's bias): nothing
  # else follows the conv (x2, x4, x8 run it as the polyphase conv before the last shuffle).
  bias = jnp.array([-3.0, 0.2, 2.5])
  conv_out = variables['params']['conv_out']
  params = {
    **variables['params'],
    'conv_out': {'kernel': jnp.zeros_like(conv_out['kernel']), 'bias': bias},
  }
  y = g.apply({**variables, 'params': params}, x)
  np.testing.assert_allclose(y, np.broadcast_to(np.tanh(bias), y.shape), rtol=1e-6)


@pytest.mark.parametrize('scale,n_up', [(2, 1), (4, 2), (8, 3)])
def test_generator_parameter_count_paper_config(scale, n_up):
  g = srgan.Generator(scale=scale)  # B = 16, n64
  shapes = jax.eval_shape(g.init, jax.random.key(0), jnp.zeros((1, 24, 24, 3)))
  prelu = 1  # one learnable slope per PReLU layer
  bn = 2 * 64  # gamma and beta (running statistics are not parameters)
  conv_in = conv(9, 3, 64) + prelu  # k9n64s1 + PReLU = 15,617
  block = 2 * (conv(3, 64, 64, bias=False) + bn) + prelu  # = 73,985
  mid = conv(3, 64, 64, bias=False) + bn  # = 36,992
  up = conv(3, 64, 256) + prelu  # k3n256s1 + PReLU = 147,713
  conv_out = conv(9, 64, 3)  # k9n3s1 = 15,555
  expected = conv_in + 16 * block + mid + n_up * up + conv_out
  assert n_params(shapes['params']) == expected
  if scale == 4:
    assert expected == 1_547_350


def test_discriminator_parameter_count_and_logit_shape():
  d = srgan.Discriminator()
  x = jnp.zeros((3, 96, 96, 3))
  shapes = jax.eval_shape(d.init, jax.random.key(0), x)
  chans = [3, 64, 64, 128, 128, 256, 256, 512, 512]
  convs = conv(3, 3, 64)  # k3n64s1 with bias, no BN
  for cin, cout in zip(chans[1:-1], chans[2:]):
    convs += conv(3, cin, cout, bias=False) + 2 * cout  # conv + BN(gamma, beta)
  flat = (96 // 16) ** 2 * 512  # four stride-2 convs: 96 -> 6
  dense = flat * 1024 + 1024 + 1024 * 1 + 1
  assert n_params(shapes['params']) == convs + dense == 4_687_232 + 18_876_417
  assert jax.eval_shape(d.apply, shapes, x).shape == (3,)


def test_pixel_shuffle_matches_index_reference():
  r, n, h, w, c = 2, 2, 3, 4, 3
  x = np.random.default_rng(0).normal(size=(n, h, w, c * r * r)).astype(np.float32)
  got = np.asarray(srgan.pixel_shuffle(jnp.asarray(x), r))
  want = np.zeros((n, h * r, w * r, c), np.float32)
  for b in range(n):
    for y in range(h * r):
      for xx in range(w * r):
        for ch in range(c):
          # PyTorch PixelShuffle: out[c, y, x] = in[c*r*r + (y%r)*r + (x%r), y//r, x//r]
          want[b, y, xx, ch] = x[b, y // r, xx // r, ch * r * r + (y % r) * r + (xx % r)]
  np.testing.assert_array_equal(got, want)


def test_pixel_shuffle_x3_matches_index_reference():
  r = 3
  x = np.arange(1 * 2 * 2 * 18, dtype=np.float32).reshape(1, 2, 2, 18)
  got = np.asarray(srgan.pixel_shuffle(jnp.asarray(x), r))
  for y in range(6):
    for xx in range(6):
      for ch in range(2):
        assert got[0, y, xx, ch] == x[0, y // r, xx // r, ch * 9 + (y % r) * 3 + (xx % r)]


def test_bad_scale_is_rejected():
  with pytest.raises(ValueError, match='scale must be one of'):
    srgan.upsample_factors(5)


def test_icnr_starts_the_sub_pixel_shuffle_as_nearest_neighbour_and_is_off_by_default():
  x = jax.random.normal(jax.random.key(0), (1, 6, 5, 8))
  for r in (2, 3):
    block = srgan.UpsampleBlock(features=8, factor=r, icnr=True)
    y = block.apply(block.init(jax.random.key(1), x), x)  # [1, 6r, 5r, 8]
    blocks = y.reshape(1, 6, r, 5, r, 8)
    assert jnp.allclose(blocks, blocks[:, :, :1, :, :1], atol=1e-6)  # each r x r block constant
    plain = srgan.UpsampleBlock(features=8, factor=r)
    y = plain.apply(plain.init(jax.random.key(1), x), x).reshape(1, 6, r, 5, r, 8)
    assert not jnp.allclose(y, y[:, :, :1, :, :1], atol=1e-3)  # the default has sub-pixel detail
  g = lambda icnr: srgan.Generator(num_blocks=1, features=8, icnr=icnr)
  p_off, p_on = (g(i).init(jax.random.key(2), jnp.zeros((1, 8, 8, 3))) for i in (False, True))
  assert jax.tree.structure(p_off) == jax.tree.structure(p_on)  # same names: a file format
  same = jax.tree.map(lambda a, b: bool(jnp.array_equal(a, b)), p_off, p_on)
  changed = [jax.tree_util.keystr(k) for k, v in jax.tree_util.tree_leaves_with_path(same) if not v]
  assert changed and all("'up_" in c and "'kernel'" in c for c in changed), changed
