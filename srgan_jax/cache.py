"""A private, per-user cache directory for files this package derives and later loads.

`private_dir()` is $SRGAN_JAX_CACHE, else $XDG_CACHE_HOME/srgan_jax
(~/.cache/srgan_jax), else a per-user folder in the temp dir. Whatever is
loaded from it (compiled libraries, converted weights) must not be plantable
by another local user, so the folder is created 0700 and refused when it is
owned by someone else or writable by group or others; files are checked the
same way before use, and written atomically.
"""

import os
import pathlib
import secrets
import stat
import tempfile

from srgan_jax.errors import UserError


class CacheError(UserError):
  """The cache directory or a file in it is not safe to load from."""


def _unsafe(path: pathlib.Path, st: os.stat_result) -> str | None:
  if st.st_uid != os.getuid():
    return f'{path} is owned by uid {st.st_uid}, not by you (uid {os.getuid()})'
  if st.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
    return f'{path} is writable by group or others (mode {stat.S_IMODE(st.st_mode):o})'
  return None


def _candidates() -> list[pathlib.Path]:
  env = os.environ.get('SRGAN_JAX_CACHE')
  if env:
    return [pathlib.Path(env)]
  xdg = os.environ.get('XDG_CACHE_HOME') or pathlib.Path.home() / '.cache'
  return [pathlib.Path(xdg) / 'srgan_jax', pathlib.Path(tempfile.gettempdir()) / f'srgan_jax-{os.getuid()}']


def private_dir() -> pathlib.Path:
  """The first usable cache folder, created 0700; CacheError if none is safe and writable."""
  reasons = []
  for folder in _candidates():
    try:
      folder.mkdir(mode=0o700, parents=True, exist_ok=True)
      st = os.stat(folder, follow_symlinks=False)
      if not stat.S_ISDIR(st.st_mode):
        reasons.append(f'{folder} is not a directory')
        continue
      why = _unsafe(folder, st)
      if why:
        reasons.append(why)
        continue
      if not os.access(folder, os.W_OK | os.X_OK):
        reasons.append(f'{folder} is not writable')
        continue
      return folder
    except OSError as e:
      reasons.append(f'{folder}: {e.strerror or e}')
  raise CacheError(f'no safe cache directory ({"; ".join(reasons)}); set SRGAN_JAX_CACHE to a '
                   'folder only you can write.')


def check_private(path: pathlib.Path) -> None:
  """CacheError unless `path` is a regular file owned by this user and not writable by others."""
  st = os.stat(path, follow_symlinks=False)
  if not stat.S_ISREG(st.st_mode):
    raise CacheError(f'{path} is not a regular file; remove it and retry.')
  why = _unsafe(path, st)
  if why:
    raise CacheError(f'{why}; remove it and retry.')


def write_private(path: pathlib.Path, data: bytes) -> None:
  """Writes `path` (mode 0600) through a temp file and a rename: never a partial file."""
  tmp = path.parent / f'.{path.name}.{secrets.token_hex(8)}.tmp'
  fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
  try:
    with os.fdopen(fd, 'wb') as f:
      f.write(data)
      f.flush()
      os.fsync(f.fileno())
    os.replace(tmp, path)
  except BaseException:
    tmp.unlink(missing_ok=True)
    raise
