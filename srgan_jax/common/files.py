"""Writing files so that readers never see a partial one (images, models, reports, cache)."""

import os
import secrets
from pathlib import Path


def write_atomic(path, data: bytes, mode: int = 0o666) -> None:
  """Writes data to path via a temp file in the same folder and os.replace:
  readers see either the old file or the complete new one, never a partial one.

  mode: the new file's permissions (before umask); 0o600 for a private file.
  """
  path = Path(path)
  # Not mkstemp: its 0600 mode would survive the rename; 0666 obeys umask.
  tmp = path.parent / f'.{path.name}.{secrets.token_hex(8)}.tmp'
  fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
  try:
    with os.fdopen(fd, 'wb') as f:
      f.write(data)
      f.flush()
      os.fsync(f.fileno())
    os.replace(tmp, path)
  except BaseException:
    tmp.unlink(missing_ok=True)
    raise
