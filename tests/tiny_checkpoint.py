"""One tiny trained x4 run shared by the evaluate and upscale tests (trained once per session)."""

import pathlib

from tests.helpers import tiny_config


def tiny_workdir(tmp_path_factory) -> pathlib.Path:
  """A 2-step tiny SRResNet x4 workdir with checkpoints at steps 1 and 2 and an export."""
  workdir = tmp_path_factory.getbasetemp() / 'tiny_x4_run'
  if not (workdir / 'export').is_dir():
    from srgan_jax.training import loop  # pylint: disable=g-import-not-at-top

    loop.train_and_evaluate(
      tiny_config(
        **{'num_train_steps': 2, 'checkpoint_every': 1, 'sample_every': 0, 'log_every': 1}
      ),
      str(workdir),
    )
  return workdir
