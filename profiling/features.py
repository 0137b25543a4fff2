"""Shape-based features of a layer configuration (the predictor's inputs) -- import facade.

The feature functions live in :mod:`profiling.feature_families` (one module per layer
family, registered in ``profiling.feature_families.registry``; conventions and units in
that package's docstring); the per-capture table in :mod:`profiling.feature_table`. This
module re-exports both, so ``from profiling.features import ...`` keeps working.
"""

from __future__ import annotations

from . import feature_families  # noqa: F401  (fills FEATURE_REGISTRY)
from .capture import capture  # noqa: F401  (re-exported, as before the split)
from .errors import UnsupportedLayerError  # noqa: F401
from .layer_records import Capture, CapturedLayer, LayerConfig  # noqa: F401
from .feature_families.registry import (  # noqa: F401  (re-exported)
    CORE_FEATURES,
    DTYPE_BYTES,
    FEATURE_REGISTRY,
    layer_features,
    register,
    UnsupportedLayerWarning,
)
from .feature_families.common import (  # noqa: F401  (re-exported)
    _arg,
    _dtype_bytes,
    _feat,
    _nd_from_type,
    _ntuple,
    _prod,
    _x,
    _y,
)
from .feature_families.linear import (  # noqa: F401  (re-exported)
    _addbmm,
    _addmm,
    _bilinear,
    _einsum,
    _f_linear,
    _grouped_mm,
    _linear,
    _matmul,
)
from .feature_families.conv import (  # noqa: F401  (re-exported)
    conv_flop_count,
    _conv,
    _conv_common,
    _f_conv,
    _pad_numeric,
)
from .feature_families.norms import (  # noqa: F401  (re-exported)
    _batchnorm,
    _f_batchnorm,
    _f_norm,
    _f_rms_norm,
    _groupnorm,
    _instancenorm,
    _layernorm,
    _rmsnorm,
)
from .feature_families.elementwise import (  # noqa: F401  (re-exported)
    _ACT_FUNCS,
    _ACT_MODULES,
    _ELEMENTWISE,
    _elementwise,
    _normalize,
    _prelu,
    _reduction,
    _softmax,
)
from .feature_families.pooling import (  # noqa: F401  (re-exported)
    _adaptive_avg,
    _adaptive_max,
    _pool,
    _pool_kernel,
)
from .feature_families.copies import (  # noqa: F401  (re-exported)
    _copy,
    _dropout,
    _factory,
    _identity,
)
from .feature_families.embedding import (  # noqa: F401  (re-exported)
    _embedding,
    _upsample,
    _UPSAMPLE_PER_OUT,
)
from .feature_families.attention import (  # noqa: F401  (re-exported)
    _attn_flops,
    _mha,
    _rnn,
    _sdpa,
)
from .feature_families.losses import (  # noqa: F401  (re-exported)
    _class_loss,
    _regression_loss,
)
from .feature_table import (  # noqa: F401  (re-exported)
    _clip,
    feature_table,
    features_for_capture,
    FeatureTable,
    _human,
    _row,
    _ROW_KEYS,
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
