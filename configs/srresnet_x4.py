"""SRResNet x4: MSE pre-training of the generator alone (phase 1 of the paper).

Run:   python -m srgan_jax.main --config=configs/srresnet_x4.py --workdir=runs/srresnet_x4
291:   python -m srgan_jax.main --config=configs/srresnet_x4.py:train291 --workdir=runs/srresnet_x4_291
Smoke: python -m srgan_jax.main --config=configs/srresnet_x4.py:demo --workdir=/tmp/srresnet_demo
Expect: the paper trains 1e6 updates at lr 1e-4 on ImageNet crops and reports
Set5 x4 32.05 dB / 0.9019 (Y channel); on DIV2K the PSNR on Set5 climbs past
the bicubic 28.42 dB within the first few thousand steps. The demo variant
runs 1500 steps in about 2 minutes on 2 idle CPU cores (Set5 PSNR-Y ~23-25 dB:
a smoke run, not a model).

train291: srresnet_x4 v1 (srgan_jax/weights/srresnet_x4.md): the
paper's generator and loss on the 291-image set (T91 + BSD200, in
../shared/datasets/train291), the paper's batch and crop, Adam at 2e-4 (the
paper's 1e-4 is measurably slower early: Set5 27.90 dB vs 28.39 at step 1000
on this CPU), then 2e-5 for the last stretch; Set5/Set14 scored (PSNR, SSIM,
LPIPS) every 500 steps. About 2 steps/s on 2 idle Xeon cores.

train533: the shipped srresnet_x4 v2, the same generator trained on all 533
photographs (train291 + extra242, ../shared/datasets/README.md), continuing
from v1 (config.generator_init: v2 was trained from v1's file, which the zoo
no longer ships; 'srresnet_x4' now continues v2 itself): Adam at 1e-4, x0.1 at
7k and 8.5k, 9k steps, computing in bf16 (the CPU setting where it has bf16
units, docs/performance.md). Resumes like any run.

p192: srresnet_x4 v3's first cycle: train533 on larger crops, batch 8 of
192x192 HR (48x48 LR: the generator's ~77-px receptive field then sees image,
not padding; a step costs 2x a b16/96 one), Adam at 5e-5, x0.1 at 3k and 4k,
4.5k steps. v3 is this run resumed twice with a new schedule (warm restarts),
v4 three times (the model card gives the flags).
"""

import ml_collections

from configs import default

TRAIN291 = '../shared/datasets/train291'
EXTRA242 = '../shared/datasets/extra242'
BENCHMARKS = ('set5', 'set14')  # bundled x4 (srgan_jax/evaluation/sets)


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  c = default.get_config()
  c.phase = 'srresnet'
  c.loss.content = 'mse'  # SRResNet-MSE
  c.num_train_steps = 1_000_000  # the paper: 1e6 updates at 1e-4, no decay.
  c.optim.decay_steps = ()
  if arg == 'demo':
    c = default.demo(c)
    c.num_train_steps = 1500
    c.optim.decay_steps = ()
  elif arg == 'train291':
    c.data.source = f'folder:{TRAIN291}'
    c.optim.learning_rate = 2e-4
    c.optim.decay_steps = (10_000,)  # then 2e-5
    c.num_train_steps = 12_000
    c.eval.sets = BENCHMARKS
    c.eval.every = 500
    c.checkpoint_every = 500
    c.sample_every = 2000
  elif arg == 'train533':
    c.data.source = f'folder:{TRAIN291},{EXTRA242}'
    c.generator_init = 'srresnet_x4'  # v2 started from v1 (12k steps on train291)
    c.model.compute_dtype = 'bfloat16'
    c.optim.learning_rate = 1e-4
    c.optim.decay_steps = (7_000, 8_500)  # then 1e-5, 1e-6
    c.num_train_steps = 9_000
    c.eval.sets = BENCHMARKS
    c.eval.every = 1000
    c.checkpoint_every = 500
    c.keep_checkpoints = 2
    c.sample_every = 5000
  elif arg == 'p192':
    c = get_config('train533')
    c.data.hr_crop = 192
    c.data.batch_size = 8
    c.optim.learning_rate = 5e-5
    c.optim.decay_steps = (3_000, 4_000)  # then 5e-6, 5e-7
    c.num_train_steps = 4_500
    c.eval.every = 500
  elif arg:
    raise ValueError(
      f'unknown config variant {arg!r}; use configs/srresnet_x4.py, '
      'configs/srresnet_x4.py:train291, configs/srresnet_x4.py:train533, '
      'configs/srresnet_x4.py:p192 or '
      'configs/srresnet_x4.py:demo'
    )
  return c
