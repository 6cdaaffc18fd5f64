"""Adam for G and D: one rate for both (the paper), or D's own (config.optim.d_learning_rate)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from srgan_jax.training import config_checks, train_states
from tests.helpers import tiny_config


def _first_step_sizes(config):
  """|param change| of G and D after one Adam step on a gradient of ones (Adam's first step: lr)."""
  g, d = train_states.create_train_states(config, jax.random.key(0))
  sizes = []
  for s in (g, d):
    new = s.apply_gradients(grads=jax.tree.map(jnp.ones_like, s.params))
    diffs = jax.tree.leaves(jax.tree.map(lambda a, b: jnp.abs(a - b), new.params, s.params))
    sizes.append(np.unique(np.round(np.concatenate([np.ravel(x) for x in diffs]) / 1e-5, 2)))
  return sizes


@pytest.mark.parametrize('d_rate, want', [(0.0, 1.0), (4e-5, 4.0)])
def test_d_learning_rate_sets_only_ds_step(d_rate, want):
  config = tiny_config(
    'srgan',
    **{'optim.learning_rate': 1e-5, 'optim.d_learning_rate': d_rate, 'pretrain_steps': 2},
  )
  g, d = _first_step_sizes(config)
  np.testing.assert_allclose(g, [1.0], rtol=1e-3)  # G keeps config.optim.learning_rate
  np.testing.assert_allclose(d, [want], rtol=1e-3)
  decayed = train_states.learning_rate_schedule(
    tiny_config('srgan', **{'optim.d_learning_rate': 4e-5, 'optim.decay_steps': (10,)}),
    'discriminator',
  )
  assert float(decayed(9)) == pytest.approx(4e-5) and float(decayed(10)) == pytest.approx(4e-6)


def test_a_negative_d_learning_rate_is_a_one_line_error():
  config = tiny_config('srgan', **{'optim.d_learning_rate': -1e-4, 'pretrain_steps': 2})
  with pytest.raises(config_checks.ConfigError, match='d_learning_rate') as e:
    config_checks.validate_config(config)
  assert '\n' not in str(e.value)
