"""The per-layer-type regressor of ``exante bench irene`` (IrEne-style: one model per primitive).

IrEne (Cao et al., ACL 2021) predicts a transformer's energy from regressors of its ML
primitives (Linear, LayerNorm, MatMul, Softmax, ...) summed up the module tree.  The bench
(:mod:`predictor.bench.irene`) does the same with exante's *ex-ante* features only, and this
module is its primitive model: :class:`LayerRegressor`, one regressor per layer type, fitted
in log space *relative to a roofline prior*::

    log y = log prior(x) + f_type(x),    prior = θ0 + θ1·flops + θ2·bytes   (θ >= 0)

``prior`` (:class:`RooflinePrior`) is fitted per (mode, dtype, exec) group by non-negative
relative least squares; ``f_type`` is a gradient-boosting (or random-forest /
histogram-boosting) model of the log1p features plus one-hots.  Trees cannot extrapolate;
modelling the ratio to a roofline means that outside the training range the prediction still
scales with FLOPs and bytes.  Layer types with fewer than ``min_type_rows`` rows, or never
seen in fitting, get the type-agnostic global model.

``y`` is whatever the caller fits (IrEne: J per call).  This is not exante's engine (the
shipped predictor is the whole-model physics model, :mod:`predictor.engine.calibrated`);
it is kept because it produces the bench's measured column.  Both estimators follow the
scikit-learn contract (``__init__`` stores parameters only, ``fit`` returns ``self``,
learned attributes end in ``_``, ``predict`` calls ``check_is_fitted``).
"""

from __future__ import annotations

import logging
import math
import warnings
from typing import Any, Sequence

import numpy as np
import pandas as pd
from scipy.optimize import nnls
from sklearn.base import BaseEstimator, RegressorMixin, clone
from sklearn.ensemble import (
    GradientBoostingRegressor,
    HistGradientBoostingRegressor,
    RandomForestRegressor,
)
from sklearn.exceptions import ConvergenceWarning
from sklearn.utils.validation import check_is_fitted

from profiling.errors import ExanteError
from profiling.features.api import CORE_FEATURES

__all__ = ["CATEGORIES", "CORE_NUMERIC", "FAMILIES", "LayerRegressor", "RooflinePrior",
           "design_matrix", "make_base"]

logger = logging.getLogger(__name__)

#: numeric features of the per-layer models (log1p-transformed): the feature registry's core
CORE_NUMERIC = CORE_FEATURES
#: one-hot encoded categorical columns and their levels (unknown levels encode as all-zero)
CATEGORIES = {
    "dtype": ("fp32", "bf16", "fp16"),
    "mode": ("inference", "forward_backward", "train_step"),
    "exec": ("eager", "graph"),
    "optimizer": ("sgd", "adam", "adamw"),
}
#: named families of the per-type sub-models
FAMILIES = ("gbr", "rf", "hgb")
_TINY = 1e-12
_TARGETS = {"time": "time_s", "energy": "energy_j", "power": "power_w"}


# ----------------------------------------------------------------------------- columns
def _as_frame(X) -> pd.DataFrame:
    if isinstance(X, pd.DataFrame):
        return X
    if isinstance(X, dict):
        return pd.DataFrame(X)
    if isinstance(X, (list, tuple)) and X and isinstance(X[0], dict):
        return pd.DataFrame(list(X))
    raise ExanteError("LayerRegressor takes a pandas DataFrame with named feature columns "
                      f"(got {type(X).__name__})")


def _num(X: pd.DataFrame, name: str, default: float = 0.0) -> np.ndarray:
    """Column ``name`` as floats (missing or non-finite: ``default``); ``bytes_total`` is
    derived from ``bytes_read + bytes_written`` when absent."""
    if name == "bytes_total" and name not in X.columns:
        return _num(X, "bytes_read") + _num(X, "bytes_written")
    if name not in X.columns:
        return np.full(len(X), float(default))
    v = pd.to_numeric(X[name], errors="coerce").to_numpy(dtype=float)
    return np.where(np.isfinite(v), v, default)


def _cat(X: pd.DataFrame, name: str, default: str = "") -> np.ndarray:
    """Column ``name`` as strings (missing column or NaN: ``default``)."""
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
    cols = [np.log1p(np.maximum(_num(X, c), 0.0)) for c in numeric]
    for c in categorical:
        v = _cat(X, c)
        for level in CATEGORIES.get(c, ()):
            cols.append((v == level).astype(float))
    if not cols:
        return np.zeros((len(X), 0))
    return np.column_stack(cols)


def make_base(name: str, *, random_state: int | None = 0, quick: bool = False, **params):
    """A fresh (unfitted) estimator of the named family, for a log-space target."""
    kw: dict[str, Any]
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
    raise ExanteError(f"unknown regressor family {name!r}; choose from {', '.join(FAMILIES)} "
                      "or pass a scikit-learn regressor")


def _fit_quiet(est, Z, r):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        warnings.simplefilter("ignore", UserWarning)
        return est.fit(Z, r)


def _nnls_relative(A: np.ndarray, y: np.ndarray, scales: np.ndarray) -> np.ndarray:
    """θ >= 0 minimising Σ ((A_i·θ - y_i)/y_i)²; columns scaled by ``scales`` for conditioning."""
    A = np.asarray(A, float)
    y = np.asarray(y, float)
    k = A.shape[1]
    s = np.maximum(np.asarray(scales, float), _TINY)
    sw = 1.0 / np.maximum(np.abs(y), _TINY)
    M = A * s[None, :] * sw[:, None]
    if M.shape[0] == 0:
        return np.zeros(k)
    u, _ = nnls(M, y * sw, maxiter=50 * k + 100)
    return u * s


# ----------------------------------------------------------------------------- estimators
class RooflinePrior(BaseEstimator):
    """``y ≈ θ0 + θ1·work + θ2·bytes`` (θ >= 0) per (mode, dtype, exec) group.

    ``columns`` names the two work columns (default FLOPs and bytes moved).  Used as an offset
    so the per-type models learn a bounded efficiency ratio instead of the raw scale.  Groups
    with fewer than ``min_rows`` rows (or unseen) use the coefficients fitted on all rows.
    """

    def __init__(self, columns=("flops", "bytes_total"), group_by=("mode", "dtype", "exec"),
                 min_rows: int = 10):
        self.columns = columns
        self.group_by = group_by
        self.min_rows = min_rows

    def _A(self, X):
        return np.column_stack([np.ones(len(X))] + [np.maximum(_num(X, c), 0) for c in self.columns])

    def _keys(self, X):
        parts = [_cat(X, g) for g in self.group_by]
        return np.array(["|".join(p) for p in zip(*parts, strict=True)], dtype=object) if parts \
            else np.full(len(X), "", dtype=object)

    def fit(self, X, y):
        X = _as_frame(X)
        y = np.maximum(np.asarray(y, float), _TINY)
        A = self._A(X)
        scales = np.array([np.median(y)] + [
            np.median(y[A[:, j] > 0]) / max(np.median(A[A[:, j] > 0, j]), _TINY)
            if (A[:, j] > 0).any() else 1.0 for j in range(1, A.shape[1])])
        self.global_ = self._solve(A, y, scales)
        self.coef_ = {}
        keys = self._keys(X)
        for k in np.unique(keys):
            m = keys == k
            if m.sum() >= self.min_rows:
                self.coef_[k] = self._solve(A[m], y[m], scales)
        self.floor_ = float(np.quantile(y, 0.001)) * 0.1
        return self

    @staticmethod
    def _solve(A, y, scales):
        th = _nnls_relative(A, y, scales)
        if th[0] <= 0:  # keep the prior positive for zero-work rows
            th[0] = float(np.quantile(y, 0.01)) * 0.5
        return th

    def predict(self, X):
        check_is_fitted(self, "global_")
        X = _as_frame(X)
        A = self._A(X)
        keys = self._keys(X)
        out = np.empty(len(X))
        for k in np.unique(keys):
            m = keys == k
            out[m] = A[m] @ self.coef_.get(k, self.global_)
        return np.maximum(out, self.floor_)


class LayerRegressor(RegressorMixin, BaseEstimator):
    """One regressor per layer type, on log1p features, in log space relative to a roofline.

    Parameters
    ----------
    base : "gbr" | "rf" | "hgb" | estimator
        Family of the per-type sub-models (an estimator instance is cloned per type).
    target : str
        Column of ``X`` used as ``y`` when ``fit`` gets ``y=None``: ``"time"`` (time_s),
        ``"energy"`` (energy_j), ``"power"`` (power_w) or any column name.
    baseline : "roofline" | None
        Model ``log(y / roofline(x))`` instead of ``log y`` (extrapolates with the work).
    per_type : bool
        One sub-model per ``layer_type`` (``False``: the global model only).
    min_type_rows : int
        Types with fewer rows use the global model.
    numeric_features : sequence or None
        Numeric columns (default :data:`CORE_NUMERIC`).
    categorical : sequence
        One-hot columns (levels in :data:`CATEGORIES`).
    base_params : dict or None
        Extra keyword arguments for the named family.
    quick : bool
        Smaller ensembles (tests).
    random_state : int
    """

    def __init__(self, base="gbr", target="time", baseline="roofline", per_type=True,
                 min_type_rows=15, numeric_features=None, categorical=tuple(CATEGORIES),
                 base_params=None, quick=False, random_state=0):
        self.base = base
        self.target = target
        self.baseline = baseline
        self.per_type = per_type
        self.min_type_rows = min_type_rows
        self.numeric_features = numeric_features
        self.categorical = categorical
        self.base_params = base_params
        self.quick = quick
        self.random_state = random_state

    def _new_base(self):
        if isinstance(self.base, str):
            return make_base(self.base, random_state=self.random_state, quick=self.quick,
                             **dict(self.base_params or {}))
        return clone(self.base)

    def _y(self, X, y):
        if y is not None:
            return np.asarray(y, float).ravel()
        col = _TARGETS.get(self.target, self.target)
        if col not in X.columns:
            raise ExanteError(f"target column {col!r} missing from X and no y given")
        return _num(X, col, np.nan)

    def _offset(self, X):
        if self.baseline_ is not None:
            return np.log(self.baseline_.predict(X))
        return np.zeros(len(X))

    def fit(self, X, y=None):
        X = _as_frame(X)
        y = self._y(X, y)
        ok = np.isfinite(y) & (y > 0)
        if ok.sum() < 2:
            raise ExanteError("LayerRegressor needs at least 2 rows with a finite positive target")
        if not ok.all():
            logger.debug("LayerRegressor: %d rows without a finite positive target left out",
                         int((~ok).sum()))
            X = X.loc[ok]
            y = y[ok]
        self.numeric_features_ = tuple(self.numeric_features or CORE_NUMERIC)
        self.categorical_ = tuple(self.categorical or ())
        Z = design_matrix(X, self.numeric_features_, self.categorical_)
        self.baseline_ = None
        if self.baseline == "roofline":
            self.baseline_ = RooflinePrior(columns=("flops", "bytes_total")).fit(X, y)
        elif self.baseline not in (None, "none"):
            raise ExanteError(f"unknown baseline {self.baseline!r}; use 'roofline' or None")
        r = np.log(y) - self._offset(X)
        self.global_ = _fit_quiet(self._new_base(), Z, r)
        self.models_ = {}
        types = _types(X)
        self.type_counts_ = {str(t): int(c) for t, c in
                             zip(*np.unique(types, return_counts=True), strict=True)}
        if self.per_type:
            for t, c in self.type_counts_.items():
                if c >= self.min_type_rows:
                    m = types == t
                    self.models_[t] = _fit_quiet(self._new_base(), Z[m], r[m])
        self.n_train_ = int(len(y))
        return self

    def _finish(self, X, r):
        return np.exp(np.clip(r + self._offset(X), -60, 30))

    def predict(self, X):
        check_is_fitted(self, "global_")
        X = _as_frame(X)
        if len(X) == 0:
            return np.zeros(0)
        Z = design_matrix(X, self.numeric_features_, self.categorical_)
        types = _types(X)
        r = np.empty(len(X))
        for t in np.unique(types):
            m = types == t
            r[m] = self.models_.get(t, self.global_).predict(Z[m])
        return self._finish(X, r)

    def predict_source(self, X) -> np.ndarray:
        """'type' where a per-type sub-model answers, 'global' where the fallback does."""
        check_is_fitted(self, "global_")
        types = _types(_as_frame(X))
        return np.array(["type" if t in self.models_ else "global" for t in types], dtype=object)

    def score(self, X, y=None):
        """R² of log(y) (the scale the model is fitted in; raw-scale R² is meaningless over
        orders of magnitude)."""
        X = _as_frame(X)
        y = self._y(X, y)
        p = self.predict(X)
        ok = (y > 0) & (p > 0)
        ly, lp = np.log(y[ok]), np.log(p[ok])
        ss = np.sum((ly - ly.mean()) ** 2)
        return float(1 - np.sum((ly - lp) ** 2) / ss) if ss > 0 else 0.0
