"""Fit a :class:`~predictor.engine.calibrated.CalibratedHardware` (the physics model of eager
PyTorch with its intervals) on whole-model rows: :func:`fit_calibrated`, its
leave-one-family-out :func:`cross_validate`, and the metrics of the fit report.

Targets are time (s) and total board energy (J) per call; residuals and interval
half-widths are in log units.
"""

from __future__ import annotations

import logging
import math

import numpy as np
import pandas as pd

from predictor.engine.calibrated import CalibratedHardware, conformal_halfwidth, regime_of
from predictor.engine.lowering import CLASSES, family_of, lower
from predictor.engine.physics import Datasheet, PhysicsModel
from predictor.fit.datasets import WholeModelData

__all__ = ["cross_validate", "fit_calibrated", "metrics", "residual_frame", "GPU_BOUND_POWER_W"]

#: the H100 reference set's measured-power split (for slicing *H100 rows* only; a prediction's
#: regime is decided by the model's own GPU vs host time on its GPU,
#: :func:`predictor.engine.calibrated.regime_of`)
GPU_BOUND_POWER_W = 250.0

log = logging.getLogger(__name__)


def _extra_parts(extra):
    """(lowered, y, weights) of extra training rows (per-layer rows), possibly empty."""
    if extra is None or not len(extra[0]):
        return [], np.zeros((0, 2)), np.zeros(0)
    ws, y, wt = extra
    return [lower(w) for w in ws], np.asarray(y, float).reshape(-1, 2), \
        np.broadcast_to(np.asarray(wt, float), (len(ws),)).copy()


def cross_validate(data: WholeModelData, datasheet: Datasheet, groups=None, extra=None,
                   **model_params) -> np.ndarray:
    """Out-of-group predictions (n, 2) of time and energy: leave one group (default: one
    model family -- all its batches, dtypes and modes) out, fit on the rest (plus ``extra``
    = (workloads, y, weights), e.g. per-layer rows, in every fold)."""
    groups = np.asarray(data.frame["family"] if groups is None else groups)
    lowered = [lower(w) for w in data.workloads]
    xl, xy, xw = _extra_parts(extra)
    y = data.y
    out = np.zeros_like(y)
    for g in np.unique(groups):
        log.debug("cross-validation: leaving out %s", g)
        test = groups == g
        m = PhysicsModel(datasheet, **model_params).fit(
            [lw for lw, t in zip(lowered, test, strict=True) if not t] + xl,
            np.concatenate([y[~test], xy]),
            sample_weight=np.concatenate([np.ones((~test).sum()), xw]))
        out[test] = m.predict([lw for lw, t in zip(lowered, test, strict=True) if t])
    return out


def _session_floor(data: WholeModelData, gpu_bound=None) -> dict:
    """|log(one session / mean of the sessions)| for time and energy, per row.
    ``gpu_bound``: per ``data.frame`` row (default: the H100 reference set's power split)."""
    f = data.frame[["key", "time_s", "energy_j", "power_w"]].copy()
    f["_gpu"] = (f["power_w"] > GPU_BOUND_POWER_W).to_numpy() if gpu_bound is None \
        else np.asarray(gpu_bound, bool)
    s = data.sessions.merge(f, on="key", suffixes=("", "_mean"))
    return {"time": np.abs(np.log(s["time_s"] / s["time_s_mean"])).to_numpy(),
            "energy": np.abs(np.log(s["energy_j"] / s["energy_j_mean"])).to_numpy(),
            "gpu_bound": s["_gpu"].to_numpy(bool)}


def fit_calibrated(hardware: str, data: WholeModelData, datasheet: Datasheet, *,
                   coverage: float = 0.9, cv: bool = True, extra=None, **model_params
                   ) -> tuple[CalibratedHardware, dict]:
    """Fit on all rows (+ ``extra`` = (workloads, y, weights): per-layer rows, always in the
    training set); intervals from leave-one-family-out residuals of the whole-model rows
    (``cv=False``: in-sample residuals, labelled so -- for tests on tiny data only).  Returns
    the model and a report (CV metrics, residual table)."""
    y = data.y
    lowered = [lower(w) for w in data.workloads]
    xl, xy, xw = _extra_parts(extra)
    model = PhysicsModel(datasheet, **model_params).fit(
        lowered + xl, np.concatenate([y, xy]),
        sample_weight=np.concatenate([np.ones(len(y)), xw]))
    oof = cross_validate(data, datasheet, extra=extra, **model_params) if cv \
        else model.predict(lowered)
    r = np.log(oof / y)
    _, _, parts = model.predict_parts(lowered)
    gpu = regime_of(parts["time_host_s"], parts["time_gpu_s"]) == "gpu"
    floor = _session_floor(data, gpu)
    half = {}
    for j, target in enumerate(("time", "energy")):
        for regime, mask in (("all", np.ones(len(y), bool)), ("gpu", gpu), ("host", ~gpu)):
            fl_mask = np.ones(len(floor["gpu_bound"]), bool) if regime == "all" else (
                floor["gpu_bound"] == (regime == "gpu"))
            if mask.sum() < 10:
                continue
            q_model = conformal_halfwidth(np.abs(r[mask, j]), coverage)
            q_sess = conformal_halfwidth(floor[target][fl_mask], coverage) if fl_mask.any() else 0
            half[(target, regime)] = float(math.hypot(q_model, q_sess))
    fams = sorted({family_of(x.config.type) or "unknown"
                   for w in list(data.workloads) + list(extra[0] if extra else ())
                   for x in w.layers})
    f = data.frame
    domain = {"modes": sorted(set(f["mode"])), "dtypes": sorted(set(f["dtype"])),
              "optimizers": sorted(set(f["optimizer"].dropna()) - {""}),
              "batch_range": (int(f["batch"].min()), int(f["batch"].max())),
              "families": fams, "n_workloads": int(len(f)),
              "kinds": sorted(set(f["kind"])), "n_layer_rows": int(len(xl))}
    report = {"cv": "leave-one-family-out" if cv else "in-sample (no CV)",
              "residuals": f[["key", "family", "kind", "mode", "dtype", "batch"]].assign(
                  time_pred_s=oof[:, 0], energy_pred_j=oof[:, 1], time_s=y[:, 0],
                  energy_j=y[:, 1], power_w=f["power_w"].to_numpy()),
              "halfwidth": {f"{k[0]}/{k[1]}": v for k, v in half.items()},
              "params": model.params()}
    ch = CalibratedHardware(hardware, model, coverage, half, domain,
                            info={"cv": report["cv"], "classes": CLASSES,
                                  "datasheet": datasheet.__dict__})
    return ch, report


def metrics(y_true: np.ndarray, y_pred: np.ndarray) -> dict:
    """MAPE, median APE, share within +-10 % (percent)."""
    ape = np.abs(np.asarray(y_pred, float) / np.asarray(y_true, float) - 1.0) * 100
    return {"mape_pct": float(np.mean(ape)), "median_ape_pct": float(np.median(ape)),
            "within_10_pct": float(np.mean(ape <= 10) * 100), "n": int(len(ape))}


def residual_frame(report: dict) -> pd.DataFrame:
    """The residual table of a :func:`fit_calibrated` report: per workload, predicted and measured
    time (s) and energy (J) -- out-of-fold (leave-one-family-out) unless fitted with ``cv=False`` --
    and power (W)."""
    return report["residuals"]
