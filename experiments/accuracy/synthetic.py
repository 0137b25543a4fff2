"""SYNTHETIC TEST FIXTURE -- not a measurement, never a shipped artifact.

Generates a dataset in the exact ``datasets/<hw>/`` layout (``layers.csv`` / ``models.csv``
built with ``profiling.dataset.schema`` row builders from real ``profiling.capture.core`` captures and
``profiling.features.api`` features), but the *measurements* come from a deterministic
physics-like generating function with multiplicative noise:

* per layer call, eager: host floor ``h_type`` (10-20 µs) vs GPU time
  ``flops / (peak_dtype · eff_type) + bytes / BW``; ``t = max(h, g) + 0.15·min(h, g)``;
* forward+backward: 2.5× the host floor, 3× (layers with params) or 2× the GPU work;
* optimizer step (per layer with params): ``h_opt + k_opt · params · bytes_per_param / BW``
  (SGD+momentum 20 B/param, Adam/AdamW 28 B/param);
* energy: ``P_ai · t + e_flop_dtype·flops + e_byte·bytes`` (P_ai = 125 W, deep idle 75 W);
* whole model: ``T = Σt + 3 µs · n_calls + 20 µs (+ 60 µs loss/zero_grad and 0.7·Σt_opt for
  a train step)``, ``E = P_ai·T + 0.97·ΣE_dyn``;
* noise: lognormal, σ = 2 % GPU-bound ... 7 % host-bound; an optional second *session*
  re-measures a fraction of configurations with a 15 % slower host.

Used by the tests, ``experiments/accuracy/run.py --synthetic`` and
``experiments/bench_predict.py`` to exercise the fitting machinery before real H100 data
exists.  Its numbers say nothing about any GPU.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
from torch import nn

from profiling.capture.core import capture
from profiling.dataset import schema
from profiling.features.api import layer_features

SYNTHETIC_GPU = "SYNTHETIC (test fixture, not a measurement)"

P_AI = 125.0
P_IDLE = 75.0
BW = 2.5e12
PEAK = {"fp32": 40e12, "bf16": 300e12, "fp16": 300e12}
E_FLOP = {"fp32": 5e-12, "bf16": 1.0e-12, "fp16": 1.0e-12}
E_BYTE = 8e-11
HOST = {"Linear": 14e-6, "Conv2d": 18e-6, "BatchNorm2d": 16e-6, "LayerNorm": 15e-6,
        "ReLU": 10e-6, "GELU": 11e-6, "Tanh": 10e-6, "MaxPool2d": 12e-6, "Dropout": 9e-6,
        "AdaptiveAvgPool2d": 12e-6, "Flatten": 6e-6, "add": 7e-6}
EFF = {"Linear": 0.7, "Conv2d": 0.55}
OPT = {"sgd": (12e-6, 20.0), "adam": (20e-6, 28.0), "adamw": (21e-6, 28.0)}
GAP_PER_CALL = 3e-6
MODEL_OVERHEAD = 20e-6
TRAIN_OVERHEAD = 60e-6
OPT_FUSION = 0.7
DYN_FACTOR = 0.97


# ----------------------------------------------------------------------------- model families
class _Block(nn.Module):
    def __init__(self, c: int):
        super().__init__()
        self.c1 = nn.Conv2d(c, c, 3, padding=1, bias=False)
        self.b1 = nn.BatchNorm2d(c)
        self.r = nn.ReLU()
        self.c2 = nn.Conv2d(c, c, 3, padding=1, bias=False)
        self.b2 = nn.BatchNorm2d(c)

    def forward(self, x):
        return self.r(self.b2(self.c2(self.r(self.b1(self.c1(x))))) + x)


def mlp(d_in, depth, width, act=nn.ReLU, norm=False, out=10):
    layers, prev = [], d_in
    for _ in range(depth):
        layers.append(nn.Linear(prev, width))
        if norm:
            layers.append(nn.LayerNorm(width))
        layers.append(act())
        prev = width
    layers.append(nn.Linear(prev, out))
    return nn.Sequential(*layers)


def cnn(c, blocks, res=False, out=10):
    layers = [nn.Conv2d(3, c, 3, padding=1), nn.BatchNorm2d(c), nn.ReLU(), nn.MaxPool2d(2)]
    for _ in range(blocks):
        if res:
            layers.append(_Block(c))
        else:
            layers += [nn.Conv2d(c, c, 3, padding=1), nn.BatchNorm2d(c), nn.ReLU()]
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(c, out)]
    return nn.Sequential(*layers)


def families(size: str = "small") -> dict:
    """family -> list of (name, factory, per-sample input shape)."""
    big = size != "small"
    fam = {
        "mlp_relu": [(f"mlp_relu_{d}x{w}", (lambda d=d, w=w: mlp(64, d, w)), (64,))
                     for d in (1, 3, 6) + ((10,) if big else ()) for w in (64, 512, 4096)],
        "mlp_gelu_ln": [(f"mlp_gelu_{d}x{w}", (lambda d=d, w=w: mlp(64, d, w, nn.GELU, True)),
                         (64,)) for d in (2, 4) + ((8,) if big else ()) for w in (128, 2048)],
        "mlp_tanh": [(f"mlp_tanh_{d}x{w}", (lambda d=d, w=w: mlp(100, d, w, nn.Tanh)), (100,))
                     for d in (2, 5) for w in (100, 1500) + ((3000,) if big else ())],
        "cnn_plain": [(f"cnn_{c}x{b}", (lambda c=c, b=b: cnn(c, b)), (3, 32, 32))
                      for c in (16, 64) + ((128,) if big else ()) for b in (1, 3)],
        "cnn_res": [(f"res_{c}x{b}", (lambda c=c, b=b: cnn(c, b, res=True)), (3, 32, 32))
                    for c in (16, 64) + ((128,) if big else ()) for b in (1, 2)],
    }
    return fam


# ----------------------------------------------------------------------------- ground truth
def _bytes(f):
    return float(f["bytes_read"] + f["bytes_written"])


def layer_truth(ltype: str, f: dict, dtype: str, mode: str, optimizer: str | None = None,
                host_scale: float = 1.0) -> tuple[float, float]:
    """Noise-free (time_s, energy_j) per call of one layer in one mode."""
    h = HOST.get(ltype, 12e-6) * host_scale
    peak = PEAK.get(dtype, 40e12) * EFF.get(ltype, 0.5)
    g = f["flops"] / peak + _bytes(f) / BW
    e_dyn = E_FLOP.get(dtype, 5e-12) * f["flops"] + E_BYTE * _bytes(f)
    if mode != "inference":
        k = 3.0 if f["params"] > 0 else 2.0
        h, g, e_dyn = 2.5 * h, k * g, k * e_dyn
    t = max(h, g) + 0.15 * min(h, g)
    if mode == "train_step" and f["params"] > 0:
        h0, bpp = OPT[optimizer or "sgd"]
        t_opt = h0 * host_scale + f["params"] * bpp / BW
        t += t_opt
        e_dyn += E_BYTE * f["params"] * bpp
    return t, P_AI * t + e_dyn


def _opt_part(f, optimizer, host_scale=1.0):
    if f["params"] <= 0:
        return 0.0, 0.0
    h0, bpp = OPT[optimizer or "sgd"]
    t = h0 * host_scale + f["params"] * bpp / BW
    return t, P_AI * t + E_BYTE * f["params"] * bpp


def model_truth(layer_list, mode: str, dtype: str, optimizer: str | None = None,
                host_scale: float = 1.0) -> tuple[float, float]:
    """Noise-free whole-model (time_s, energy_j) from [(type, features, count)]."""
    T = E_dyn = 0.0
    t_opt_sum = e_opt_dyn = 0.0
    n_calls = 0
    base_mode = "forward_backward" if mode == "train_step" else mode
    for ltype, f, count in layer_list:
        t, e = layer_truth(ltype, f, dtype, base_mode, host_scale=host_scale)
        T += count * t
        E_dyn += count * (e - P_AI * t)
        n_calls += count
        if mode == "train_step":
            to, eo = _opt_part(f, optimizer, host_scale)
            t_opt_sum += count * to
            e_opt_dyn += count * (eo - P_AI * to)
    T = T + GAP_PER_CALL * host_scale * n_calls + MODEL_OVERHEAD
    if mode == "train_step":
        T += TRAIN_OVERHEAD * host_scale + OPT_FUSION * t_opt_sum
        E_dyn += OPT_FUSION * e_opt_dyn
    return T, P_AI * T + DYN_FACTOR * E_dyn


def truth_for_model(model: nn.Module, inputs, mode="inference", dtype="fp32", optimizer=None):
    """Noise-free truth for an arbitrary model (captured like predict() does)."""
    import copy

    meta_model = copy.deepcopy(model).to("meta")
    if isinstance(inputs, torch.Tensor):
        inputs = torch.empty(inputs.shape, dtype=inputs.dtype, device="meta")
    cap = capture(meta_model, inputs, dtype=dtype, train=(mode == "train_step"))
    lst = [(l.config.type, layer_features(l.config), l.count) for l in cap.layers]
    return model_truth(lst, mode, dtype, optimizer)


# ----------------------------------------------------------------------------- dataset
def _noise(rng, t, host, sigma_gpu=0.02, sigma_host=0.07):
    frac = min(1.0, host / max(t, 1e-12))
    return float(np.exp(rng.normal(0.0, sigma_gpu + (sigma_host - sigma_gpu) * frac)))


def _measurement(t, e, idle):
    return {"time_s": t, "energy_j": e, "energy_dynamic_j": e - idle * t, "power_w": e / t,
            "idle_power_w": idle, "spread": 0.01, "n_windows": 2, "calls_per_window": 1000,
            "remeasured": 0, "meter": "synthetic", "meter_measured": False}


@dataclass
class SyntheticConfig:
    size: str = "small"
    batches: tuple = (1, 32, 512)
    dtypes: tuple = ("fp32", "bf16")
    optimizers: tuple = ("sgd", "adam")
    second_session_fraction: float = 0.0
    second_session_host_scale: float = 1.15
    families: tuple | None = None


def make_synthetic_dataset(out_dir: str | os.PathLike | None = None, *, hardware="synthetic",
                           seed: int = 0, config: SyntheticConfig | None = None, **kw
                           ) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Build (layers, models) DataFrames; with ``out_dir`` also write
    ``out_dir/<hardware>/layers.csv``, ``models.csv`` and a README saying it is synthetic."""
    cfg = config or SyntheticConfig(**kw)
    rng = np.random.default_rng(seed)
    fams = families(cfg.size)
    if cfg.families:
        fams = {k: v for k, v in fams.items() if k in cfg.families}
    sessions = [("synthetic-s1", 1.0)]
    if cfg.second_session_fraction > 0:
        sessions.append(("synthetic-s2", cfg.second_session_host_scale))
    layer_rows, model_rows = [], []
    measured = set()
    idle_of = {s: P_IDLE * (1 + 0.01 * i) for i, (s, _) in enumerate(sessions)}

    def env(session):
        return {"gpu_name": SYNTHETIC_GPU, "driver": "none", "power_limit_w": 700.0,
                "date": "2000-01-01T00:00:00+00:00" if session.endswith("1")
                else "2000-01-02T00:00:00+00:00", "protocol_version": "synthetic",
                "session_id": session, "torch_version": torch.__version__}

    for family, members in fams.items():
        for name, factory, shape in members:
            model = factory().to("meta")
            for batch in cfg.batches:
                x = torch.zeros((batch, *shape), device="meta")
                for dtype in cfg.dtypes:
                    for train in (False, True):
                        cap = capture(model, x, dtype=dtype, train=train)
                        feats = [(l, layer_features(l.config)) for l in cap.layers]
                        modes = ([("forward_backward", None)]
                                 + [("train_step", o) for o in cfg.optimizers]) if train \
                            else [("inference", None)]
                        for session, hs in sessions:
                            if session != "synthetic-s1" and rng.random() > cfg.second_session_fraction:
                                continue
                            idle = idle_of[session]
                            for mode, opt in modes:
                                for l, f in feats:
                                    if mode == "train_step" and f["params"] == 0:
                                        continue
                                    rk = (l.config.key(), mode, dtype, opt, session)
                                    if rk in measured:
                                        continue
                                    measured.add(rk)
                                    t0, e0 = layer_truth(l.config.type, f, dtype, mode, opt, hs)
                                    h = HOST.get(l.config.type, 12e-6) * hs
                                    n = _noise(rng, t0, h)
                                    ne = n * float(np.exp(rng.normal(0, 0.01)))
                                    t, e = t0 * n, e0 * ne
                                    layer_rows.append(schema.layer_row(
                                        l.config, features=f, measurement=_measurement(t, e, idle),
                                        env=env(session), mode=mode, exec="eager", dtype=dtype,
                                        optimizer=opt, hardware=hardware, sweep_id="synthetic"))
                            for mode, opt in ([("inference", None)] if not train else
                                              [("train_step", o) for o in cfg.optimizers]):
                                lst = [(l.config.type, f, l.count) for l, f in feats]
                                T0, E0 = model_truth(lst, mode, dtype, opt, hs)
                                n = _noise(rng, T0, 0.5 * T0 if E0 / T0 < 2 * P_AI else 0.0)
                                T, E = T0 * n, E0 * n * float(np.exp(rng.normal(0, 0.01)))
                                counts = cap.counts()
                                model_rows.append(schema.model_row(
                                    key=f"{name}|{batch}|{dtype}|{mode}|{opt or ''}",
                                    model_ref=f"synthetic:{name}", family=family, spec=None,
                                    input_shape=list(shape), batch=batch, mode=mode, dtype=dtype,
                                    optimizer=opt, measurement=_measurement(T, E, idle),
                                    env=env(session), hardware=hardware, layer_counts=counts,
                                    sweep_id="synthetic",
                                    totals={"params": int(sum(p.numel() for p in model.parameters())),
                                            "flops": int(sum(l.count * f["flops"] for l, f in feats)),
                                            "macs": int(sum(l.count * f["macs"] for l, f in feats)),
                                            "n_unsupported": 0}))
    layers = pd.DataFrame(layer_rows, columns=list(schema.LAYER_COLUMNS))
    models = pd.DataFrame(model_rows, columns=list(schema.MODEL_COLUMNS))
    if out_dir is not None:
        d = os.path.join(os.fspath(out_dir), hardware)
        os.makedirs(d, exist_ok=True)
        schema.layer_table(d).append(layer_rows)
        schema.model_table(d).append(model_rows)
        with open(os.path.join(d, "README.md"), "w") as fh:
            fh.write("# SYNTHETIC dataset (test fixture)\n\nGenerated by "
                     "experiments/accuracy/synthetic.py from a physics-like function with "
                     "noise. Not a measurement of any GPU; never ship a model fitted on it.\n")
    return layers, models
