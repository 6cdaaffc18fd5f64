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
