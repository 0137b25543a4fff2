"""Dtype names (``torch.float32`` -> ``"fp32"``) and the CUDA autocast policy tables by
``LayerConfig.type`` (:data:`LOWP_TYPES` run in bf16/fp16, :data:`FP32_TYPES` in fp32), plus
the virtual-dtype tag the capture puts on autocast-emulated tensors.
"""

from __future__ import annotations

from typing import Iterable

import torch

# --------------------------------------------------------------------------------------
# dtype helpers

_DTYPE_NAMES = {
    torch.float32: "fp32",
    torch.bfloat16: "bf16",
    torch.float16: "fp16",
    torch.float64: "fp64",
    torch.int64: "int64",
    torch.int32: "int32",
    torch.int16: "int16",
    torch.int8: "int8",
    torch.uint8: "uint8",
    torch.bool: "bool",
    torch.complex64: "c64",
    torch.complex128: "c128",
}
_FLOAT_NAMES = {"fp32", "bf16", "fp16", "fp64"}
_FLOAT_RANK = {"bf16": 1, "fp16": 1, "fp32": 2, "fp64": 3}
_AUTOCAST_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def dtype_name(dt: torch.dtype) -> str:
    """``torch.float32`` -> ``"fp32"``, ``torch.bfloat16`` -> ``"bf16"``, ..."""
    name = _DTYPE_NAMES.get(dt)
    if name is None:
        name = str(dt).replace("torch.", "")
    return name


# CUDA autocast policy (torch/csrc/autocast_mode.cpp), by LayerConfig.type
LOWP_TYPES = frozenset({
    "Linear", "NonDynamicallyQuantizableLinear", "LazyLinear", "Bilinear",
    "Conv1d", "Conv2d", "Conv3d", "ConvTranspose1d", "ConvTranspose2d", "ConvTranspose3d",
    "LazyConv1d", "LazyConv2d", "LazyConv3d", "MultiheadAttention", "PReLU",
    "LSTM", "GRU", "RNN", "LSTMCell", "GRUCell", "RNNCell",
    "F.linear", "F.bilinear", "F.conv1d", "F.conv2d", "F.conv3d", "F.conv_transpose1d",
    "F.conv_transpose2d", "F.conv_transpose3d", "F.prelu", "matmul", "mm", "bmm", "mv",
    "addmm", "addmv", "addbmm", "baddbmm", "einsum", "sdpa", "chain_matmul",
})
FP32_TYPES = frozenset({
    "LayerNorm", "GroupNorm", "Softmax", "LogSoftmax", "Softmin", "Softplus",
    "F.layer_norm", "F.group_norm", "F.softplus", "F.normalize", "F.cosine_similarity",
    "softmax", "log_softmax", "softmin", "sum", "prod", "cumsum", "cumprod", "logsumexp",
    "exp", "expm1", "log", "log2", "log10", "log1p", "pow", "rsqrt", "reciprocal", "norm",
    "cdist", "dist", "acos", "asin", "cosh", "sinh", "tan", "erfinv",
    "MSELoss", "L1Loss", "CrossEntropyLoss", "NLLLoss", "BCEWithLogitsLoss", "BCELoss",
    "SmoothL1Loss", "HuberLoss", "KLDivLoss", "CosineSimilarity",
    "F.mse_loss", "F.l1_loss", "F.cross_entropy", "F.nll_loss", "F.kl_div",
    "F.binary_cross_entropy_with_logits", "F.smooth_l1_loss", "F.huber_loss",
})

_TAG = "_exante_vdtype"      # virtual (autocast-emulated) dtype tag on intermediate tensors


def _vdtype(t: torch.Tensor) -> str:
    tag = t.__dict__.get(_TAG) if hasattr(t, "__dict__") else None
    return tag if tag is not None else dtype_name(t.dtype)


def _promote(names: Iterable[str]) -> str | None:
    best = None
    for n in names:
        if n not in _FLOAT_NAMES:
            continue
        if best is None:
            best = n
        elif n != best:
            rb, rn = _FLOAT_RANK[best], _FLOAT_RANK[n]
            if rn > rb:
                best = n
            elif rn == rb:          # bf16 with fp16 -> fp32
                best = "fp32"
    return best


