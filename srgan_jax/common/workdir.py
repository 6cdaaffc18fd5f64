"""Checks on the run's working directory, done before anything is compiled."""

import uuid

from etils import epath

from srgan_jax.common.errors import UserError


class WorkdirError(UserError):
  pass


def absolute(path) -> epath.Path:
  """path made absolute (Orbax refuses relative checkpoint paths); URIs (gs://) as they are."""
  path = epath.Path(path)
  return path if '://' in str(path) else path.absolute()


def check_writable(workdir: str) -> epath.Path:
  """Creates workdir if needed and proves it writable with a probe file."""
  path = epath.Path(workdir)
  try:
    path.mkdir(parents=True, exist_ok=True)
    probe = path / f'.write_probe_{uuid.uuid4().hex}'
    probe.write_text('ok')
    probe.unlink()
  except OSError as e:
    raise WorkdirError(
      f'cannot write to --workdir={workdir} ({e.strerror or e}); pass a directory you can write to.'
    ) from None
  return path


# What a run writes into its workdir (README, "What a run writes").
RUN_OUTPUTS = (
  'config.json',
  'export',
  'metrics.jsonl',
  'tensorboard',
  'samples',
  'DONE',
  'checkpoints',
)


def move_run(workdir, destination) -> list[str]:
  """Moves the run outputs in `workdir` into `destination` (the demo's layout for a phase).

  `checkpoints` goes last, so a move cut short is finished by the next attempt
  (the caller decides from workdir/checkpoints). Returns the names moved.
  """
  workdir, destination = epath.Path(workdir), epath.Path(destination)
  names = [n for n in RUN_OUTPUTS[:-1] if (workdir / n).exists()]
  names += sorted(p.name for p in workdir.glob('nonfinite_step_*'))
  names += sorted(p.name for p in workdir.glob('config.until_step_*'))
  names += [RUN_OUTPUTS[-1]] if (workdir / RUN_OUTPUTS[-1]).exists() else []
  clash = [n for n in names if (destination / n).exists()]
  if clash:
    raise WorkdirError(
      f'cannot move the previous run in {workdir} to {destination}: '
      f'{destination / clash[0]} exists; move it away or use a fresh --workdir.'
    )
  destination.mkdir(parents=True, exist_ok=True)
  for n in names:
    (workdir / n).rename(destination / n)
  return names
