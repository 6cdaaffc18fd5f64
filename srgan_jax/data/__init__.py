"""HR images in, batches out: image files (`image_io`), sources of training images (`sources`),
the seeded, sharded, resumable crop pipeline (`pipeline`) and MATLAB's bicubic resize, the
paper's degradation (`imresize`).

Imports `common` only; never networks, training or evaluation.
"""
