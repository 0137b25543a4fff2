"""Which lowering family each captured layer type belongs to (``LayerConfig.type`` names).

Every type with a feature function in :data:`profiling.features.api.FEATURE_REGISTRY` is
listed under exactly one family; a type missing here has no family and is priced by the
generic memory fallback and named in ``LoweredWorkload.unpriced``
(``tests/test_lowering_rules.py`` checks the table covers the feature registry).  Add types
with :func:`predictor.engine.rules.assign_layer_types`.
"""

from __future__ import annotations

from predictor.engine.rules.core import assign_layer_types

__all__ = ["BUILTIN_TYPES"]

#: family -> the layer types lowered by its rule
BUILTIN_TYPES: dict[str, tuple[str, ...]] = {
    "gemm": (
        "Linear", "NonDynamicallyQuantizableLinear", "LazyLinear", "Bilinear", "F.linear",
    ),
    "bgemm": (
        "matmul", "mm", "bmm", "mv", "dot", "vdot", "inner", "addmm", "baddbmm", "addmv",
        "addbmm", "einsum",
    ),
    "grouped_mm": (
        "grouped_mm", "F.grouped_mm",
    ),
    "conv": (
        "Conv1d", "Conv2d", "Conv3d", "ConvTranspose1d", "ConvTranspose2d", "ConvTranspose3d",
        "LazyConv1d", "LazyConv2d", "LazyConv3d", "F.conv1d", "F.conv2d", "F.conv3d",
        "F.conv_transpose1d", "F.conv_transpose2d", "F.conv_transpose3d",
    ),
    "bn": (
        "BatchNorm1d", "BatchNorm2d", "BatchNorm3d", "SyncBatchNorm", "LazyBatchNorm1d",
        "LazyBatchNorm2d", "LazyBatchNorm3d", "F.batch_norm",
    ),
    "ln": (
        "LayerNorm", "RMSNorm", "F.layer_norm", "F.group_norm", "F.instance_norm", "F.rms_norm",
    ),
    "gn": (
        "InstanceNorm1d", "InstanceNorm2d", "InstanceNorm3d", "GroupNorm",
    ),
    "ew": (
        "ReLU", "ReLU6", "GELU", "SiLU", "Sigmoid", "Tanh", "Hardswish", "Hardsigmoid",
        "LeakyReLU", "ELU", "SELU", "CELU", "Mish", "Softplus", "Hardtanh", "GLU", "LogSigmoid",
        "Softsign", "Tanhshrink", "Threshold", "Hardshrink", "Softshrink", "RReLU", "F.relu",
        "F.relu6", "F.gelu", "F.silu", "F.sigmoid", "F.tanh", "F.hardswish", "F.hardsigmoid",
        "F.leaky_relu", "F.elu", "F.selu", "F.celu", "F.mish", "F.softplus", "F.hardtanh",
        "F.glu", "F.logsigmoid", "F.softsign", "F.tanhshrink", "F.threshold", "F.hardshrink",
        "F.softshrink", "F.rrelu", "F.prelu", "add", "sub", "mul", "div", "pow", "maximum",
        "minimum", "fmax", "fmin", "remainder", "floor_divide", "fmod", "atan2", "eq", "ne", "lt",
        "le", "gt", "ge", "logical_and", "logical_or", "logical_xor", "logical_not",
        "bitwise_and", "bitwise_or", "bitwise_xor", "bitwise_not", "bitwise_left_shift",
        "bitwise_right_shift", "where", "masked_fill", "lerp", "addcmul", "addcdiv", "rsub",
        "exp", "exp2", "expm1", "log", "log2", "log10", "log1p", "sqrt", "rsqrt", "neg", "abs",
        "sin", "cos", "tan", "asin", "acos", "atan", "sinh", "cosh", "erf", "erfc", "erfinv",
        "reciprocal", "square", "sign", "sgn", "floor", "ceil", "round", "trunc", "frac", "clamp",
        "clamp_min", "clamp_max", "positive", "isnan", "isinf", "isfinite", "nan_to_num",
        "sigmoid", "tanh", "relu", "hypot", "xlogy", "copysign", "heaviside", "logit",
        "float_power", "true_divide", "PReLU", "F.normalize", "F.cosine_similarity",
        "CosineSimilarity", "mean", "sum", "amax", "amin", "max", "min", "var", "std", "var_mean",
        "std_mean", "norm", "logsumexp", "argmax", "argmin", "prod", "all", "any", "cumsum",
        "cumprod", "count_nonzero", "aminmax", "nansum", "nanmean", "linalg_vector_norm", "histc",
        "bincount", "logcumsumexp", "cummax", "cummin", "median", "nanmedian", "mode", "kthvalue",
        "argsort", "msort", "searchsorted", "bucketize", "Upsample", "UpsamplingNearest2d",
        "UpsamplingBilinear2d", "F.interpolate", "F.upsample", "F.grid_sample", "MaxPool1d",
        "MaxPool2d", "MaxPool3d", "AvgPool1d", "AvgPool2d", "AvgPool3d", "LPPool1d", "LPPool2d",
        "F.max_pool1d", "F.max_pool2d", "F.max_pool3d", "F.avg_pool1d", "F.avg_pool2d",
        "F.avg_pool3d", "AdaptiveAvgPool1d", "AdaptiveAvgPool2d", "AdaptiveAvgPool3d",
        "F.adaptive_avg_pool1d", "F.adaptive_avg_pool2d", "F.adaptive_avg_pool3d",
        "AdaptiveMaxPool1d", "AdaptiveMaxPool2d", "AdaptiveMaxPool3d", "F.adaptive_max_pool1d",
        "F.adaptive_max_pool2d", "F.adaptive_max_pool3d",
    ),
    "softmax": (
        "Softmax", "LogSoftmax", "Softmin", "Softmax2d", "softmax", "log_softmax", "softmin",
    ),
    "dropout": (
        "Dropout", "Dropout1d", "Dropout2d", "Dropout3d", "AlphaDropout", "FeatureAlphaDropout",
        "F.dropout", "F.dropout1d", "F.dropout2d", "F.dropout3d", "F.alpha_dropout",
        "F.feature_alpha_dropout",
    ),
    "view": (
        "Identity", "Flatten", "Unflatten", "flatten", "unflatten", "ravel",
    ),
    "copy": (
        "cat", "stack", "hstack", "vstack", "dstack", "contiguous", "clone", "to", "float",
        "half", "bfloat16", "double", "int", "long", "bool", "type", "type_as", "cpu", "cuda",
        "copy", "setitem", "F.pad", "repeat", "tile", "roll", "flip", "index_select", "gather",
        "scatter", "scatter_add", "masked_select", "repeat_interleave", "tril", "triu",
        "F.pixel_shuffle", "F.pixel_unshuffle", "PixelShuffle", "PixelUnshuffle",
        "ChannelShuffle", "ZeroPad1d", "ZeroPad2d", "ZeroPad3d", "ConstantPad1d", "ConstantPad2d",
        "ConstantPad3d", "ReflectionPad1d", "ReflectionPad2d", "ReflectionPad3d",
        "ReplicationPad1d", "ReplicationPad2d", "ReplicationPad3d", "CircularPad1d",
        "CircularPad2d", "CircularPad3d", "index_copy", "index_put", "index_add", "index", "take",
        "take_along_dim", "narrow_copy", "F.unfold", "F.fold", "Unfold", "Fold", "sort", "topk",
        "nonzero", "unique", "masked_scatter",
    ),
    "factory": (
        "zeros", "ones", "empty", "full", "arange", "rand", "randn", "randint", "randperm",
        "zeros_like", "ones_like", "empty_like", "full_like", "rand_like", "randn_like",
        "randint_like", "linspace", "logspace", "eye", "tensor", "as_tensor", "new_zeros",
        "new_ones", "new_empty", "new_full", "new_tensor", "fill", "zero", "F.one_hot",
        "triu_indices", "tril_indices", "normal", "uniform", "bernoulli",
    ),
    "embedding": (
        "Embedding", "F.embedding",
    ),
    "mha": (
        "MultiheadAttention",
    ),
    "sdpa": (
        "sdpa",
    ),
    "rnn": (
        "LSTM", "GRU", "RNN",
    ),
    "loss": (
        "MSELoss", "L1Loss", "SmoothL1Loss", "HuberLoss", "F.mse_loss", "F.l1_loss",
        "F.smooth_l1_loss", "F.huber_loss", "CrossEntropyLoss", "NLLLoss", "BCEWithLogitsLoss",
        "BCELoss", "KLDivLoss", "F.cross_entropy", "F.nll_loss",
        "F.binary_cross_entropy_with_logits", "F.binary_cross_entropy", "F.kl_div",
    ),
}

for _family, _types in BUILTIN_TYPES.items():
    assign_layer_types(_family, *_types)
