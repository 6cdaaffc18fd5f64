"""What a file given as weights is, from its first bytes: for one-line errors that say so.

describe(path) -> 'a PNG image', 'a zip archive (PyTorch's torch.save format)', ...
"""

from pathlib import Path

# (magic bytes at offset 0, what the file is), most specific first.
_MAGIC = (
  (b'PK\x03\x04', "a zip archive (PyTorch's torch.save format, or another zip)"),
  (b'\x89PNG\r\n\x1a\n', 'a PNG image'),
  (b'\xff\xd8\xff', 'a JPEG image'),
  (b'\x89HDF\r\n\x1a\n', 'an HDF5 file (Keras weights?)'),
  (b'\x1f\x8b', 'a gzip file'),
  (b'GIF8', 'a GIF image'),
  (b'BM', 'a BMP image'),
)
TORCH_KINDS = ('a zip archive', 'a Python pickle')


def describe(path) -> str:
  """What the file at `path` is, in a few words; 'an empty file' or 'N bytes of ...' otherwise."""
  path = Path(path)
  with path.open('rb') as f:
    head = f.read(64)
  if not head:
    return 'an empty file'
  if head[0] == 0x80 and len(head) > 1 and 2 <= head[1] <= 5:  # pickle's PROTO opcode
    return 'a Python pickle (the legacy torch.save format)'
  for magic, what in _MAGIC:
    if head.startswith(magic):
      return what
  if len(head) > 9 and head[8:10] == b'{"':  # 8-byte little-endian header size, then JSON
    return 'a safetensors file'
  if 0x80 <= head[0] <= 0x8F or head[0] in (0xDE, 0xDF):  # a msgpack map
    return 'a msgpack file (a srgan_jax generator file? use it as it is, no conversion)'
  try:
    head.decode('utf-8')
    return 'a text file'
  except UnicodeDecodeError as e:
    if e.start >= len(head) - 3 and b'\x00' not in head:  # a character cut at byte 64
      return 'a text file'
    return f'{path.stat().st_size} bytes of unrecognised binary data'


def is_torch_file(path) -> bool:
  """Whether the file starts as torch.save's formats do (zip, or a pickle)."""
  return describe(path).startswith(TORCH_KINDS)
