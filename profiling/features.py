"""Shape-based features of a layer configuration (the predictor's inputs) -- import facade.

The feature functions live in :mod:`profiling.feature_families` (one module per layer
family, registered in ``profiling.feature_families.registry``; conventions and units in
that package's docstring); the per-capture table in :mod:`profiling.feature_table`. This
module re-exports both, so ``from profiling.features import ...`` keeps working.
"""

from __future__ import annotations

from profiling import feature_families  # noqa: F401  (fills FEATURE_REGISTRY)
from profiling.capture import capture  # noqa: F401  (re-exported, as before the split)
from profiling.errors import UnsupportedLayerError  # noqa: F401
from profiling.layer_records import Capture, CapturedLayer, LayerConfig  # noqa: F401
from profiling.feature_families.registry import CORE_FEATURES, DTYPE_BYTES, FEATURE_REGISTRY, layer_features, register, UnsupportedLayerWarning
from profiling.feature_families.common import _arg, _dtype_bytes, _feat, _nd_from_type, _ntuple, _prod, _x, _y
from profiling.feature_families.linear import _addbmm, _addmm, _bilinear, _einsum, _f_linear, _grouped_mm, _linear, _matmul
from profiling.feature_families.conv import conv_flop_count, _conv, _conv_common, _f_conv, _pad_numeric
from profiling.feature_families.norms import _batchnorm, _f_batchnorm, _f_norm, _f_rms_norm, _groupnorm, _instancenorm, _layernorm, _rmsnorm
from profiling.feature_families.elementwise import _ACT_FUNCS, _ACT_MODULES, _ELEMENTWISE, _elementwise, _normalize, _prelu, _reduction, _softmax
from profiling.feature_families.pooling import _adaptive_avg, _adaptive_max, _pool, _pool_kernel
from profiling.feature_families.copies import _copy, _dropout, _factory, _identity
from profiling.feature_families.embedding import _embedding, _upsample, _UPSAMPLE_PER_OUT
from profiling.feature_families.attention import _attn_flops, _mha, _rnn, _sdpa
from profiling.feature_families.losses import _class_loss, _regression_loss
from profiling.feature_table import _clip, feature_table, features_for_capture, FeatureTable, _human, _row, _ROW_KEYS

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
