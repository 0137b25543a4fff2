"""exante's predictor: per-layer regression of GPU time and energy, fitted artifacts, CLI.

``from predictor import predict`` is the DESIGN.md §4 Python contract; ``predictor.calc(...)``
is the calculator (issue 10), imported the same eager way for the same reason.

The function is imported eagerly: the submodule ``predictor.predict`` has the same name as
the function, and only an eager import guarantees that ``predictor.predict`` (the package
attribute) is the function whatever is imported first.  scikit-learn is still imported only
when an artifact is loaded.
"""

from __future__ import annotations

from .artifacts import available_hardware
from .calc import CalcResult, calc
from .predict import Prediction, predict
from . import generators  # noqa: F401,E402  (registers mlpseq:/convstack:/encoder: MODEL_REFs)

__all__ = ["predict", "Prediction", "available_hardware", "calc", "CalcResult"]
