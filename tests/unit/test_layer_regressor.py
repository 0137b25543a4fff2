"""predictor.bench.layer_regressor (the per-type regressor of ``exante bench irene``) on made-up
layer rows (tests/synthetic_fixture.layer_rows: exante's features of real captures, a made-up
per-call cost).  The rows come from a known function, so the tests can check that the
estimator recovers it; they say nothing about any real GPU.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.base import clone
from sklearn.exceptions import NotFittedError
from sklearn.model_selection import GridSearchCV, GroupKFold
from sklearn.pipeline import Pipeline
from synthetic_fixture import layer_rows

from predictor.bench.layer_regressor import (
    CATEGORIES,
    LayerRegressor,
    RooflinePrior,
    design_matrix,
)
from profiling.errors import ExanteError


@pytest.fixture(scope="module")
def rows():
    return layer_rows()


# ----------------------------------------------------------------------------- contract
@pytest.mark.parametrize("est", [LayerRegressor(base="gbr", quick=True), RooflinePrior()])
def test_clone_and_not_fitted(est, rows):
    c = clone(est)
    assert type(c) is type(est) and c.get_params() == est.get_params()
    with pytest.raises(NotFittedError):
        c.predict(rows.head(3))


def test_in_pipeline_and_grid_search_with_groups(rows):
    y = rows["time_s"].to_numpy()
    p = Pipeline([("reg", LayerRegressor(base="rf", quick=True))]).fit(rows, y).predict(rows)
    assert p.shape == (len(rows),) and np.all(p > 0)
    gs = GridSearchCV(LayerRegressor(base="rf", quick=True), {"min_type_rows": [5, 100000]},
                      cv=GroupKFold(n_splits=3))
    gs.fit(rows, y, groups=rows["width"])
    best = gs.best_estimator_
    assert gs.best_params_["min_type_rows"] in (5, 100000) and hasattr(best, "global_")
    assert set(best.models_) <= set(best.type_counts_)
    # y=None takes the target column
    fitted = LayerRegressor(base="rf", quick=True, target="time").fit(rows)
    assert 0.9 < fitted.score(rows) <= 1.0


def test_per_type_models_and_global_fallback(rows):
    reg = LayerRegressor(base="gbr", quick=True).fit(rows, rows["time_s"])
    assert set(reg.models_) == {"Linear", "ReLU", "LayerNorm"}
    assert reg.type_counts_ == rows["layer_type"].value_counts().to_dict()
    unseen = rows[rows["layer_type"] == "ReLU"].head(2).assign(layer_type="GELU")
    assert list(reg.predict_source(unseen)) == ["global", "global"]
    assert np.all(np.isfinite(reg.predict(unseen))) and np.all(reg.predict(unseen) > 0)
    assert len(reg.predict(rows.head(0))) == 0
    few = LayerRegressor(base="gbr", quick=True, min_type_rows=10_000).fit(rows, rows["time_s"])
    assert few.models_ == {} and set(few.predict_source(rows)) == {"global"}


def test_recovers_the_made_up_cost_on_held_out_widths(rows):
    """Leave-one-width-out: every width's layer calls predicted from the other widths."""
    ape = []
    for w in sorted(set(rows["width"]))[1:-1]:           # interpolation, not extrapolation
        tr, te = rows[rows["width"] != w], rows[rows["width"] == w]
        reg = LayerRegressor(base="gbr", quick=True).fit(tr, tr["time_s"])
        ape.extend(np.abs(reg.predict(te) / te["time_s"].to_numpy() - 1))
    assert np.median(ape) < 0.10, np.median(ape)


def test_extrapolates_with_the_roofline(rows):
    """Beyond the largest layer the prediction keeps scaling with the work (trees alone
    would flatten)."""
    lin = rows[rows["layer_type"] == "Linear"]
    reg = LayerRegressor(base="gbr", quick=True).fit(lin, lin["time_s"])
    big = lin.sort_values("flops").tail(1)
    bigger = big.copy()
    for c in ("macs", "flops", "bytes_read", "bytes_written", "input_numel", "output_numel",
              "batch"):
        bigger[c] = bigger[c] * 8
    assert reg.predict(bigger)[0] > 4 * reg.predict(big)[0]
    flat = LayerRegressor(base="gbr", quick=True, baseline=None).fit(lin, lin["time_s"])
    assert flat.predict(bigger)[0] < 1.5 * flat.predict(big)[0]


def test_roofline_prior_is_non_negative_and_grouped():
    X = pd.DataFrame({"flops": [0, 1e9, 2e9, 4e9] * 5, "bytes_total": [1e6, 2e6, 3e6, 4e6] * 5,
                      "mode": ["inference"] * 20})
    y = 1e-5 + X["flops"] / 1e13 + X["bytes_total"] / 1e12
    pr = RooflinePrior(min_rows=10).fit(X, y)
    assert list(pr.coef_) == ["inference||"] and np.all(pr.global_ >= 0)
    np.testing.assert_allclose(pr.predict(X), y, rtol=1e-6)
    assert pr.predict(X.assign(mode="train_step")).shape == (20,)   # unseen group: global


def test_design_matrix_log1p_and_one_hots():
    X = pd.DataFrame({"flops": [0.0, np.e - 1, -5.0, np.nan], "dtype": ["fp32", "bf16", None, "x"]})
    Z = design_matrix(X, ("flops",), ("dtype",))
    assert Z.shape == (4, 1 + len(CATEGORIES["dtype"]))
    np.testing.assert_allclose(Z[:, 0], [0, 1, 0, 0])
    np.testing.assert_array_equal(Z[:, 1:].sum(axis=1), [1, 1, 0, 0])


@pytest.mark.parametrize("kwargs, X, match", [
    ({"base": "xgboost"}, None, "unknown regressor family 'xgboost'"),
    ({"baseline": "linear"}, None, "unknown baseline 'linear'"),
    ({"target": "energy"}, None, "target column 'energy_j' missing"),
    ({}, "array", "takes a pandas DataFrame"),
    ({}, "two", "at least 2 rows with a finite positive target"),
])
def test_bad_input_is_a_clear_error(rows, kwargs, X, match):
    data, y = rows, (rows["time_s"] if "target" not in kwargs else None)
    if X == "array":
        data = rows[["flops"]].to_numpy()
    elif X == "two":
        data, y = rows.head(3), [1.0, 0.0, float("nan")]
    with pytest.raises(ExanteError, match=match):
        LayerRegressor(quick=True, **kwargs).fit(data, y)
    with pytest.raises(ExanteError, match="'layer_type' column"):
        LayerRegressor(quick=True).fit(rows.drop(columns="layer_type"), rows["time_s"])
