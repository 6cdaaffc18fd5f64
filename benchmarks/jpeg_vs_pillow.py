"""The JAX JPEG round trip (srgan_jax/data/jpeg.py) against Pillow's libjpeg, over qualities.

  python -m benchmarks.jpeg_vs_pillow [--qualities 10 30 50 70 90 95]

On the 19 HR photographs of the bundled Set5 + Set14, each saved by Pillow as a
baseline 4:2:0 JPEG and decoded, and round-tripped by ours at the same quality: the
PSNR between the two decoded images (mean and worst image), and each one's PSNR
against the original (what the compression costs; the two should agree).
"""

import argparse
import io

import jax
import jax.numpy as jnp
import numpy as np
from PIL import Image

from srgan_jax.data.jpeg import jpeg
from srgan_jax.evaluation import validation


def psnr(a, b) -> float:
  return float(10 * np.log10(255.0**2 / np.mean((np.asarray(a, np.float64) - b) ** 2)))


def pillow(img: np.ndarray, quality: int) -> np.ndarray:
  buf = io.BytesIO()
  Image.fromarray(img).save(buf, 'JPEG', quality=quality, subsampling=2)
  return np.asarray(Image.open(io.BytesIO(buf.getvalue())).convert('RGB'))


def main() -> None:
  ap = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
  ap.add_argument(
    '--qualities', type=int, nargs='+', default=[10, 20, 30, 40, 50, 60, 70, 80, 90, 95]
  )
  args = ap.parse_args()
  images = [
    s.hr for samples in validation.load_sets(['set5', 'set14'], 4).values() for s in samples
  ]
  ours_fn = jax.jit(jpeg)
  print(f'{len(images)} photographs (Set5 + Set14 HR), 4:2:0\n')
  print('| quality | ours vs Pillow, mean (worst) dB | Pillow vs original | ours vs original |')
  print('| --- | --- | --- | --- |')
  for q in args.qualities:
    agree, theirs, ours = [], [], []
    for img in images:
      ref = pillow(img, q)
      out = np.round(np.asarray(ours_fn(jnp.asarray(img[None] / 255.0, jnp.float32), q))[0] * 255)
      agree.append(psnr(out, ref))
      theirs.append(psnr(ref, img))
      ours.append(psnr(out, img))
    print(
      f'| {q} | {np.mean(agree):.2f} ({min(agree):.2f}) | {np.mean(theirs):.2f} | {np.mean(ours):.2f} |'
    )


if __name__ == '__main__':
  main()
