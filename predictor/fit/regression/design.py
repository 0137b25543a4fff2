"""Feature columns and the design matrix of the per-layer models, the base-estimator
families, and the error metrics (percent errors of positive quantities).

Column accessors (``_num``, ``_cat``, ``_types``) never raise on a missing column: numbers
default to 0 (or the given default), categories to ``""``; ``shape_bytes``, ``bytes_total``
and ``params_batch`` are derived when absent.
"""

from __future__ import annotations

import math
import warnings
from typing import Sequence

import numpy as np
import pandas as pd
from sklearn.ensemble import (
    GradientBoostingRegressor,
    HistGradientBoostingRegressor,
    RandomForestRegressor,
)
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LassoCV
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import PolynomialFeatures, StandardScaler

from profiling.errors import ExanteError
from profiling.features.api import CORE_FEATURES

#: numeric features used by the per-layer models (log1p-transformed): the feature registry's core
CORE_NUMERIC = CORE_FEATURES
#: features computable for any layer from its shapes and module alone (no feature function)
SHAPE_NUMERIC = ("params", "input_numel", "output_numel", "batch", "dtype_bytes", "shape_bytes")
#: one-hot encoded categorical columns and their levels (unknown levels encode as all-zero)
CATEGORIES = {
    "dtype": ("fp32", "bf16", "fp16"),
    "mode": ("inference", "forward_backward", "train_step"),
    "exec": ("eager", "graph"),
    "optimizer": ("sgd", "adam", "adamw"),
}
FAMILIES = ("poly_lasso", "gbr", "rf", "hgb")
OPTIMIZERS = ("sgd", "adam", "adamw")
_TINY = 1e-12


def _as_frame(X) -> pd.DataFrame:
    if isinstance(X, pd.DataFrame):
        return X
    if isinstance(X, dict):
        return pd.DataFrame(X)
    if isinstance(X, (list, tuple)) and X and isinstance(X[0], dict):
        return pd.DataFrame(list(X))
    raise ExanteError(
        "layer/model regressors take a pandas DataFrame with named feature columns "
        f"(got {type(X).__name__})"
    )


def _num(X: pd.DataFrame, name: str, default: float = 0.0) -> np.ndarray:
    if name == "shape_bytes" and name not in X.columns:
        return ((_num(X, "input_numel") + _num(X, "output_numel") + _num(X, "params"))
                * np.maximum(_num(X, "dtype_bytes", 4.0), 1.0))
    if name == "bytes_total" and name not in X.columns:
        return _num(X, "bytes_read") + _num(X, "bytes_written")
    if name == "params_batch" and name not in X.columns:
        return _num(X, "params") * np.maximum(_num(X, "batch", 1.0), 1.0)
    if name not in X.columns:
        return np.full(len(X), float(default))
    v = pd.to_numeric(X[name], errors="coerce").to_numpy(dtype=float)
    return np.where(np.isfinite(v), v, default)


def _cat(X: pd.DataFrame, name: str, default: str = "") -> np.ndarray:
    if name not in X.columns:
        return np.full(len(X), default, dtype=object)
    v = X[name].to_numpy(dtype=object)
    return np.array([default if (x is None or (isinstance(x, float) and math.isnan(x))) else str(x)
                     for x in v], dtype=object)


def _types(X: pd.DataFrame) -> np.ndarray:
    for c in ("layer_type", "type"):
        if c in X.columns:
            return _cat(X, c, "?")
    raise ExanteError("layer rows need a 'layer_type' column")


def design_matrix(X: pd.DataFrame, numeric: Sequence[str],
                  categorical: Sequence[str] = tuple(CATEGORIES)) -> np.ndarray:
    """log1p of the numeric columns (clipped at 0) followed by one-hot columns."""
    n = len(X)
    cols = [np.log1p(np.maximum(_num(X, c), 0.0)) for c in numeric]
    for c in categorical:
        v = _cat(X, c)
        for level in CATEGORIES.get(c, ()):
            cols.append((v == level).astype(float))
    if not cols:
        return np.zeros((n, 0))
    return np.column_stack(cols)


def make_base(name: str, *, random_state: int | None = 0, quick: bool = False, **params):
    """A fresh (unfitted) estimator of the named family, for a log-space target."""
    if name == "gbr":
        kw = dict(n_estimators=120 if quick else 300, learning_rate=0.1 if quick else 0.05,
                  max_depth=3, subsample=0.8, min_samples_leaf=2, random_state=random_state)
        kw.update(params)
        return GradientBoostingRegressor(**kw)
    if name == "hgb":
        kw = dict(max_iter=150 if quick else 300, learning_rate=0.1 if quick else 0.05,
                  min_samples_leaf=5, early_stopping=False, random_state=random_state)
        kw.update(params)
        return HistGradientBoostingRegressor(**kw)
    if name == "rf":
        kw = dict(n_estimators=40 if quick else 100, min_samples_leaf=1, max_features=0.6,
                  n_jobs=1, random_state=random_state)
        kw.update(params)
        return RandomForestRegressor(**kw)
    if name == "poly_lasso":
        degree = int(params.pop("degree", 2))
        kw = dict(alphas=np.logspace(-5, -0.5, 12 if quick else 25), cv=3,
                  max_iter=5000, tol=1e-3, random_state=random_state)
        kw.update(params)
        return Pipeline([
            ("scale_in", StandardScaler()),
            ("poly", PolynomialFeatures(degree=degree, include_bias=False)),
            ("scale_poly", StandardScaler()),
            ("lasso", LassoCV(**kw)),
        ])
    raise ExanteError(f"unknown regressor family {name!r}; choose from {', '.join(FAMILIES)} "
                      "or pass a scikit-learn regressor")


def _fit_quiet(est, Z, r):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        warnings.simplefilter("ignore", UserWarning)
        return est.fit(Z, r)


def error_metrics(y_true, y_pred) -> dict:
    """MAPE, median APE, RMSPE (all in %) and the share within ±10 %."""
    y = np.asarray(y_true, float)
    p = np.asarray(y_pred, float)
    ok = np.isfinite(y) & np.isfinite(p) & (y > 0)
    if not ok.any():
        return {"n": 0, "mape": float("nan"), "median_ape": float("nan"),
                "rmspe": float("nan"), "within_10": float("nan")}
    rel = (p[ok] - y[ok]) / y[ok]
    ape = np.abs(rel)
    return {
        "n": int(ok.sum()),
        "mape": float(100 * ape.mean()),
        "median_ape": float(100 * np.median(ape)),
        "rmspe": float(100 * np.sqrt(np.mean(rel ** 2))),
        "within_10": float(100 * np.mean(ape <= 0.10 + 1e-9)),
    }
