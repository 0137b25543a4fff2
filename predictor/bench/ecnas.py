"""``exante bench ecnas --train CSV --test CSV``: NAS-Bench-101 training energy, ex ante.

EC-NAS-Bench (Bakhtiarifard, Igel, Selvan, ICASSP 2024) measured the energy of training
NAS-Bench-101 cells for 4 epochs on CIFAR-10 (carbontracker: GPU + CPU + DRAM, × PUE 1.59,
kWh).  Here each architecture is rebuilt in ``torch.nn`` (:mod:`predictor.bench.nasbench101`),
its parameter count checked against the CSV, captured on ``meta`` in training mode at the
training batch, and its energy composed like exante's life-cycle training stage:

    E_run = epochs · ⌈samples / batch⌉ · E_step,     E_step = θ₀ + Σ_k θ_k · w_k

with per-step work terms ``w_k`` from the capture (FLOPs of 3×3 and 1×1 convolutions; bytes
moved by convolutions, BatchNorm, ReLU, pooling and the cell's add/concat; kernel calls;
parameters, for the optimizer's update) and ``θ ≥ 0`` (J per FLOP, per byte, per call...)
fitted on ``--train`` only by non-negative relative least squares.  A gradient-boosting
model of the log ratio ``log(E/E_linear)`` on the same (log) work terms then corrects what a
sum of linear terms cannot (per-layer roofline effects); it multiplies the physical
composition and so cannot change its scale outside the training range by more than its
bounded output.  Scored on ``--test``, whose energies are read only after predicting.
"""

from __future__ import annotations

import json
import math
import os
import time

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, RegressorMixin
from sklearn.utils.validation import check_is_fitted

from predictor.cli.progress import bar
from profiling.errors import ExanteError

TARGET = "energy_kWh_carbontracker"
ARCH_COLUMNS = ("ops_json", "adjacency_json")
#: NAS-Bench-101's training set-up that EC-NAS kept (Ying et al. 2019 §2.3): batch 256 on the
#: 40,000-image CIFAR-10 training split; EC-NAS's 4-epoch budget
BATCH = 256
EPOCHS = 4
TRAIN_SAMPLES = 40_000
WORK_TERMS = ("flops_conv3x3", "flops_conv1x1", "bytes_conv", "bytes_bn", "bytes_relu",
              "bytes_pool", "bytes_merge", "calls", "params")
ANCHORS = {"ecnas_surrogate_mae_pct_of_mean": 2.0, "ecnas_surrogate_mae_wh": 0.31,
           "params_linear_mape_pct_source": 11.5}

__all__ = ["arch_work", "EcnasEnergyModel", "run_ecnas_bench", "read_archs", "WORK_TERMS"]


# ----------------------------------------------------------------------------- features
_BLOCKS = None


def _block_cache():
    global _BLOCKS
    if _BLOCKS is None:
        from predictor.bench.nasbench101 import BlockCache

        _BLOCKS = BlockCache("meta")
    return _BLOCKS


def arch_work(ops, adjacency, *, batch: int = BATCH) -> dict:
    """Per-training-step work terms of one cell's network (train-mode capture on ``meta``)."""
    import torch

    from predictor.bench.nasbench101 import build_network
    from profiling.capture.core import capture
    from profiling.features.api import features_for_capture

    net = build_network(ops, adjacency, device="meta", block=_block_cache())
    cap = capture(net, torch.zeros((batch, 3, 32, 32), device="meta"), train=True)
    table = features_for_capture(cap, warn=False)
    if table.unsupported:
        raise ExanteError("capture left layers without features: "
                          + ", ".join(sorted({u["type"] for u in table.unsupported})))
    w = dict.fromkeys(WORK_TERMS, 0.0)
    for r in table.rows:
        n, t = r["count"], r["type"]
        w["params"] += n * r["params"]          # every layer runs once per step: Σ calls·params
        b = n * (r["bytes_read"] + r["bytes_written"])
        if t == "Conv2d":
            k = r["hparams"].get("kernel_size", (3, 3))
            w["flops_conv3x3" if tuple(k) == (3, 3) else "flops_conv1x1"] += n * r["flops"]
            w["bytes_conv"] += b
        elif t.startswith("BatchNorm"):
            w["bytes_bn"] += b
        elif t == "ReLU":
            w["bytes_relu"] += b
        elif t.startswith("MaxPool") or t == "mean":
            w["bytes_pool"] += b
        else:                                   # add, cat, the classifier's Linear
            w["bytes_merge"] += b
    w["calls"] = float(table.totals["calls"])
    return w


def read_archs(path: str, *, with_target: bool) -> pd.DataFrame:
    """Architecture columns of an EC-NAS-like CSV (and the target when ``with_target``)."""
    if not os.path.isfile(path):
        raise ExanteError(f"missing CSV file {path}")
    try:
        header = pd.read_csv(path, nrows=0).columns
    except (OSError, UnicodeDecodeError, ValueError, pd.errors.ParserError) as exc:
        raise ExanteError(f"cannot read {path} as CSV: {exc}") from None
    need = list(ARCH_COLUMNS) + ([TARGET] if with_target else [])
    missing = [c for c in need if c not in header]
    if missing:
        raise ExanteError(f"{path} lacks column(s) {', '.join(missing)}; needed: {', '.join(need)}"
                          f" (params optional, checked when present)")
    cols = list(ARCH_COLUMNS) + [c for c in ("params",) if c in header]
    if with_target:
        cols.append(TARGET)
    return pd.read_csv(path, usecols=cols)


def featurize(df: pd.DataFrame, *, batch: int = BATCH,
              desc: str = "capturing architectures") -> tuple[pd.DataFrame, dict]:
    """Work terms per row; rows that cannot be built are skipped and counted (with reasons).
    A progress bar (``desc``) on stderr where :mod:`predictor.cli.progress` is on."""
    rows: list = []
    idx: list[int] = []
    failures: dict[str, int] = {}
    mismatch = 0
    cache: dict = {}
    t0 = time.perf_counter()
    pairs = zip(df["ops_json"], df["adjacency_json"], strict=True)
    for i, (ops, adj) in enumerate(bar(pairs, desc=desc, total=len(df), unit="arch")):
        key = (str(ops), str(adj))
        try:
            if key not in cache:
                cache[key] = arch_work(ops, adj, batch=batch)
            w = cache[key]
        except ExanteError as exc:
            failures[str(exc)] = failures.get(str(exc), 0) + 1
            continue
        if "params" in df.columns and pd.notna(df["params"].iloc[i]) \
                and int(df["params"].iloc[i]) != int(w["params"]):
            mismatch += 1
        rows.append(w)
        idx.append(i)
    dt = time.perf_counter() - t0
    info = {"n_rows": int(len(df)), "build_failures": int(sum(failures.values())),
            "failure_reasons": failures, "params_mismatch": mismatch,
            "distinct_archs": len(cache), "capture_s": round(dt, 2),
            "archs_per_s": round(len(cache) / dt, 1) if dt > 0 else None}
    return pd.DataFrame(rows, index=idx, columns=list(WORK_TERMS)), info


# ----------------------------------------------------------------------------- estimator
class EcnasEnergyModel(RegressorMixin, BaseEstimator):
    """Training-run energy (kWh) from per-step work terms: physical composition × correction.

    Parameters
    ----------
    epochs, train_samples, batch : the training run (energy = epochs·⌈samples/batch⌉·E_step)
    correction : bool
        Fit the gradient-boosting log-ratio correction on top of the linear composition.
    max_log_correction : float
        The correction is clipped to ±this (log units; 0.2 ≈ ±22 %).
    random_state : int
    """

    def __init__(self, epochs=EPOCHS, train_samples=TRAIN_SAMPLES, batch=BATCH, correction=True,
                 max_log_correction=0.2, random_state=0):
        self.epochs = epochs
        self.train_samples = train_samples
        self.batch = batch
        self.correction = correction
        self.max_log_correction = max_log_correction
        self.random_state = random_state

    def _steps(self) -> float:
        return self.epochs * math.ceil(self.train_samples / self.batch)

    def _A(self, X) -> np.ndarray:
        X = pd.DataFrame(X, columns=list(WORK_TERMS)) if not isinstance(X, pd.DataFrame) else X
        return np.column_stack([np.ones(len(X))] + [X[c].to_numpy(float) for c in WORK_TERMS])

    def _Z(self, X) -> np.ndarray:
        return np.log1p(np.maximum(self._A(X)[:, 1:], 0))

    def fit(self, X, y):
        """Fit the work-term coefficients (J per term) and the residual correction on ``X``,
        ``y`` (kWh)."""
        from scipy.optimize import nnls
        from sklearn.ensemble import GradientBoostingRegressor

        y_j = np.asarray(y, float) * 3.6e6 / self._steps()       # kWh per run -> J per step
        if len(y_j) < 5 or not np.all(np.isfinite(y_j) & (y_j > 0)):
            raise ExanteError("need >= 5 training rows with a positive finite energy")
        A = self._A(X)
        s = np.maximum(np.abs(A).max(axis=0), 1e-30)
        theta, _ = nnls((A / s) / y_j[:, None], np.ones(len(y_j)), maxiter=100 * A.shape[1])
        self.theta_ = dict(zip(("per_step_j",) + WORK_TERMS, (theta / s).tolist(), strict=True))
        self.coef_ = theta / s
        self.correction_ = None
        if self.correction:
            r = np.log(y_j / np.maximum(A @ self.coef_, 1e-30))
            self.correction_ = GradientBoostingRegressor(
                n_estimators=300, learning_rate=0.05, max_depth=3, subsample=0.8,
                min_samples_leaf=5, random_state=self.random_state).fit(self._Z(X), r)
        return self

    def predict_step_j(self, X) -> np.ndarray:
        """Energy per training step (J) including everything the target includes (PUE ...)."""
        check_is_fitted(self, "coef_")
        e = self._A(X) @ self.coef_
        if self.correction_ is not None:
            c = np.clip(self.correction_.predict(self._Z(X)), -self.max_log_correction,
                        self.max_log_correction)
            e = e * np.exp(c)
        return e

    def predict(self, X) -> np.ndarray:
        """Energy of the whole training run, kWh."""
        return self.predict_step_j(X) * self._steps() / 3.6e6


# ----------------------------------------------------------------------------- benchmark
def _metrics(y: np.ndarray, p: np.ndarray) -> dict:
    from scipy.stats import kendalltau

    ae = np.abs(p - y)
    return {"mape_pct": float(100 * np.mean(ae / y)), "mae_wh": float(1000 * ae.mean()),
            "mae_pct_of_mean": float(100 * ae.mean() / y.mean()),
            "kendall_tau": float(kendalltau(y, p).statistic)}


def run_ecnas_bench(train_csv: str, test_csv: str, *, correction: bool = True,
                    progress=None) -> dict:
    """Fit on ``train_csv``, predict ``test_csv`` (energies read after predicting), score."""
    t0 = time.perf_counter()
    train = read_archs(train_csv, with_target=True)
    test = read_archs(test_csv, with_target=False)
    y_tr_all = pd.to_numeric(train[TARGET], errors="coerce").to_numpy(float)
    if progress:
        progress(f"capturing {len(train)} training architectures")
    F_tr, info_tr = featurize(train, desc="training architectures")
    y_tr = y_tr_all[F_tr.index.to_numpy()]
    ok = np.isfinite(y_tr) & (y_tr > 0)
    bad_target = int((~ok).sum())
    F_tr, y_tr = F_tr.loc[ok], y_tr[ok]
    if len(F_tr) < 5:
        raise ExanteError(f"{train_csv}: fewer than 5 usable training rows")
    model = EcnasEnergyModel(correction=correction).fit(F_tr, y_tr)
    if progress:
        progress(f"capturing {len(test)} test architectures")
    F_te, info_te = featurize(test, desc="test architectures")
    if len(F_te) == 0:
        raise ExanteError(f"{test_csv}: no test architecture could be built "
                          f"({'; '.join(info_te['failure_reasons'])})")
    pred = model.predict(F_te)
    # only now: the test energies
    y_te_all = pd.to_numeric(read_archs(test_csv, with_target=True)[TARGET],
                             errors="coerce").to_numpy(float)
    y_te = y_te_all[F_te.index.to_numpy()]
    ok_te = np.isfinite(y_te) & (y_te > 0)
    y_te, pred_ok = y_te[ok_te], pred[ok_te]
    # params-only linear baseline, same split
    X = np.column_stack([F_tr["params"].to_numpy(float), np.ones(len(F_tr))])
    beta = np.linalg.lstsq(X, y_tr, rcond=None)[0]
    base = np.column_stack([F_te["params"].to_numpy(float)[ok_te], np.ones(ok_te.sum())]) @ beta
    m = _metrics(y_te, pred_ok)
    mb = _metrics(y_te, base)
    lin = EcnasEnergyModel(correction=False).fit(F_tr, y_tr).predict(F_te)[ok_te]
    ml = _metrics(y_te, lin)
    return {
        "benchmark": "ecnas",
        "train": os.path.abspath(train_csv), "test": os.path.abspath(test_csv),
        **m,
        "params_linear_mape_pct": mb["mape_pct"],
        "params_linear_mae_pct_of_mean": mb["mae_pct_of_mean"],
        "composition_only": {k: ml[k] for k in ("mape_pct", "mae_pct_of_mean", "kendall_tau")},
        "n_train": int(len(F_tr)), "n_test": int(len(y_te)),
        "build_failures": info_tr["build_failures"] + info_te["build_failures"],
        "failure_reasons": {**info_tr["failure_reasons"], **info_te["failure_reasons"]},
        "params_mismatch": info_tr["params_mismatch"] + info_te["params_mismatch"],
        "skipped_bad_target": bad_target + int((~ok_te).sum()),
        "archs_per_s": round((info_tr["distinct_archs"] + info_te["distinct_archs"])
                             / max(info_tr["capture_s"] + info_te["capture_s"], 1e-9), 1),
        "mean_energy_wh": float(1000 * y_te.mean()),
        "training_run": {"epochs": EPOCHS, "batch": BATCH, "train_samples": TRAIN_SAMPLES},
        "theta": model.theta_,
        "anchors": ANCHORS,
        "wall_s": round(time.perf_counter() - t0, 2),
    }


def to_json(report: dict) -> str:
    """The report as indented JSON text."""
    return json.dumps(report, indent=2, default=str)
