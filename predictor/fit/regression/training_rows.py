"""The rows the models are fitted on: cleaning of layer / whole-model rows, layer-config keys
and groups, train_step − forward_backward pairs of the optimizer-step model, and pairs of
the same configuration measured in different sessions.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd

from predictor.fit.regression.design import _as_frame, _cat, _num, _types
from predictor.fit.regression.physics_constants import energy_active
from profiling.errors import ExanteError


def _parse_counts(v) -> dict:
    if isinstance(v, dict):
        return v
    if v is None or (isinstance(v, float) and math.isnan(v)) or v == "":
        return {}
    return json.loads(v)


def _config_keys(layers: pd.DataFrame) -> np.ndarray:
    """The layer-config key of each row (``config_key``; ``key`` for older tables)."""
    if "config_key" in layers.columns:
        ck = _cat(layers, "config_key")
        if "key" in layers.columns:
            k = _cat(layers, "key")
            ck = np.where(ck == "", [x.split("|")[0] for x in k], ck)
        return ck
    if "key" in layers.columns:
        return np.array([x.split("|")[0] for x in _cat(layers, "key")], dtype=object)
    raise ExanteError("layer rows need a 'config_key' (or 'key') column")


def _key_table(layers: pd.DataFrame) -> pd.DataFrame:
    """One feature row per layer config key (first occurrence), indexed by config key."""
    L = layers.assign(_ck=_config_keys(layers))
    return L.drop_duplicates("_ck").set_index("_ck", drop=False)


def clean_layers(layers: pd.DataFrame) -> pd.DataFrame:
    """Layer rows usable for fitting: no drift-reference rows, finite positive time/energy."""
    L = _as_frame(layers)
    t = _num(L, "time_s", np.nan)
    e = _num(L, "energy_j", np.nan)
    ok = (_types(L) != "reference") & np.isfinite(t) & (t > 0) & np.isfinite(e) & (e > 0)
    return L.loc[ok].reset_index(drop=True)


def clean_models(models: pd.DataFrame | None) -> pd.DataFrame | None:
    """Eager whole-model rows with finite positive measurements and no unsupported layers."""
    if models is None or len(models) == 0:
        return None
    M = _as_frame(models)
    t = _num(M, "time_s", np.nan)
    e = _num(M, "energy_j", np.nan)
    ok = (np.isfinite(t) & (t > 0) & np.isfinite(e) & (e > 0)
          & (_cat(M, "exec", "eager") == "eager") & (_num(M, "n_unsupported", 0) == 0))
    if "layer_counts" not in M.columns:
        return None
    M = M.loc[ok].reset_index(drop=True)
    return M if len(M) else None


def _config_groups(layers: pd.DataFrame) -> np.ndarray:
    """Group id per layer row: layer type + hyper-parameters (shapes and batch vary inside)."""
    hp = _cat(layers, "hparams", "")
    return np.array([f"{t}|{h}" for t, h in zip(_types(layers), hp)], dtype=object)


def _pairs_for_optimizer(layers: pd.DataFrame, P: float) -> pd.DataFrame:
    """train_step − forward_backward differences of the same config (median over repeats)."""
    if "mode" not in layers.columns:
        return pd.DataFrame()
    L = layers.assign(_ea=energy_active(_num(layers, "energy_j"), _num(layers, "time_s"), P),
                      _eraw=_num(layers, "energy_j") - P * _num(layers, "time_s"),
                      _exec=_cat(layers, "exec", "eager"),
                      _dtype=_cat(layers, "dtype", "fp32"))
    L["_ck"] = _config_keys(L)
    L = L[L["_exec"] == "eager"]          # predictions are eager: graph replays have no host cost
    keys = ["_ck", "_exec", "_dtype"]
    fb = (L[L["mode"] == "forward_backward"].groupby(keys)
          .agg(t_fb=("time_s", "median"), e_fb=("_eraw", "median"), params=("params", "first")))
    ts = L[L["mode"] == "train_step"].copy()
    if ts.empty or fb.empty:
        return pd.DataFrame()
    ts["optimizer"] = _cat(ts, "optimizer", "sgd")
    ts = (ts.groupby(keys + ["optimizer"]).agg(t_ts=("time_s", "median"), e_ts=("_eraw", "median"),
                                               ea_ts=("_ea", "median")).reset_index())
    j = ts.join(fb, on=keys, how="inner")
    j["dt"] = j["t_ts"] - j["t_fb"]
    j["de"] = j["e_ts"] - j["e_fb"]
    return j


def _session_ids(df: pd.DataFrame) -> np.ndarray:
    for c in ("session_id", "session"):
        if c in df.columns:
            return _cat(df, c)
    sw = _cat(df, "sweep_id")
    day = np.array([s[:10] for s in _cat(df, "date")], dtype=object)
    host = _cat(df, "hostname") if "hostname" in df.columns else np.full(len(df), "", object)
    return np.array([f"{a}|{b}|{c}" for a, b, c in zip(sw, day, host)], dtype=object)


def cross_session_deviations(layers: pd.DataFrame, models: pd.DataFrame | None, P: float,
                             host_power_factor: float) -> pd.DataFrame:
    """Pairs of the same configuration measured in different sessions (energy log-ratios).

    Model rows are used when they repeat across sessions, else layer rows.  Host-bound is
    decided from the measured power (< host_power_factor · P_ai).
    """
    def pairs(df, keys):
        if df is None or df.empty:
            return []
        sess = _session_ids(df)
        if len(np.unique(sess)) < 2:
            return []
        d = df.assign(_sess=sess, _e=_num(df, "energy_j"), _t=_num(df, "time_s"))
        d = d[(d["_e"] > 0) & (d["_t"] > 0)]
        keys = [k for k in keys if k in d.columns]
        out = []
        agg = d.groupby(keys + ["_sess"], dropna=False).agg(_e=("_e", "median"), _t=("_t", "median")).reset_index()
        for _, g in agg.groupby(keys, dropna=False):
            if len(g) < 2:
                continue
            e = g["_e"].to_numpy()
            pw = e / g["_t"].to_numpy()
            hb = bool(np.median(pw) < host_power_factor * P)
            for a in range(len(e)):
                for b in range(a + 1, len(e)):
                    out.append({"host_bound": hb, "log_ratio_pair": float(np.log(e[a] / e[b]))})
        return out

    got = pairs(models, ["model_ref", "family", "batch", "mode", "dtype", "optimizer", "exec",
                         "input_shape"])
    if not got:
        got = pairs(layers, ["key", "config_key", "mode", "dtype", "exec", "optimizer", "batch"])
    return pd.DataFrame(got, columns=["host_bound", "log_ratio_pair"])
