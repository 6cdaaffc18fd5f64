"""VGG-19 feature extractor and the SRGAN VGG content loss (Ledig et al. 2017, eq. 5).

phi_i,j is the feature map of the j-th convolution (after activation) before the
i-th max-pool of an ImageNet VGG-19; here `relu{i}_{j}`. The pre-activation maps
are available too as `conv{i}_{j}`. The paper's VGG22 and VGG54 losses use
relu2_2 and relu5_4.

Weights are never downloaded: convert a file you already have with
`python -m srgan_jax.convert_vgg SRC DST` and pass DST to `load_vgg`.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any, Mapping, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from etils import epath
from flax import serialization

from srgan_jax import fast_conv
from srgan_jax.errors import UserError

# 16 convs in five blocks, a 2x2 max-pool between blocks.
BLOCK_CHANNELS = ((64, 64), (128, 128), (256,) * 4, (512,) * 4, (512,) * 4)
CONV_NAMES = tuple(
    f"conv{b}_{j}" for b, block in enumerate(BLOCK_CHANNELS, 1) for j in range(1, len(block) + 1)
)
TAPS = tuple(t for c in CONV_NAMES for t in (c, "relu" + c[4:]))
PAPER_TAPS = {"vgg22": ("relu2_2",), "vgg54": ("relu5_4",)}

# ImageNet statistics for each weight source's preprocessing.
TORCH_MEAN = (0.485, 0.456, 0.406)  # RGB in [0, 1]
TORCH_STD = (0.229, 0.224, 0.225)
CAFFE_MEAN_BGR = (103.939, 116.779, 123.68)  # BGR in [0, 255]
PREPROCESS_KINDS = ("torch", "caffe")

FORMAT_VERSION = 1
CONVERT_COMMAND = "python -m srgan_jax.convert_vgg SRC DST"


def expected_shapes() -> dict[str, tuple[tuple[int, ...], tuple[int, ...]]]:
    """conv name -> (kernel HWIO shape, bias shape) of VGG-19."""
    shapes, cin = {}, 3
    for name, cout in zip(CONV_NAMES, (c for block in BLOCK_CHANNELS for c in block)):
        shapes[name] = ((3, 3, cin, cout), (cout,))
        cin = cout
    return shapes


class VGGWeightsError(UserError):
    """A VGG weights file (or its path) the user supplied is unusable."""

    def __init__(self, path: Any, problem: str):
        where = "no VGG weights path configured" if not path else str(path)
        problem = " ".join(str(problem).split())  # always one line
        super().__init__(
            f"{where}: {problem}. VGG-19 weights must be converted from torchvision's "
            "vgg19-dcbb9e9d.pth or Keras's vgg19_weights_tf_dim_ordering_tf_kernels_notop.h5 "
            f"with `{CONVERT_COMMAND}`"
        )


def _tap_depth(taps: Sequence[str]) -> int:
    """Index into CONV_NAMES of the deepest conv the taps need."""
    if isinstance(taps, str) or not taps:
        raise ValueError(f"taps must be a non-empty sequence of names from {', '.join(TAPS)}")
    unknown = [t for t in taps if t not in TAPS]
    if unknown:
        raise ValueError(f"unknown VGG taps {unknown}; valid taps: {', '.join(TAPS)}")
    return max(CONV_NAMES.index("conv" + t[4:] if t.startswith("relu") else t) for t in taps)


def max_pool_2x2(x: jax.Array) -> jax.Array:
    """2x2 max-pool, stride 2, VALID (torchvision's MaxPool2d(2, 2)), as the max of the 4 phases.

    Same values as `nn.max_pool`. Written elementwise because XLA:CPU hands a
    reduce-window to YNNPACK together with the convolutions that feed it, and
    those run slower there than in XLA's own kernels (VGG54 loss and gradient:
    1.62 s -> 1.30 s on the paper's batch, 2-core Xeon). At exact ties the
    gradient is shared rather than given to one input (after a ReLU, ties are
    zeros, whose gradient the ReLU zeroes anyway).
    """
    h, w = x.shape[1] // 2 * 2, x.shape[2] // 2 * 2
    x = x[:, :h, :w]
    return jnp.maximum(jnp.maximum(x[:, 0::2, 0::2], x[:, 0::2, 1::2]),
                       jnp.maximum(x[:, 1::2, 0::2], x[:, 1::2, 1::2]))


class VGG19(nn.Module):
    """VGG-19 `features` up to the deepest tap; input NHWC, already preprocessed."""

    taps: Sequence[str]
    dtype: Any = jnp.float32  # conv compute dtype

    @nn.compact
    def __call__(self, x: jax.Array) -> dict[str, jax.Array]:
        last = _tap_depth(self.taps)
        wanted, out, k = set(self.taps), {}, 0
        for b, block in enumerate(BLOCK_CHANNELS, 1):
            if b > 1:
                x = max_pool_2x2(x)
            for j, channels in enumerate(block, 1):
                x = fast_conv.Conv(channels, (3, 3), padding="SAME", dtype=self.dtype, name=f"conv{b}_{j}")(x)
                if f"conv{b}_{j}" in wanted:
                    out[f"conv{b}_{j}"] = x
                x = nn.relu(x)
                if f"relu{b}_{j}" in wanted:
                    out[f"relu{b}_{j}"] = x
                if k == last:
                    return out
                k += 1
        return out  # unreachable: the deepest tap is at most conv5_4


def preprocess(images: jax.Array, kind: str) -> jax.Array:
    """Maps RGB images in [-1, 1] (tanh range) to the input the VGG weights expect."""
    x01 = (images.astype(jnp.float32) + 1.0) * 0.5
    if kind == "torch":  # torchvision: RGB in [0, 1], ImageNet mean/std
        return (x01 - jnp.asarray(TORCH_MEAN)) / jnp.asarray(TORCH_STD)
    if kind == "caffe":  # Keras/Caffe: BGR in [0, 255] minus the mean pixel
        return x01[..., ::-1] * 255.0 - jnp.asarray(CAFFE_MEAN_BGR)
    raise ValueError(f"unknown VGG preprocessing {kind!r}; use one of {PREPROCESS_KINDS}")


_preprocess = preprocess  # content_loss's `preprocess=` keyword shadows the name


def paper_taps(name: str) -> tuple[str, ...]:
    """'vgg22' -> ('relu2_2',), 'vgg54' -> ('relu5_4',) (the paper's SRGAN-VGG22/54)."""
    key = name.lower().replace("/", "").replace(".", "")
    if key not in PAPER_TAPS:
        raise ValueError(f"unknown VGG loss {name!r}; use one of {sorted(PAPER_TAPS)}")
    return PAPER_TAPS[key]


def content_loss(
    params: Mapping[str, Any],
    sr: jax.Array,
    hr: jax.Array,
    *,
    preprocess: str,
    taps: Sequence[str] = ("relu5_4",),
    tap_weights: Sequence[float] | None = None,
    feature_scale: float = 1 / 12.75,
    dtype: Any = jnp.float32,
) -> jax.Array:
    """The paper's VGG loss l_VGG/i,j: MSE between phi(G(I_LR)) and phi(I_HR).

    sr, hr: float NHWC in [-1, 1]. params: `VGGWeights.params`, passed as a jit
    argument. Features are multiplied by `feature_scale` (paper: "rescaled by
    1/12.75"), i.e. the loss is the plain feature MSE times 1/12.75**2. The
    mean runs over batch, positions and channels. With several taps the result
    is sum_k tap_weights[k] * MSE_k (default weights 1). The VGG is frozen: no
    gradient reaches params or flows through the HR branch.
    """
    taps = tuple(taps)
    tap_weights = (1.0,) * len(taps) if tap_weights is None else tuple(tap_weights)
    if len(tap_weights) != len(taps):
        raise ValueError(f"got {len(tap_weights)} tap_weights for {len(taps)} taps")
    vgg = VGG19(taps=taps, dtype=dtype)
    variables = {"params": jax.lax.stop_gradient(params)}
    f_sr = vgg.apply(variables, _preprocess(sr, preprocess))
    f_hr = jax.lax.stop_gradient(vgg.apply(variables, _preprocess(hr, preprocess)))
    loss = jnp.zeros((), jnp.float32)
    for tap, w in zip(taps, tap_weights):
        diff = feature_scale * (f_sr[tap].astype(jnp.float32) - f_hr[tap].astype(jnp.float32))
        loss = loss + w * jnp.mean(jnp.square(diff))
    return loss


@dataclasses.dataclass(frozen=True)
class VGGWeights:
    """Converted VGG-19 weights: Linen params plus how inputs must be preprocessed."""

    params: Mapping[str, Any]  # {'conv1_1': {'kernel': HWIO, 'bias': (C,)}, ...}
    preprocess: str  # 'torch' or 'caffe'
    source: str  # 'torchvision' or 'keras'


def check_params(params: Any, path: Any) -> None:
    """Raises VGGWeightsError unless params hold exactly VGG-19's 16 convs with the right shapes."""
    if not isinstance(params, Mapping):
        raise VGGWeightsError(path, "holds no conv parameters")
    convs = [k for k in params if str(k).startswith("conv")]
    if len(convs) != len(CONV_NAMES) or set(convs) != set(CONV_NAMES):
        missing = [c for c in CONV_NAMES if c not in params]
        arch = " (looks like VGG-16)" if len(convs) == 13 else ""
        raise VGGWeightsError(
            path, f"has {len(convs)} conv layers{arch}, VGG-19 needs 16; missing {missing or 'none'}"
        )
    for name, (k_shape, b_shape) in expected_shapes().items():
        layer = params[name]
        if not isinstance(layer, Mapping) or set(layer) != {"kernel", "bias"}:
            raise VGGWeightsError(path, f"layer {name} must hold exactly 'kernel' and 'bias'")
        got = (tuple(np.shape(layer["kernel"])), tuple(np.shape(layer["bias"])))
        if got != (k_shape, b_shape):
            raise VGGWeightsError(
                path, f"layer {name} has kernel (HWIO) / bias shapes {got}, expected {(k_shape, b_shape)}"
            )


def encode(params: Mapping[str, Any], source: str, preprocess_kind: str) -> bytes:
    """The converted-file bytes: msgpack of {'params', 'meta'}."""
    meta = {"format_version": FORMAT_VERSION, "source": source, "preprocess": preprocess_kind, "arch": "vgg19"}
    params = {k: {n: np.asarray(v, np.float32) for n, v in layer.items()} for k, layer in params.items()}
    return serialization.msgpack_serialize({"params": params, "meta": meta})


def load_vgg(path: str | os.PathLike | None) -> VGGWeights:
    """Reads a file written by `python -m srgan_jax.convert_vgg`."""
    if not path:
        raise VGGWeightsError(None, "set the path to a converted VGG-19 weights file")
    if not epath.Path(path).is_file():  # epath: local or gs:// paths alike
        raise VGGWeightsError(path, "file not found")
    data = epath.Path(path).read_bytes()
    if data[:8] == b"\x89HDF\r\n\x1a\n" or data[:4] == b"PK\x03\x04":
        raise VGGWeightsError(path, "is an unconverted Keras/torch file; convert it first")
    try:
        tree = serialization.msgpack_restore(data)
    except Exception as e:  # msgpack raises many types on bad bytes
        raise VGGWeightsError(path, f"is not a converted weights file (corrupt or truncated: {type(e).__name__})")
    meta = tree.get("meta") if isinstance(tree, dict) else None
    if not isinstance(meta, dict) or "params" not in tree:
        raise VGGWeightsError(path, "is not a converted weights file (no 'params'/'meta')")
    if meta.get("format_version") != FORMAT_VERSION:
        raise VGGWeightsError(path, f"has format_version {meta.get('format_version')!r}, expected {FORMAT_VERSION}")
    if meta.get("arch") != "vgg19":
        raise VGGWeightsError(path, f"holds architecture {meta.get('arch')!r}, expected 'vgg19'")
    if meta.get("preprocess") not in PREPROCESS_KINDS:
        raise VGGWeightsError(path, f"records unknown preprocessing {meta.get('preprocess')!r}")
    check_params(tree["params"], path)
    params = jax.tree.map(jnp.asarray, tree["params"])
    return VGGWeights(params=params, preprocess=meta["preprocess"], source=str(meta.get("source")))
