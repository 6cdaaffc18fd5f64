"""G and D through the fast convolutions are ordinary JAX functions: jvp, vmap and grad of grad.

An R1 or gradient penalty differentiates D twice; per-example gradients vmap a
gradient. On CPU the convolutions run through oneDNN's handlers (`onednn_conv`)
or, without them, XLA's with the phase-wise strided input gradient
(`fast_conv`); both must give what lax's convolution gives.
"""

import functools
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from jax import lax

from srgan_jax.nets import srgan
from srgan_jax.kernels import fast_conv, onednn_conv

NHWC = ('NHWC', 'HWIO', 'NHWC')


@pytest.fixture(params=['onednn', 'xla'])
def conv_path(request, monkeypatch):
  if request.param == 'onednn' and not onednn_conv.status()[0]:
    pytest.skip(f'oneDNN handlers unavailable: {onednn_conv.status()[1]}')
  if request.param == 'xla':
    monkeypatch.setattr(onednn_conv, 'applies', lambda *a: False)
  return request.param


def _as_lax(monkeypatch):
  """Every convolution of the models as lax.conv_general_dilated: the reference."""
  monkeypatch.setattr(onednn_conv, 'applies', lambda *a: False)
  monkeypatch.setattr(
    fast_conv,
    '_strided_conv',
    lambda x, w, s, pads: lax.conv_general_dilated(x, w, (s, s), pads, dimension_numbers=NHWC),
  )


def _networks():
  """(name, apply(params, x), params, x) for the tiny G (x4: sub-pixel output conv) and D (strided)."""
  rng = np.random.default_rng(0)
  lr = jnp.asarray(rng.uniform(size=(2, 6, 6, 3)), jnp.float32)
  hr = jnp.asarray(rng.uniform(-1, 1, size=(2, 24, 24, 3)), jnp.float32)
  out = []
  for name, module, x in (
    ('G', srgan.TinyGenerator(scale=4), lr),
    ('D', srgan.TinyDiscriminator(), hr),
  ):
    variables = module.init(jax.random.key(1), x)
    apply = lambda p, x, module=module, bs=variables['batch_stats']: module.apply(
      {'params': p, 'batch_stats': bs}, x
    )
    out.append((name, apply, variables['params'], x))
  return out


def _transforms():
  """What a penalty, a forward-mode method or per-example training does to a network."""

  def jvp(apply, p, x):
    tp = jax.tree.map(lambda v: jnp.full_like(v, 0.01), p)
    return jax.jvp(apply, (p, x), (tp, jnp.ones_like(x)))

  def per_example_grads(apply, p, x):  # vmap of grad: batched activations and cotangents
    loss = lambda p, xi: jnp.sum(apply(p, xi[None]) ** 2)
    return jax.vmap(jax.grad(loss), in_axes=(None, 0))(p, x)

  def ensemble(apply, p, x):  # vmap over parameters: batched kernels
    stacked = jax.tree.map(lambda v: jnp.stack([v, 1.5 * v]), p)
    return jax.vmap(apply, in_axes=(0, None))(stacked, x)

  def gradient_penalty(
    apply, p, x
  ):  # grad of grad: R1 (input gradient) and a gradient-norm penalty
    r1 = lambda p: jnp.sum(jax.grad(lambda x: jnp.sum(apply(p, x)))(x) ** 2)
    norm = lambda p: optax.tree.norm(jax.grad(lambda p: jnp.sum(apply(p, x) ** 2))(p)) ** 2
    return jax.grad(r1)(p), jax.grad(norm)(p)

  return {
    'jvp': jvp,
    'per_example_grads': per_example_grads,
    'ensemble': ensemble,
    'gradient_penalty': gradient_penalty,
  }


@pytest.mark.slow
@pytest.mark.parametrize('transform', list(_transforms()))
def test_jvp_vmap_and_grad_of_grad_of_g_and_d_equal_lax(conv_path, transform, monkeypatch):
  f = _transforms()[transform]
  # XLA's default (optimised) backend, as training compiles it, whatever conftest set for speed:
  # unoptimised, the lax path's float32 rounding of G's ensemble differs by ~1e-5 more
  jit = functools.partial(jax.jit, compiler_options={'xla_backend_optimization_level': 2})
  got = {
    name: jit(lambda p, x, apply=apply: f(apply, p, x))(p, x) for name, apply, p, x in _networks()
  }
  _as_lax(monkeypatch)
  for name, apply, p, x in _networks():
    want = jit(lambda p, x: f(apply, p, x))(p, x)
    for a, b in zip(jax.tree.leaves(got[name]), jax.tree.leaves(want)):
      scale = float(jnp.max(jnp.abs(b))) or 1.0
      np.testing.assert_allclose(a, b, rtol=2e-4, atol=2e-5 * scale, err_msg=f'{name} {transform}')


@pytest.mark.slow
def test_the_oneDNN_path_is_the_one_taken(conv_path):
  """The comparison above is not lax against lax: the jaxprs hold the intended convolutions."""
  _, apply, p, x = _networks()[1]  # D: strided convs
  text = str(
    jax.make_jaxpr(
      lambda p: jax.grad(lambda p: jnp.sum(jax.grad(lambda x: jnp.sum(apply(p, x)))(x) ** 2))(p)
    )(p)
  )
  if conv_path == 'onednn':
    assert 'srgan_onednn_conv_bwd_data' in text and 'conv_general_dilated' not in text
  else:
    assert 'srgan_strided_conv' in text and 'srgan_onednn' not in text
