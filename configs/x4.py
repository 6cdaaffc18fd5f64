"""SRGAN x4: G initialised from SRResNet, trained with VGG54 + 1e-3 adversarial (phase 2).

Run:   python -m srgan_jax.main --config=configs/x4.py --workdir=runs/srgan_x4 \
         --config.generator_init=runs/srresnet_x4 --config.loss.vgg_weights=vgg19.msgpack
Demo:  python -m srgan_jax.main --config=configs/x4.py:demo --workdir=/tmp/srgan_demo
Expect: the paper trains 1e5 updates at lr 1e-4 then 1e5 at 1e-5 and reports
Set5 x4 29.40 dB / 0.8472 (lower PSNR than SRResNet, sharper textures).
The demo runs both phases on the photographs bundled with scikit-image, no
downloads: 1500 SRResNet steps into WORKDIR/srresnet, then 300 SRGAN steps
initialised from it, in about 3 minutes on 2 idle CPU cores. That is a smoke
run of the whole pipeline, not a trained model: its samples stay below bicubic
(measured: the SRResNet demo scores 23.3 dB PSNR-Y on Set5 after 500 steps and
25.4 dB after 2000, bicubic 28.4 dB); the logged val/psnr_y_sr vs
val/psnr_y_bicubic says where it is. A fresh machine has no
ImageNet VGG-19 weights, so the demo's SRGAN phase uses pixel MSE + 1e-3
adversarial and logs that plainly; add --config.loss.vgg_weights=FILE to use
the paper's VGG54 loss.
"""

import ml_collections

from configs import default


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  c = default.get_config()
  c.phase = 'srgan'
  c.loss.content = 'vgg54'
  if arg == 'demo':
    c = default.demo(c)
    # A fresh machine has no VGG weights: pixel MSE (logged loudly) unless vgg_weights is set.
    c.loss.demo_allow_mse = True
    c.pretrain_steps = 1500
    c.num_train_steps = 300
    c.optim.decay_steps = (200,)
  elif arg:
    raise ValueError(f'unknown config variant {arg!r}; use configs/x4.py or configs/x4.py:demo')
  return c
