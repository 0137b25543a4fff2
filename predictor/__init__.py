"""exante's predictor: per-layer regression of GPU time and energy, fitted artifacts, CLI.

``from predictor import predict`` is the DESIGN.md §4 Python contract; ``predictor.calc(...)``
is the calculator (issue 10).

The public names are imported on first use (PEP 562), so ``import predictor`` — and with it
``exante --help`` — does not import torch or scikit-learn. The submodules ``predictor.predict``
and ``predictor.calc`` have the same names as the functions; the package keeps the
*functions* as its attributes whatever is imported first (an import of the submodule does not
replace them), as the eager import this replaces did.
"""

from __future__ import annotations

import importlib
import sys
import types

from profiling.lazy_refs import LAZY_REF_SCHEMES

# mlpseq:, convstack:, encoder: MODEL_REFs are built by predictor.generators (imported when used)
LAZY_REF_SCHEMES.update(dict.fromkeys(("mlpseq", "convstack", "encoder"), "predictor.generators"))

_EXPORTS = {"predict": ".predict", "Prediction": ".predict", "available_hardware": ".artifacts",
            "calc": ".calc", "CalcResult": ".calc"}
__all__ = ["predict", "Prediction", "available_hardware", "calc", "CalcResult"]


class _Package(types.ModuleType):
    def __getattr__(self, name: str):
        if name not in _EXPORTS:
            raise AttributeError(f"module 'predictor' has no attribute {name!r}")
        value = getattr(importlib.import_module(_EXPORTS[name], __name__), name)
        self.__dict__[name] = value
        return value

    def __setattr__(self, name: str, value):
        # the import system sets predictor.predict / predictor.calc to the submodule once it
        # is loaded; the package attribute stays the function of the same name
        if name in _EXPORTS and isinstance(value, types.ModuleType):
            return
        super().__setattr__(name, value)

    def __dir__(self):
        return sorted(set(super().__dir__()) | set(_EXPORTS))


sys.modules[__name__].__class__ = _Package
