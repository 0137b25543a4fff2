"""predictor.fit.regression on a SYNTHETIC dataset (test fixture: experiments/accuracy/synthetic.py).

The fixture's measurements come from a known physics-like function with noise, so the tests
can check that the machinery recovers it; they say nothing about any real GPU.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.base import clone
from sklearn.exceptions import NotFittedError
from sklearn.model_selection import GridSearchCV, GroupKFold
from sklearn.pipeline import Pipeline
from synthetic_fixture import SYN

from predictor.fit import regression as R
from profiling.errors import ExanteError


@pytest.fixture(scope="module")
def data():
    layers, models = SYN.make_synthetic_dataset(seed=0, second_session_fraction=0.25)
    return R.clean_layers(layers), R.clean_models(models)


@pytest.fixture(scope="module")
def base_layers(data):
    L = data[0]
    return L[L["mode"] != "train_step"].reset_index(drop=True)


@pytest.fixture(scope="module")
def fitted(data):
    layers, models = data
    return R.build_hardware_model(layers, models, hardware="synthetic", quick=True,
                                  n_splits=3)


# ----------------------------------------------------------------------------- contract
@pytest.mark.parametrize("est", [
    R.LayerRegressor(base="gbr", quick=True), R.ModelComposer(), R.OptimizerStepRegressor(),
    R.RooflinePrior(), R.Uncertainty(coverage=0.8),
])
def test_clone_and_not_fitted(est, base_layers):
    c = clone(est)
    assert c.get_params() == est.get_params() or type(est) is R.LayerRegressor
    assert type(c) is type(est)
    with pytest.raises(NotFittedError):
        if isinstance(est, R.Uncertainty):
            c.bounds("time", True)
        else:
            c.predict(base_layers.head(3))


def test_layer_regressor_in_pipeline_and_grid_search(base_layers):
    L = base_layers
    y = L["time_s"].to_numpy()
    pipe = Pipeline([("reg", R.LayerRegressor(base="rf", quick=True))]).fit(L, y)
    p = pipe.predict(L)
    assert p.shape == (len(L),) and np.all(p > 0)
    groups = R._config_groups(L)
    gs = GridSearchCV(R.LayerRegressor(base="rf", quick=True),
                      {"min_type_rows": [5, 100000]}, cv=GroupKFold(n_splits=3))
    gs.fit(L, y, groups=groups)
    assert gs.best_params_["min_type_rows"] in (5, 100000)
    best = gs.best_estimator_
    assert hasattr(best, "global_") and isinstance(best.models_, dict)
    # per-type sub-models only where the type has enough rows
    if best.min_type_rows == 5:
        assert set(best.models_) <= set(best.type_counts_)
        assert len(best.models_) >= 5
    # y=None takes the target column
    r2 = R.LayerRegressor(base="rf", quick=True, target="time").fit(L)
    assert 0.9 < r2.score(L) <= 1.0


def test_layer_regressor_unknown_family_is_clear_error(base_layers):
    with pytest.raises(ExanteError, match="unknown regressor family"):
        R.LayerRegressor(base="xgboost").fit(base_layers, base_layers["time_s"])


def test_layer_regressor_extrapolates_with_roofline(base_layers):
    """Outside the training range the prediction keeps scaling with the work."""
    L = base_layers[(base_layers["layer_type"] == "Linear") & (base_layers["dtype"] == "fp32")
                    & (base_layers["mode"] == "inference")]
    reg = R.LayerRegressor(base="gbr", quick=True).fit(L, L["time_s"])
    big = L.sort_values("flops").tail(1).copy()
    bigger = big.copy()
    for c in ("macs", "flops", "bytes_read", "bytes_written", "input_numel", "output_numel",
              "batch"):
        bigger[c] = bigger[c] * 8
    assert reg.predict(bigger)[0] > 4 * reg.predict(big)[0]


# ----------------------------------------------------------------------------- recovery
def test_family_comparison_table(base_layers):
    L = base_layers
    g = R._config_groups(L)
    tab = R.compare_families(L, g, families=("gbr", "rf"), cv=GroupKFold(n_splits=3), quick=True)
    assert set(tab["family"]) == {"gbr", "rf"} and set(tab["target"]) == {"time", "energy"}
    for col in ("mape", "median_ape", "rmspe", "within_10"):
        assert tab[col].notna().all()
    # held-out layer configs: the generating function is recovered
    assert (tab["median_ape"] < 10).all(), tab


def test_recovers_whole_model_function_on_held_out_families(fitted):
    hm, report = fitted
    for tgt in ("time", "energy"):
        m = report["cv"][f"model/{tgt}/all"]
        assert m["n"] > 200
        assert m["median_ape"] < 10, (tgt, m)
        assert m["mape"] < 15, (tgt, m)
    # physics constants recovered (fixture: P_ai = 125 W, deep idle 75 W)
    assert 110 < report["active_idle_power_w"] < 140
    assert 70 < report["idle_power_w"] < 80
    comp = report["composer"]["inference"]
    assert 0.8 < comp["a"] < 1.25 and 0.85 < comp["d"] < 1.15
    assert 100 < comp["p"] < 150


def _mlp_layers(depth, width, batch, train):
    m = SYN.mlp(64, depth, width).to("meta")
    x = torch.empty((batch, 64), device="meta")
    from profiling.capture.core import capture
    from profiling.features.api import layer_features

    cap = capture(m, x, dtype="fp32", train=train)
    return [(l.config.key(), l.config.type, layer_features(l.config), l.count) for l in cap.layers]


def _predict_model(hm, lst, mode, optimizer=None):
    frame = pd.DataFrame([{**f, "layer_type": t, "dtype": "fp32"} for _, t, f, _ in lst])
    lp = hm.layer_predictions(frame, mode, optimizer)
    c = np.array([n for *_, n in lst], float)
    sums = pd.DataFrame([{"mode": mode, "dtype": "fp32", "sum_time_s": c @ lp.time_s,
                          "sum_time_opt_s": c @ lp.time_opt_s, "n_layer_calls": c.sum(),
                          "sum_energy_active_j": c @ lp.energy_active_j,
                          "sum_energy_opt_j": c @ lp.energy_opt_j}])
    return hm.compose(sums)[0]


def test_theta_emerges_from_per_layer_modes(fitted):
    """E_train_step / E_inference follows the generating function, and varies with batch."""
    hm, _ = fitted
    thetas_pred, thetas_true = [], []
    for batch in (1, 512):
        inf = _mlp_layers(3, 512, batch, False)
        trn = _mlp_layers(3, 512, batch, True)
        e_inf = _predict_model(hm, inf, "inference")[1]
        e_trn = _predict_model(hm, trn, "train_step", "adam")[1]
        t_inf = SYN.model_truth([(t, f, n) for _, t, f, n in inf], "inference", "fp32")[1]
        t_trn = SYN.model_truth([(t, f, n) for _, t, f, n in trn], "train_step", "fp32", "adam")[1]
        thetas_pred.append(e_trn / e_inf)
        thetas_true.append(t_trn / t_inf)
    for p, t in zip(thetas_pred, thetas_true):
        assert abs(p / t - 1) < 0.12, (thetas_pred, thetas_true)
        assert 1.5 < p < 10
    assert hm.optimizers == ("adam", "sgd")
    # the optimizer-step model is params-based: bigger layers cost more, paramless cost 0
    X = pd.DataFrame({"params": [0, 1000, 10_000_000], "optimizer": ["adam"] * 3})
    d = hm.opt_time.predict(X)
    assert d[0] == 0 and d[2] > d[1] > 0
    with pytest.raises(ExanteError, match="optimizer 'adamw'"):
        hm.opt_time.predict(pd.DataFrame({"params": [10], "optimizer": ["adamw"]}))


# ----------------------------------------------------------------------------- intervals
def test_conformal_coverage_near_nominal(data):
    """Split conformal over exchangeable groups (models): calibrate on half the models'
    out-of-fold residuals, measure coverage on the other half."""
    layers, models = data
    oof = R.cross_validate_models(layers, models, groups=models["model_ref"], n_splits=3,
                                  quick=True)
    oof = oof[np.isfinite(oof["pred_time_s"])].reset_index(drop=True)
    refs = sorted(oof["model_ref"].unique())
    rng = np.random.default_rng(0)
    rng.shuffle(refs)
    cal_refs = set(refs[: len(refs) // 2])
    P = oof.attrs["active_idle_power_w"]
    hb = (oof["pred_energy_j"] / oof["pred_time_s"]) < 1.5 * P
    covs = {}
    for tgt, ycol, pcol in (("time", "time_s", "pred_time_s"), ("energy", "energy_j",
                                                               "pred_energy_j")):
        r = np.log(oof[ycol] / oof[pcol])
        res = pd.DataFrame({"target": tgt, "log_ratio": r, "host_bound": hb, "mode": oof["mode"]})
        cal = oof["model_ref"].isin(cal_refs).to_numpy()
        unc = R.Uncertainty(coverage=0.9, min_pool=15).fit(res[cal])
        inside = []
        for i in np.where(~cal)[0]:
            lo, hi = unc.bounds(tgt, bool(hb[i]), oof["mode"][i])
            inside.append(lo <= r[i] <= hi)
        covs[tgt] = float(np.mean(inside))
    print("synthetic split-conformal coverage (nominal 0.9):", covs)
    for tgt, c in covs.items():
        assert 0.8 <= c <= 0.97, covs


def test_uncertainty_pools_and_cross_session():
    rng = np.random.default_rng(1)
    res = pd.concat([
        pd.DataFrame({"target": "energy", "log_ratio": rng.normal(0, 0.2, 400), "host_bound": True,
                      "mode": "inference"}),
        pd.DataFrame({"target": "energy", "log_ratio": rng.normal(0, 0.02, 400),
                      "host_bound": False, "mode": "inference"}),
    ])
    unc = R.Uncertainty(coverage=0.9).fit(res)
    lo_h, hi_h = unc.bounds("energy", True)
    lo_g, hi_g = unc.bounds("energy", False)
    assert hi_h - lo_h > 5 * (hi_g - lo_g)
    assert lo_g < 0 < hi_g
    assert abs(hi_g - 1.645 * 0.02) < 0.01
    assert unc.summary()["cross_session"]["present"] is False
    dev = pd.DataFrame({"host_bound": [True] * 50 + [False] * 50,
                        "log_ratio_pair": np.r_[rng.normal(0, 0.3, 50), rng.normal(0, 0.01, 50)]})
    unc.add_cross_session(dev)
    lo_h2, hi_h2 = unc.bounds("energy", True)
    assert hi_h2 > hi_h and lo_h2 < lo_h
    s = unc.summary()["cross_session"]
    assert s["present"] is True and s["host_bound"]["n_pairs"] == 50
    with pytest.raises(ExanteError):
        R.Uncertainty(coverage=1.5).fit(res)


def test_build_report_records_cross_session_and_pools(fitted):
    hm, report = fitted
    unc = report["uncertainty"]
    assert unc["coverage"] == 0.9
    assert unc["cross_session"]["present"] is True      # fixture re-measures 25 % of configs
    assert any(k.startswith("energy/True") for k in unc["pools"])
    assert report["interval_source"] == "model"
    assert set(hm.fallback_log_bounds) == {"global", "shape"}
    lo, hi = hm.interval("energy", 1.0, True, "inference")
    lo2, hi2 = hm.interval("energy", 1.0, True, "inference", {"shape": 1.0})
    assert lo2 <= lo and hi2 >= hi and (hi2 - lo2) > (hi - lo)


def test_layer_only_dataset_still_fits(base_layers):
    L = base_layers[base_layers["layer_type"].isin(["Linear", "ReLU", "LayerNorm", "GELU"])]
    hm, report = R.build_hardware_model(L, None, quick=True, n_splits=3)
    assert hm.composer is None and report["interval_source"] == "layer"
    assert "no whole-model rows" in report["composer_note"]
    assert hm.modes == ("inference",)


def test_error_metrics():
    m = R.error_metrics([1, 2, 4], [1.1, 2, 3])
    assert m["n"] == 3
    assert math.isclose(m["mape"], 100 * (0.1 + 0 + 0.25) / 3)
    assert math.isclose(m["median_ape"], 10.0)
    assert math.isclose(m["within_10"], 100 * 2 / 3)
