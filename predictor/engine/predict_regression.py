"""The per-layer regression path of :func:`predictor.engine.predict.predict` (artifacts fitted by
:mod:`predictor.fit.regression`): shape features per distinct layer config, per-layer
predictions (cached per artifact, config, dtype, mode and optimizer), the model-level
composition and the conformal intervals.  Also the feature cache the physics path uses for
its per-layer rows.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import pandas as pd

from predictor.engine.prediction import Prediction
from profiling.errors import ExanteError, UnsupportedLayerError
from profiling.features.api import DTYPE_BYTES, UnsupportedLayerWarning, layer_features

__all__ = ["predict_regression", "clear_layer_caches", "FEATURE_KEYS"]

FEATURE_KEYS = ("macs", "flops", "params", "bytes_read", "bytes_written", "input_numel",
                "output_numel", "batch", "dtype_bytes", "arith_intensity")
_CACHE_MAX = 200_000
_FEATURE_CACHE: dict = {}
_LAYER_CACHE: dict = {}


def clear_layer_caches() -> None:
    """Drop the per-layer feature and prediction caches."""
    _FEATURE_CACHE.clear()
    _LAYER_CACHE.clear()


def _prod(s) -> int:
    return int(math.prod(int(d) for d in s))


def _features(layer) -> dict | None:
    cfg = layer.config
    if not layer.supported:
        return None
    hit = _FEATURE_CACHE.get(cfg)
    if hit is None:
        try:
            hit = layer_features(cfg)
        except Exception:
            hit = False
        if len(_FEATURE_CACHE) > _CACHE_MAX:
            _FEATURE_CACHE.clear()
        _FEATURE_CACHE[cfg] = hit
    return hit or None


def _shape_features(layer) -> dict:
    cfg = layer.config
    params = int(layer.module_params)
    db = DTYPE_BYTES.get(cfg.dtype, 4)
    f = {"params": params, "input_numel": sum(_prod(s) for s in cfg.input_shapes),
         "output_numel": sum(_prod(s) for s in cfg.output_shapes), "batch": cfg.batch,
         "dtype_bytes": db}
    if f["input_numel"] == 0 and f["output_numel"] == 0 and params == 0:
        raise UnsupportedLayerError(
            f"layer {layer.names[0]!r} of type {cfg.type!r} has no feature function and no "
            "tensor shapes or parameters to predict it from")
    f["shape_bytes"] = (f["input_numel"] + f["output_numel"] + params) * db
    return f


# ----------------------------------------------------------------------------- predict
def predict_regression(art, hardware: str, cap, batch: int, mode: str, dtype: str,
                       optimizer, notes: list, cache: bool) -> Prediction:
    """Time and energy of the captured layers ``cap`` through a regression artifact."""
    hm = art.model
    if mode not in hm.modes:
        raise ExanteError(f"the {hardware} artifact has no {mode} data (fitted modes: "
                          f"{', '.join(hm.modes)}); measure it with `exante sweep` and refit")
    if mode == "train_step" and optimizer not in hm.optimizers:
        raise ExanteError(f"the {hardware} artifact has no train_step data for optimizer "
                          f"{optimizer!r} (fitted: {', '.join(hm.optimizers) or 'none'})")
    dtypes = hm.info.get("dtypes")
    if dtypes and dtype not in dtypes:
        raise ExanteError(f"the {hardware} artifact has no {dtype} data (fitted dtypes: "
                          f"{', '.join(dtypes)})")

    # ---- features and per-layer predictions (cached per config)
    sha = art.manifest.get("sha256", "")
    n = len(cap.layers)
    feats: list[dict] = []
    supported = np.zeros(n, bool)
    unsupported = []
    for i, layer in enumerate(cap.layers):
        f = _features(layer)
        if f is None:
            f = _shape_features(layer)
            unsupported.append({"type": layer.config.type, "names": list(layer.names),
                                "count": layer.count})
        else:
            supported[i] = True
        feats.append(f)
    t = np.zeros(n)
    ea = np.zeros(n)
    t_opt = np.zeros(n)
    e_opt = np.zeros(n)
    src = np.empty(n, dtype=object)
    todo = []
    keys = []
    for i, layer in enumerate(cap.layers):
        k = (sha, layer.config, dtype, mode, optimizer, bool(supported[i]))
        keys.append(k)
        hit = _LAYER_CACHE.get(k) if cache else None
        if hit is None:
            todo.append(i)
        else:
            t[i], ea[i], t_opt[i], e_opt[i], src[i] = hit
    if todo:
        rows = []
        for i in todo:
            r = dict(feats[i])
            r["layer_type"] = cap.layers[i].config.type
            r["dtype"] = dtype
            rows.append(r)
        frame = pd.DataFrame(rows)
        lp = hm.layer_predictions(frame, mode, optimizer, supported=supported[todo])
        if len(_LAYER_CACHE) > _CACHE_MAX:
            _LAYER_CACHE.clear()
        for j, i in enumerate(todo):
            vals = (float(lp.time_s[j]), float(lp.energy_active_j[j]), float(lp.time_opt_s[j]),
                    float(lp.energy_opt_j[j]), str(lp.source[j]))
            t[i], ea[i], t_opt[i], e_opt[i], src[i] = vals
            _LAYER_CACHE[keys[i]] = vals

    counts = np.array([layer.count for layer in cap.layers], float)
    P = hm.active_idle_power_w
    sums = pd.DataFrame([{
        "mode": mode, "dtype": dtype,
        "sum_time_s": float(counts @ t), "sum_time_opt_s": float(counts @ t_opt),
        "n_layer_calls": float(counts.sum()),
        "sum_energy_active_j": float(counts @ ea), "sum_energy_opt_j": float(counts @ e_opt),
    }])
    T, E = (float(v) for v in hm.compose(sums)[0])
    T = max(T, 1e-12)
    E = max(E, 1e-12)

    # ---- intervals (widened by the share predicted by fallback models)
    lt = t + t_opt
    le = P * lt + ea + e_opt
    tot_t = float(counts @ lt) or 1.0
    tot_e = float(counts @ le) or 1.0
    share_t = {k: float(counts[src == k] @ lt[src == k]) / tot_t for k in ("global", "shape")}
    share_e = {k: float(counts[src == k] @ le[src == k]) / tot_e for k in ("global", "shape")}
    hb = bool(hm.host_bound(T, E))
    t_lo, t_hi = hm.interval("time", T, hb, mode, share_t)
    e_lo, e_hi = hm.interval("energy", E, hb, mode, share_e)

    # ---- warnings
    if art.manifest.get("measured") is False:
        notes.append("artifact NOT fitted on measurements ("
                     f"{art.manifest.get('not_measured_reason') or 'synthetic or estimated data'}): "
                     "these numbers say nothing about real hardware")
    if unsupported:
        msg = ("no feature function for " + ", ".join(
            f"{u['type']} x{u['count']} ({', '.join(u['names'][:3])}"
            f"{', ...' if len(u['names']) > 3 else ''})" for u in unsupported)
            + f"; predicted from shape-only features ({100 * share_e['shape']:.1f} % of the "
              "energy), interval widened")
        notes.append(msg)
        warnings.warn(msg, UnsupportedLayerWarning, stacklevel=4)
    unseen = sorted({cap.layers[i].config.type for i in range(n) if src[i] == "global"})
    if unseen:
        msg = (f"layer types with little or no training data: {', '.join(unseen)}; predicted "
               f"by the global model ({100 * share_e['global']:.1f} % of the energy), "
               "interval widened")
        notes.append(msg)
        warnings.warn(msg, UserWarning, stacklevel=4)
    br = hm.info.get("batch_range")
    if br and not (br[0] <= batch <= br[1]):
        notes.append(f"batch {batch} is outside the fitted range {br[0]}–{br[1]}; extrapolating")
    if hb:
        notes.append("host-bound (launch-limited) workload: its energy varies between host "
                     "machines; CUDA graphs or larger batches usually make it cheaper and stabler")
    comp_note = hm.info.get("report", {}).get("composer_note")
    if comp_note:
        notes.append(comp_note)

    # ---- per-layer rows
    layers_out = []
    for i, layer in enumerate(cap.layers):
        f = feats[i]
        layers_out.append({
            "name": layer.names[0], "names": list(layer.names), "type": layer.config.type,
            "count": int(layer.count), "dtype": layer.config.dtype,
            "time_s": float(lt[i]), "energy_j": float(le[i]),
            "time_s_total": float(counts[i] * lt[i]), "energy_j_total": float(counts[i] * le[i]),
            "source": str(src[i]), "supported": bool(supported[i]),
            "features": {k: f[k] for k in FEATURE_KEYS if k in f},
        })
    unc = hm.uncertainty
    return Prediction(
        energy_j=E, energy_j_low=e_lo, energy_j_high=e_hi,
        time_s=T, time_s_low=t_lo, time_s_high=t_hi,
        energy_dynamic_j=E - hm.idle_power_w * T, power_w=E / T,
        coverage=float(unc.coverage), hardware=hardware, mode=mode, dtype=dtype, batch=batch,
        optimizer=optimizer, layers=layers_out, unsupported=unsupported, warnings=notes,
        artifact={"id": art.manifest.get("id"), "sha256": sha,
                  "created": art.manifest.get("created"),
                  "training_data_digest": art.manifest.get("training_data_digest")},
        terms={"sum_layer_time_s": tot_t, "sum_layer_energy_j": tot_e,
               "n_layer_calls": int(counts.sum()), "host_bound": hb,
               "active_idle_power_w": float(P), "idle_power_w": float(hm.idle_power_w),
               "fallback_share_energy": share_e},
    )
