"""A trained generator, ready to run: load, check against its architecture, predict."""

import dataclasses
import functools
from collections.abc import Callable

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from srgan_jax.weights import checkpoint_files
from srgan_jax.kernels import fast_conv
from srgan_jax.weights import zoo
from srgan_jax.nets import generators
from srgan_jax.evaluation import fused_generator
from srgan_jax.evaluation import tiling
from srgan_jax.common.errors import UserError


# Inference compute dtypes: float32 (exact, the default) or bfloat16 (oneDNN's bf16 kernels
# on CPUs with bf16 units; weights stay float32, the image comes back as float32).
DTYPES = ('float32', 'bfloat16')


@dataclasses.dataclass(frozen=True)
class Model:
  variables: dict  # {'params', 'batch_stats'}
  predict: Callable  # (variables, lr [N, h, w, 3] in [0, 1]) -> sr [N, h*s, w*s, 3] in [-1, 1]
  scale: int
  step: int | None
  phase: str
  halo: int  # LR receptive radius (tiling.receptive_radius)
  source: str
  dtype: str = 'float32'  # the compute dtype of predict
  self_ensemble: bool = False  # predict averages G over the 8 flips / rotations (EDSR's '+')


def jit_predict() -> Callable:
  """G in inference mode (running BN statistics), jitted: (apply_fn, variables, lr [0,1]) -> sr [-1,1].

  apply_fn is static: one compile per generator and input shape.
  """

  def predict(apply_fn, variables, lr):
    return apply_fn(variables, lr, train=False)

  return jax.jit(predict, static_argnums=0, compiler_options=fast_conv.compiler_options())


def generator_apply(model_config, dtype: str = 'float32') -> Callable:
  """G's apply (variables, lr, train=False) computing in `dtype`: the paper's SRResNet in bfloat16
  on a CPU with bf16 units runs with BN folded and bias / PReLU / skips fused into oneDNN's
  convolutions (`fused_generator`, the same results within bf16 rounding); else Flax's apply."""
  generator = generators.make_generator(model_config, dtype=jnp.dtype(dtype))
  if fused_generator.applies(generator):
    return functools.partial(_fused_apply, generator)
  return generator.apply


def _fused_apply(generator, variables, lr, train: bool = False):
  assert not train, 'the fused generator is inference only'
  return fused_generator.apply(generator, variables, lr)


def make_predict(model_config, dtype: str = 'float32') -> Callable:
  """jit of G in inference mode (running BN statistics) computing in `dtype`; compiles once per
  input shape."""
  return functools.partial(jit_predict(), generator_apply(model_config, dtype))


def self_ensemble(predict: Callable) -> Callable:
  """EDSR's geometric self-ensemble (Lim et al. 2017, the '+' models): G on the 8 flips and
  90-degree rotations of LR, each SR turned back, averaged in float32. 8x the compute; a test-time
  average, not the trained model (benchmark tables name it with a '+')."""

  def ensembled(variables, lr):  # lr [N, h, w, 3]
    outs = []
    for k in range(4):
      for flip in (False, True):
        x = jnp.rot90(lr, k, axes=(1, 2))
        y = predict(variables, x[:, :, ::-1] if flip else x).astype(jnp.float32)
        outs.append(jnp.rot90(y[:, :, ::-1] if flip else y, -k, axes=(1, 2)))
    return jnp.mean(jnp.stack(outs), axis=0)

  return ensembled


def _check_architecture(variables, model_config, where) -> None:
  have = checkpoint_files.leaf_shapes(
    {'params': variables.get('params', {}), 'batch_stats': variables.get('batch_stats', {})}
  )
  diff = generators.mismatch(have, model_config)
  if diff:
    raise UserError(
      f'{where}: its generator weights do not fit the architecture its meta describes '
      f'({dict(model_config)}; first difference {diff}); the checkpoint is from '
      'another version of the model or damaged.'
    )


def load_model(path, dtype: str = 'float32', ensemble: bool = False) -> Model:
  """The generator saved in a workdir, its checkpoints/ or export/ dir, or one step dir (or a
  generator file, or a shipped model's name), predicting in compute dtype `dtype` (with
  `ensemble`: averaged over the 8 flips / rotations, `self_ensemble`)."""
  if dtype not in DTYPES:
    raise UserError(f'--dtype={dtype}: use one of {", ".join(DTYPES)}.')
  variables, meta = zoo.load_generator_with_meta(path)
  model_meta = meta.get('model') if isinstance(meta, dict) else None
  if not model_meta or 'scale' not in model_meta:
    raise UserError(
      f'{path}: checkpoint meta has no model description (scale, num_blocks, ...); '
      're-export it with this version of srgan_jax.'
    )
  model_config = ml_collections.ConfigDict(model_meta)
  try:
    generators.check(model_config)
  except ValueError as e:
    raise UserError(
      f'{path}: its meta describes no generator this srgan_jax builds ({e})'
    ) from None
  _check_architecture(variables, model_config, path)
  predict = make_predict(model_config, dtype)
  return Model(
    variables=jax.device_put(variables),
    predict=self_ensemble(predict) if ensemble else predict,
    scale=int(model_config.scale),
    step=meta.get('step'),
    phase=meta.get('phase', 'generator'),
    halo=tiling.receptive_radius(model_meta),
    source=str(path),
    dtype=dtype,
    self_ensemble=ensemble,
  )


DEFAULT_TILE = 256  # LR pixels per window side, halo included


def default_tile(model: Model) -> int:
  """The window side `upscale` and `evaluate` use unless told: 256 LR pixels, or, where the
  halo would leave a small core (RRDBNet x4, 23 blocks: 349 pixels each side), 2 x halo + 256."""
  if DEFAULT_TILE >= 2 * model.halo + DEFAULT_TILE // 2:
    return DEFAULT_TILE
  return 2 * model.halo + DEFAULT_TILE


def upscale_float(model: Model, lr01: np.ndarray, tile: int | None) -> np.ndarray:
  """SR in [-1, 1] (float32 [H*s, W*s, 3]) of LR [H, W, 3] in [0, 1], tiled if tile is set."""
  lr01 = np.asarray(lr01, np.float32)
  predict = lambda x: model.predict(model.variables, x).astype(jnp.float32)
  if tile is None:
    return np.asarray(predict(lr01[None]))[0]
  return tiling.upscale_tiled(predict, lr01, model.scale, tile, model.halo)
