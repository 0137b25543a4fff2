"""Grouped cross-validation: per-layer family comparison (:func:`compare_families`) and
out-of-fold whole-model predictions with folds grouped by model family
(:func:`cross_validate_models`).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.model_selection import GroupKFold

from predictor.fit.regression.design import _as_frame, _cat, _num, error_metrics
from predictor.fit.regression.hardware_model import _fit_core, model_level_frame
from predictor.fit.regression.layer_regressors import LayerRegressor
from predictor.fit.regression.physics_constants import (
    _median_idle,
    _mode_floor,
    energy_active,
    estimate_active_idle_power,
    estimate_host_floor,
)
from predictor.fit.regression.training_rows import (
    _config_keys,
    _key_table,
    _parse_counts,
    clean_layers,
    clean_models,
)
from profiling.errors import ExanteError


def compare_families(layer_df: pd.DataFrame, groups, families=("poly_lasso", "gbr", "rf"),
                     cv=None, *, targets=("time", "energy"), active_idle_power_w=None,
                     quick=False, random_state=0, return_predictions=False):
    """Grouped-CV comparison of per-layer regressor families.

    ``time`` is scored on ``time_s``; ``energy`` on the layer's total energy
    ``P_ai·time_measured + energy_active_predicted`` against ``energy_j`` (isolates the energy
    model).  Returns a DataFrame (family, target, n, mape, median_ape, rmspe, within_10);
    with ``return_predictions`` also a dict {(family, target): out-of-fold predictions}.
    """
    layer_df = _as_frame(layer_df).reset_index(drop=True)
    groups = np.asarray(groups)
    cv = cv if cv is not None else GroupKFold(n_splits=min(5, len(np.unique(groups))))
    floors = estimate_host_floor(layer_df)
    P = active_idle_power_w if active_idle_power_w is not None else \
        estimate_active_idle_power(layer_df, floors)[0]
    t = _num(layer_df, "time_s", np.nan)
    e = _num(layer_df, "energy_j", np.nan)
    ys = {"time": t, "energy": energy_active(e, t, P)}
    rows, preds = [], {}
    splits = list(cv.split(layer_df, groups=groups))
    for fam in families:
        for tgt in targets:
            oof = np.full(len(layer_df), np.nan)
            for tr, te in splits:
                reg = LayerRegressor(base=fam, quick=quick, random_state=random_state)
                reg.fit(layer_df.iloc[tr], ys[tgt][tr])
                oof[te] = reg.predict(layer_df.iloc[te])
            if tgt == "time":
                oof = np.maximum(oof, _mode_floor(layer_df, floors))
                truth, pred = t, oof
            else:
                truth, pred = e, P * t + oof
            name = fam if isinstance(fam, str) else type(fam).__name__
            rows.append({"family": name, "target": tgt, **error_metrics(truth, pred)})
            preds[(name, tgt)] = pred
    table = pd.DataFrame(rows)
    return (table, preds) if return_predictions else table


def cross_validate_models(layers: pd.DataFrame, models: pd.DataFrame, *, time_base="gbr",
                          energy_base="gbr", n_splits=5, groups=None, quick=False,
                          random_state=0, splits=None) -> pd.DataFrame:
    """Out-of-fold whole-model predictions, folds grouped by model family.

    Layer rows whose key appears only in held-out models are dropped from each fold's
    training data, so held-out families are genuinely unseen.  Returns the model rows with
    ``pred_time_s``, ``pred_energy_j``, ``fold``.
    """
    layers = clean_layers(layers)
    models = clean_models(models)
    if models is None:
        raise ExanteError("no usable whole-model rows for cross-validation")
    keytab = _key_table(layers)
    floors = estimate_host_floor(layers)
    P, _ = estimate_active_idle_power(layers, floors)
    idle = _median_idle(layers, P)
    g = np.asarray(groups) if groups is not None else _cat(models, "family", "?")
    if splits is None:
        k = min(n_splits, len(np.unique(g)))
        if k < 2:
            raise ExanteError("grouped CV needs at least 2 model families (or groups)")
        splits = list(GroupKFold(n_splits=k).split(models, groups=g))
    counts = [set(_parse_counts(v)) for v in models["layer_counts"]]
    out = models.copy()
    out["pred_time_s"] = np.nan
    out["pred_energy_j"] = np.nan
    out["fold"] = -1
    lkeys = _config_keys(layers)
    for f, (tr, te) in enumerate(splits):
        train_keys = set().union(*[counts[i] for i in tr]) if len(tr) else set()
        held_keys = set().union(*[counts[i] for i in te]) - train_keys
        Lf = layers[~np.isin(lkeys, list(held_keys))]
        hm = _fit_core(Lf, models.iloc[tr], keytab, time_base=time_base, energy_base=energy_base,
                       quick=quick, random_state=random_state, P=P, floors=floors, idle=idle,
                       fit_shape=False)
        Mte = models.iloc[te]
        ok_mode = np.array([m in hm.modes for m in _cat(Mte, "mode", "inference")])
        if not ok_mode.any():
            continue
        Mte = Mte[ok_mode]
        sums = model_level_frame(hm, Mte, keytab)
        pred = hm.compose(sums)
        bad = sums["missing_keys"].to_numpy() > 0
        pred[bad] = np.nan
        out.loc[Mte.index, "pred_time_s"] = pred[:, 0]
        out.loc[Mte.index, "pred_energy_j"] = pred[:, 1]
        out.loc[Mte.index, "fold"] = f
    out.attrs["active_idle_power_w"] = P
    return out
