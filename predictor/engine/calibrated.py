"""The shipped form of a physics model: fitted parameters + intervals + the fitted domain.

:class:`CalibratedHardware` is what ``predictor/artifacts/<hw>.joblib`` holds when the
hardware was fitted from whole-model rows (:func:`fit_calibrated`).  It predicts a
:class:`~predictor.engine.workload.Workload`'s time and energy, splits them over its layers, and gives a
90 % (nominal) interval from leave-one-family-out residuals (split-conformal), widened by the
cross-session re-measurement spread and, outside the fitted domain (a dtype never measured,
layer families never seen, a batch beyond the fitted range), by a stated factor with a warning.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from predictor.engine.lowering import CLASSES, HOST_FEATURES, family_of, lower
from predictor.engine.physics import Datasheet, PhysicsModel, entry_times, stack
from predictor.fit.datasets import WholeModelData

__all__ = ["CalibratedHardware", "cross_validate", "fit_calibrated", "conformal_halfwidth",
           "GPU_BOUND_POWER_W", "regime_of"]

#: the H100 reference set's measured-power split (for slicing *H100 rows* only; a prediction's
#: regime is decided by the model's own GPU vs host time on its GPU, :func:`regime_of`)
GPU_BOUND_POWER_W = 250.0
_OOD_BATCH_WIDEN = 0.35              # extra log-half-width per doubling beyond the fitted batches
_OOD_DTYPE_WIDEN = 1.5               # half-width factor for a dtype never measured
_OOD_FAMILY_WIDEN = 2.0              # half-width factor x share of unseen layer families


def conformal_halfwidth(abs_resid: np.ndarray, coverage: float) -> float:
    """Split-conformal quantile of |log residuals|: the ceil((n+1)c)/n empirical quantile."""
    r = np.sort(np.asarray(abs_resid, float))
    n = len(r)
    if n == 0:
        return float("nan")
    k = min(n, int(math.ceil((n + 1) * coverage)))
    return float(r[k - 1])


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
        test = groups == g
        m = PhysicsModel(datasheet, **model_params).fit(
            [lw for lw, t in zip(lowered, test) if not t] + xl,
            np.concatenate([y[~test], xy]),
            sample_weight=np.concatenate([np.ones((~test).sum()), xw]))
        out[test] = m.predict([lw for lw, t in zip(lowered, test) if t])
    return out


def regime_of(time_host_s, time_gpu_s):
    """"gpu" where the GPU's own work is at least the host's (per row), else "host" -- on any
    GPU, from the model's two times (never a wattage of one GPU)."""
    g = np.asarray(time_gpu_s, float) >= np.asarray(time_host_s, float)
    return np.where(g, "gpu", "host")


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


@dataclass
class CalibratedHardware:
    """A fitted :class:`PhysicsModel` with its intervals and fitted domain (see module doc)."""

    hardware: str
    model: PhysicsModel
    coverage: float
    halfwidth: dict                      # {(target, "gpu"|"host"): log half-width}
    domain: dict                         # modes, dtypes, optimizers, batch range, families
    info: dict = field(default_factory=dict)

    @property
    def datasheet(self) -> Datasheet:
        return self.model.datasheet

    @property
    def modes(self) -> tuple:
        return tuple(self.domain.get("modes", ()))

    @property
    def optimizers(self) -> tuple:
        return tuple(self.domain.get("optimizers", ()))

    # ------------------------------------------------------------------ prediction
    def predict_workload(self, w) -> dict:
        """Time, energy, their intervals, the per-layer split and out-of-domain notes."""
        lw = lower(w)
        t, e, parts = self.model.predict_parts([lw])
        T, E = float(t[0]), float(e[0])
        power = E / max(T, 1e-15)
        regime = str(regime_of(parts["time_host_s"][0], parts["time_gpu_s"][0]))
        notes, widen = self._domain_check(w, lw)
        out = {"time_s": T, "energy_j": E, "power_w": power, "regime": regime,
               "time_host_s": float(parts["time_host_s"][0]),
               "time_gpu_s": float(parts["time_gpu_s"][0]), "notes": notes,
               "unknown_types": list(lw.unknown)}
        for target, v in (("time", T), ("energy", E)):
            h = self.halfwidth.get((target, regime), self.halfwidth[(target, "all")]) * widen
            out[f"{target}_low"], out[f"{target}_high"] = v * math.exp(-h), v * math.exp(h)
        out["layers"] = self._split(w, lw, T, E)
        return out

    def _domain_check(self, w, lw) -> tuple[list, float]:
        notes, widen = [], 1.0
        d = self.domain
        if w.dtype not in d.get("dtypes", ()):
            widen *= _OOD_DTYPE_WIDEN
            notes.append(f"dtype {w.dtype} was never measured on {self.hardware} (fitted: "
                         f"{', '.join(d.get('dtypes', ()))}); predicted from datasheet peaks, "
                         "interval widened")
        lo, hi = d.get("batch_range", (w.batch, w.batch))
        if w.batch > hi or w.batch < lo:
            edge = hi if w.batch > hi else lo
            dbl = abs(math.log2(w.batch / edge))
            widen *= 1.0 + _OOD_BATCH_WIDEN * dbl
            notes.append(f"batch {w.batch} is outside the measured batches {lo}–{hi}; "
                         "extrapolated, interval widened")
        seen = set(d.get("families", ()))
        fams = [(family_of(x.config.type) or "unknown", x) for x in w.layers]
        unseen = sorted({f for f, _ in fams if f not in seen})
        if unseen:
            share = self._share([x for f, x in fams if f in unseen], lw, w)
            widen *= 1.0 + _OOD_FAMILY_WIDEN * share
            notes.append(f"layer families never measured on {self.hardware}: "
                         f"{', '.join(unseen)} ({100 * share:.0f} % of the predicted GPU+host "
                         "work); interval widened")
        if lw.unknown:
            notes.append("no lowering rule for layer types " + ", ".join(lw.unknown)
                         + ": each counted as one memory-bound kernel over its tensors")
        return notes, widen

    def _layer_work(self, lw) -> np.ndarray:
        """Per-layer host + GPU seconds (unscaled), from the fitted parameters."""
        p = self.model.params()
        n_layers = lw.layer_host.shape[0]
        h = np.array([p["h_" + k + "_s"] for k in HOST_FEATURES])
        host = lw.layer_host @ h
        t_work, t_over, _ = entry_times(p, stack([lw]), self.datasheet)   # x calls already
        mask = lw.layer >= 0
        gpu = np.bincount(lw.layer[mask], (t_work + t_over)[mask], minlength=n_layers)
        return host + gpu

    def _share(self, layers, lw, w) -> float:
        work = self._layer_work(lw)
        idx = {id(x): i for i, x in enumerate(w.layers)}
        tot = float(work.sum()) or 1.0
        return float(sum(work[idx[id(x)]] for x in layers)) / tot

    def _split(self, w, lw, T, E) -> list:
        work = self._layer_work(lw)
        tot = float(work.sum()) or 1.0
        rows = []
        for i, x in enumerate(w.layers):
            share = work[i] / tot
            rows.append({"name": x.names[0] if x.names else x.config.type,
                         "names": list(x.names), "type": x.config.type, "count": x.count,
                         "dtype": x.config.dtype, "family": family_of(x.config.type) or "unknown",
                         "time_s_total": T * share, "energy_j_total": E * share,
                         "time_s": T * share / max(x.count, 1),
                         "energy_j": E * share / max(x.count, 1)})
        return rows


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
    return report["residuals"]
