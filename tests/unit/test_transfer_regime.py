"""Host- vs GPU-bound is decided on the target GPU by the model's own GPU vs host time
(issue 17 item 3): never by a wattage measured on one GPU."""

from __future__ import annotations

import warnings

import numpy as np
from torch import nn

from predictor.engine.calibrated import regime_of
from predictor.engine.predict import predict


def test_regime_of_compares_times():
    assert regime_of([1.0, 2.0], [2.0, 1.0]).tolist() == ["gpu", "host"]


def test_big_linears_on_a_t4_are_gpu_bound():
    m = nn.Sequential(*[nn.Linear(4096, 4096) for _ in range(8)])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        p = predict(m, (512, 4096), hardware="t4", cache=False)
    t = p.terms
    assert t["time_gpu_s"] > 10 * t["time_host_s"]
    assert t["regime"] == "gpu" and not t["host_bound"]
    # a T4 draws at most 70 W: the regime cannot come from an H100 wattage
    assert p.power_w < 75.0


def test_tiny_mlp_at_batch_1_is_host_bound():
    m = nn.Sequential(nn.Linear(16, 16), nn.ReLU(), nn.Linear(16, 2))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        p = predict(m, (1, 16), hardware="t4", cache=False)
    assert p.terms["regime"] == "host"
    assert np.isfinite(p.time_s)
