"""Shape features of the per-layer table of a :class:`~predictor.engine.prediction.Prediction`.

Each row of ``Prediction.layers`` shows the layer config's own shape features
(``profiling.features.api.layer_features``: MACs, FLOPs, parameters, bytes read and
written, element counts, batch, dtype bytes, arithmetic intensity in FLOPs per byte).
A feature function that fails is never hidden: :func:`features_of` returns the error text so
the prediction names the layer in its warnings.
"""

from __future__ import annotations

import logging

from profiling.capture.core import LayerConfig
from profiling.errors import ExanteError
from profiling.features.api import layer_features

__all__ = ["FEATURE_KEYS", "features_of", "clear_feature_cache", "FEATURE_ERRORS"]

log = logging.getLogger(__name__)

#: the features shown per layer row (units: counts, bytes, FLOPs/byte)
FEATURE_KEYS = ("macs", "flops", "params", "bytes_read", "bytes_written", "input_numel",
                "output_numel", "batch", "dtype_bytes", "arith_intensity")
#: what a feature function may raise on a shape it does not handle (recorded, never hidden)
FEATURE_ERRORS = (ExanteError, ValueError, TypeError, KeyError, IndexError, ArithmeticError,
                  AttributeError)
_CACHE_MAX = 200_000
_CACHE: dict[LayerConfig, tuple[dict, str | None]] = {}


def clear_feature_cache() -> None:
    """Drop the per-config feature cache."""
    _CACHE.clear()


def features_of(config: LayerConfig) -> tuple[dict, str | None]:
    """(features, error): the layer table's features of ``config`` (cached per config), or
    ``({}, "<Error>: <message>")`` when its feature function fails."""
    hit = _CACHE.get(config)
    if hit is None:
        try:
            f = layer_features(config)
            hit = ({k: f[k] for k in FEATURE_KEYS if k in f}, None)
        except FEATURE_ERRORS as exc:
            log.debug("features of %s failed: %r", config.type, exc)
            hit = ({}, f"{type(exc).__name__}: {exc}")
        if len(_CACHE) > _CACHE_MAX:
            _CACHE.clear()
        _CACHE[config] = hit
    return hit
