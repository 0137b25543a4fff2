"""Per-layer estimators: :class:`LayerRegressor` (per-layer-type time / energy per call, in
log space relative to the roofline prior) and :class:`OptimizerStepRegressor` (the
optimizer-step cost per layer, per optimizer).
"""

from __future__ import annotations

import numpy as np
from scipy.optimize import nnls
from sklearn.base import BaseEstimator, RegressorMixin, clone
from sklearn.utils.validation import check_is_fitted

from predictor.fit.regression.design import (
    _TINY,
    CATEGORIES,
    CORE_NUMERIC,
    _as_frame,
    _cat,
    _fit_quiet,
    _num,
    _types,
    design_matrix,
    make_base,
)
from predictor.fit.regression.roofline import RooflinePrior
from profiling.errors import ExanteError

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
