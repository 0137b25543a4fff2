"""profiling.features: per-layer architecture features (FLOPs, bytes, params, shapes): a registry of family rules.

Public names only: the family rules live in :mod:`profiling.features.families` (one module
per layer family; importing it fills :data:`FEATURE_REGISTRY`), the per-capture table in
:mod:`profiling.features.table`. Import a helper from its module.
"""

import profiling.features.families  # noqa: F401  (fills FEATURE_REGISTRY)
from profiling.features.families.registry import (
    CORE_FEATURES,
    DTYPE_BYTES,
    FEATURE_REGISTRY,
    UnsupportedLayerWarning,
    layer_features,
    register,
)
from profiling.features.table import FeatureTable, feature_table, features_for_capture

__all__ = [
    "CORE_FEATURES",
    "DTYPE_BYTES",
    "FEATURE_REGISTRY",
    "FeatureTable",
    "UnsupportedLayerWarning",
    "feature_table",
    "features_for_capture",
    "layer_features",
    "register",
]
