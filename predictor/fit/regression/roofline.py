"""The roofline prior: ``y ≈ θ0 + θ1·work + θ2·bytes`` (θ >= 0) per group, the offset the
per-layer models are fitted relative to (so they extrapolate with the work).
"""

from __future__ import annotations

import numpy as np
from sklearn.base import BaseEstimator
from sklearn.utils.validation import check_is_fitted

from predictor.fit.regression.design import _TINY, _as_frame, _cat, _num
from predictor.fit.regression.nnls import _nnls_relative


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
