"""SRGAN losses (Ledig et al. 2017, Section 2.2).

Perceptual loss  l^SR = l^SR_X + 1e-3 * l^SR_Gen   (Eq. 3)
  * content loss l^SR_X: pixel MSE (Eq. 4) or the VGG loss on feature maps
    phi_i,j of a frozen ImageNet VGG-19 (Eq. 5; `srgan_jax.vgg`);
  * adversarial loss l^SR_Gen = -log D(G(I^LR))  (Eq. 6), the non-saturating form.
Discriminator: binary cross-entropy on real (HR) and fake (SR) images (Eq. 2).

All adversarial terms take D's logits and use log-sigmoid, never log(sigmoid(.)),
so they stay finite when D saturates.
"""

import jax
import jax.numpy as jnp


def pixel_mse(sr: jnp.ndarray, hr: jnp.ndarray) -> jnp.ndarray:
  """l^SR_MSE: mean squared error over all pixels and channels (Eq. 4)."""
  return jnp.mean(jnp.square(sr.astype(jnp.float32) - hr.astype(jnp.float32)))


def generator_adversarial(fake_logits: jnp.ndarray) -> jnp.ndarray:
  """l^SR_Gen = mean over the batch of -log D(G(I^LR)) (Eq. 6)."""
  return -jnp.mean(jax.nn.log_sigmoid(fake_logits))


def discriminator_bce(real_logits: jnp.ndarray, fake_logits: jnp.ndarray) -> jnp.ndarray:
  """-log D(I^HR) - log(1 - D(G(I^LR))), each averaged over the batch (Eq. 2)."""
  # log(1 - sigmoid(z)) = log_sigmoid(-z).
  return -jnp.mean(jax.nn.log_sigmoid(real_logits)) - jnp.mean(jax.nn.log_sigmoid(-fake_logits))


# ----------------------------------------------------------------------------
# ESRGAN (Wang et al. 2018): pixel terms on [0, 1] images and the relativistic average GAN.


def pixel_loss(kind: str, sr: jnp.ndarray, hr: jnp.ndarray) -> jnp.ndarray:
  """BasicSR's L1Loss / MSELoss ('l1' / 'mse') on [0, 1] images; sr and hr are in [-1, 1].

  (The paper's content 'mse' is pixel_mse on the [-1, 1] images: 4x this 'mse'.)
  """
  d = (sr.astype(jnp.float32) - hr.astype(jnp.float32)) * 0.5  # the difference in [0, 1] units
  if kind == 'l1':
    return jnp.mean(jnp.abs(d))
  if kind == 'mse':
    return jnp.mean(jnp.square(d))
  raise ValueError(f'unknown pixel loss {kind!r}; use l1 or mse')


def ragan_generator(real_logits: jnp.ndarray, fake_logits: jnp.ndarray) -> jnp.ndarray:
  """L^Ra_G = -E[log(1 - D_Ra(x_r, x_f))] - E[log D_Ra(x_f, x_r)], halved (ESRGAN Eq. 2).

  D_Ra(x_r, x_f) = sigmoid(C(x_r) - E[C(x_f)]), means over the batch; G's gradient
  reaches it through the fake logits in both terms.
  """
  rel_real = real_logits - jnp.mean(fake_logits)
  rel_fake = fake_logits - jnp.mean(real_logits)
  return -(jnp.mean(jax.nn.log_sigmoid(-rel_real)) + jnp.mean(jax.nn.log_sigmoid(rel_fake))) / 2


def ragan_discriminator(real_logits: jnp.ndarray, fake_logits: jnp.ndarray) -> jnp.ndarray:
  """L^Ra_D = -E[log D_Ra(x_r, x_f)] - E[log(1 - D_Ra(x_f, x_r))], halved (ESRGAN Eq. 1)."""
  rel_real = real_logits - jnp.mean(fake_logits)
  rel_fake = fake_logits - jnp.mean(real_logits)
  return -(jnp.mean(jax.nn.log_sigmoid(rel_real)) + jnp.mean(jax.nn.log_sigmoid(-rel_fake))) / 2
