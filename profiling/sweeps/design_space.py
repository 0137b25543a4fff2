"""Space filling for sweep designs: a Latin hypercube (``scipy.stats.qmc``, fixed seed), the
unit-interval -> log-int / choice / power-of-two maps, and the measured modes and dtypes."""

from __future__ import annotations

import math
from typing import Callable, Sequence

SEED = 20240611
# --------------------------------------------------------------------------- space filling


def lhs(n: int, d: int, seed: int):
    """``n`` points in [0, 1)^d: an optimised Latin hypercube (deterministic for a seed)."""
    import numpy as np

    if n <= 0:
        return np.zeros((0, d))
    try:
        from scipy.stats import qmc
    except ImportError:  # pragma: no cover - scipy comes with scikit-learn
        rng = np.random.default_rng(seed)
        cut = (np.arange(n)[:, None] + rng.random((n, d))) / n
        for j in range(d):
            cut[:, j] = cut[rng.permutation(n), j]
        return cut
    opt = "random-cd" if n * d <= 6000 and n > 1 else None
    try:
        sampler = qmc.LatinHypercube(d=d, scramble=True, optimization=opt, rng=seed)
    except TypeError:  # older scipy
        sampler = qmc.LatinHypercube(d=d, scramble=True, optimization=opt, seed=seed)
    return sampler.random(n)


def _logint(u: float, lo: float, hi: float) -> int:
    return int(round(math.exp(math.log(lo) + float(u) * (math.log(hi) - math.log(lo)))))


def _choice(u: float, options: Sequence):
    return options[min(int(float(u) * len(options)), len(options) - 1)]


def _pow2(u: float, lo: int, hi: int) -> int:
    a, b = math.log2(lo), math.log2(hi)
    return int(2 ** round(a + float(u) * (b - a)))


def _round_to(x: int, m: int) -> int:
    return max(m, int(round(x / m)) * m)


def _shrink_batch(spec: dict, numel_of: Callable[[dict], int], limit: int) -> dict:
    """Halve ``batch`` until ``numel_of(spec) <= limit`` (memory guard; deterministic)."""
    while spec["batch"] > 1 and numel_of(spec) > limit:
        spec["batch"] = max(1, spec["batch"] // 2)
    return spec


# modes of a task: (mode, optimizer)
INFER = ("inference", None)
FWD_BWD = ("forward_backward", None)
TRAIN_SGD = ("train_step", "sgd")
TRAIN_ADAM = ("train_step", "adam")
TRAIN_MODES = (FWD_BWD, TRAIN_SGD, TRAIN_ADAM)
MODEL_MODES = (INFER, TRAIN_SGD, TRAIN_ADAM)
DTYPE_CHOICES = ("fp32", "bf16")
