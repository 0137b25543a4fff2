"""The old ``profiling.features`` module's public names (kept: ``from profiling.features.api
import layer_features`` works as before the split); the same names as :mod:`profiling.features`.

The feature functions live in :mod:`profiling.features.families` (one module per layer
family, registered in ``profiling.features.families.registry``; conventions and units in
that package's docstring); the per-capture table in :mod:`profiling.features.table`.
"""

from __future__ import annotations

import profiling.features.families  # noqa: F401  (fills FEATURE_REGISTRY)
from profiling.features.families.registry import (
    CORE_FEATURES,
    DTYPE_BYTES,
    FEATURE_REGISTRY,
    UnsupportedLayerWarning,
    layer_features,
    register,
    unregister,
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
    "unregister",
]
