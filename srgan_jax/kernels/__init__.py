"""How the networks' convolutions run fast on XLA:CPU; what they compute is unchanged.

fast_conv: the `Conv` layer every network uses, the XLA compiler options, the
strided and sub-pixel convolutions; onednn_conv: oneDNN's kernels as XLA FFI
handlers (csrc/onednn_conv.cc). See README.md here for when they are used.
"""
