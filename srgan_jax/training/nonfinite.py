"""What a run leaves behind when a loss goes non-finite: the step's inputs and metrics.

The train loop stops with FloatingPointError before any checkpoint of the
poisoned state is written; first it writes, in WORKDIR,
  nonfinite_step_<n>.npz   the HR batch of step n (on several processes, one file
                           per process: nonfinite_step_<n>.process_<i>.npz, its shard)
  nonfinite_step_<n>.json  step n's metrics, those of the steps since the last
                           check, the newest checkpoint (the state to replay from)
                           and the config.
"""

import io
import json
import math

import jax
import numpy as np
from etils import epath


def _plain(v):
  v = float(v)
  return v if math.isfinite(v) else str(v)  # strict JSON has no NaN / Infinity


def write_report(
  workdir, step: int, local_hr: np.ndarray, recent: list[dict], config, last_checkpoint: int | None
) -> epath.Path:
  """Writes the npz (every process) and json (process 0) for the first bad step; returns the json path."""
  workdir = epath.Path(workdir)
  stem = f'nonfinite_step_{step}'
  name = f'{stem}.npz' if jax.process_count() == 1 else f'{stem}.process_{jax.process_index()}.npz'
  buf = io.BytesIO()
  np.savez_compressed(buf, hr=np.asarray(local_hr))
  (workdir / name).write_bytes(buf.getvalue())
  report = workdir / f'{stem}.json'
  if jax.process_index() == 0:
    report.write_text(
      json.dumps(
        {
          'step': step,
          'metrics': {k: _plain(v) for k, v in recent[-1].items()},
          'recent_steps': [{k: _plain(v) for k, v in m.items()} for m in recent],
          'last_checkpoint_step': last_checkpoint,
          'inputs': 'HR uint8 batch in the .npz (key "hr"), this process\'s shard of the global batch',
          'config': json.loads(config.to_json_best_effort()),
        },
        indent=1,
      )
    )
  return report
