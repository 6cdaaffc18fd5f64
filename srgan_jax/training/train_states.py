"""G's and D's train states: the networks, their batch statistics and their Adam optimizers."""

import functools
from typing import Any

import jax
import jax.numpy as jnp
import optax
from flax.training import train_state

from srgan_jax.nets import generators
from srgan_jax.nets import srgan


class TrainState(train_state.TrainState):
  batch_stats: Any
  # G with config.ema_decay > 0: the moving average of its params (else None, as for D).
  ema_params: Any = None


def with_params(g_state: TrainState, params, batch_stats) -> TrainState:
  """G's state with new weights (e.g. config.generator_init); the average restarts from them."""
  # (its own buffers: the step donates params and average separately)
  ema = None if g_state.ema_params is None else jax.tree.map(jnp.array, params)
  return g_state.replace(params=params, batch_stats=batch_stats, ema_params=ema)


def inference_state(g_state: TrainState) -> TrainState:
  """The G that validation, sample grids and the export use: the moving average where kept."""
  if g_state.ema_params is None:
    return g_state
  return g_state.replace(params=g_state.ema_params)


def learning_rate_schedule(config, net: str = 'generator') -> optax.Schedule:
  """Step decay: lr x decay_factor at each of decay_steps (the paper: 1e-4, then 1e-5).

  net='discriminator': config.optim.d_learning_rate when set (a two time-scale update rule,
  Heusel et al. 2017), else G's rate, as in the paper.
  """
  base = config.optim.learning_rate
  if net == 'discriminator' and config.optim.get('d_learning_rate', 0.0):
    base = config.optim.d_learning_rate
  return optax.piecewise_constant_schedule(
    base, {int(s): config.optim.decay_factor for s in config.optim.decay_steps}
  )


def make_optimizer(config, net: str = 'generator') -> optax.GradientTransformation:
  return optax.adam(learning_rate_schedule(config, net), b1=config.optim.b1, b2=config.optim.b2)


def create_train_states(config, rng) -> tuple[TrainState, TrainState | None]:
  """Fresh G (and, in the SRGAN phase, D) states; D is None for SRResNet.

  Compiled as one program: run op by op, the initialisers compile a kernel per weight shape
  (measured: 12 s of a 50 s test went to compiling truncated normals alone).
  """
  return jax.jit(functools.partial(_create_train_states, config))(rng)


def _create_train_states(config, rng) -> tuple[TrainState, TrainState | None]:
  g_rng, d_rng = jax.random.split(rng)
  hr = config.data.hr_crop
  lr = hr // config.model.scale
  g_model = generators.make_generator(config.model)
  g_vars = g_model.init(g_rng, jnp.zeros((1, lr, lr, 3)), train=False)
  g_state = TrainState.create(
    apply_fn=g_model.apply,
    params=g_vars['params'],
    batch_stats=g_vars.get('batch_stats', {}),  # BN-free generators have none
    tx=make_optimizer(config),
    ema_params=g_vars['params'] if config.get('ema_decay', 0.0) else None,
  )
  if config.phase == 'srresnet':
    return g_state, None
  d_model = srgan.make_discriminator(config)
  d_vars = d_model.init(d_rng, jnp.zeros((1, hr, hr, 3)), train=False)
  d_state = TrainState.create(
    apply_fn=d_model.apply,
    params=d_vars['params'],
    batch_stats=d_vars['batch_stats'],
    tx=make_optimizer(config, 'discriminator'),
  )
  return g_state, d_state
