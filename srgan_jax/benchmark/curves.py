"""bf16 vs fp32 SRResNet loss curves on crops of the demo photographs ("the same curve within noise")."""

import jax
import jax.numpy as jnp
import numpy as np

from srgan_jax.data import sources
from srgan_jax.data import pipeline
from srgan_jax.training import train_states
from srgan_jax.training import update_step


def photo_crops(data_config, steps, batch, crop, seed=0):
  """`steps` uint8 batches of random `crop`-sized crops of the demo photographs (no download)."""
  images = sources.load_shard('demo', data_config, crop)
  rng = np.random.default_rng(seed)
  out = np.empty((steps, batch, crop, crop, 3), np.uint8)
  for t in range(steps):
    for j in range(batch):
      out[t, j] = pipeline.random_crop(images[rng.integers(len(images))], crop, rng, augment=False)
  return out


def loss_curves(config, steps, window=None):
  """SRResNet content-loss curves: fp32 and bf16 from init 0, fp32 from init 1, same batches.

  Returns {'float32': [...], 'bfloat16': [...], 'float32_init1': [...]} (per-step losses),
  the window means, and the largest relative gap of bf16 (and of the other init, the
  run-to-run noise) from fp32 over the windows after the first.
  """
  window = window or max(1, steps // 10)
  batches = photo_crops(config.data, steps, config.data.batch_size, config.data.hr_crop)
  curves = {}
  for name, dtype, seed in (
    ('float32', 'float32', 0),
    ('bfloat16', 'bfloat16', 0),
    ('float32_init1', 'float32', 1),
  ):
    c = config.copy_and_resolve_references()
    c.phase, c.loss.content, c.model.compute_dtype = 'srresnet', 'mse', dtype
    g_state, _ = train_states.create_train_states(c, jax.random.key(seed))
    step = update_step.make_jitted_step(
      c, update_step.make_mesh(), update_step.make_content_loss(c)
    )
    losses = []
    for hr in batches:
      g_state, _, metrics = step(g_state, None, {'hr': jnp.asarray(hr)}, None)
      losses.append(metrics['content_loss'])
    curves[name] = [float(l) for l in jax.device_get(losses)]
  means = {
    k: np.asarray(v[: len(v) // window * window]).reshape(-1, window).mean(1)
    for k, v in curves.items()
  }
  gap = lambda k: float(np.max(np.abs(means[k][1:] / means['float32'][1:] - 1)))
  return {
    'steps': steps,
    'window': window,
    'curves': curves,
    'window_means': {k: v.tolist() for k, v in means.items()},
    'bf16_max_rel_gap': gap('bfloat16'),
    'init_max_rel_gap': gap('float32_init1'),
  }


def format_curves(report):
  w = report['window']
  lines = [
    f'SRResNet content loss, mean of each {w} steps (same batches of demo-photo crops):',
    f'{"steps":>11} {"float32":>9} {"bfloat16":>9} {"fp32 init1":>10}',
  ]
  m = report['window_means']
  for i in range(len(m['float32'])):
    lines.append(
      f'{i * w + 1:>5}-{(i + 1) * w:<5} {m["float32"][i]:9.5f} {m["bfloat16"][i]:9.5f} '
      f'{m["float32_init1"][i]:10.5f}'
    )
  lines.append(
    f'largest gap to float32 after the first window: bfloat16 '
    f'{report["bf16_max_rel_gap"]:.1%}, float32 from another init {report["init_max_rel_gap"]:.1%}'
  )
  return '\n'.join(lines)
