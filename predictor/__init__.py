"""exante's predictor: GPU time, energy and CO2 of a PyTorch model, before it is trained.

The public API, imported on first use (PEP 562), so ``import predictor`` -- and with it
``exante --help`` -- does not import torch or scikit-learn::

    from predictor import predict, estimate, compare, calc, EnergyObjective, calibrate, lookup

* :func:`predict` -- one call's time (s) and board energy (J) on a GPU (:mod:`predictor.engine`)
* :func:`estimate` -- a life cycle's energy (kWh) and CO2 (kg) (:mod:`predictor.carbon.lifecycle`)
* :func:`compare` -- designs ranked by predicted energy (:mod:`predictor.search.compare`)
* :func:`calc` -- the calculator: device x count x hours -> kWh, kg CO2eq (:mod:`predictor.carbon.calc`)
* :class:`EnergyObjective` -- NAS objective (:mod:`predictor.search.nas`)
* :func:`calibrate` -- few-shot calibration on a user's runs (:mod:`predictor.fit.calibrate`)
* :func:`lookup` -- a GPU's datasheet from the catalogue (:mod:`predictor.carbon.hardware`)

Layout: ``engine/`` (workload -> lowering -> physics -> calibrated -> transfer), ``fit/``,
``search/``, ``carbon/``, ``cli/``, ``bench/``, ``artifacts/`` (shipped models), ``data/``.
Old module paths (before issue 19) still import, with a DeprecationWarning (:mod:`predictor.moved`).
"""

from __future__ import annotations

import importlib
import sys
import types

from predictor.moved import MOVED as _MOVED
from predictor.moved import REMOVED as _REMOVED
from profiling.lazy_refs import LAZY_REF_SCHEMES
from profiling.moved_modules import install as _install

_install(_MOVED, _REMOVED)

# mlpseq:, convstack:, encoder: MODEL_REFs are built by predictor.search.generators (imported when used)
LAZY_REF_SCHEMES.update(dict.fromkeys(("mlpseq", "convstack", "encoder"), "predictor.search.generators"))

_EXPORTS = {
    "predict": "predictor.engine.predict", "Prediction": "predictor.engine.prediction",
    "estimate": "predictor.carbon.lifecycle.composition",
    "compare": "predictor.search.compare", "calc": "predictor.carbon.calc",
    "CalcResult": "predictor.carbon.calc", "EnergyObjective": "predictor.search.nas",
    "calibrate": "predictor.fit.calibrate", "lookup": "predictor.carbon.hardware",
    "available_hardware": "predictor.artifacts",
}
__all__ = list(_EXPORTS)


class _Package(types.ModuleType):
    def __getattr__(self, name: str):
        if name not in _EXPORTS:
            raise AttributeError(f"module 'predictor' has no attribute {name!r}")
        value = getattr(importlib.import_module(_EXPORTS[name]), name)
        self.__dict__[name] = value
        return value

    def __setattr__(self, name: str, value):
        # an import of an old submodule path (predictor.predict, predictor.calc: same names as
        # the functions) sets the package attribute to that module; the function stays
        if name in _EXPORTS and isinstance(value, types.ModuleType):
            return
        super().__setattr__(name, value)

    def __dir__(self):
        return sorted(set(super().__dir__()) | set(_EXPORTS))


sys.modules[__name__].__class__ = _Package
