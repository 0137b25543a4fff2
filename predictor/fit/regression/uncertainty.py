""":class:`Uncertainty`: split-conformal prediction intervals on log-ratio residuals, widened
by the cross-session spread (step 5 of :mod:`predictor.fit.regression`).
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator
from sklearn.utils.validation import check_is_fitted

from predictor.fit.regression.design import _as_frame, _cat, _num
from profiling.errors import ExanteError


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
