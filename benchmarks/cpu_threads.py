"""OS threads of a training process on XLA:CPU, step by step (are threads piling up?).

Runs the demo-size SRGAN step (B = 4 residual blocks, batch 4, 48x48 HR crops,
MSE content loss; the convolutions through oneDNN where it is built) and prints
the process's thread count (/proc/self/status) after the first step, then every
`--every` steps. oneDNN's OpenMP build starts a thread team for each thread
that enters it; XLA:CPU calls the convolution handlers from its own pool, so
without one shared team the count grows with every pool thread that meets a
convolution. Try `OMP_NUM_THREADS=8 python -m benchmarks.cpu_threads`.

  python -m benchmarks.cpu_threads [--steps 30] [--every 10] [--tiny]

Nothing is downloaded; about a minute on 2 CPU cores. Linux only.
"""

import argparse
import os
import time

import jax
import jax.numpy as jnp
import numpy as np

from configs import default
from srgan_jax.training import train_states
from srgan_jax.training import update_step
from srgan_jax.kernels import onednn_conv


def threads() -> int:
  with open('/proc/self/status') as f:
    return int(next(l for l in f if l.startswith('Threads:')).split()[1])


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--steps', type=int, default=30)
  parser.add_argument('--every', type=int, default=10)
  parser.add_argument('--tiny', action='store_true', help='tiny G and D, 24x24 crops (tests)')
  args = parser.parse_args()
  config = default.demo(default.get_config())
  config.loss.content = 'mse'
  if args.tiny:
    config.model.tiny, config.data.hr_crop = True, 24
  print(
    f'cores {os.cpu_count()}, OMP_NUM_THREADS={os.environ.get("OMP_NUM_THREADS", "(unset)")}, '
    f'convolutions: {onednn_conv.status()[1]}'
  )
  g_state, d_state = train_states.create_train_states(config, jax.random.key(0))
  step = update_step.make_jitted_step(
    config, update_step.make_mesh(), update_step.make_content_loss(config)
  )
  crop = config.data.hr_crop
  hr = np.random.default_rng(0).integers(0, 256, (4, crop, crop, 3), dtype=np.uint8)
  batch = {'hr': jnp.asarray(hr)}
  print(f'threads before the first step: {threads()}')
  t0 = time.time()
  for i in range(1, args.steps + 1):
    g_state, d_state, metrics = step(g_state, d_state, batch, None)
    jax.block_until_ready(metrics)
    if i == 1 or i % args.every == 0:
      print(f'threads after step {i}: {threads()}')
  print(f'{args.steps} steps in {time.time() - t0:.1f}s')


if __name__ == '__main__':
  main()
