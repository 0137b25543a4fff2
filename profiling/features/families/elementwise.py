"""Features of activations, elementwise ops, softmax and reductions.
"""

from __future__ import annotations

from profiling.capture.records import LayerConfig
from profiling.features.families.common import _feat, _prod, _x, _y
from profiling.features.families.registry import register

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


