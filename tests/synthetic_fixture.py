"""Made-up test fixtures shared by the tests (no GPU, nothing here is a measurement).

* ``SYNTH_HW``: the hardware id of the artifact conftest.py fits in a temporary folder;
* ``SYN.mlp``: a small ``torch.nn`` MLP of fixed layout;
* :func:`layer_rows`: per-layer rows (exante's own features of captured ``Linear`` /
  ``ReLU`` / ``LayerNorm`` calls) with a *made-up* per-call cost -- a host floor per type plus
  a roofline of FLOPs and bytes, times lognormal noise -- for the per-type regressor of
  ``exante bench irene`` (:mod:`predictor.bench.layer_regressor`).

Tests use them to check machinery, never accuracy on real hardware.
"""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pandas as pd
from torch import nn

SYNTH_HW = "synthtest"  # hardware id of the artifact fitted in conftest.py

#: made-up per-call host floor (s) per layer type and the roofline rates of layer_rows
HOST_S = {"Linear": 14e-6, "ReLU": 10e-6, "LayerNorm": 15e-6}
PEAK_FLOPS = 40e12
BANDWIDTH_BPS = 2.5e12


def mlp(d_in, depth, width, act=nn.ReLU, norm=False, out=10):
    """``depth`` x [Linear(., width), (LayerNorm), act()] then Linear(width, out)."""
    layers, prev = [], d_in
    for _ in range(depth):
        layers.append(nn.Linear(prev, width))
        if norm:
            layers.append(nn.LayerNorm(width))
        layers.append(act())
        prev = width
    layers.append(nn.Linear(prev, out))
    return nn.Sequential(*layers)


SYN = SimpleNamespace(mlp=mlp)


def made_up_time_s(rows: pd.DataFrame) -> np.ndarray:
    """Noise-free made-up seconds per call: ``max(host, gpu) + 0.15 min(host, gpu)``."""
    host = rows["layer_type"].map(HOST_S).to_numpy(float)
    gpu = (rows["flops"].to_numpy(float) / PEAK_FLOPS
           + (rows["bytes_read"] + rows["bytes_written"]).to_numpy(float) / BANDWIDTH_BPS)
    return np.maximum(host, gpu) + 0.15 * np.minimum(host, gpu)


def layer_rows(widths=(64, 128, 256, 512, 1024, 2048, 4096),
               batches=(1, 4, 16, 64, 256, 1024), seed=0, noise=0.03) -> pd.DataFrame:
    """One row per distinct layer call of ``mlp(w, 1, w, norm=True)`` at each (width, batch):
    ``layer_type``, exante's core features, ``config`` (a group label) and a made-up
    ``time_s`` (:func:`made_up_time_s` x lognormal(0, ``noise``))."""
    import torch

    from profiling.capture.core import capture
    from profiling.features.api import CORE_FEATURES, features_for_capture

    out = []
    for w in widths:
        m = mlp(w, 1, w, norm=True, out=w).to("meta")
        for b in batches:
            table = features_for_capture(capture(m, torch.empty(b, w, device="meta")), warn=False)
            for r in table.rows:
                out.append({"layer_type": r["type"], "config": f"{r['type']}|{w}|{b}",
                            "width": w, **{k: r[k] for k in CORE_FEATURES}})
    rows = pd.DataFrame(out).drop_duplicates("config").reset_index(drop=True)
    rng = np.random.default_rng(seed)
    rows["time_s"] = made_up_time_s(rows) * np.exp(rng.normal(0, noise, len(rows)))
    return rows
