"""Runs two SRGAN train steps on a fixed batch over all local devices; saves the new params.

Used by test_train.py in subprocesses with different fake CPU device counts:
  python tests/mesh_step_runner.py OUT.npz   (XLA_FLAGS sets the device count)
"""

import pathlib
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

import jax  # noqa: E402
import numpy as np  # noqa: E402
from flax import traverse_util  # noqa: E402
from jax.sharding import NamedSharding, PartitionSpec as P  # noqa: E402

from srgan_jax.training import train_states  # noqa: E402
from srgan_jax.training import update_step  # noqa: E402
from tests.helpers import tiny_config  # noqa: E402


def main(out):
  config = tiny_config('srgan', **{'data.batch_size': 8})
  mesh = update_step.make_mesh()
  g_state, d_state = train_states.create_train_states(config, jax.random.key(0))
  replicated = NamedSharding(mesh, P())
  g_state, d_state = jax.device_put((g_state, d_state), replicated)
  hr = np.random.default_rng(0).integers(0, 256, (8, 24, 24, 3), dtype=np.uint8)
  batch = {'hr': jax.device_put(hr, NamedSharding(mesh, P('data')))}
  step = update_step.make_jitted_step(config, mesh, update_step.make_content_loss(config))
  for _ in range(2):
    g_state, d_state, _ = step(g_state, d_state, batch, None)
  flat = {}
  for name, tree in (
    ('g', g_state.params),
    ('d', d_state.params),
    ('gbs', g_state.batch_stats),
    ('dbs', d_state.batch_stats),
  ):
    for k, v in traverse_util.flatten_dict(jax.device_get(tree), sep='/').items():
      flat[f'{name}/{k}'] = np.asarray(v)
  np.savez(out, n_devices=jax.device_count(), **flat)


if __name__ == '__main__':
  main(sys.argv[1])
