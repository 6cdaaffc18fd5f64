"""The networks, as Flax modules: the paper's SRResNet G and D (`srgan`), ESRGAN's generators
(`esrgan`), the factory that builds the G a config names (`generators`), VGG for the content loss
(`vgg`) and LPIPS (`lpips`).

Imports `kernels` (their convolutions), `weights` (pretrained files) and `common`; never data,
training or evaluation.
"""
