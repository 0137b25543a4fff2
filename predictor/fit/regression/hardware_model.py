""":class:`HardwareModel` (the fitted predictor for one hardware id, what an artifact holds),
the per-model sums of its layer predictions (:func:`model_level_frame`), and ``_fit_core``,
which fits its layer, optimizer-step and composer parts (no intervals).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from predictor.fit.regression.composer import ModelComposer
from predictor.fit.regression.design import _TINY, SHAPE_NUMERIC, _cat, _num
from predictor.fit.regression.layer_regressors import LayerRegressor, OptimizerStepRegressor
from predictor.fit.regression.physics_constants import energy_active
from predictor.fit.regression.training_rows import _pairs_for_optimizer, _parse_counts
from predictor.fit.regression.uncertainty import Uncertainty
from profiling.errors import ExanteError


@dataclass
class LayerPredictions:
    time_s: np.ndarray            # per call
    energy_active_j: np.ndarray   # per call, above active idle
    time_opt_s: np.ndarray        # optimizer-step part (train_step), per call
    energy_opt_j: np.ndarray
    source: np.ndarray            # "type" | "global" | "shape"


@dataclass
class HardwareModel:
    """The fitted predictor for one hardware id (what an artifact holds)."""

    hardware: str
    time_reg: LayerRegressor
    energy_reg: LayerRegressor
    shape_time_reg: LayerRegressor | None
    shape_energy_reg: LayerRegressor | None
    opt_time: OptimizerStepRegressor | None
    opt_energy: OptimizerStepRegressor | None
    composer: ModelComposer | None
    uncertainty: Uncertainty
    active_idle_power_w: float
    idle_power_w: float
    host_floor_s: dict
    fallback_log_bounds: dict = field(default_factory=dict)   # {"global"|"shape": {target: (lo, hi)}}
    info: dict = field(default_factory=dict)

    # -- what can be predicted
    @property
    def modes(self) -> tuple:
        return tuple(self.info.get("modes", ("inference",)))

    @property
    def optimizers(self) -> tuple:
        return tuple(self.opt_time.optimizers_) if self.opt_time is not None else ()

    def layer_predictions(self, frame: pd.DataFrame, mode: str, optimizer: str | None = None,
                          supported: np.ndarray | None = None) -> LayerPredictions:
        """Per-call time and energy above active idle of each row of ``frame``.

        ``mode``: "inference" or "train_step" (= forward_backward + optimizer step).
        ``supported``: False for rows without a feature function (shape-only fallback).
        """
        n = len(frame)
        X = frame.copy()
        X["exec"] = "eager"
        base_mode = "forward_backward" if mode == "train_step" else mode
        X["mode"] = base_mode
        X["optimizer"] = ""
        sup = np.ones(n, bool) if supported is None else np.asarray(supported, bool)
        t = np.zeros(n)
        e = np.zeros(n)
        src = np.empty(n, dtype=object)
        if sup.any():
            Xs = X.loc[sup]
            t[sup] = self.time_reg.predict(Xs)
            e[sup] = self.energy_reg.predict(Xs)
            s_t = self.time_reg.predict_source(Xs)
            s_e = self.energy_reg.predict_source(Xs)
            src[sup] = np.where((s_t == "type") & (s_e == "type"), "type", "global")
        if (~sup).any():
            if self.shape_time_reg is None:
                raise ExanteError("this artifact has no shape-only fallback model")
            Xu = X.loc[~sup]
            t[~sup] = self.shape_time_reg.predict(Xu)
            e[~sup] = self.shape_energy_reg.predict(Xu)
            src[~sup] = "shape"
        floor = self.host_floor_s.get(base_mode, self.host_floor_s.get("*", 0.0))
        t = np.maximum(t, floor)
        t_opt = np.zeros(n)
        e_opt = np.zeros(n)
        if mode == "train_step":
            if self.opt_time is None:
                raise ExanteError(f"the {self.hardware} artifact has no train_step data")
            Xo = pd.DataFrame({"params": _num(frame, "params"),
                               "optimizer": [optimizer or "sgd"] * n})
            t_opt = np.maximum(self.opt_time.predict(Xo), 0)
            e_opt = np.maximum(self.opt_energy.predict(Xo), 0)
        return LayerPredictions(t, e, t_opt, e_opt, src)

    def compose(self, sums: pd.DataFrame) -> np.ndarray:
        """(n, 2) whole-model [time_s, energy_j] from per-model sums (ModelComposer columns)."""
        if self.composer is not None:
            return self.composer.predict(sums)
        T = _num(sums, "sum_time_s") + _num(sums, "sum_time_opt_s")
        E = (self.active_idle_power_w * T + _num(sums, "sum_energy_active_j")
             + _num(sums, "sum_energy_opt_j"))
        return np.column_stack([T, E])

    def host_bound(self, time_s, energy_j) -> np.ndarray:
        pw = np.asarray(energy_j, float) / np.maximum(np.asarray(time_s, float), _TINY)
        return pw < self.uncertainty.host_power_factor * self.active_idle_power_w

    def interval(self, target: str, value: float, host_bound: bool, mode: str,
                 fallback_share: dict | None = None) -> tuple[float, float]:
        """Conformal interval, widened by the share of the prediction made by fallback models.

        ``fallback_share``: {"global": share, "shape": share} of the predicted quantity that
        came from the global (unseen type) or shape-only (unsupported layer) models; each
        share adds ``share × (leave-one-type-out log quantile)`` to both ends.
        """
        lo, hi = self.uncertainty.bounds(target, host_bound, mode)
        for kind, share in (fallback_share or {}).items():
            if share > 0 and kind in self.fallback_log_bounds:
                flo, fhi = self.fallback_log_bounds[kind][target]
                lo += share * min(flo, 0.0)
                hi += share * max(fhi, 0.0)
        return float(value * math.exp(lo)), float(value * math.exp(hi))


def model_level_frame(hm: HardwareModel, models: pd.DataFrame, keytab: pd.DataFrame
                      ) -> pd.DataFrame:
    """Per-model sums of per-layer predictions (the composer's input) for model rows."""
    recs = []
    for i, row in enumerate(models.itertuples(index=False)):
        counts = _parse_counts(getattr(row, "layer_counts"))
        for k, c in counts.items():
            recs.append((i, k, float(c)))
    if not recs:
        raise ExanteError("model rows have no layer_counts")
    idx = np.array([r[0] for r in recs])
    keys = [r[1] for r in recs]
    cnt = np.array([r[2] for r in recs])
    known = np.array([k in keytab.index for k in keys])
    out = pd.DataFrame({
        "mode": _cat(models, "mode", "inference"),
        "dtype": _cat(models, "dtype", "fp32"),
        "n_layer_calls": _num(models, "n_layer_calls", np.nan),
        "sum_time_s": 0.0, "sum_time_opt_s": 0.0,
        "sum_energy_active_j": 0.0, "sum_energy_opt_j": 0.0,
        "missing_keys": 0,
    })
    miss = np.zeros(len(models), int)
    np.add.at(miss, idx[~known], 1)
    out["missing_keys"] = miss
    idx, cnt = idx[known], cnt[known]
    feat = keytab.loc[[k for k, ok in zip(keys, known) if ok]].reset_index(drop=True)
    feat["dtype"] = out["dtype"].to_numpy()[idx]
    modes = out["mode"].to_numpy()[idx]
    opts = _cat(models, "optimizer", "sgd")[idx]
    sums = {c: np.zeros(len(models)) for c in
            ("sum_time_s", "sum_time_opt_s", "sum_energy_active_j", "sum_energy_opt_j")}
    for m in np.unique(modes):
        for o in (np.unique(opts[modes == m]) if m == "train_step" else [None]):
            sel = (modes == m) if o is None else ((modes == m) & (opts == o))
            lp = hm.layer_predictions(feat.loc[sel], m, o if o not in ("", "nan") else None)
            for col, v in (("sum_time_s", lp.time_s), ("sum_time_opt_s", lp.time_opt_s),
                           ("sum_energy_active_j", lp.energy_active_j),
                           ("sum_energy_opt_j", lp.energy_opt_j)):
                np.add.at(sums[col], idx[sel], cnt[sel] * v)
    for col, v in sums.items():
        out[col] = v
    calls = np.zeros(len(models))
    np.add.at(calls, idx, cnt)
    nlc = out["n_layer_calls"].to_numpy()
    out["n_layer_calls"] = np.where(np.isfinite(nlc) & (nlc > 0), nlc, calls)
    return out


def _fit_core(layers: pd.DataFrame, models: pd.DataFrame | None, keytab: pd.DataFrame, *,
              time_base, energy_base, quick, random_state, P, floors, idle,
              hardware="unknown", fit_shape=True) -> HardwareModel:
    """Fit layer regressors, optimizer-step models and the composer (no intervals)."""
    L = layers[_cat(layers, "mode", "inference") != "train_step"]
    t = _num(L, "time_s")
    ea = energy_active(_num(L, "energy_j"), t, P)
    kw = dict(quick=quick, random_state=random_state)
    time_reg = LayerRegressor(base=time_base, **kw).fit(L, t)
    energy_reg = LayerRegressor(base=energy_base, **kw).fit(L, ea)
    shape_t = shape_e = None
    if fit_shape:
        shape_t = LayerRegressor(base=time_base, per_type=False, numeric_features=SHAPE_NUMERIC,
                                 **kw).fit(L, t)
        shape_e = LayerRegressor(base=energy_base, per_type=False,
                                 numeric_features=SHAPE_NUMERIC, **kw).fit(L, ea)
    opt_t = opt_e = None
    pairs = _pairs_for_optimizer(layers, P)
    if not pairs.empty:
        try:
            opt_t = OptimizerStepRegressor().fit(pairs, pairs["dt"].to_numpy(),
                                                 reference=pairs["t_ts"].to_numpy())
            opt_e = OptimizerStepRegressor().fit(pairs, pairs["de"].to_numpy(),
                                                 reference=pairs["ea_ts"].to_numpy()
                                                 + P * pairs["t_ts"].to_numpy())
        except ExanteError:
            opt_t = opt_e = None
    modes = sorted(set(_cat(layers, "mode", "inference")) - {"forward_backward"})
    if opt_t is None:
        modes = [m for m in modes if m != "train_step"]
    elif "train_step" not in modes:
        modes.append("train_step")
    hm = HardwareModel(
        hardware=hardware, time_reg=time_reg, energy_reg=energy_reg, shape_time_reg=shape_t,
        shape_energy_reg=shape_e, opt_time=opt_t, opt_energy=opt_e, composer=None,
        uncertainty=Uncertainty(), active_idle_power_w=P, idle_power_w=idle,
        host_floor_s=floors,
        info={"modes": modes,
              "dtypes": sorted(set(_cat(L, "dtype", "fp32")) - {""}),
              "batch_range": [int(np.nanmin(_num(L, "batch", 1))),
                              int(np.nanmax(_num(L, "batch", 1)))]})
    if models is not None and len(models):
        M = models[[m in modes for m in _cat(models, "mode", "inference")]]
        if len(M):
            sums = model_level_frame(hm, M, keytab)
            ok = sums["missing_keys"].to_numpy() == 0
            if ok.sum() >= 2:
                y = np.column_stack([_num(M, "time_s"), _num(M, "energy_j")])[ok]
                hm.composer = ModelComposer(active_idle_power_w=P).fit(
                    sums.loc[ok].reset_index(drop=True), y)
    return hm
