"""profiling.capture: capture(model, inputs) -> Capture: each layer with its real input shapes (on ``meta``).

The public names of :mod:`profiling.capture.core`; the helpers live in their own modules
(``dtypes``, ``fastpath``, ``hooks``, ``hparams``, ``meta_reads``, ``ops``, ``recorder``,
``records``): import a helper from its module.
"""

from profiling.capture.core import (
    FP32_TYPES,
    LOWP_TYPES,
    ROOT_NAME,
    Capture,
    CapturedLayer,
    LayerConfig,
    MetaTruthMode,
    capture,
    dtype_name,
    module_hparams,
    module_type_name,
)

__all__ = [
    "Capture",
    "CapturedLayer",
    "FP32_TYPES",
    "LOWP_TYPES",
    "LayerConfig",
    "MetaTruthMode",
    "ROOT_NAME",
    "capture",
    "dtype_name",
    "module_hparams",
    "module_type_name",
]
