"""srgan_jax: SRGAN (Ledig et al., CVPR 2017) in JAX/Flax."""

from srgan_jax.data.imresize import imresize
