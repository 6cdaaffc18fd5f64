"""SRResNet x4: MSE pre-training of the generator alone (phase 1 of the paper).

Run:   python -m srgan_jax.main --config=configs/srresnet_x4.py --workdir=runs/srresnet_x4
Smoke: python -m srgan_jax.main --config=configs/srresnet_x4.py:demo --workdir=/tmp/srresnet_demo
Expect: the paper trains 1e6 updates at lr 1e-4 on ImageNet crops and reports
Set5 x4 32.05 dB / 0.9019 (Y channel); on DIV2K the PSNR on Set5 climbs past
the bicubic 28.42 dB within the first few thousand steps. The demo variant
runs 1500 steps in about 2 minutes on 2 idle CPU cores (Set5 PSNR-Y ~23-25 dB:
a smoke run, not a model).
"""

import ml_collections

from configs import default


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
  elif arg:
    raise ValueError(f'unknown config variant {arg!r}; use configs/srresnet_x4.py or configs/srresnet_x4.py:demo')
  return c
