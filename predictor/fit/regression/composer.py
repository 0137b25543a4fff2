""":class:`ModelComposer`: whole-model time (s) and energy (J) from per-layer sums, with
hierarchically shrunk non-negative coefficients per (mode, dtype) (step 4 of
:mod:`predictor.fit.regression`).
"""

from __future__ import annotations

import numpy as np
from sklearn.base import BaseEstimator, RegressorMixin
from sklearn.utils.validation import check_is_fitted

from predictor.fit.regression.design import _TINY, _as_frame, _cat, _num
from predictor.fit.regression.nnls import _nnls_relative
from profiling.errors import ExanteError

_TIME_TERMS = ("a", "a_opt", "b", "c")
_ENERGY_TERMS = ("p", "d", "d_opt")


class ModelComposer(RegressorMixin, BaseEstimator):
    """Whole-model time and energy from per-layer sums (:mod:`predictor.fit.regression`, step 4).

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
