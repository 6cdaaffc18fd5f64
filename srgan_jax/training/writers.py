"""Where a run reports: console lines, WORKDIR/metrics.jsonl, TensorBoard events, sample grids.

Only process 0 writes (`enabled`); other processes get a writer that does nothing.
"""

import io
import json
import time

import jax
import jax.numpy as jnp
import numpy as np
from absl import logging
from etils import epath
from PIL import Image

from srgan_jax.evaluation import metrics
from srgan_jax.evaluation import validation
from srgan_jax.data import degradations
from srgan_jax.data.imresize import imresize


class MetricWriter:
  """Scalars to the console, to metrics.jsonl (one JSON object a line) and to TensorBoard."""

  def __init__(self, workdir, enabled: bool = True):
    self.workdir = epath.Path(workdir)
    self.enabled = enabled
    self._tb = None
    if enabled:
      self.workdir.mkdir(parents=True, exist_ok=True)
      from tensorboardX import SummaryWriter  # pylint: disable=g-import-not-at-top

      self._tb = SummaryWriter(str(self.workdir / 'tensorboard'))

  def write_scalars(self, step: int, scalars: dict, eta_steps: int | None = None) -> None:
    """eta_steps: steps left, for an ETA at the logged steps/s (training lines only)."""
    if not self.enabled:
      return
    line = f'step {step} | ' + ' '.join(f'{k} {v:.4g}' for k, v in scalars.items())
    if eta_steps is not None:
      rate = scalars.get('steps_per_sec', 0.0)
      line += f' | eta {_hms(eta_steps / rate if rate > 0 else float("nan"))}'
    logging.info('%s', line)
    self._append_jsonl(json.dumps({'step': step, 'time': time.time(), **scalars}) + '\n')
    for k, v in scalars.items():
      self._tb.add_scalar(k, v, step)
    self._tb.flush()

  def _append_jsonl(self, line: str) -> None:
    path = self.workdir / 'metrics.jsonl'
    if '://' not in str(path):  # a local file: append
      with path.open('a') as f:
        f.write(line)
    else:  # object stores (gs://) cannot append: rewrite the object with the new line
      path.write_text((path.read_text() if path.exists() else '') + line)

  def write_image(self, step: int, tag: str, image_uint8: np.ndarray) -> None:
    if self.enabled:
      self._tb.add_image(tag, image_uint8, step, dataformats='HWC')
      self._tb.flush()

  def close(self) -> None:
    if self._tb is not None:
      self._tb.close()


def _hms(seconds: float) -> str:
  if not np.isfinite(seconds):
    return '?'
  s = int(seconds)
  return f'{s // 3600}:{s // 60 % 60:02d}:{s % 60:02d}'


def sample_grid(val_hr: np.ndarray, data, scale: int, g_state, predict) -> tuple[np.ndarray, dict]:
  """Rows of (bicubic | SR | HR) for each fixed validation crop (uint8 HWC), and their PSNR-Y.

  The LR inputs are made by the training's degradation (config.data.degradation), with one
  fixed key: the same inputs at every step."""
  lr, hr = degradations.make_lr(jax.random.key(0), jnp.asarray(val_hr), data, scale)
  variables = {'params': g_state.params, 'batch_stats': g_state.batch_stats}
  sr = predict(g_state.apply_fn, variables, lr)
  bicubic = imresize(lr, scale=scale) * 2.0 - 1.0
  bicubic, sr, hr = (validation.to_uint8(x) for x in (bicubic, sr, hr))
  rows = [np.concatenate(row, axis=1) for row in zip(bicubic, sr, hr)]
  psnr = {
    f'val/psnr_y_{name}': float(np.mean(metrics.psnr_y(x, hr, crop_border=scale)))
    for name, x in (('sr', sr), ('bicubic', bicubic))
  }
  return np.concatenate(rows, axis=0), psnr


def write_sample_grid(
  writer: MetricWriter, workdir, step: int, val_hr, config, g_state, predict
) -> None:
  grid, psnr = sample_grid(val_hr, config.data, config.model.scale, g_state, predict)
  if not writer.enabled:
    return
  writer.write_scalars(step, psnr)
  path = epath.Path(workdir) / 'samples' / f'step_{step:07d}.png'
  path.parent.mkdir(parents=True, exist_ok=True)
  buf = io.BytesIO()
  Image.fromarray(grid).save(buf, format='PNG')
  path.write_bytes(buf.getvalue())
  writer.write_image(step, 'samples/bicubic_sr_hr', grid)
