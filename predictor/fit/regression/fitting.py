""":func:`build_hardware_model`: everything for one hardware id -- physics constants,
out-of-fold residuals and conformal intervals, the final fit, the fallback-model bounds --
and the report that goes into the artifact manifest.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from sklearn.model_selection import GroupKFold

from predictor.fit.regression.cross_validation import cross_validate_models
from predictor.fit.regression.design import _TINY, SHAPE_NUMERIC, _cat, _num, _types, error_metrics
from predictor.fit.regression.hardware_model import HardwareModel, _fit_core
from predictor.fit.regression.layer_regressors import LayerRegressor
from predictor.fit.regression.physics_constants import (
    _median_idle,
    _mode_floor,
    energy_active,
    estimate_active_idle_power,
    estimate_host_floor,
)
from predictor.fit.regression.training_rows import (
    _config_groups,
    _key_table,
    clean_layers,
    clean_models,
    cross_session_deviations,
)
from predictor.fit.regression.uncertainty import Uncertainty, _conformal_bounds
from profiling.errors import ExanteError


def _fallback_bounds(layers: pd.DataFrame, P: float, floors: dict, *, time_base, energy_base,
                     quick, random_state, coverage) -> dict:
    """Leave-types-out log-ratio quantiles of the global and shape-only fallback models."""
    L = layers[_cat(layers, "mode", "inference") != "train_step"].reset_index(drop=True)
    types = _types(L)
    ut = np.unique(types)
    if len(ut) < 2:
        return {}
    k = min(3 if quick else 5, len(ut))
    t = _num(L, "time_s")
    e = _num(L, "energy_j")
    ea = energy_active(e, t, P)
    res = {}
    for kind, numeric in (("global", None), ("shape", SHAPE_NUMERIC)):
        pt = np.full(len(L), np.nan)
        pe = np.full(len(L), np.nan)
        for tr, te in GroupKFold(n_splits=k).split(L, groups=types):
            kw = dict(per_type=False, numeric_features=numeric, quick=quick,
                      random_state=random_state)
            rt = LayerRegressor(base=time_base, **kw).fit(L.iloc[tr], t[tr])
            re_ = LayerRegressor(base=energy_base, **kw).fit(L.iloc[tr], ea[tr])
            pt[te] = np.maximum(rt.predict(L.iloc[te]), _mode_floor(L.iloc[te], floors))
            pe[te] = re_.predict(L.iloc[te])
        res[kind] = {"time": _conformal_bounds(np.log(t / pt), coverage),
                     "energy": _conformal_bounds(np.log(e / (P * pt + pe)), coverage)}
    return res


def build_hardware_model(layers: pd.DataFrame, models: pd.DataFrame | None = None, *,
                         hardware: str = "unknown", time_base="gbr", energy_base="gbr",
                         coverage: float = 0.9, n_splits: int = 5, quick: bool = False,
                         random_state: int = 0) -> tuple[HardwareModel, dict]:
    """Fit everything for one hardware id; returns ``(HardwareModel, report)``.

    ``report`` holds the model-level CV metrics, the physics constants and the interval
    summary (it goes into the artifact manifest).
    """
    layers = clean_layers(layers)
    if layers.empty:
        raise ExanteError("no usable layer rows to fit")
    models = clean_models(models)
    keytab = _key_table(layers)
    floors = estimate_host_floor(layers)
    P, p_info = estimate_active_idle_power(layers, floors)
    idle = _median_idle(layers, P)
    unc = Uncertainty(coverage=coverage)
    report: dict[str, Any] = {
        "active_idle_power_w": P, "active_idle_method": p_info, "idle_power_w": idle,
        "host_floor_s": floors, "families": {"time": _fam_name(time_base),
                                             "energy": _fam_name(energy_base)},
        "n_layer_rows": int(len(layers)), "n_model_rows": int(0 if models is None else len(models)),
    }
    residuals = []
    cv_metrics = {}
    fams = np.unique(_cat(models, "family", "?")) if models is not None else []
    if models is not None and len(models) >= 4 and len(fams) >= 2:
        oof = cross_validate_models(layers, models, time_base=time_base, energy_base=energy_base,
                                    n_splits=3 if quick else n_splits, quick=quick,
                                    random_state=random_state)
        ok = np.isfinite(oof["pred_time_s"].to_numpy())
        oof = oof[ok]
        pt, pe = oof["pred_time_s"].to_numpy(), oof["pred_energy_j"].to_numpy()
        hb = (pe / np.maximum(pt, _TINY)) < unc.host_power_factor * P
        modes = _cat(oof, "mode", "inference")
        for tgt, y, p in (("time", _num(oof, "time_s"), pt), ("energy", _num(oof, "energy_j"), pe)):
            residuals.append(pd.DataFrame({"target": tgt, "log_ratio": np.log(y / p),
                                           "host_bound": hb, "mode": modes}))
            for m in np.unique(modes):
                for d in np.unique(_cat(oof, "dtype", "fp32")[modes == m]):
                    sel = (modes == m) & (_cat(oof, "dtype", "fp32") == d)
                    cv_metrics[f"model/{tgt}/{m}/{d}"] = error_metrics(y[sel], p[sel])
            cv_metrics[f"model/{tgt}/all"] = error_metrics(y, p)
        unc.fit(pd.concat(residuals, ignore_index=True),
                source="whole-model rows, grouped CV by family (out-of-fold)")
        report["interval_source"] = "model"
    else:
        # no usable whole-model rows: layer-level residuals (grouped by config), documented
        L = layers[_cat(layers, "mode", "inference") != "train_step"].reset_index(drop=True)
        g = _config_groups(L)
        k = min(3 if quick else n_splits, len(np.unique(g)))
        if k < 2:
            raise ExanteError("need at least 2 distinct layer configurations to fit")
        t = _num(L, "time_s")
        e = _num(L, "energy_j")
        pt = np.full(len(L), np.nan)
        pe = np.full(len(L), np.nan)
        for tr, te in GroupKFold(n_splits=k).split(L, groups=g):
            rt = LayerRegressor(base=time_base, quick=quick, random_state=random_state).fit(
                L.iloc[tr], t[tr])
            re_ = LayerRegressor(base=energy_base, quick=quick, random_state=random_state).fit(
                L.iloc[tr], energy_active(e[tr], t[tr], P))
            pt[te] = np.maximum(rt.predict(L.iloc[te]), _mode_floor(L.iloc[te], floors))
            pe[te] = P * pt[te] + re_.predict(L.iloc[te])
        hb = (pe / pt) < unc.host_power_factor * P
        modes = np.where(_cat(L, "mode") == "forward_backward", "train_step", _cat(L, "mode"))
        for tgt, y, p in (("time", t, pt), ("energy", e, pe)):
            residuals.append(pd.DataFrame({"target": tgt, "log_ratio": np.log(y / p),
                                           "host_bound": hb, "mode": modes}))
            cv_metrics[f"layer/{tgt}/all"] = error_metrics(y, p)
        unc.fit(pd.concat(residuals, ignore_index=True),
                source="layer rows only (no whole-model rows): grouped CV by layer config; "
                       "whole-model intervals assume per-layer errors do not cancel")
        report["interval_source"] = "layer"
    dev = cross_session_deviations(layers, models, P, unc.host_power_factor)
    if len(dev):
        unc.add_cross_session(dev)
    hm = _fit_core(layers, models, keytab, time_base=time_base, energy_base=energy_base,
                   quick=quick, random_state=random_state, P=P, floors=floors, idle=idle,
                   hardware=hardware)
    hm.uncertainty = unc
    hm.fallback_log_bounds = _fallback_bounds(layers, P, floors, time_base=time_base,
                                              energy_base=energy_base, quick=quick,
                                              random_state=random_state, coverage=coverage)
    report["cv"] = cv_metrics
    report["uncertainty"] = unc.summary()
    report["modes"] = list(hm.modes)
    report["optimizers"] = list(hm.optimizers)
    report["layer_types"] = sorted(hm.time_reg.type_counts_)
    report["per_type_models"] = sorted(hm.time_reg.models_)
    if hm.composer is not None:
        report["composer"] = {"/".join(k) or "*": hm.composer.coefficients(k)[0]
                              for k in hm.composer.coef_}
    else:
        report["composer"] = None
        report["composer_note"] = ("no whole-model rows: totals are the plain sums of the "
                                   "layers at active-idle power (no launch-gap or fusion terms)")
    report["fallback_log_bounds"] = {k: {t: list(v) for t, v in d.items()}
                                     for k, d in hm.fallback_log_bounds.items()}
    hm.info.update({"report": report})
    return hm, report


def _fam_name(base) -> str:
    return base if isinstance(base, str) else type(base).__name__
