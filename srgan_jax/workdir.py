"""Checks on the run's working directory, done before anything is compiled."""

import uuid

from etils import epath

from srgan_jax.errors import UserError


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
    raise WorkdirError(f'cannot write to --workdir={workdir} ({e.strerror or e}); '
                       'pass a directory you can write to.') from None
  return path
