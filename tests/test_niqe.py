"""NIQE reproduces the MATLAB release, and reads degradations as less natural."""

import numpy as np
import pytest

from srgan_jax import evaluate
from srgan_jax.evaluation import niqe, validation


def test_niqe_of_the_baboon_is_the_matlab_release_s():
  baboon = validation.load_set('set14', 4)[0]  # Set14's img_001 (SelfExSR's 480x500 HR)
  assert baboon.hr.shape == (480, 500, 3)
  # BasicSR's docstring: MATLAB R2021a gives 5.7296 for its baboon.png.
  assert abs(niqe.niqe(baboon.hr) - 5.7296) < 2e-3


def test_blur_and_noise_read_as_less_natural_and_tiny_images_are_refused():
  hr = validation.load_set('set5', 4)[1].hr  # bird, 288x288
  blurred = validation.bicubic(validation.load_set('set5', 4)[1].lr, 4)
  noisy = np.clip(hr + np.random.default_rng(0).normal(0, 12, hr.shape), 0, 255)
  base = niqe.niqe(hr)
  assert niqe.niqe(blurred) > base + 1 and niqe.niqe(noisy) > base + 1
  with pytest.raises(ValueError, match='at least 96x96'):
    niqe.niqe(hr[:90, :200])


def test_evaluate_niqe_scores_sr_bicubic_and_hr():
  r = evaluate.evaluate(['set5'], None, scale=4, method='bicubic', lpips=None, niqe=True, log=print)
  d = r['datasets']['Set5']
  assert r['niqe'] and d['mean']['niqe'] > d['hr_niqe'] > 0
  assert all('niqe' in i for i in d['images'])
