"""DiffAugment (Zhao et al., NeurIPS 2020): differentiable augmentations of D's inputs.

With few training images D memorises them; augmenting what D sees, real and fake
alike, with operations G's gradient passes through keeps D from it. The policy
names of the reference implementation, on [-1, 1] NHWC images, each sample with
its own random draw:

  color        brightness + U(-0.5, 0.5), saturation x U(0, 2), contrast x U(0.5, 1.5)
  translation  a shift of up to 1/8 of the size in each direction, zeros shifted in
  cutout       a zeroed square of half the size at a random place

Translation also moves D's stride-2 grid against G's sub-pixel grid at random, so
D's gradient cannot lock a pattern to the LR pixels (a cause of grid artifacts).
"""

import jax
import jax.numpy as jnp

POLICIES = ('color', 'translation', 'cutout')


def parse(policy: str) -> tuple[str, ...]:
  """'translation,cutout' -> ('translation', 'cutout'); ValueError naming an unknown one."""
  names = tuple(p.strip() for p in policy.split(',') if p.strip())
  unknown = [n for n in names if n not in POLICIES]
  if unknown:
    raise ValueError(f'unknown DiffAugment policy {unknown[0]!r}; use a comma list of {POLICIES}.')
  return names


def _uniform(key, x, lo, hi):
  return jax.random.uniform(key, (x.shape[0], 1, 1, 1), jnp.float32, lo, hi).astype(x.dtype)


def color(key, x):
  kb, ks, kc = jax.random.split(key, 3)
  x = x + _uniform(kb, x, -0.5, 0.5)  # brightness
  mean = jnp.mean(x, axis=3, keepdims=True)
  x = (x - mean) * _uniform(ks, x, 0.0, 2.0) + mean  # saturation
  mean = jnp.mean(x, axis=(1, 2, 3), keepdims=True)
  return (x - mean) * _uniform(kc, x, 0.5, 1.5) + mean  # contrast


def translation(key, x, ratio: float = 0.125):
  """Each image shifted by (dy, dx), |d| <= ratio * size, zeros shifted in."""
  n, h, w, _ = x.shape
  sy, sx = int(h * ratio + 0.5), int(w * ratio + 0.5)
  ky, kx = jax.random.split(key)
  dy = jax.random.randint(ky, (n,), -sy, sy + 1)
  dx = jax.random.randint(kx, (n,), -sx, sx + 1)
  padded = jnp.pad(x, ((0, 0), (sy, sy), (sx, sx), (0, 0)))
  window = lambda img, oy, ox: jax.lax.dynamic_slice(img, (oy, ox, 0), (h, w, img.shape[-1]))
  return jax.vmap(window)(padded, sy - dy, sx - dx)


def cutout(key, x, ratio: float = 0.5):
  """Each image with a zeroed (ratio * size) square centred at a random pixel."""
  n, h, w, _ = x.shape
  ch, cw = int(h * ratio + 0.5), int(w * ratio + 0.5)
  ky, kx = jax.random.split(key)
  cy = jax.random.randint(ky, (n, 1, 1), 0, h + (1 - ch % 2))
  cx = jax.random.randint(kx, (n, 1, 1), 0, w + (1 - cw % 2))
  rows = jnp.arange(h)[None, :, None] - (cy - ch // 2)
  cols = jnp.arange(w)[None, None, :] - (cx - cw // 2)
  keep = ~((rows >= 0) & (rows < ch) & (cols >= 0) & (cols < cw))
  return x * keep[..., None].astype(x.dtype)


def diff_augment(key, x, policy: tuple[str, ...]):
  """x with each policy of `policy` applied in turn (the reference's order: as listed)."""
  ops = {'color': color, 'translation': translation, 'cutout': cutout}
  for name, k in zip(policy, jax.random.split(key, max(len(policy), 1))):
    x = ops[name](k, x)
  return x


def joint_shift(key, sr, hr, max_shift: int):
  """(sr, hr) cropped alike by max_shift pixels at a random offset (dy, dx) in [0, max_shift]:
  the content loss sees the pair at a random phase of the LR grid each step, so the gradient of
  VGG's pooling (or D's strides) cannot favour a pattern locked to the LR pixels."""
  n, h, w, c = sr.shape
  dy, dx = jax.random.randint(key, (2,), 0, max_shift + 1)
  crop = lambda x: jax.lax.dynamic_slice(x, (0, dy, dx, 0), (n, h - max_shift, w - max_shift, c))
  return crop(sr), crop(hr)
