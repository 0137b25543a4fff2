"""Shape-based features of a layer configuration (the predictor's inputs).

``FEATURE_REGISTRY`` maps a :class:`~profiling.capture.LayerConfig` ``type`` to a *pure*
function of the config (hyper-parameters, shapes, dtype) — no module, no tensor — in the
spirit of ``torch.utils.flop_counter`` and fvcore's jit handles (whose shape helpers are
reused: ``conv_flop_count``, and the same conventions for linear/matmul/norm/pool counts).

Conventions (units in the names):

* ``macs``: fvcore's count for the op — one fused multiply-add = 1. For matmul/conv-like
  ops this is the number of multiply-accumulates; fvcore also counts norms (BatchNorm eval:
  2 per element with affine, 1 without; batch-statistics BatchNorm, LayerNorm, GroupNorm,
  InstanceNorm: 5 per element with affine, 4 without), adaptive average pooling (1 per input
  element) and nearest/bilinear upsampling (1/4 per output element); we follow it. Ops fvcore
  ignores (activations, elementwise arithmetic, max/avg pooling, softmax, copies) have
  ``macs = 0``. So Σ count·macs over a model matches ``fvcore.nn.FlopCountAnalysis``.
* ``flops``: floating-point operations. ``2·macs`` for matmul/conv-like ops (bias adds
  ignored, as fvcore does); otherwise an op count: 1 per output element for elementwise ops
  (activations, add, mul ...), 5 per element for softmax (max, sub, exp, sum, div),
  ``kernel_numel`` per output element for max/avg pooling, 1 per input element for
  reductions and adaptive pooling, the fvcore per-element count for norms, 0 for copies,
  views, factories and eval-mode dropout.
* ``params``: parameters owned by the layer (computed from hyper-parameters, so it also
  works on a LayerConfig without a module). Functional ops own none: their weights are
  inputs.
* ``bytes_read``: bytes of all tensor inputs + parameters (+ BatchNorm running statistics),
  each counted once at the compute dtype size (``dtype_bytes``); Embedding reads its indices
  (8 bytes each) and only the gathered rows, not the whole table; factory ops read nothing.
  ``bytes_written``: bytes of the tensor outputs at the compute dtype size. These are tensor
  sizes (a shape-based proxy), not measured DRAM traffic; views/identity layers keep them.
* ``input_numel`` / ``output_numel``: elements over all tensor inputs / outputs.
* ``batch``: the batch size (first dim of the first input; MultiheadAttention/RNN with
  ``batch_first=False`` and unbatched inputs are corrected to the real batch).
* ``dtype_bytes``: bytes per element of the compute dtype.
* ``arith_intensity``: ``flops / (bytes_read + bytes_written)`` (flop per byte).

Type-specific features (``in_features``, ``kernel_size``, ``groups``, ``seq_len``, ``heads``
...) are added where meaningful; ``CORE_FEATURES`` is the numeric set every function returns.
"""

from __future__ import annotations

import json
import math
import re
import warnings
from dataclasses import dataclass, field
from typing import Callable

from .capture import Capture, CapturedLayer, LayerConfig, capture
from .errors import UnsupportedLayerError

with warnings.catch_warnings():     # fvcore.nn's __init__ triggers torch.jit.script deprecations
    warnings.simplefilter("ignore", DeprecationWarning)
    from fvcore.nn.jit_handles import conv_flop_count

__all__ = [
    "FEATURE_REGISTRY",
    "CORE_FEATURES",
    "DTYPE_BYTES",
    "UnsupportedLayerWarning",
    "FeatureTable",
    "layer_features",
    "feature_table",
    "features_for_capture",
    "register",
]

CORE_FEATURES = (
    "macs", "flops", "params", "bytes_read", "bytes_written", "input_numel", "output_numel",
    "batch", "dtype_bytes", "arith_intensity",
)

DTYPE_BYTES = {
    "fp32": 4, "bf16": 2, "fp16": 2, "fp64": 8, "int64": 8, "int32": 4, "int16": 2,
    "int8": 1, "uint8": 1, "bool": 1, "c64": 8, "c128": 16,
}

FEATURE_REGISTRY: dict[str, Callable[[LayerConfig], dict]] = {}


class UnsupportedLayerWarning(UserWarning):
    """Some layers of a model have no feature function (they are listed, never zeroed)."""


def register(*types: str):
    """Decorator: register a feature function for one or more ``LayerConfig.type`` names."""

    def deco(fn):
        for t in types:
            FEATURE_REGISTRY[t] = fn
        return fn

    return deco


# --------------------------------------------------------------------------------------
# helpers


def _prod(xs) -> int:
    return math.prod(int(x) for x in xs)


def _ntuple(v, n: int) -> tuple:
    if isinstance(v, (tuple, list)):
        v = tuple(v)
        return v if len(v) == n else (v + (v[-1],) * n)[:n] if v else (1,) * n
    return (v,) * n


def _dtype_bytes(dtype: str) -> int:
    return DTYPE_BYTES.get(dtype, 4)


def _arg(hp: dict, name: str, pos: int | None, default=None):
    """A functional op's argument, given by keyword (``name``) or position (``argN``)."""
    if name in hp:
        return hp[name]
    if pos is not None and f"arg{pos}" in hp:
        return hp[f"arg{pos}"]
    return default


def _nd_from_type(t: str) -> int:
    m = re.search(r"(\d)d$", t)
    return int(m.group(1)) if m else 2


def _feat(cfg: LayerConfig, *, macs: int = 0, flops: int = 0, params: int = 0,
          extra_read_elems: int = 0, bytes_read: int | None = None,
          bytes_written: int | None = None, batch: int | None = None, **extra) -> dict:
    db = _dtype_bytes(cfg.dtype)
    in_n = sum(_prod(s) for s in cfg.input_shapes)
    out_n = sum(_prod(s) for s in cfg.output_shapes)
    br = (in_n + params + extra_read_elems) * db if bytes_read is None else int(bytes_read)
    bw = out_n * db if bytes_written is None else int(bytes_written)
    moved = br + bw
    d = {
        "macs": int(macs),
        "flops": int(flops),
        "params": int(params),
        "bytes_read": int(br),
        "bytes_written": int(bw),
        "input_numel": int(in_n),
        "output_numel": int(out_n),
        "batch": int(cfg.batch if batch is None else batch),
        "dtype_bytes": db,
        "arith_intensity": float(flops) / moved if moved else 0.0,
    }
    for k, v in extra.items():
        d[k] = float(v) if isinstance(v, float) else int(v)
    return d


def _x(cfg) -> tuple:
    return cfg.input_shapes[0] if cfg.input_shapes else ()


def _y(cfg) -> tuple:
    return cfg.output_shapes[0] if cfg.output_shapes else ()


# --------------------------------------------------------------------------------------
# matmul / linear


@register("Linear", "NonDynamicallyQuantizableLinear", "LazyLinear")
def _linear(cfg: LayerConfig) -> dict:
    """y = x W^T + b on inputs of any rank: macs = numel(x) · out_features (fvcore)."""
    hp = cfg.hparams_dict()
    x = _x(cfg)
    fin, fout = int(hp["in_features"]), int(hp["out_features"])
    bias = bool(hp.get("bias", True))
    macs = _prod(x) * fout
    params = fin * fout + (fout if bias else 0)
    rows = _prod(x[:-1]) if len(x) > 1 else 1
    return _feat(cfg, macs=macs, flops=2 * macs, params=params, in_features=fin,
                 out_features=fout, rows=rows, has_bias=int(bias))


@register("Bilinear")
def _bilinear(cfg: LayerConfig) -> dict:
    hp = cfg.hparams_dict()
    f1, f2, fo = int(hp["in1_features"]), int(hp["in2_features"]), int(hp["out_features"])
    rows = _prod(_x(cfg)[:-1])
    macs = rows * fo * (f1 * f2 + f2)          # x1^T A x2 per output feature
    params = fo * f1 * f2 + (fo if hp.get("bias", True) else 0)
    return _feat(cfg, macs=macs, flops=2 * macs, params=params, rows=rows,
                 in_features=f1 + f2, out_features=fo)


@register("F.linear")
def _f_linear(cfg: LayerConfig) -> dict:
    x = _x(cfg)
    w = cfg.input_shapes[1] if len(cfg.input_shapes) > 1 else ()
    fout = int(w[0]) if len(w) == 2 else 1
    macs = _prod(x) * fout
    return _feat(cfg, macs=macs, flops=2 * macs, in_features=int(x[-1]) if x else 1,
                 out_features=fout, rows=_prod(x[:-1]) if len(x) > 1 else 1,
                 has_bias=int(len(cfg.input_shapes) > 2))


@register("matmul", "mm", "bmm", "mv", "dot", "vdot", "inner")
def _matmul(cfg: LayerConfig) -> dict:
    """a @ b with broadcasting: macs = numel(out) · k (k = a.shape[-1])."""
    a = cfg.input_shapes[0]
    b = cfg.input_shapes[1] if len(cfg.input_shapes) > 1 else a
    k = int(a[-1]) if a else 1
    out_n = _prod(_y(cfg))
    macs = out_n * k
    m = int(a[-2]) if len(a) >= 2 else 1
    n = int(b[-1]) if len(b) >= 2 else 1
    return _feat(cfg, macs=macs, flops=2 * macs, m=m, n=n, k=k,
                 matmul_batch=out_n // max(m * n, 1))


@register("grouped_mm", "F.grouped_mm")
def _grouped_mm(cfg: LayerConfig) -> dict:
    """Mixture-of-experts grouped matmul (``torch._grouped_mm(a, b, offs=...)``): every row
    of ``a`` meets one group of ``b``, so macs = numel(out) · k whatever the routing
    (2-d × 3-d: rows·n·k; 3-d × 3-d: groups·m·n·k)."""
    a, b = cfg.input_shapes[0], cfg.input_shapes[1]
    k = int(a[-1]) if a else 1
    y = _y(cfg)
    macs = (int(a[0]) * int(b[-1]) * k) if len(a) == 2 and len(b) == 2 else _prod(y) * k
    return _feat(cfg, macs=macs, flops=2 * macs, k=k, n=int(b[-1]) if b else 1,
                 groups=int(b[0]) if len(b) == 3 else 1)


@register("addmm", "baddbmm", "addmv")
def _addmm(cfg: LayerConfig) -> dict:
    """beta·input + a @ b: macs = numel(out) · k (the add is ignored, as in fvcore)."""
    a = cfg.input_shapes[1]
    k = int(a[-1])
    macs = _prod(_y(cfg)) * k
    return _feat(cfg, macs=macs, flops=2 * macs, k=k)


@register("addbmm")
def _addbmm(cfg: LayerConfig) -> dict:
    a, b = cfg.input_shapes[1], cfg.input_shapes[2]
    macs = _prod(a) * int(b[-1])
    return _feat(cfg, macs=macs, flops=2 * macs, k=int(a[-1]))


@register("einsum")
def _einsum(cfg: LayerConfig) -> dict:
    """macs = product of the sizes of all distinct indices (exact for two operands)."""
    hp = cfg.hparams_dict()
    eq = str(_arg(hp, "equation", 0, "")).replace(" ", "")
    lhs = eq.split("->")[0]
    sizes: dict = {}
    for term, shape in zip(lhs.split(","), cfg.input_shapes):
        if "..." in term:
            n_ell = len(shape) - (len(term) - 3)
            term = term.replace("...", "".join(chr(0x100 + i) for i in range(max(n_ell, 0))))
        for letter, dim in zip(term, shape):
            sizes[letter] = max(sizes.get(letter, 1), int(dim))
    macs = _prod(sizes.values()) if sizes else 0
    return _feat(cfg, macs=macs, flops=2 * macs)


# --------------------------------------------------------------------------------------
# convolutions


def _pad_numeric(padding, k: tuple, dilation: tuple) -> tuple:
    if isinstance(padding, str):
        if padding == "valid":
            return (0,) * len(k)
        return tuple(d * (kk - 1) // 2 for kk, d in zip(k, dilation))      # "same"
    return _ntuple(padding, len(k))


def _conv_common(cfg, nd, transposed, x, w, y, groups, params, stride, padding, dilation):
    if len(x) == nd + 1:                      # unbatched input
        x, y = (1,) + tuple(x), (1,) + tuple(y)
    macs = conv_flop_count(list(x), list(w), list(y), transposed=transposed)
    k = tuple(int(v) for v in w[2:])
    cin = int(x[1])
    cout = int(y[1])
    stride, dilation = _ntuple(stride, nd), _ntuple(dilation, nd)
    padding = _pad_numeric(padding, k, dilation)
    return _feat(
        cfg, macs=macs, flops=2 * macs, params=params, batch=int(x[0]),
        in_channels=cin, out_channels=cout, groups=int(groups), kernel_numel=_prod(k),
        kernel_size=max(k) if k else 1, stride=max(stride), padding=max(padding),
        dilation=max(dilation), in_spatial=_prod(x[2:]), out_spatial=_prod(y[2:]),
        depthwise=int(groups > 1 and groups == cin), transposed=int(transposed),
    )


@register("Conv1d", "Conv2d", "Conv3d", "ConvTranspose1d", "ConvTranspose2d",
          "ConvTranspose3d", "LazyConv1d", "LazyConv2d", "LazyConv3d")
def _conv(cfg: LayerConfig) -> dict:
    """fvcore ``conv_flop_count``: macs = N·prod(w)·prod(out spatial) (transposed: input
    spatial), i.e. N·Cout·Hout·Wout·(Cin/groups)·kh·kw for a 2-d convolution."""
    hp = cfg.hparams_dict()
    nd = _nd_from_type(cfg.type)
    transposed = bool(hp.get("transposed", cfg.type.startswith("ConvTranspose")))
    cin, cout, g = int(hp["in_channels"]), int(hp["out_channels"]), int(hp.get("groups", 1))
    k = tuple(int(v) for v in _ntuple(hp["kernel_size"], nd))
    w = (cin, cout // g, *k) if transposed else (cout, cin // g, *k)
    params = _prod(w) + (cout if hp.get("bias", True) else 0)
    return _conv_common(cfg, nd, transposed, _x(cfg), w, _y(cfg), g, params,
                        hp.get("stride", 1), hp.get("padding", 0), hp.get("dilation", 1))


@register("F.conv1d", "F.conv2d", "F.conv3d", "F.conv_transpose1d", "F.conv_transpose2d",
          "F.conv_transpose3d")
def _f_conv(cfg: LayerConfig) -> dict:
    hp = cfg.hparams_dict()
    nd = _nd_from_type(cfg.type)
    transposed = "transpose" in cfg.type
    g = int(_arg(hp, "groups", 6, 1))
    dil_pos = 7 if transposed else 5
    return _conv_common(cfg, nd, transposed, _x(cfg), cfg.input_shapes[1], _y(cfg), g, 0,
                        _arg(hp, "stride", 3, 1), _arg(hp, "padding", 4, 0),
                        _arg(hp, "dilation", dil_pos, 1))


# --------------------------------------------------------------------------------------
# normalisation


@register("BatchNorm1d", "BatchNorm2d", "BatchNorm3d", "SyncBatchNorm", "LazyBatchNorm1d",
          "LazyBatchNorm2d", "LazyBatchNorm3d")
def _batchnorm(cfg: LayerConfig) -> dict:
    """Eval with running stats: 2 ops/element with affine, 1 without (fvcore); batch
    statistics (training, or track_running_stats=False): 5 / 4 per element."""
    hp = cfg.hparams_dict()
    x = _x(cfg)
    c = int(hp["num_features"])
    affine = bool(hp.get("affine", True))
    track = bool(hp.get("track_running_stats", True))
    batch_stats = bool(hp.get("training", False)) or not track
    n = _prod(x)
    per = (5 if affine else 4) if batch_stats else (2 if affine else 1)
    macs = n * per
    params = 2 * c if affine else 0
    return _feat(cfg, macs=macs, flops=macs, params=params,
                 extra_read_elems=2 * c if track else 0, num_features=c,
                 spatial=n // max(c * (x[0] if len(x) > 1 else 1), 1),
                 batch_stats=int(batch_stats))


@register("InstanceNorm1d", "InstanceNorm2d", "InstanceNorm3d")
def _instancenorm(cfg: LayerConfig) -> dict:
    hp = cfg.hparams_dict()
    c = int(hp["num_features"])
    affine = bool(hp.get("affine", False))
    n = _prod(_x(cfg))
    macs = n * (5 if affine else 4)
    return _feat(cfg, macs=macs, flops=macs, params=2 * c if affine else 0, num_features=c)


@register("LayerNorm")
def _layernorm(cfg: LayerConfig) -> dict:
    """fvcore: 5 ops/element with elementwise_affine, 4 without."""
    hp = cfg.hparams_dict()
    shape = _ntuple(hp["normalized_shape"], 1) if not isinstance(
        hp["normalized_shape"], (tuple, list)) else tuple(hp["normalized_shape"])
    p = _prod(shape)
    affine = bool(hp.get("elementwise_affine", True))
    bias = bool(hp.get("bias", True))
    n = _prod(_x(cfg))
    macs = n * (5 if affine else 4)
    params = p * (2 if bias else 1) if affine else 0
    return _feat(cfg, macs=macs, flops=macs, params=params, normalized_numel=p,
                 rows=n // max(p, 1))


@register("RMSNorm")
def _rmsnorm(cfg: LayerConfig) -> dict:
    hp = cfg.hparams_dict()
    shape = hp["normalized_shape"]
    p = _prod(shape if isinstance(shape, (tuple, list)) else (shape,))
    affine = bool(hp.get("elementwise_affine", True))
    n = _prod(_x(cfg))
    flops = n * (4 if affine else 3)
    return _feat(cfg, flops=flops, params=p if affine else 0, normalized_numel=p)


@register("GroupNorm")
def _groupnorm(cfg: LayerConfig) -> dict:
    hp = cfg.hparams_dict()
    c = int(hp["num_channels"])
    affine = bool(hp.get("affine", True))
    n = _prod(_x(cfg))
    macs = n * (5 if affine else 4)
    return _feat(cfg, macs=macs, flops=macs, params=2 * c if affine else 0,
                 num_channels=c, num_groups=int(hp["num_groups"]))


@register("F.layer_norm", "F.group_norm", "F.instance_norm")
def _f_norm(cfg: LayerConfig) -> dict:
    n = _prod(_x(cfg))
    affine = len(cfg.input_shapes) > 1 if cfg.type == "F.layer_norm" else \
        len(cfg.input_shapes) > (1 if cfg.type == "F.group_norm" else 3)
    macs = n * (5 if affine else 4)
    return _feat(cfg, macs=macs, flops=macs)


@register("F.rms_norm")
def _f_rms_norm(cfg: LayerConfig) -> dict:
    n = _prod(_x(cfg))
    return _feat(cfg, flops=n * (4 if len(cfg.input_shapes) > 1 else 3))


@register("F.batch_norm")
def _f_batchnorm(cfg: LayerConfig) -> dict:
    hp = cfg.hparams_dict()
    training = bool(_arg(hp, "training", 5, False))
    n = _prod(_x(cfg))
    n_t = len(cfg.input_shapes)
    if training or n_t in (1, 3):      # no running stats given -> batch statistics
        affine = n_t in (3, 5)
        per = 5 if affine else 4
    else:
        per = 2 if n_t >= 4 else 1
    return _feat(cfg, macs=n * per, flops=n * per)


# --------------------------------------------------------------------------------------
# activations and elementwise ops

_ACT_MODULES = (
    "ReLU", "ReLU6", "GELU", "SiLU", "Sigmoid", "Tanh", "Hardswish", "Hardsigmoid",
    "LeakyReLU", "ELU", "SELU", "CELU", "Mish", "Softplus", "Hardtanh", "GLU", "LogSigmoid",
    "Softsign", "Tanhshrink", "Threshold", "Hardshrink", "Softshrink", "RReLU",
)
_ACT_FUNCS = tuple("F." + n for n in (
    "relu", "relu6", "gelu", "silu", "sigmoid", "tanh", "hardswish", "hardsigmoid",
    "leaky_relu", "elu", "selu", "celu", "mish", "softplus", "hardtanh", "glu", "logsigmoid",
    "softsign", "tanhshrink", "threshold", "hardshrink", "softshrink", "rrelu", "prelu"))
_ELEMENTWISE = (
    "add", "sub", "mul", "div", "pow", "maximum", "minimum", "fmax", "fmin", "remainder",
    "floor_divide", "fmod", "atan2", "eq", "ne", "lt", "le", "gt", "ge", "logical_and",
    "logical_or", "logical_xor", "logical_not", "bitwise_and", "bitwise_or", "bitwise_xor",
    "bitwise_not", "bitwise_left_shift", "bitwise_right_shift", "where", "masked_fill",
    "lerp", "addcmul", "addcdiv", "rsub", "exp", "exp2", "expm1", "log", "log2", "log10",
    "log1p", "sqrt", "rsqrt", "neg", "abs", "sin", "cos", "tan", "asin", "acos", "atan",
    "sinh", "cosh", "erf", "erfc", "erfinv", "reciprocal", "square", "sign", "sgn", "floor",
    "ceil", "round", "trunc", "frac", "clamp", "clamp_min", "clamp_max", "positive",
    "isnan", "isinf", "isfinite", "nan_to_num", "sigmoid", "tanh", "relu", "hypot", "xlogy",
    "copysign", "heaviside", "logit", "float_power", "true_divide",
)


@register(*_ACT_MODULES, *_ACT_FUNCS, *_ELEMENTWISE)
def _elementwise(cfg: LayerConfig) -> dict:
    """1 flop per output element; no macs (fvcore ignores elementwise ops)."""
    out_n = _prod(_y(cfg))
    return _feat(cfg, flops=out_n)


@register("PReLU")
def _prelu(cfg: LayerConfig) -> dict:
    hp = cfg.hparams_dict()
    return _feat(cfg, flops=_prod(_y(cfg)), params=int(hp.get("num_parameters", 1)))


@register("Softmax", "LogSoftmax", "Softmin", "Softmax2d", "softmax", "log_softmax",
          "softmin")
def _softmax(cfg: LayerConfig) -> dict:
    """5 flops per element (max, subtract, exp, sum, divide)."""
    return _feat(cfg, flops=5 * _prod(_y(cfg)))


@register("F.normalize", "F.cosine_similarity", "CosineSimilarity")
def _normalize(cfg: LayerConfig) -> dict:
    return _feat(cfg, flops=3 * _prod(_x(cfg)))


@register("mean", "sum", "amax", "amin", "max", "min", "var", "std", "var_mean", "std_mean",
          "norm", "logsumexp", "argmax", "argmin", "prod", "all", "any", "cumsum", "cumprod",
          "count_nonzero", "aminmax", "nansum", "nanmean", "linalg_vector_norm", "histc",
          "bincount", "logcumsumexp", "cummax", "cummin", "median", "nanmedian", "mode",
          "kthvalue", "argsort", "msort", "searchsorted", "bucketize")
def _reduction(cfg: LayerConfig) -> dict:
    """1 flop per input element."""
    return _feat(cfg, flops=_prod(_x(cfg)))


# --------------------------------------------------------------------------------------
# pooling


def _pool_kernel(cfg, hp, nd) -> tuple:
    k = _arg(hp, "kernel_size", 1 if cfg.type.startswith("F.") else None, 1)
    return tuple(int(v) for v in _ntuple(k, nd))


@register("MaxPool1d", "MaxPool2d", "MaxPool3d", "AvgPool1d", "AvgPool2d", "AvgPool3d",
          "LPPool1d", "LPPool2d", "F.max_pool1d", "F.max_pool2d", "F.max_pool3d",
          "F.avg_pool1d", "F.avg_pool2d", "F.avg_pool3d")
def _pool(cfg: LayerConfig) -> dict:
    """kernel_numel ops per output element; no macs (fvcore has no max/avg pool handle)."""
    hp = cfg.hparams_dict()
    nd = _nd_from_type(cfg.type)
    k = _pool_kernel(cfg, hp, nd)
    stride = _arg(hp, "stride", 2 if cfg.type.startswith("F.") else None, None) or k
    out_n = _prod(_y(cfg))
    return _feat(cfg, flops=out_n * _prod(k), kernel_numel=_prod(k), kernel_size=max(k),
                 stride=max(_ntuple(stride, nd)))


@register("AdaptiveAvgPool1d", "AdaptiveAvgPool2d", "AdaptiveAvgPool3d",
          "F.adaptive_avg_pool1d", "F.adaptive_avg_pool2d", "F.adaptive_avg_pool3d")
def _adaptive_avg(cfg: LayerConfig) -> dict:
    """fvcore: 1 per input element (macs = flops = numel(input))."""
    n = _prod(_x(cfg))
    return _feat(cfg, macs=n, flops=n, out_spatial=_prod(_y(cfg)[2:]))


@register("AdaptiveMaxPool1d", "AdaptiveMaxPool2d", "AdaptiveMaxPool3d",
          "F.adaptive_max_pool1d", "F.adaptive_max_pool2d", "F.adaptive_max_pool3d")
def _adaptive_max(cfg: LayerConfig) -> dict:
    return _feat(cfg, flops=_prod(_x(cfg)), out_spatial=_prod(_y(cfg)[2:]))


# --------------------------------------------------------------------------------------
# dropout, identity, copies, factories


@register("Dropout", "Dropout1d", "Dropout2d", "Dropout3d", "AlphaDropout",
          "FeatureAlphaDropout", "F.dropout", "F.dropout1d", "F.dropout2d", "F.dropout3d",
          "F.alpha_dropout", "F.feature_alpha_dropout")
def _dropout(cfg: LayerConfig) -> dict:
    """Eval: identity (0 flops); training: mask + scale, 1 flop per element."""
    hp = cfg.hparams_dict()
    if cfg.type.startswith("F."):
        training = bool(_arg(hp, "training", 2, True))
        p = _arg(hp, "p", 1, 0.5)
    else:
        training = bool(hp.get("training", False))
        p = hp.get("p", 0.5)
    flops = _prod(_y(cfg)) if training else 0
    return _feat(cfg, flops=flops, p=float(p if isinstance(p, (int, float)) else 0.5),
                 training=int(training))


@register("Identity", "Flatten", "Unflatten", "flatten", "unflatten", "ravel")
def _identity(cfg: LayerConfig) -> dict:
    """No compute (a view or identity); bytes are the tensor sizes."""
    return _feat(cfg)


@register("cat", "stack", "hstack", "vstack", "dstack", "contiguous", "clone", "to",
          "float", "half", "bfloat16", "double", "int", "long", "bool", "type", "type_as",
          "cpu", "cuda", "copy", "setitem", "F.pad", "repeat", "tile", "roll", "flip",
          "index_select", "gather", "scatter", "scatter_add", "masked_select",
          "repeat_interleave", "tril", "triu", "F.pixel_shuffle", "F.pixel_unshuffle",
          "PixelShuffle", "PixelUnshuffle", "ChannelShuffle", "ZeroPad1d", "ZeroPad2d",
          "ZeroPad3d", "ConstantPad1d", "ConstantPad2d", "ConstantPad3d", "ReflectionPad1d",
          "ReflectionPad2d", "ReflectionPad3d", "ReplicationPad1d", "ReplicationPad2d",
          "ReplicationPad3d", "CircularPad1d", "CircularPad2d", "CircularPad3d", "index_copy",
          "index_put", "index_add", "index", "take", "take_along_dim", "narrow_copy", "F.unfold",
          "F.fold", "Unfold", "Fold", "sort", "topk", "nonzero", "unique", "masked_scatter")
def _copy(cfg: LayerConfig) -> dict:
    """Data movement, no arithmetic: flops 0; bytes are what is read and written."""
    return _feat(cfg)


@register("zeros", "ones", "empty", "full", "arange", "rand", "randn", "randint",
          "randperm", "zeros_like", "ones_like", "empty_like", "full_like", "rand_like",
          "randn_like", "randint_like", "linspace", "logspace", "eye", "tensor", "as_tensor",
          "new_zeros", "new_ones", "new_empty", "new_full", "new_tensor", "fill", "zero",
          "F.one_hot", "triu_indices", "tril_indices", "normal", "uniform", "bernoulli")
def _factory(cfg: LayerConfig) -> dict:
    """Writes its output, reads nothing."""
    return _feat(cfg, bytes_read=0)


# --------------------------------------------------------------------------------------
# embedding, upsampling


@register("Embedding", "F.embedding")
def _embedding(cfg: LayerConfig) -> dict:
    """Gather: reads the indices (8 bytes each) and the gathered rows only."""
    hp = cfg.hparams_dict()
    idx_n = _prod(_x(cfg))
    out_n = _prod(_y(cfg))
    db = _dtype_bytes(cfg.dtype)
    if cfg.type == "Embedding":
        num, dim = int(hp["num_embeddings"]), int(hp["embedding_dim"])
        params = num * dim
    else:
        w = cfg.input_shapes[1]
        num, dim = int(w[0]), int(w[-1])
        params = 0
    return _feat(cfg, params=params, bytes_read=idx_n * 8 + out_n * db,
                 num_embeddings=num, embedding_dim=dim, lookups=idx_n)


_UPSAMPLE_PER_OUT = {"nearest": 1, "nearest-exact": 1, "linear": 2, "bilinear": 4,
                     "bicubic": 16, "trilinear": 8, "area": 1}


@register("Upsample", "UpsamplingNearest2d", "UpsamplingBilinear2d", "F.interpolate",
          "F.upsample", "F.grid_sample")
def _upsample(cfg: LayerConfig) -> dict:
    """fvcore: nearest 1 and bilinear 4 per output element (macs); flops the same, with
    linear 2, trilinear 8, bicubic 16 per output element."""
    hp = cfg.hparams_dict()
    if cfg.type == "UpsamplingNearest2d":
        mode = "nearest"
    elif cfg.type in ("UpsamplingBilinear2d", "F.grid_sample"):
        mode = "bilinear"
    elif cfg.type.startswith("F."):
        mode = _arg(hp, "mode", 3, "nearest")
    else:
        mode = hp.get("mode", "nearest")
    per = _UPSAMPLE_PER_OUT.get(mode, 1)
    out_n = _prod(_y(cfg))
    macs = out_n * per if mode in ("nearest", "bilinear") else 0
    return _feat(cfg, macs=macs, flops=out_n * per)


# --------------------------------------------------------------------------------------
# attention


def _attn_flops(macs: int, attn_numel: int) -> int:
    return 2 * macs + 5 * attn_numel          # matmuls + softmax


@register("MultiheadAttention")
def _mha(cfg: LayerConfig) -> dict:
    """QKV in-projection, QK^T, softmax, AV and out-projection.

    macs = N·L·E·E (q) + N·S·kdim·E (k) + N·S·vdim·E (v) + N·L·S·E (QK^T) + N·L·S·E (AV)
    + N·L·E·E (out-proj), with N the batch, L/S the query/key lengths, E = embed_dim.
    """
    hp = cfg.hparams_dict()
    e = int(hp["embed_dim"])
    h = int(hp["num_heads"])
    kdim = int(hp.get("kdim") or e)
    vdim = int(hp.get("vdim") or e)
    bf = bool(hp.get("batch_first", False))
    q = cfg.input_shapes[0]
    k = cfg.input_shapes[1] if len(cfg.input_shapes) > 1 else q
    if len(q) == 2:               # unbatched (L, E)
        n, lq, s = 1, int(q[0]), int(k[0])
    elif bf:
        n, lq, s = int(q[0]), int(q[1]), int(k[1])
    else:
        n, lq, s = int(q[1]), int(q[0]), int(k[0])
    bias = bool(hp.get("bias", True))
    add_bias_kv = bool(hp.get("add_bias_kv", False))
    s_eff = s + (1 if add_bias_kv else 0) + (1 if hp.get("add_zero_attn") else 0)
    proj = n * lq * e * e + n * s * kdim * e + n * s * vdim * e + n * lq * e * e
    attn = 2 * n * lq * s_eff * e
    macs = proj + attn
    attn_numel = n * h * lq * s_eff
    params = e * (e + kdim + vdim) + (3 * e if bias else 0) + e * e + (e if bias else 0) \
        + (2 * e if add_bias_kv else 0)
    return _feat(cfg, macs=macs, flops=_attn_flops(macs, attn_numel), params=params, batch=n,
                 seq_len=lq, kv_len=s, heads=h, embed_dim=e, head_dim=e // max(h, 1),
                 attn_numel=attn_numel, proj_macs=proj, attn_macs=attn)


@register("sdpa")
def _sdpa(cfg: LayerConfig) -> dict:
    """F.scaled_dot_product_attention(q, k, v): macs = B·L·S·E (QK^T) + B·L·S·Ev (AV),
    B the product of q's leading dims (batch·heads); softmax 5 flops per score."""
    hp = cfg.hparams_dict()
    q, k, v = cfg.input_shapes[0], cfg.input_shapes[1], cfg.input_shapes[2]
    b = _prod(q[:-2])
    lq, e = int(q[-2]), int(q[-1])
    s, ev = int(k[-2]), int(v[-1])
    macs = b * lq * s * (e + ev)
    attn_numel = b * lq * s
    heads = int(q[-3]) if len(q) >= 3 else 1
    return _feat(cfg, macs=macs, flops=_attn_flops(macs, attn_numel),
                 batch=int(q[0]) if len(q) >= 3 else 1, seq_len=lq, kv_len=s, heads=heads,
                 head_dim=e, attn_numel=attn_numel,
                 is_causal=int(bool(_arg(hp, "is_causal", 5, False))),
                 has_mask=int(len(cfg.input_shapes) > 3))


# --------------------------------------------------------------------------------------
# recurrent layers


@register("LSTM", "GRU", "RNN")
def _rnn(cfg: LayerConfig) -> dict:
    """Per layer, direction and time step: gates·H·(I_l + H_r) macs (+ projection);
    ~4 flops per gate element for the pointwise gate math."""
    hp = cfg.hparams_dict()
    gates = {"LSTM": 4, "GRU": 3}.get(cfg.type, 1)
    isz, hsz = int(hp["input_size"]), int(hp["hidden_size"])
    layers = int(hp.get("num_layers", 1))
    dirs = 2 if hp.get("bidirectional") else 1
    proj = int(hp.get("proj_size", 0) or 0)
    hr = proj or hsz
    bias = bool(hp.get("bias", True))
    x = _x(cfg)
    if len(x) == 2:
        t, n = int(x[0]), 1
    elif hp.get("batch_first"):
        n, t = int(x[0]), int(x[1])
    else:
        t, n = int(x[0]), int(x[1])
    macs = params = 0
    for layer in range(layers):
        il = isz if layer == 0 else hr * dirs
        per_dir = gates * hsz * (il + hr) + (hr * hsz if proj else 0)
        macs += dirs * t * n * per_dir
        params += dirs * (gates * hsz * (il + hr) + (2 * gates * hsz if bias else 0)
                          + (hr * hsz if proj else 0))
    point = 4 * t * n * gates * hsz * layers * dirs
    return _feat(cfg, macs=macs, flops=2 * macs + point, params=params, batch=n,
                 seq_len=t, hidden_size=hsz, num_layers=layers, directions=dirs)


# --------------------------------------------------------------------------------------
# losses (rarely inside a model, but cheap to cover)


@register("MSELoss", "L1Loss", "SmoothL1Loss", "HuberLoss", "F.mse_loss", "F.l1_loss",
          "F.smooth_l1_loss", "F.huber_loss")
def _regression_loss(cfg: LayerConfig) -> dict:
    return _feat(cfg, flops=3 * _prod(_x(cfg)))


@register("CrossEntropyLoss", "NLLLoss", "BCEWithLogitsLoss", "BCELoss", "KLDivLoss",
          "F.cross_entropy", "F.nll_loss", "F.binary_cross_entropy_with_logits",
          "F.binary_cross_entropy", "F.kl_div")
def _class_loss(cfg: LayerConfig) -> dict:
    per = 6 if cfg.type in ("CrossEntropyLoss", "F.cross_entropy") else 3
    return _feat(cfg, flops=per * _prod(_x(cfg)))


# --------------------------------------------------------------------------------------
# public API


def layer_features(config: LayerConfig) -> dict:
    """Features of one layer config (see the module docstring for units).

    Raises :class:`UnsupportedLayerError` when ``config.type`` has no feature function.
    """
    fn = FEATURE_REGISTRY.get(config.type)
    if fn is None:
        raise UnsupportedLayerError(
            f"no feature function for layer type {config.type!r}; "
            f"supported types: see profiling.features.FEATURE_REGISTRY"
        )
    return fn(config)


_ROW_KEYS = ("name", "names", "type", "count", "key", "hparams", "input_shapes",
             "output_shapes", "dtype", "supported", "functional")


@dataclass
class FeatureTable:
    """Per distinct layer config: identification, call count and features.

    ``rows``: one dict per distinct config (first-seen order) with ``name`` (first path),
    ``names``, ``type``, ``count`` (calls per forward), ``key``, ``hparams`` (dict),
    ``input_shapes``, ``output_shapes``, ``dtype``, ``supported``, ``functional`` and — for
    supported rows only — the features, merged into the row. Unsupported rows carry no
    features (never fabricated zeros) and a ``reason``.
    ``unsupported``: ``{type, names, count, key, reason}`` for each unsupported row.
    ``totals``: Σ count·feature over supported rows for macs, flops, bytes_read,
    bytes_written; ``params`` counts each module's parameters once (shared modules called
    several times are not double counted); plus ``calls``, ``supported_calls``,
    ``unsupported_calls``, ``distinct_layers`` and (from ``feature_table``) ``model_params``.
    """

    rows: list
    unsupported: list
    totals: dict
    zero_cost_ops: dict = field(default_factory=dict)
    dtype: str = "fp32"
    capture: Capture | None = field(default=None, repr=False)

    def to_json(self) -> dict:
        """A JSON-serialisable dict (tuples become lists)."""
        return json.loads(json.dumps({
            "dtype": self.dtype,
            "rows": self.rows,
            "unsupported": self.unsupported,
            "totals": self.totals,
            "zero_cost_ops": self.zero_cost_ops,
        }, default=str))

    def to_text(self, max_name: int = 36) -> str:
        """An aligned, human-readable table (one line per distinct layer config)."""
        header = ("name", "type", "count", "dtype", "input", "output", "MACs", "params",
                  "bytes r+w", "AI")
        lines = []
        for r in self.rows:
            name = r["name"]
            if len(r["names"]) > 1:
                name = f"{name} (+{len(r['names']) - 1})"
            if len(name) > max_name:
                name = "…" + name[-(max_name - 1):]
            ins = ",".join("x".join(str(d) for d in s) or "()" for s in r["input_shapes"])
            outs = ",".join("x".join(str(d) for d in s) or "()" for s in r["output_shapes"])
            if r["supported"]:
                cells = (_human(r["macs"]), _human(r["params"]),
                         _human(r["bytes_read"] + r["bytes_written"], "B"),
                         f"{r['arith_intensity']:.1f}")
            else:
                cells = ("UNSUPPORTED", "-", "-", "-")
            lines.append((name, r["type"], str(r["count"]), r["dtype"], _clip(ins, 28),
                          _clip(outs, 24)) + cells)
        widths = [max(len(str(c)) for c in col) for col in zip(header, *lines)]
        right = {2, 6, 7, 8, 9}

        def fmt(cells):
            return "  ".join(c.rjust(w) if i in right else c.ljust(w)
                             for i, (c, w) in enumerate(zip(cells, widths))).rstrip()

        out = [fmt(header), fmt(tuple("-" * w for w in widths))]
        out += [fmt(line) for line in lines]
        t = self.totals
        out.append("")
        out.append(
            f"total ({t.get('calls', 0)} calls, {t.get('distinct_layers', 0)} distinct, "
            f"dtype {self.dtype}): MACs {_human(t.get('macs', 0))}, "
            f"FLOPs {_human(t.get('flops', 0))}, params {_human(t.get('params', 0))}, "
            f"bytes read {_human(t.get('bytes_read', 0), 'B')}, "
            f"written {_human(t.get('bytes_written', 0), 'B')}"
        )
        if self.unsupported:
            out.append("unsupported (no features, not counted in totals): " + ", ".join(
                f"{u['type']} x{u['count']}" for u in self.unsupported))
        if self.zero_cost_ops:
            ops = sorted(self.zero_cost_ops.items(), key=lambda kv: -kv[1])
            out.append("zero-cost view/metadata ops: " + ", ".join(f"{k} x{v}" for k, v in ops))
        return "\n".join(out)


def _clip(s: str, n: int) -> str:
    return s if len(s) <= n else s[: n - 1] + "…"


def _human(v, unit: str = "") -> str:
    v = float(v)
    for div, suffix in ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(v) >= div:
            return f"{v / div:.2f}{suffix}{unit}"
    return f"{int(v)}{unit}" if v == int(v) else f"{v:.2f}{unit}"


def _row(layer: CapturedLayer) -> dict:
    cfg = layer.config
    return {
        "name": layer.names[0],
        "names": list(layer.names),
        "type": cfg.type,
        "count": layer.count,
        "key": cfg.key(),
        "hparams": cfg.hparams_dict(),
        "input_shapes": [list(s) for s in cfg.input_shapes],
        "output_shapes": [list(s) for s in cfg.output_shapes],
        "dtype": cfg.dtype,
        "supported": layer.supported,
        "functional": layer.module is None,
    }


def features_for_capture(cap: Capture, *, warn: bool = True) -> FeatureTable:
    """Build the :class:`FeatureTable` of an existing :class:`Capture`."""
    rows, unsupported = [], []
    totals = {"macs": 0, "flops": 0, "params": 0, "bytes_read": 0, "bytes_written": 0}
    supported_calls = unsupported_calls = 0
    for layer in cap.layers:
        row = _row(layer)
        reason = None
        feats = None
        if layer.supported and layer.config.type in FEATURE_REGISTRY:
            try:
                feats = layer_features(layer.config)
            except Exception as exc:        # a registered function that cannot handle it
                reason = f"feature function failed: {type(exc).__name__}: {exc}"
        else:
            reason = f"no feature function for {layer.config.type!r}"
        if feats is None:
            row["supported"] = False
            row["reason"] = reason
            unsupported.append({"type": layer.config.type, "names": list(layer.names),
                                "count": layer.count, "key": row["key"], "reason": reason})
            unsupported_calls += layer.count
        else:
            clash = set(feats) & set(_ROW_KEYS)
            if clash:                        # programming error in a feature function
                raise RuntimeError(f"feature names {sorted(clash)} clash with row keys")
            row.update(feats)
            supported_calls += layer.count
            for k in ("macs", "flops", "bytes_read", "bytes_written"):
                totals[k] += layer.count * feats[k]
            n_modules = len(layer.names) if layer.module is not None else layer.count
            totals["params"] += feats["params"] * n_modules
        rows.append(row)
    totals.update(calls=cap.total_calls, supported_calls=supported_calls,
                  unsupported_calls=unsupported_calls, distinct_layers=len(rows))
    if unsupported and warn:
        kinds: dict = {}
        for u in unsupported:
            kinds[u["type"]] = kinds.get(u["type"], 0) + u["count"]
        warnings.warn(
            "layers without a feature function (listed in .unsupported, not counted in "
            "totals): " + ", ".join(f"{t} x{c}" for t, c in kinds.items()),
            UnsupportedLayerWarning, stacklevel=3,
        )
    return FeatureTable(rows=rows, unsupported=unsupported, totals=totals,
                        zero_cost_ops=dict(cap.zero_cost_ops), dtype=cap.dtype, capture=cap)


def feature_table(model, inputs, dtype: str = "fp32", *, train: bool = False) -> FeatureTable:
    """Capture ``model`` on ``inputs`` and compute the features of every distinct layer.

    Never raises for unsupported layers: they are listed in ``.unsupported`` (rows marked
    ``supported=False``, no features) and reported with an :class:`UnsupportedLayerWarning`.
    A model built from a MODEL_REF on meta whose forward cannot run there is traced once on
    the CPU instead (with a ``RuntimeWarning``; see
    :func:`profiling.model_refs.capture_with_cpu_fallback`).
    """
    from .model_refs import capture_with_cpu_fallback

    cap, note = capture_with_cpu_fallback(model, inputs, dtype=dtype, train=train)
    if note:
        warnings.warn(note, RuntimeWarning, stacklevel=2)
    table = features_for_capture(cap)
    table.totals["model_params"] = int(sum(p.numel() for p in model.parameters()))
    return table
