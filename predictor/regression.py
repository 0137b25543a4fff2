"""Per-layer regression, model-level composition and prediction intervals.

Everything here follows the scikit-learn estimator contract (``__init__`` stores parameters
only, ``fit`` returns ``self``, learned attributes end in ``_``, ``predict`` calls
``check_is_fitted``) so the pieces work with ``clone``, ``Pipeline`` and ``GridSearchCV``.

The model (DESIGN.md §4), in the order it is fitted:

1. **Physics constants** learned from the layer rows:

   * ``host_floor_s[mode]`` -- the per-call host floor of eager PyTorch: the 2 % quantile of
     the measured per-call time of eager layer rows of that mode.  Predictions are clipped
     from below with ``max(floor, prediction)`` (a tree cannot extrapolate under it anyway).
   * ``active_idle_power_w`` (P_ai) -- the board power while the GPU waits for the host:
     the 25 % quantile of ``power_w`` over the *host-bound band* (eager rows whose time is at
     most twice the floor of their mode).  A low quantile rather than the median because the
     energy above it must be >= 0 to be modelled in log space (below).

2. **Per-layer regressors** (:class:`LayerRegressor`), one sub-model per layer type, each in
   log space and *relative to a roofline prior*: ``log y = log prior(x) + f_type(x)`` where
   ``prior = θ0 + θ1·flops + θ2·bytes`` (non-negative, fitted per (mode, dtype, exec) by
   relative least squares) and ``f_type`` is a gradient-boosting / random-forest /
   sparse-polynomial model of the log1p features plus one-hots.  Trees cannot extrapolate;
   modelling the *ratio to a roofline* means that outside the training range the prediction
   still scales with FLOPs and bytes instead of flattening.  Two targets:

   * ``time_s`` per call;
   * ``energy_active_j = max(energy_j - P_ai·time_s, 0.02·P_ai·time_s)`` -- the energy above
     active idle (the floor keeps host-bound rows, whose value is noise around 0, in log
     space; their total energy is dominated by ``P_ai·time`` anyway).

   A layer's energy per call is then ``P_ai·time + energy_active``.  A *global* model over all
   types (no type information) predicts layer types with fewer than ``min_type_rows`` rows or
   never seen in fitting ("closest family"), and a *shape-only* global model (input/output
   numel, params, batch, dtype size) predicts layers that have no feature function at all.

3. **Optimizer step** (:class:`OptimizerStepRegressor`): ``train_step - forward_backward``
   differences of the same layer config, per optimizer, fitted as
   ``Δ = h·[params > 0] + k·params`` (non-negative, relative least squares).  A layer's
   train-step cost is ``forward_backward + Δ``; nothing constant is assumed about
   θ = E_train/E_inference -- it follows from the per-mode layer models and the params.

4. **Model-level terms** (:class:`ModelComposer`) from whole-model rows:
   ``T = a·Σt + a_opt·Σt_opt + b·n_calls + c`` (launch gaps, loss, zero_grad) and
   ``E = p·T + d·ΣE_active + d_opt·ΣE_opt_active`` (p ≈ P_ai: the whole model's wall time at
   active-idle power, plus the layers' dynamic energy with a fusion/additivity factor).
   Non-negative relative least squares (rows weighted by 1/y²), per (mode, dtype) with
   hierarchical shrinkage: each group's coefficients are pulled weakly towards its parent's
   (root: the physical prior a = a_opt = d = d_opt = 1, b = c = 0, p = P_ai), so a group with
   few rows stays physical.

5. **Intervals** (:class:`Uncertainty`): split-conformal on the log-ratio residuals
   ``log(y/ŷ)`` of whole-model rows predicted out-of-fold by grouped cross-validation (folds
   by model family; layer rows that appear only in held-out families are dropped from the
   fold's training data).  Separate residual pools for host-bound predictions (predicted
   power < ``host_power_factor · P_ai``) and GPU-bound ones, per mode, with fallbacks to
   pooled residuals when a pool is small.  When the dataset holds the same configuration
   measured in different sessions, the quantiles are widened by the cross-session spread
   (see :meth:`Uncertainty.add_cross_session`).
"""

from __future__ import annotations

import json
import math
import warnings
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np
import pandas as pd
from scipy.optimize import nnls
from sklearn.base import BaseEstimator, RegressorMixin, clone
from sklearn.ensemble import GradientBoostingRegressor, HistGradientBoostingRegressor, RandomForestRegressor
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LassoCV
from sklearn.model_selection import GroupKFold
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import PolynomialFeatures, StandardScaler
from sklearn.utils.validation import check_is_fitted

from profiling.errors import ExanteError
from profiling.features import CORE_FEATURES

__all__ = [
    "CORE_NUMERIC",
    "SHAPE_NUMERIC",
    "CATEGORIES",
    "FAMILIES",
    "make_base",
    "design_matrix",
    "RooflinePrior",
    "LayerRegressor",
    "OptimizerStepRegressor",
    "ModelComposer",
    "Uncertainty",
    "HardwareModel",
    "compare_families",
    "error_metrics",
    "build_hardware_model",
    "estimate_host_floor",
    "estimate_active_idle_power",
    "energy_active",
    "model_level_frame",
    "cross_validate_models",
]

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
_ENERGY_FLOOR_FRACTION = 0.02   # energy_active >= this · P_ai · time (see module docstring)
_HOST_FLOOR_QUANTILE = 0.02
_HOST_BAND = 2.0                # host-bound band: time <= _HOST_BAND · floor
_ACTIVE_IDLE_QUANTILE = 0.25


# ----------------------------------------------------------------------------- helpers
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


def _nnls_relative(A: np.ndarray, y: np.ndarray, *, prior: np.ndarray | None = None,
                   scales: np.ndarray | None = None, strength: float = 0.0,
                   weights: np.ndarray | None = None) -> np.ndarray:
    """θ >= 0 minimising Σ w_i ((A_i·θ - y_i)/y_i)² + strength·n·Σ ((θ_k - prior_k)/s_k)².

    Columns are scaled by ``scales`` for conditioning; a prior row pins columns that the data
    cannot identify (e.g. an all-zero column).
    """
    A = np.asarray(A, float)
    y = np.asarray(y, float)
    n, k = A.shape
    s = np.ones(k) if scales is None else np.maximum(np.asarray(scales, float), _TINY)
    w = np.ones(n) if weights is None else np.asarray(weights, float)
    sw = np.sqrt(np.maximum(w, 0)) / np.maximum(np.abs(y), _TINY)
    M = A * s[None, :] * sw[:, None]
    b = y * sw
    if prior is not None and strength > 0:
        lam = math.sqrt(strength * max(n, 1))
        M = np.vstack([M, lam * np.eye(k)])
        b = np.concatenate([b, lam * np.asarray(prior, float) / s])
    if M.shape[0] == 0:
        return np.zeros(k) if prior is None else np.asarray(prior, float)
    u, _ = nnls(M, b, maxiter=50 * k + 100)
    return u * s


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


# ----------------------------------------------------------------------------- physics constants
def estimate_host_floor(layers: pd.DataFrame, quantile: float = _HOST_FLOOR_QUANTILE) -> dict:
    """Per-mode host floor (s per call) of eager layer rows: a low quantile of time_s."""
    t = _num(layers, "time_s", np.nan)
    ex = _cat(layers, "exec", "eager")
    modes = _cat(layers, "mode", "inference")
    ok = np.isfinite(t) & (t > 0) & (ex == "eager")
    if not ok.any():
        ok = np.isfinite(t) & (t > 0)
    out = {"*": float(np.quantile(t[ok], quantile)) if ok.any() else 0.0}
    for m in np.unique(modes[ok]):
        sel = ok & (modes == m)
        out[str(m)] = float(np.quantile(t[sel], quantile))
    return out


def estimate_active_idle_power(layers: pd.DataFrame, floors: dict | None = None,
                               quantile: float = _ACTIVE_IDLE_QUANTILE) -> tuple[float, dict]:
    """Active-idle board power from the host-bound band (see module docstring).

    Returns ``(P_ai, info)``; falls back to 1.6 × the median session idle power (DESIGN §2:
    ~75 W deep idle, ~120 W active idle) when fewer than 5 host-bound rows exist.
    """
    floors = floors or estimate_host_floor(layers)
    t = _num(layers, "time_s", np.nan)
    e = _num(layers, "energy_j", np.nan)
    pw = _num(layers, "power_w", np.nan)
    pw = np.where(np.isfinite(pw) & (pw > 0), pw, e / np.maximum(t, _TINY))
    modes = _cat(layers, "mode", "inference")
    ex = _cat(layers, "exec", "eager")
    fl = np.array([floors.get(m, floors.get("*", 0.0)) for m in modes])
    band = (ex == "eager") & np.isfinite(pw) & (pw > 0) & (t <= _HOST_BAND * fl)
    if band.sum() >= 5:
        return float(np.quantile(pw[band], quantile)), {
            "method": f"q{int(quantile * 100)} of power_w over eager rows with time <= "
                      f"{_HOST_BAND}x host floor", "n_rows": int(band.sum())}
    idle = _num(layers, "idle_power_w", np.nan)
    idle = idle[np.isfinite(idle) & (idle > 0)]
    if len(idle):
        return float(1.6 * np.median(idle)), {"method": "1.6 x median idle_power_w (too few "
                                              "host-bound rows)", "n_rows": 0}
    ok = np.isfinite(pw) & (pw > 0)
    if ok.any():
        return float(np.quantile(pw[ok], 0.05)), {"method": "q5 of power_w (no idle power)",
                                                  "n_rows": int(ok.sum())}
    raise ExanteError("cannot estimate active-idle power: no power or energy columns")


def energy_active(energy_j, time_s, active_idle_power_w: float) -> np.ndarray:
    """Energy above active idle, floored at 2 % of the active-idle energy (log-safe)."""
    e = np.asarray(energy_j, float)
    t = np.asarray(time_s, float)
    base = active_idle_power_w * t
    return np.maximum(e - base, _ENERGY_FLOOR_FRACTION * base + _TINY)


# ----------------------------------------------------------------------------- roofline prior
class RooflinePrior(BaseEstimator):
    """``y ≈ θ0 + θ1·work + θ2·bytes`` (θ >= 0) per (mode, dtype, exec) group.

    ``columns`` names the two work columns (default FLOPs and bytes moved).  Used as an offset
    so the per-type models learn a bounded efficiency ratio instead of the raw scale.
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
        return np.array(["|".join(p) for p in zip(*parts)], dtype=object) if parts else \
            np.full(len(X), "", dtype=object)

    def fit(self, X, y):
        X = _as_frame(X)
        y = np.maximum(np.asarray(y, float), _TINY)
        A = self._A(X)
        scales = np.maximum(np.median(y) / np.maximum(np.median(A, axis=0), _TINY), _TINY)
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
        th = _nnls_relative(A, y, scales=scales)
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


# ----------------------------------------------------------------------------- layer regressor
_TARGETS = {"time": "time_s", "energy_dynamic": "energy_dynamic_j", "energy": "energy_j",
            "energy_active": "energy_active_j", "power": "power_w"}


class LayerRegressor(RegressorMixin, BaseEstimator):
    """One regressor per layer type, on log1p features, in log space relative to a roofline.

    Parameters
    ----------
    base : "gbr" | "rf" | "poly_lasso" | "hgb" | estimator
        Family of the per-type sub-models (an estimator instance is cloned per type).
    target : str
        Column of ``X`` used as ``y`` when ``fit`` gets ``y=None``: ``"time"`` (time_s),
        ``"energy_dynamic"``, ``"energy"``, ``"energy_active"`` or any column name.
    log_target : bool
        Fit ``log y`` (default).  With ``False`` the raw target is fitted and ``baseline``
        is ignored.
    baseline : "roofline" | None
        Model ``log(y / roofline(x))`` instead of ``log y`` (extrapolates with the work).
    per_type : bool
        One sub-model per ``layer_type`` (``False``: the global model only).
    min_type_rows : int
        Types with fewer rows use the global model.
    numeric_features : sequence or None
        Numeric columns (default :data:`CORE_NUMERIC`); :data:`SHAPE_NUMERIC` makes the
        shape-only fallback used for layers without a feature function.
    categorical : sequence
        One-hot columns (levels in :data:`CATEGORIES`).
    base_params : dict or None
        Extra keyword arguments for the named family (e.g. ``{"degree": 3}``).
    quick : bool
        Smaller ensembles / fewer alphas (tests, ``exante fit --quick``).
    random_state : int
    """

    def __init__(self, base="gbr", target="time", log_target=True, baseline="roofline",
                 per_type=True, min_type_rows=15, numeric_features=None,
                 categorical=tuple(CATEGORIES), base_params=None, quick=False, random_state=0):
        self.base = base
        self.target = target
        self.log_target = log_target
        self.baseline = baseline
        self.per_type = per_type
        self.min_type_rows = min_type_rows
        self.numeric_features = numeric_features
        self.categorical = categorical
        self.base_params = base_params
        self.quick = quick
        self.random_state = random_state

    # -- internals
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
        if self.log_target and self.baseline_ is not None:
            return np.log(self.baseline_.predict(X))
        return np.zeros(len(X))

    def fit(self, X, y=None):
        X = _as_frame(X)
        y = self._y(X, y)
        ok = np.isfinite(y)
        if self.log_target:
            ok &= y > 0
        if ok.sum() < 2:
            raise ExanteError("LayerRegressor needs at least 2 rows with a finite positive target")
        if not ok.all():
            X = X.loc[ok]
            y = y[ok]
        self.numeric_features_ = tuple(self.numeric_features or CORE_NUMERIC)
        self.categorical_ = tuple(self.categorical or ())
        Z = design_matrix(X, self.numeric_features_, self.categorical_)
        self.baseline_ = None
        if self.log_target:
            if self.baseline == "roofline":
                cols = (("flops", "bytes_total") if "flops" in self.numeric_features_
                        else ("params_batch", "shape_bytes"))
                self.baseline_ = RooflinePrior(columns=cols).fit(X, y)
            elif self.baseline not in (None, "none"):
                raise ExanteError(f"unknown baseline {self.baseline!r}; use 'roofline' or None")
            r = np.log(y) - self._offset(X)
        else:
            r = y
        self.global_ = _fit_quiet(self._new_base(), Z, r)
        self.models_ = {}
        types = _types(X)
        self.type_counts_ = {str(t): int(c) for t, c in zip(*np.unique(types, return_counts=True))}
        if self.per_type:
            for t, c in self.type_counts_.items():
                if c >= self.min_type_rows:
                    m = types == t
                    self.models_[t] = _fit_quiet(self._new_base(), Z[m], r[m])
        self.n_train_ = int(len(y))
        return self

    def _finish(self, X, r):
        if self.log_target:
            return np.exp(np.clip(r + self._offset(X), -60, 30))
        return r

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

    def predict_global(self, X):
        """Prediction of the type-agnostic global model (unseen or unsupported types)."""
        check_is_fitted(self, "global_")
        X = _as_frame(X)
        if len(X) == 0:
            return np.zeros(0)
        Z = design_matrix(X, self.numeric_features_, self.categorical_)
        return self._finish(X, self.global_.predict(Z))

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


# ----------------------------------------------------------------------------- optimizer step
class OptimizerStepRegressor(RegressorMixin, BaseEstimator):
    """Per-layer optimizer-step cost ``Δ = h·[params > 0] + k·params`` per optimizer.

    ``X``: DataFrame with ``params`` and ``optimizer``; ``y``: ``train_step - forward_backward``
    of the same layer config (time or energy above active idle).  ``sample_weight`` defaults
    to 1/y² of ``reference`` (pass the train-step value so that errors are relative to it).
    Optimizers never seen in fitting raise :class:`ExanteError` at predict time.
    """

    def __init__(self, min_rows: int = 3):
        self.min_rows = min_rows

    def fit(self, X, y, reference=None):
        X = _as_frame(X)
        y = np.asarray(y, float)
        ref = np.abs(y) if reference is None else np.asarray(reference, float)
        ref = np.maximum(ref, max(float(np.median(np.abs(ref))) * 1e-3, _TINY))
        params = np.maximum(_num(X, "params"), 0)
        opt = _cat(X, "optimizer", "sgd")
        self.coef_ = {}
        for o in np.unique(opt):
            m = (opt == o) & np.isfinite(y)
            if m.sum() < self.min_rows:
                continue
            A = np.column_stack([(params[m] > 0).astype(float), params[m]])
            # relative to the reference (train-step) value: minimise Σ((AΘ - Δ)/ref)²
            sw = 1.0 / ref[m]
            s = np.array([max(np.median(np.abs(y[m])), _TINY),
                          max(np.median(np.abs(y[m])) / max(np.median(params[m][params[m] > 0])
                                                             if (params[m] > 0).any() else 1, 1),
                              _TINY)])
            u, _ = nnls(A * s * sw[:, None], y[m] * sw, maxiter=200)
            self.coef_[str(o)] = (u * s).tolist()
        if not self.coef_:
            raise ExanteError("no optimizer had enough train_step/forward_backward pairs")
        self.optimizers_ = tuple(sorted(self.coef_))
        return self

    def predict(self, X):
        check_is_fitted(self, "coef_")
        X = _as_frame(X)
        params = np.maximum(_num(X, "params"), 0)
        opt = _cat(X, "optimizer", "sgd")
        out = np.zeros(len(X))
        for o in np.unique(opt):
            if o not in self.coef_:
                raise ExanteError(f"no train_step data for optimizer {o!r}; fitted: "
                                  f"{', '.join(self.optimizers_)}")
            h, k = self.coef_[o]
            m = opt == o
            out[m] = h * (params[m] > 0) + k * params[m]
        return out


# ----------------------------------------------------------------------------- model composer
_TIME_TERMS = ("a", "a_opt", "b", "c")
_ENERGY_TERMS = ("p", "d", "d_opt")


class ModelComposer(RegressorMixin, BaseEstimator):
    """Whole-model time and energy from per-layer sums (see module docstring, step 4).

    ``X`` columns: ``sum_time_s``, ``sum_time_opt_s`` (0 for inference), ``n_layer_calls``,
    ``sum_energy_active_j``, ``sum_energy_opt_j``, ``mode``, ``dtype``.  ``y``: an (n, 2)
    array ``[time_s, energy_j]`` (or those columns of ``X`` when ``y`` is None).
    ``predict`` returns the same (n, 2) array.  The energy term uses the *measured* time in
    fitting and the predicted time at prediction.
    """

    def __init__(self, active_idle_power_w=None, prior_strength=0.05, group_by=("mode", "dtype"),
                 min_rows=3):
        self.active_idle_power_w = active_idle_power_w
        self.prior_strength = prior_strength
        self.group_by = group_by
        self.min_rows = min_rows

    @staticmethod
    def _cols(X):
        return (_num(X, "sum_time_s"), _num(X, "sum_time_opt_s"), _num(X, "n_layer_calls"),
                _num(X, "sum_energy_active_j"), _num(X, "sum_energy_opt_j"))

    def _keys(self, X):
        parts = [_cat(X, g) for g in self.group_by]
        return [tuple(p) for p in zip(*parts)] if parts else [()] * len(X)

    def fit(self, X, y=None):
        X = _as_frame(X)
        if y is None:
            y = np.column_stack([_num(X, "time_s", np.nan), _num(X, "energy_j", np.nan)])
        y = np.asarray(y, float).reshape(len(X), 2)
        ok = np.all(np.isfinite(y) & (y > 0), axis=1)
        X, y = X.loc[ok], y[ok]
        T, E = y[:, 0], y[:, 1]
        st, sto, nc, se, seo = self._cols(X)
        P0 = self.active_idle_power_w
        if P0 is None:
            pw = E / np.maximum(T, _TINY)
            P0 = float(np.quantile(pw, 0.1)) if len(pw) else 120.0
        self.p0_ = float(P0)
        At = np.column_stack([st, sto, nc, np.ones(len(X))])
        Ae = np.column_stack([T, se, seo])
        medT = float(np.median(T)) if len(T) else 1e-3
        ts = np.array([1.0, 1.0, float(np.median(T / np.maximum(nc, 1))) if len(T) else 1e-5,
                       medT])
        es = np.array([self.p0_, 1.0, 1.0])
        root_t = np.array([1.0, 1.0, 0.0, 0.0])
        root_e = np.array([self.p0_, 1.0, 1.0])
        keys = self._keys(X)
        self.coef_ = {}
        self.n_rows_ = {}
        lam = float(self.prior_strength)

        def solve(mask, pt, pe):
            if mask.sum() < self.min_rows:
                return None
            ct = _nnls_relative(At[mask], T[mask], prior=pt, scales=ts, strength=lam)
            ce = _nnls_relative(Ae[mask], E[mask], prior=pe, scales=es, strength=lam)
            return ct, ce

        allm = np.ones(len(X), bool)
        root = solve(allm, root_t, root_e) or (root_t, root_e)
        self.coef_[()] = root
        self.n_rows_[()] = int(len(X))
        depth = len(self.group_by)
        for level in range(1, depth + 1):
            sub = {}
            for i, k in enumerate(keys):
                sub.setdefault(k[:level], []).append(i)
            for k, idx in sub.items():
                mask = np.zeros(len(X), bool)
                mask[idx] = True
                parent = self.coef_.get(k[:-1], root)
                res = solve(mask, parent[0], parent[1])
                if res is not None:
                    self.coef_[k] = res
                    self.n_rows_[k] = int(mask.sum())
        self.coef_ = {k: (np.asarray(ct), np.asarray(ce)) for k, (ct, ce) in self.coef_.items()}
        return self

    def coefficients(self, key: tuple) -> tuple[dict, tuple]:
        """Coefficients used for a group key (the most specific fitted level) and that level."""
        check_is_fitted(self, "coef_")
        key = tuple(key)
        for level in range(len(key), -1, -1):
            k = key[:level]
            if k in self.coef_:
                ct, ce = self.coef_[k]
                return {**dict(zip(_TIME_TERMS, map(float, ct))),
                        **dict(zip(_ENERGY_TERMS, map(float, ce)))}, k
        raise ExanteError("composer has no root coefficients")  # pragma: no cover

    def predict(self, X):
        check_is_fitted(self, "coef_")
        X = _as_frame(X)
        st, sto, nc, se, seo = self._cols(X)
        out = np.empty((len(X), 2))
        for i, k in enumerate(self._keys(X)):
            c, _ = self.coefficients(k)
            T = c["a"] * st[i] + c["a_opt"] * sto[i] + c["b"] * nc[i] + c["c"]
            out[i, 0] = T
            out[i, 1] = c["p"] * T + c["d"] * se[i] + c["d_opt"] * seo[i]
        return out

    def score(self, X, y=None):
        """Negative mean absolute log-ratio over time and energy (higher is better)."""
        X = _as_frame(X)
        if y is None:
            y = np.column_stack([_num(X, "time_s", np.nan), _num(X, "energy_j", np.nan)])
        p = self.predict(X)
        return -float(np.nanmean(np.abs(np.log(np.maximum(p, _TINY) / np.asarray(y, float)))))


# ----------------------------------------------------------------------------- uncertainty
def _conformal_bounds(r: np.ndarray, coverage: float) -> tuple[float, float]:
    """Two one-sided split-conformal quantiles of signed log-ratio residuals (α/2 each)."""
    r = np.sort(np.asarray(r, float)[np.isfinite(r)])
    n = len(r)
    alpha = 1.0 - coverage
    if n == 0:
        return float("-inf"), float("inf")
    k_hi = math.ceil((n + 1) * (1 - alpha / 2))
    k_lo = math.floor((n + 1) * (alpha / 2))
    hi = r[min(k_hi, n) - 1] if k_hi <= n else r[-1] + (r[-1] - r[0]) / max(n, 1)
    lo = r[k_lo - 1] if k_lo >= 1 else r[0] - (r[-1] - r[0]) / max(n, 1)
    return float(min(lo, 0.0)), float(max(hi, 0.0))


class Uncertainty(BaseEstimator):
    """Split-conformal prediction intervals on log-ratio residuals.

    ``fit(residuals)``: a DataFrame with columns ``target`` ("time" | "energy"),
    ``log_ratio`` (= log(measured / predicted), out-of-fold), ``host_bound`` (bool, decided
    from the *prediction*), ``mode``.  Pools: (target, mode, bound) when it has at least
    ``min_pool`` residuals, else (target, bound), else (target).  The interval of a
    prediction ŷ is ``[ŷ·e^lo, ŷ·e^hi]`` with lo/hi the α/2 and 1-α/2 conformal quantiles
    (finite-sample corrected) -- nominal coverage ``coverage``.
    """

    def __init__(self, coverage=0.9, min_pool=20, host_power_factor=1.5):
        self.coverage = coverage
        self.min_pool = min_pool
        self.host_power_factor = host_power_factor

    def fit(self, residuals: pd.DataFrame, source: str = "model rows (grouped CV, out-of-fold)"):
        if not 0.5 <= float(self.coverage) < 1.0:
            raise ExanteError(f"coverage must be in [0.5, 1), got {self.coverage}")
        R = _as_frame(residuals)
        self.quantiles_ = {}
        self.pool_sizes_ = {}
        tgt = _cat(R, "target")
        mode = _cat(R, "mode", "inference")
        hb = R["host_bound"].to_numpy(bool) if "host_bound" in R else np.zeros(len(R), bool)
        r = _num(R, "log_ratio", np.nan)
        for t in np.unique(tgt):
            mt = tgt == t
            self._set((t,), r[mt])
            for b in (True, False):
                mb = mt & (hb == b)
                self._set((t, b), r[mb])
                for m in np.unique(mode[mb]):
                    self._set((t, b, m), r[mb & (mode == m)])
        self.source_ = source
        self.cross_session_ = {"present": False,
                               "note": "no configuration measured in more than one session; "
                                       "intervals reflect one session's repeatability only "
                                       "(DESIGN §2: host-bound eager energy varied 12-60 % "
                                       "between machines)"}
        self.widen_ = {True: 0.0, False: 0.0}
        return self

    def _set(self, key, r):
        r = r[np.isfinite(r)]
        if len(r) >= (self.min_pool if len(key) > 1 else 2):
            self.quantiles_[key] = _conformal_bounds(r, self.coverage)
            self.pool_sizes_[key] = int(len(r))

    def add_cross_session(self, deviations: pd.DataFrame) -> "Uncertainty":
        """Widen by the cross-session spread.

        ``deviations``: columns ``host_bound`` and ``log_ratio_pair`` = log(y_s1 / y_s2) for
        the same configuration measured in two sessions.  A single session's deviation from
        the population mean has spread |log ratio|/√2; its ``coverage`` quantile ``s`` per
        bound class is added in quadrature: ``q' = ±sqrt(q² + s²)`` (independent errors in
        log space).  This may double-count if the CV residuals already span sessions; it is
        the conservative choice.
        """
        check_is_fitted(self, "quantiles_")
        D = _as_frame(deviations)
        if len(D) == 0:
            return self
        hb = D["host_bound"].to_numpy(bool)
        lr = np.abs(_num(D, "log_ratio_pair", np.nan)) / math.sqrt(2)
        info = {"present": True, "n_pairs": int(np.isfinite(lr).sum())}
        allq = float(np.nanquantile(lr, self.coverage))
        for b in (True, False):
            sel = lr[(hb == b) & np.isfinite(lr)]
            s = float(np.quantile(sel, self.coverage)) if len(sel) >= 5 else allq
            self.widen_[b] = s
            info["host_bound" if b else "gpu_bound"] = {
                "n_pairs": int(len(sel)), "widen_log": s,
                "median_abs_pct": float(100 * (np.exp(np.median(sel) * math.sqrt(2)) - 1))
                if len(sel) else None}
        info["note"] = ("quantiles widened in quadrature by the coverage-quantile of the "
                        "per-session deviation |log(y1/y2)|/sqrt(2)")
        self.cross_session_ = info
        return self

    def bounds(self, target: str, host_bound: bool, mode: str = "inference") -> tuple[float, float]:
        """(lo, hi) log offsets for a prediction."""
        check_is_fitted(self, "quantiles_")
        for key in ((target, bool(host_bound), mode), (target, bool(host_bound)), (target,)):
            if key in self.quantiles_:
                lo, hi = self.quantiles_[key]
                s = self.widen_.get(bool(host_bound), 0.0)
                if s > 0:
                    lo, hi = -math.sqrt(lo * lo + s * s), math.sqrt(hi * hi + s * s)
                return lo, hi
        raise ExanteError(f"no residuals for target {target!r}")

    def summary(self) -> dict:
        check_is_fitted(self, "quantiles_")
        return {
            "coverage": float(self.coverage),
            "method": "split-conformal on log(y/ŷ), two one-sided quantiles at α/2",
            "source": self.source_,
            "pools": {"/".join(map(str, k)): {"n": self.pool_sizes_[k],
                                              "lo_pct": float(100 * (math.exp(v[0]) - 1)),
                                              "hi_pct": float(100 * (math.exp(v[1]) - 1))}
                      for k, v in self.quantiles_.items()},
            "host_power_factor": float(self.host_power_factor),
            "cross_session": self.cross_session_,
        }


# ----------------------------------------------------------------------------- family comparison
def compare_families(layer_df: pd.DataFrame, groups, families=("poly_lasso", "gbr", "rf"),
                     cv=None, *, targets=("time", "energy"), active_idle_power_w=None,
                     quick=False, random_state=0, return_predictions=False):
    """Grouped-CV comparison of per-layer regressor families.

    ``time`` is scored on ``time_s``; ``energy`` on the layer's total energy
    ``P_ai·time_measured + energy_active_predicted`` against ``energy_j`` (isolates the energy
    model).  Returns a DataFrame (family, target, n, mape, median_ape, rmspe, within_10);
    with ``return_predictions`` also a dict {(family, target): out-of-fold predictions}.
    """
    layer_df = _as_frame(layer_df).reset_index(drop=True)
    groups = np.asarray(groups)
    cv = cv if cv is not None else GroupKFold(n_splits=min(5, len(np.unique(groups))))
    floors = estimate_host_floor(layer_df)
    P = active_idle_power_w if active_idle_power_w is not None else \
        estimate_active_idle_power(layer_df, floors)[0]
    t = _num(layer_df, "time_s", np.nan)
    e = _num(layer_df, "energy_j", np.nan)
    ys = {"time": t, "energy": energy_active(e, t, P)}
    rows, preds = [], {}
    splits = list(cv.split(layer_df, groups=groups))
    for fam in families:
        for tgt in targets:
            oof = np.full(len(layer_df), np.nan)
            for tr, te in splits:
                reg = LayerRegressor(base=fam, quick=quick, random_state=random_state)
                reg.fit(layer_df.iloc[tr], ys[tgt][tr])
                oof[te] = reg.predict(layer_df.iloc[te])
            if tgt == "time":
                oof = np.maximum(oof, _mode_floor(layer_df, floors))
                truth, pred = t, oof
            else:
                truth, pred = e, P * t + oof
            name = fam if isinstance(fam, str) else type(fam).__name__
            rows.append({"family": name, "target": tgt, **error_metrics(truth, pred)})
            preds[(name, tgt)] = pred
    table = pd.DataFrame(rows)
    return (table, preds) if return_predictions else table


def _mode_floor(X: pd.DataFrame, floors: dict, mode: str | None = None) -> np.ndarray:
    modes = np.full(len(X), mode, dtype=object) if mode else _cat(X, "mode", "inference")
    return np.array([floors.get(m, floors.get("*", 0.0)) for m in modes])


# ----------------------------------------------------------------------------- hardware model
@dataclass
class LayerPredictions:
    time_s: np.ndarray            # per call
    energy_active_j: np.ndarray   # per call, above active idle
    time_opt_s: np.ndarray        # optimizer-step part (train_step), per call
    energy_opt_j: np.ndarray
    source: np.ndarray            # "type" | "global" | "shape"


@dataclass
class HardwareModel:
    """The fitted predictor for one hardware id (what an artifact holds)."""

    hardware: str
    time_reg: LayerRegressor
    energy_reg: LayerRegressor
    shape_time_reg: LayerRegressor | None
    shape_energy_reg: LayerRegressor | None
    opt_time: OptimizerStepRegressor | None
    opt_energy: OptimizerStepRegressor | None
    composer: ModelComposer | None
    uncertainty: Uncertainty
    active_idle_power_w: float
    idle_power_w: float
    host_floor_s: dict
    fallback_log_bounds: dict = field(default_factory=dict)   # {"global"|"shape": {target: (lo, hi)}}
    info: dict = field(default_factory=dict)

    # -- what can be predicted
    @property
    def modes(self) -> tuple:
        return tuple(self.info.get("modes", ("inference",)))

    @property
    def optimizers(self) -> tuple:
        return tuple(self.opt_time.optimizers_) if self.opt_time is not None else ()

    def layer_predictions(self, frame: pd.DataFrame, mode: str, optimizer: str | None = None,
                          supported: np.ndarray | None = None) -> LayerPredictions:
        """Per-call time and energy above active idle of each row of ``frame``.

        ``mode``: "inference" or "train_step" (= forward_backward + optimizer step).
        ``supported``: False for rows without a feature function (shape-only fallback).
        """
        n = len(frame)
        X = frame.copy()
        X["exec"] = "eager"
        base_mode = "forward_backward" if mode == "train_step" else mode
        X["mode"] = base_mode
        X["optimizer"] = ""
        sup = np.ones(n, bool) if supported is None else np.asarray(supported, bool)
        t = np.zeros(n)
        e = np.zeros(n)
        src = np.empty(n, dtype=object)
        if sup.any():
            Xs = X.loc[sup]
            t[sup] = self.time_reg.predict(Xs)
            e[sup] = self.energy_reg.predict(Xs)
            s_t = self.time_reg.predict_source(Xs)
            s_e = self.energy_reg.predict_source(Xs)
            src[sup] = np.where((s_t == "type") & (s_e == "type"), "type", "global")
        if (~sup).any():
            if self.shape_time_reg is None:
                raise ExanteError("this artifact has no shape-only fallback model")
            Xu = X.loc[~sup]
            t[~sup] = self.shape_time_reg.predict(Xu)
            e[~sup] = self.shape_energy_reg.predict(Xu)
            src[~sup] = "shape"
        floor = self.host_floor_s.get(base_mode, self.host_floor_s.get("*", 0.0))
        t = np.maximum(t, floor)
        t_opt = np.zeros(n)
        e_opt = np.zeros(n)
        if mode == "train_step":
            if self.opt_time is None:
                raise ExanteError(f"the {self.hardware} artifact has no train_step data")
            Xo = pd.DataFrame({"params": _num(frame, "params"),
                               "optimizer": [optimizer or "sgd"] * n})
            t_opt = np.maximum(self.opt_time.predict(Xo), 0)
            e_opt = np.maximum(self.opt_energy.predict(Xo), 0)
        return LayerPredictions(t, e, t_opt, e_opt, src)

    def compose(self, sums: pd.DataFrame) -> np.ndarray:
        """(n, 2) whole-model [time_s, energy_j] from per-model sums (ModelComposer columns)."""
        if self.composer is not None:
            return self.composer.predict(sums)
        T = _num(sums, "sum_time_s") + _num(sums, "sum_time_opt_s")
        E = (self.active_idle_power_w * T + _num(sums, "sum_energy_active_j")
             + _num(sums, "sum_energy_opt_j"))
        return np.column_stack([T, E])

    def host_bound(self, time_s, energy_j) -> np.ndarray:
        pw = np.asarray(energy_j, float) / np.maximum(np.asarray(time_s, float), _TINY)
        return pw < self.uncertainty.host_power_factor * self.active_idle_power_w

    def interval(self, target: str, value: float, host_bound: bool, mode: str,
                 fallback_share: dict | None = None) -> tuple[float, float]:
        """Conformal interval, widened by the share of the prediction made by fallback models.

        ``fallback_share``: {"global": share, "shape": share} of the predicted quantity that
        came from the global (unseen type) or shape-only (unsupported layer) models; each
        share adds ``share × (leave-one-type-out log quantile)`` to both ends.
        """
        lo, hi = self.uncertainty.bounds(target, host_bound, mode)
        for kind, share in (fallback_share or {}).items():
            if share > 0 and kind in self.fallback_log_bounds:
                flo, fhi = self.fallback_log_bounds[kind][target]
                lo += share * min(flo, 0.0)
                hi += share * max(fhi, 0.0)
        return float(value * math.exp(lo)), float(value * math.exp(hi))


# ----------------------------------------------------------------------------- fitting
def _parse_counts(v) -> dict:
    if isinstance(v, dict):
        return v
    if v is None or (isinstance(v, float) and math.isnan(v)) or v == "":
        return {}
    return json.loads(v)


def _config_keys(layers: pd.DataFrame) -> np.ndarray:
    """The layer-config key of each row (``config_key``; ``key`` for older tables)."""
    if "config_key" in layers.columns:
        ck = _cat(layers, "config_key")
        if "key" in layers.columns:
            k = _cat(layers, "key")
            ck = np.where(ck == "", [x.split("|")[0] for x in k], ck)
        return ck
    if "key" in layers.columns:
        return np.array([x.split("|")[0] for x in _cat(layers, "key")], dtype=object)
    raise ExanteError("layer rows need a 'config_key' (or 'key') column")


def _key_table(layers: pd.DataFrame) -> pd.DataFrame:
    """One feature row per layer config key (first occurrence), indexed by config key."""
    L = layers.assign(_ck=_config_keys(layers))
    return L.drop_duplicates("_ck").set_index("_ck", drop=False)


def clean_layers(layers: pd.DataFrame) -> pd.DataFrame:
    """Layer rows usable for fitting: no drift-reference rows, finite positive time/energy."""
    L = _as_frame(layers)
    t = _num(L, "time_s", np.nan)
    e = _num(L, "energy_j", np.nan)
    ok = (_types(L) != "reference") & np.isfinite(t) & (t > 0) & np.isfinite(e) & (e > 0)
    return L.loc[ok].reset_index(drop=True)


def clean_models(models: pd.DataFrame | None) -> pd.DataFrame | None:
    """Eager whole-model rows with finite positive measurements and no unsupported layers."""
    if models is None or len(models) == 0:
        return None
    M = _as_frame(models)
    t = _num(M, "time_s", np.nan)
    e = _num(M, "energy_j", np.nan)
    ok = (np.isfinite(t) & (t > 0) & np.isfinite(e) & (e > 0)
          & (_cat(M, "exec", "eager") == "eager") & (_num(M, "n_unsupported", 0) == 0))
    if "layer_counts" not in M.columns:
        return None
    M = M.loc[ok].reset_index(drop=True)
    return M if len(M) else None


def model_level_frame(hm: HardwareModel, models: pd.DataFrame, keytab: pd.DataFrame
                      ) -> pd.DataFrame:
    """Per-model sums of per-layer predictions (the composer's input) for model rows."""
    recs = []
    for i, row in enumerate(models.itertuples(index=False)):
        counts = _parse_counts(getattr(row, "layer_counts"))
        for k, c in counts.items():
            recs.append((i, k, float(c)))
    if not recs:
        raise ExanteError("model rows have no layer_counts")
    idx = np.array([r[0] for r in recs])
    keys = [r[1] for r in recs]
    cnt = np.array([r[2] for r in recs])
    known = np.array([k in keytab.index for k in keys])
    out = pd.DataFrame({
        "mode": _cat(models, "mode", "inference"),
        "dtype": _cat(models, "dtype", "fp32"),
        "n_layer_calls": _num(models, "n_layer_calls", np.nan),
        "sum_time_s": 0.0, "sum_time_opt_s": 0.0,
        "sum_energy_active_j": 0.0, "sum_energy_opt_j": 0.0,
        "missing_keys": 0,
    })
    miss = np.zeros(len(models), int)
    np.add.at(miss, idx[~known], 1)
    out["missing_keys"] = miss
    idx, cnt = idx[known], cnt[known]
    feat = keytab.loc[[k for k, ok in zip(keys, known) if ok]].reset_index(drop=True)
    feat["dtype"] = out["dtype"].to_numpy()[idx]
    modes = out["mode"].to_numpy()[idx]
    opts = _cat(models, "optimizer", "sgd")[idx]
    sums = {c: np.zeros(len(models)) for c in
            ("sum_time_s", "sum_time_opt_s", "sum_energy_active_j", "sum_energy_opt_j")}
    for m in np.unique(modes):
        for o in (np.unique(opts[modes == m]) if m == "train_step" else [None]):
            sel = (modes == m) if o is None else ((modes == m) & (opts == o))
            lp = hm.layer_predictions(feat.loc[sel], m, o if o not in ("", "nan") else None)
            for col, v in (("sum_time_s", lp.time_s), ("sum_time_opt_s", lp.time_opt_s),
                           ("sum_energy_active_j", lp.energy_active_j),
                           ("sum_energy_opt_j", lp.energy_opt_j)):
                np.add.at(sums[col], idx[sel], cnt[sel] * v)
    for col, v in sums.items():
        out[col] = v
    calls = np.zeros(len(models))
    np.add.at(calls, idx, cnt)
    nlc = out["n_layer_calls"].to_numpy()
    out["n_layer_calls"] = np.where(np.isfinite(nlc) & (nlc > 0), nlc, calls)
    return out


def _pairs_for_optimizer(layers: pd.DataFrame, P: float) -> pd.DataFrame:
    """train_step − forward_backward differences of the same config (median over repeats)."""
    if "mode" not in layers.columns:
        return pd.DataFrame()
    L = layers.assign(_ea=energy_active(_num(layers, "energy_j"), _num(layers, "time_s"), P),
                      _eraw=_num(layers, "energy_j") - P * _num(layers, "time_s"),
                      _exec=_cat(layers, "exec", "eager"),
                      _dtype=_cat(layers, "dtype", "fp32"))
    L["_ck"] = _config_keys(L)
    L = L[L["_exec"] == "eager"]          # predictions are eager: graph replays have no host cost
    keys = ["_ck", "_exec", "_dtype"]
    fb = (L[L["mode"] == "forward_backward"].groupby(keys)
          .agg(t_fb=("time_s", "median"), e_fb=("_eraw", "median"), params=("params", "first")))
    ts = L[L["mode"] == "train_step"].copy()
    if ts.empty or fb.empty:
        return pd.DataFrame()
    ts["optimizer"] = _cat(ts, "optimizer", "sgd")
    ts = (ts.groupby(keys + ["optimizer"]).agg(t_ts=("time_s", "median"), e_ts=("_eraw", "median"),
                                               ea_ts=("_ea", "median")).reset_index())
    j = ts.join(fb, on=keys, how="inner")
    j["dt"] = j["t_ts"] - j["t_fb"]
    j["de"] = j["e_ts"] - j["e_fb"]
    return j


def _session_ids(df: pd.DataFrame) -> np.ndarray:
    for c in ("session_id", "session"):
        if c in df.columns:
            return _cat(df, c)
    sw = _cat(df, "sweep_id")
    day = np.array([s[:10] for s in _cat(df, "date")], dtype=object)
    host = _cat(df, "hostname") if "hostname" in df.columns else np.full(len(df), "", object)
    return np.array([f"{a}|{b}|{c}" for a, b, c in zip(sw, day, host)], dtype=object)


def cross_session_deviations(layers: pd.DataFrame, models: pd.DataFrame | None, P: float,
                             host_power_factor: float) -> pd.DataFrame:
    """Pairs of the same configuration measured in different sessions (energy log-ratios).

    Model rows are used when they repeat across sessions, else layer rows.  Host-bound is
    decided from the measured power (< host_power_factor · P_ai).
    """
    def pairs(df, keys):
        if df is None or df.empty:
            return []
        sess = _session_ids(df)
        if len(np.unique(sess)) < 2:
            return []
        d = df.assign(_sess=sess, _e=_num(df, "energy_j"), _t=_num(df, "time_s"))
        d = d[(d["_e"] > 0) & (d["_t"] > 0)]
        keys = [k for k in keys if k in d.columns]
        out = []
        agg = d.groupby(keys + ["_sess"], dropna=False).agg(_e=("_e", "median"), _t=("_t", "median")).reset_index()
        for _, g in agg.groupby(keys, dropna=False):
            if len(g) < 2:
                continue
            e = g["_e"].to_numpy()
            pw = e / g["_t"].to_numpy()
            hb = bool(np.median(pw) < host_power_factor * P)
            for a in range(len(e)):
                for b in range(a + 1, len(e)):
                    out.append({"host_bound": hb, "log_ratio_pair": float(np.log(e[a] / e[b]))})
        return out

    got = pairs(models, ["model_ref", "family", "batch", "mode", "dtype", "optimizer", "exec",
                         "input_shape"])
    if not got:
        got = pairs(layers, ["key", "config_key", "mode", "dtype", "exec", "optimizer", "batch"])
    return pd.DataFrame(got, columns=["host_bound", "log_ratio_pair"])


def _fit_core(layers: pd.DataFrame, models: pd.DataFrame | None, keytab: pd.DataFrame, *,
              time_base, energy_base, quick, random_state, P, floors, idle,
              hardware="unknown", fit_shape=True) -> HardwareModel:
    """Fit layer regressors, optimizer-step models and the composer (no intervals)."""
    L = layers[_cat(layers, "mode", "inference") != "train_step"]
    t = _num(L, "time_s")
    ea = energy_active(_num(L, "energy_j"), t, P)
    kw = dict(quick=quick, random_state=random_state)
    time_reg = LayerRegressor(base=time_base, **kw).fit(L, t)
    energy_reg = LayerRegressor(base=energy_base, **kw).fit(L, ea)
    shape_t = shape_e = None
    if fit_shape:
        shape_t = LayerRegressor(base=time_base, per_type=False, numeric_features=SHAPE_NUMERIC,
                                 **kw).fit(L, t)
        shape_e = LayerRegressor(base=energy_base, per_type=False,
                                 numeric_features=SHAPE_NUMERIC, **kw).fit(L, ea)
    opt_t = opt_e = None
    pairs = _pairs_for_optimizer(layers, P)
    if not pairs.empty:
        try:
            opt_t = OptimizerStepRegressor().fit(pairs, pairs["dt"].to_numpy(),
                                                 reference=pairs["t_ts"].to_numpy())
            opt_e = OptimizerStepRegressor().fit(pairs, pairs["de"].to_numpy(),
                                                 reference=pairs["ea_ts"].to_numpy()
                                                 + P * pairs["t_ts"].to_numpy())
        except ExanteError:
            opt_t = opt_e = None
    modes = sorted(set(_cat(layers, "mode", "inference")) - {"forward_backward"})
    if opt_t is None:
        modes = [m for m in modes if m != "train_step"]
    elif "train_step" not in modes:
        modes.append("train_step")
    hm = HardwareModel(
        hardware=hardware, time_reg=time_reg, energy_reg=energy_reg, shape_time_reg=shape_t,
        shape_energy_reg=shape_e, opt_time=opt_t, opt_energy=opt_e, composer=None,
        uncertainty=Uncertainty(), active_idle_power_w=P, idle_power_w=idle,
        host_floor_s=floors,
        info={"modes": modes,
              "dtypes": sorted(set(_cat(L, "dtype", "fp32")) - {""}),
              "batch_range": [int(np.nanmin(_num(L, "batch", 1))),
                              int(np.nanmax(_num(L, "batch", 1)))]})
    if models is not None and len(models):
        M = models[[m in modes for m in _cat(models, "mode", "inference")]]
        if len(M):
            sums = model_level_frame(hm, M, keytab)
            ok = sums["missing_keys"].to_numpy() == 0
            if ok.sum() >= 2:
                y = np.column_stack([_num(M, "time_s"), _num(M, "energy_j")])[ok]
                hm.composer = ModelComposer(active_idle_power_w=P).fit(
                    sums.loc[ok].reset_index(drop=True), y)
    return hm


def cross_validate_models(layers: pd.DataFrame, models: pd.DataFrame, *, time_base="gbr",
                          energy_base="gbr", n_splits=5, groups=None, quick=False,
                          random_state=0, splits=None) -> pd.DataFrame:
    """Out-of-fold whole-model predictions, folds grouped by model family.

    Layer rows whose key appears only in held-out models are dropped from each fold's
    training data, so held-out families are genuinely unseen.  Returns the model rows with
    ``pred_time_s``, ``pred_energy_j``, ``fold``.
    """
    layers = clean_layers(layers)
    models = clean_models(models)
    if models is None:
        raise ExanteError("no usable whole-model rows for cross-validation")
    keytab = _key_table(layers)
    floors = estimate_host_floor(layers)
    P, _ = estimate_active_idle_power(layers, floors)
    idle = _median_idle(layers, P)
    g = np.asarray(groups) if groups is not None else _cat(models, "family", "?")
    if splits is None:
        k = min(n_splits, len(np.unique(g)))
        if k < 2:
            raise ExanteError("grouped CV needs at least 2 model families (or groups)")
        splits = list(GroupKFold(n_splits=k).split(models, groups=g))
    counts = [set(_parse_counts(v)) for v in models["layer_counts"]]
    out = models.copy()
    out["pred_time_s"] = np.nan
    out["pred_energy_j"] = np.nan
    out["fold"] = -1
    lkeys = _config_keys(layers)
    for f, (tr, te) in enumerate(splits):
        train_keys = set().union(*[counts[i] for i in tr]) if len(tr) else set()
        held_keys = set().union(*[counts[i] for i in te]) - train_keys
        Lf = layers[~np.isin(lkeys, list(held_keys))]
        hm = _fit_core(Lf, models.iloc[tr], keytab, time_base=time_base, energy_base=energy_base,
                       quick=quick, random_state=random_state, P=P, floors=floors, idle=idle,
                       fit_shape=False)
        Mte = models.iloc[te]
        ok_mode = np.array([m in hm.modes for m in _cat(Mte, "mode", "inference")])
        if not ok_mode.any():
            continue
        Mte = Mte[ok_mode]
        sums = model_level_frame(hm, Mte, keytab)
        pred = hm.compose(sums)
        bad = sums["missing_keys"].to_numpy() > 0
        pred[bad] = np.nan
        out.loc[Mte.index, "pred_time_s"] = pred[:, 0]
        out.loc[Mte.index, "pred_energy_j"] = pred[:, 1]
        out.loc[Mte.index, "fold"] = f
    out.attrs["active_idle_power_w"] = P
    return out


def _median_idle(layers: pd.DataFrame, P: float) -> float:
    idle = _num(layers, "idle_power_w", np.nan)
    idle = idle[np.isfinite(idle) & (idle > 0)]
    return float(np.median(idle)) if len(idle) else float(P / 1.6)


def _fallback_bounds(layers: pd.DataFrame, P: float, floors: dict, *, time_base, energy_base,
                     quick, random_state, coverage) -> dict:
    """Leave-types-out log-ratio quantiles of the global and shape-only fallback models."""
    L = layers[_cat(layers, "mode", "inference") != "train_step"].reset_index(drop=True)
    types = _types(L)
    ut = np.unique(types)
    if len(ut) < 2:
        return {}
    k = min(3 if quick else 5, len(ut))
    t = _num(L, "time_s")
    e = _num(L, "energy_j")
    ea = energy_active(e, t, P)
    res = {}
    for kind, numeric in (("global", None), ("shape", SHAPE_NUMERIC)):
        pt = np.full(len(L), np.nan)
        pe = np.full(len(L), np.nan)
        for tr, te in GroupKFold(n_splits=k).split(L, groups=types):
            kw = dict(per_type=False, numeric_features=numeric, quick=quick,
                      random_state=random_state)
            rt = LayerRegressor(base=time_base, **kw).fit(L.iloc[tr], t[tr])
            re_ = LayerRegressor(base=energy_base, **kw).fit(L.iloc[tr], ea[tr])
            pt[te] = np.maximum(rt.predict(L.iloc[te]), _mode_floor(L.iloc[te], floors))
            pe[te] = re_.predict(L.iloc[te])
        res[kind] = {"time": _conformal_bounds(np.log(t / pt), coverage),
                     "energy": _conformal_bounds(np.log(e / (P * pt + pe)), coverage)}
    return res


def build_hardware_model(layers: pd.DataFrame, models: pd.DataFrame | None = None, *,
                         hardware: str = "unknown", time_base="gbr", energy_base="gbr",
                         coverage: float = 0.9, n_splits: int = 5, quick: bool = False,
                         random_state: int = 0) -> tuple[HardwareModel, dict]:
    """Fit everything for one hardware id; returns ``(HardwareModel, report)``.

    ``report`` holds the model-level CV metrics, the physics constants and the interval
    summary (it goes into the artifact manifest).
    """
    layers = clean_layers(layers)
    if layers.empty:
        raise ExanteError("no usable layer rows to fit")
    models = clean_models(models)
    keytab = _key_table(layers)
    floors = estimate_host_floor(layers)
    P, p_info = estimate_active_idle_power(layers, floors)
    idle = _median_idle(layers, P)
    unc = Uncertainty(coverage=coverage)
    report: dict[str, Any] = {
        "active_idle_power_w": P, "active_idle_method": p_info, "idle_power_w": idle,
        "host_floor_s": floors, "families": {"time": _fam_name(time_base),
                                             "energy": _fam_name(energy_base)},
        "n_layer_rows": int(len(layers)), "n_model_rows": int(0 if models is None else len(models)),
    }
    residuals = []
    cv_metrics = {}
    fams = np.unique(_cat(models, "family", "?")) if models is not None else []
    if models is not None and len(models) >= 4 and len(fams) >= 2:
        oof = cross_validate_models(layers, models, time_base=time_base, energy_base=energy_base,
                                    n_splits=3 if quick else n_splits, quick=quick,
                                    random_state=random_state)
        ok = np.isfinite(oof["pred_time_s"].to_numpy())
        oof = oof[ok]
        pt, pe = oof["pred_time_s"].to_numpy(), oof["pred_energy_j"].to_numpy()
        hb = (pe / np.maximum(pt, _TINY)) < unc.host_power_factor * P
        modes = _cat(oof, "mode", "inference")
        for tgt, y, p in (("time", _num(oof, "time_s"), pt), ("energy", _num(oof, "energy_j"), pe)):
            residuals.append(pd.DataFrame({"target": tgt, "log_ratio": np.log(y / p),
                                           "host_bound": hb, "mode": modes}))
            for m in np.unique(modes):
                for d in np.unique(_cat(oof, "dtype", "fp32")[modes == m]):
                    sel = (modes == m) & (_cat(oof, "dtype", "fp32") == d)
                    cv_metrics[f"model/{tgt}/{m}/{d}"] = error_metrics(y[sel], p[sel])
            cv_metrics[f"model/{tgt}/all"] = error_metrics(y, p)
        unc.fit(pd.concat(residuals, ignore_index=True),
                source="whole-model rows, grouped CV by family (out-of-fold)")
        report["interval_source"] = "model"
    else:
        # no usable whole-model rows: layer-level residuals (grouped by config), documented
        L = layers[_cat(layers, "mode", "inference") != "train_step"].reset_index(drop=True)
        g = _config_groups(L)
        k = min(3 if quick else n_splits, len(np.unique(g)))
        if k < 2:
            raise ExanteError("need at least 2 distinct layer configurations to fit")
        t = _num(L, "time_s")
        e = _num(L, "energy_j")
        pt = np.full(len(L), np.nan)
        pe = np.full(len(L), np.nan)
        for tr, te in GroupKFold(n_splits=k).split(L, groups=g):
            rt = LayerRegressor(base=time_base, quick=quick, random_state=random_state).fit(
                L.iloc[tr], t[tr])
            re_ = LayerRegressor(base=energy_base, quick=quick, random_state=random_state).fit(
                L.iloc[tr], energy_active(e[tr], t[tr], P))
            pt[te] = np.maximum(rt.predict(L.iloc[te]), _mode_floor(L.iloc[te], floors))
            pe[te] = P * pt[te] + re_.predict(L.iloc[te])
        hb = (pe / pt) < unc.host_power_factor * P
        modes = np.where(_cat(L, "mode") == "forward_backward", "train_step", _cat(L, "mode"))
        for tgt, y, p in (("time", t, pt), ("energy", e, pe)):
            residuals.append(pd.DataFrame({"target": tgt, "log_ratio": np.log(y / p),
                                           "host_bound": hb, "mode": modes}))
            cv_metrics[f"layer/{tgt}/all"] = error_metrics(y, p)
        unc.fit(pd.concat(residuals, ignore_index=True),
                source="layer rows only (no whole-model rows): grouped CV by layer config; "
                       "whole-model intervals assume per-layer errors do not cancel")
        report["interval_source"] = "layer"
    dev = cross_session_deviations(layers, models, P, unc.host_power_factor)
    if len(dev):
        unc.add_cross_session(dev)
    hm = _fit_core(layers, models, keytab, time_base=time_base, energy_base=energy_base,
                   quick=quick, random_state=random_state, P=P, floors=floors, idle=idle,
                   hardware=hardware)
    hm.uncertainty = unc
    hm.fallback_log_bounds = _fallback_bounds(layers, P, floors, time_base=time_base,
                                              energy_base=energy_base, quick=quick,
                                              random_state=random_state, coverage=coverage)
    report["cv"] = cv_metrics
    report["uncertainty"] = unc.summary()
    report["modes"] = list(hm.modes)
    report["optimizers"] = list(hm.optimizers)
    report["layer_types"] = sorted(hm.time_reg.type_counts_)
    report["per_type_models"] = sorted(hm.time_reg.models_)
    if hm.composer is not None:
        report["composer"] = {"/".join(k) or "*": hm.composer.coefficients(k)[0]
                              for k in hm.composer.coef_}
    else:
        report["composer"] = None
        report["composer_note"] = ("no whole-model rows: totals are the plain sums of the "
                                   "layers at active-idle power (no launch-gap or fusion terms)")
    report["fallback_log_bounds"] = {k: {t: list(v) for t, v in d.items()}
                                     for k, d in hm.fallback_log_bounds.items()}
    hm.info.update({"report": report})
    return hm, report


def _fam_name(base) -> str:
    return base if isinstance(base, str) else type(base).__name__


def _config_groups(layers: pd.DataFrame) -> np.ndarray:
    """Group id per layer row: layer type + hyper-parameters (shapes and batch vary inside)."""
    hp = _cat(layers, "hparams", "")
    return np.array([f"{t}|{h}" for t, h in zip(_types(layers), hp)], dtype=object)
