"""G's and D's train states: the networks, their batch statistics and their Adam optimizers."""

from typing import Any

import jax
import jax.numpy as jnp
import optax
from flax.training import train_state

from srgan_jax import models


class TrainState(train_state.TrainState):
  batch_stats: Any


def learning_rate_schedule(config) -> optax.Schedule:
  """Step decay: lr x decay_factor at each of decay_steps (the paper: 1e-4, then 1e-5)."""
  return optax.piecewise_constant_schedule(
    config.optim.learning_rate,
    {int(s): config.optim.decay_factor for s in config.optim.decay_steps},
  )


def make_optimizer(config) -> optax.GradientTransformation:
  return optax.adam(learning_rate_schedule(config), b1=config.optim.b1, b2=config.optim.b2)


def create_train_states(config, rng) -> tuple[TrainState, TrainState | None]:
  """Fresh G (and, in the SRGAN phase, D) states; D is None for SRResNet."""
  g_rng, d_rng = jax.random.split(rng)
  hr = config.data.hr_crop
  lr = hr // config.model.scale
  g_model = models.make_generator(config.model)
  g_vars = g_model.init(g_rng, jnp.zeros((1, lr, lr, 3)), train=False)
  g_state = TrainState.create(
    apply_fn=g_model.apply,
    params=g_vars['params'],
    batch_stats=g_vars['batch_stats'],
    tx=make_optimizer(config),
  )
  if config.phase == 'srresnet':
    return g_state, None
  d_model = models.make_discriminator(config)
  d_vars = d_model.init(d_rng, jnp.zeros((1, hr, hr, 3)), train=False)
  d_state = TrainState.create(
    apply_fn=d_model.apply,
    params=d_vars['params'],
    batch_stats=d_vars['batch_stats'],
    tx=make_optimizer(config),
  )
  return g_state, d_state
