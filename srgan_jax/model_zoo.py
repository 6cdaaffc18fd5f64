"""`python -m srgan_jax.model_zoo list | export CKPT OUT.msgpack`: the shipped generators, and
a run's generator exported as one file (the library: srgan_jax.weights.zoo)."""

import sys

from srgan_jax.weights.zoo import main

if __name__ == '__main__':
  sys.exit(main())
