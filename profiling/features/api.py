"""Shape-based features of a layer configuration (the predictor's inputs) -- import facade.

The feature functions live in :mod:`profiling.features.families` (one module per layer
family, registered in ``profiling.features.families.registry``; conventions and units in
that package's docstring); the per-capture table in :mod:`profiling.features.table`. This
module re-exports both, so ``from profiling.features.api import ...`` keeps working.
"""

from __future__ import annotations

from profiling.capture.core import capture  # noqa: F401  (re-exported, as before the split)
from profiling.capture.records import Capture, CapturedLayer, LayerConfig  # noqa: F401
from profiling.errors import UnsupportedLayerError  # noqa: F401
from profiling.features import families as feature_families  # noqa: F401  (fills FEATURE_REGISTRY)
from profiling.features.families.attention import _attn_flops, _mha, _rnn, _sdpa
from profiling.features.families.common import (
    _arg,
    _dtype_bytes,
    _feat,
    _nd_from_type,
    _ntuple,
    _prod,
    _x,
    _y,
)
from profiling.features.families.conv import (
    _conv,
    _conv_common,
    _f_conv,
    _pad_numeric,
    conv_flop_count,
)
from profiling.features.families.copies import _copy, _dropout, _factory, _identity
from profiling.features.families.elementwise import (
    _ACT_FUNCS,
    _ACT_MODULES,
    _ELEMENTWISE,
    _elementwise,
    _normalize,
    _prelu,
    _reduction,
    _softmax,
)
from profiling.features.families.embedding import _UPSAMPLE_PER_OUT, _embedding, _upsample
from profiling.features.families.linear import (
    _addbmm,
    _addmm,
    _bilinear,
    _einsum,
    _f_linear,
    _grouped_mm,
    _linear,
    _matmul,
)
from profiling.features.families.losses import _class_loss, _regression_loss
from profiling.features.families.norms import (
    _batchnorm,
    _f_batchnorm,
    _f_norm,
    _f_rms_norm,
    _groupnorm,
    _instancenorm,
    _layernorm,
    _rmsnorm,
)
from profiling.features.families.pooling import _adaptive_avg, _adaptive_max, _pool, _pool_kernel
from profiling.features.families.registry import (
    CORE_FEATURES,
    DTYPE_BYTES,
    FEATURE_REGISTRY,
    UnsupportedLayerWarning,
    layer_features,
    register,
)
from profiling.features.table import (
    _ROW_KEYS,
    FeatureTable,
    _clip,
    _human,
    _row,
    feature_table,
    features_for_capture,
)

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
