"""Non-negative *relative* least squares with an optional shrinkage prior: the solver of
the roofline prior and of the model composer.
"""

from __future__ import annotations

import math

import numpy as np
from scipy.optimize import nnls

from predictor.fit.regression.design import _TINY


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
