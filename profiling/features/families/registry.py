"""The feature registry: ``LayerConfig.type`` -> pure feature function, the
:func:`register` decorator, :func:`layer_features`, and the feature/dtype constants.
"""

from __future__ import annotations

from typing import Callable

from profiling.capture.records import LayerConfig
from profiling.errors import ExanteError, UnsupportedLayerError

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
    """Decorator: register a feature function for one or more ``LayerConfig.type`` names.

    Like torch's ``register_flop_formula``, a type that already has a (different) feature
    function is an :class:`ExanteError`: :func:`unregister` it first to replace it."""

    def deco(fn):
        taken = [t for t in types if FEATURE_REGISTRY.get(t, fn) is not fn]
        if taken:
            raise ExanteError(f"layer type(s) {', '.join(map(repr, taken))} already have a "
                              "feature function; unregister them first to replace it")
        for t in types:
            FEATURE_REGISTRY[t] = fn
        return fn

    return deco


def unregister(*types: str) -> None:
    """Remove the feature functions of ``types`` (KeyError: a type with none)."""
    for t in types:
        del FEATURE_REGISTRY[t]


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
            f"supported types: see profiling.features.api.FEATURE_REGISTRY"
        )
    return fn(config)

