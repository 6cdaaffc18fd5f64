"""A private, per-user cache directory for files this package derives and later loads.

`private_dir()` is $SRGAN_JAX_CACHE, else $XDG_CACHE_HOME/srgan_jax
(~/.cache/srgan_jax), else a per-user folder in the temp dir. What is loaded
from it (the compiled oneDNN handlers, converted ImageNet weights) must not be
plantable by another local user, so the folder is created 0700 and refused
when it is owned by someone else or writable by others; files are checked the
same way before use (`untrusted`), and written atomically (`write_private`).
"""

import os
import pathlib
import stat
import tempfile

from srgan_jax.common import files
from srgan_jax.common.errors import UserError


class CacheError(UserError):
  """No cache directory is safe to use, or a file in it is not."""


def untrusted(path: pathlib.Path, kind: str) -> str | None:
  """Why `path` (a 'dir' or a regular 'file', not a link) may not be trusted, or None.

  Trusted: owned by this user and writable by no one else, so no other local
  user can have planted or swapped what gets loaded.
  """
  st = os.lstat(path)
  is_kind = stat.S_ISDIR(st.st_mode) if kind == 'dir' else stat.S_ISREG(st.st_mode)
  if not is_kind:
    return f'{path} is not a {"directory" if kind == "dir" else "regular file"}'
  if st.st_uid != os.getuid():
    return f'{path} is owned by uid {st.st_uid}, not by this user (uid {os.getuid()})'
  if st.st_mode & 0o022:
    return f'{path} is writable by other users (mode {stat.S_IMODE(st.st_mode):o})'
  return None


def private_dir() -> pathlib.Path:
  """The first usable cache folder, created 0700; CacheError if none is private and writable."""
  explicit = os.environ.get('SRGAN_JAX_CACHE')
  xdg = os.environ.get('XDG_CACHE_HOME') or pathlib.Path.home() / '.cache'
  candidates = (
    [pathlib.Path(explicit)]
    if explicit
    else [
      pathlib.Path(xdg) / 'srgan_jax',
      pathlib.Path(tempfile.gettempdir()) / f'srgan_jax-{os.getuid()}',
    ]
  )
  refused = []
  for d in candidates:
    try:
      d.mkdir(mode=0o700, parents=True, exist_ok=True)
      why = untrusted(d, 'dir')
    except OSError as e:
      refused.append(f'{d}: {e.strerror or e}')
      continue
    if why:
      refused.append(why)
    elif os.access(d, os.W_OK):
      return d
    else:
      refused.append(f'{d} is not writable')
  raise CacheError(
    f'no private cache directory ({"; ".join(refused)}): set SRGAN_JAX_CACHE to a '
    'directory that only you can write'
  )


def check_private(path: pathlib.Path) -> None:
  """CacheError unless `path` is a regular file owned by this user and writable by no one else."""
  why = untrusted(path, 'file')
  if why:
    raise CacheError(f'{why}; remove it and retry.')


def write_private(path: pathlib.Path, data: bytes) -> None:
  """Writes `path` (mode 0600) through a temp file and a rename: never a partial file."""
  files.write_atomic(path, data, mode=0o600)
