"""Seed 004's claims through exante on the H100 reference set (experiments/seed004)."""

import importlib.util
import itertools
import warnings
from pathlib import Path

import pandas as pd
import pytest
from scipy.stats import kendalltau

from predictor.fit.datasets import load_whole_model_data
from predictor.search.compare import compare
from predictor.search.generators import table6_specs

ROOT = Path(__file__).resolve().parents[2]


def _script(name):
    spec = importlib.util.spec_from_file_location(name, ROOT / "experiments/seed004" / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_compare_ranks_table6_subset_like_the_measurements():
    """Nodes 1000-3000 of Table 6 (10 MLPs), Adam train step at batch 32: every equal-node
    wide/deep pair is ordered as measured, and Kendall tau is high."""
    grid = [(m, s) for m, s in table6_specs() if m["nodes"] <= 3000]
    meas = load_whole_model_data(ROOT / "datasets/h100").frame.set_index("key")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        c = compare([s for _, s in grid], "100", 32, mode="train_step", optimizer="adam")
    y = [meas.loc[f"mlp-d{m['layers']}-w{m['layer_size']}|train_step|fp32|b32", "energy_j"]
         for m, _ in grid]
    x = [d.energy_j for d in c.designs]
    assert kendalltau(x, y).statistic > 0.6
    for i, j in itertools.combinations(range(len(grid)), 2):
        if grid[i][0]["nodes"] == grid[j][0]["nodes"]:
            assert (x[i] - x[j]) * (y[i] - y[j]) > 0, (grid[i][1].ref, grid[j][1].ref)


def test_overhead_and_dense_vs_conv_scripts(tmp_path):
    assert _script("overhead").main(["--out", str(tmp_path)]) == 0
    df = pd.read_csv(tmp_path / "overhead.csv")
    assert len(df) == 17 * 4 and (df["theta"] > 1).all()
    meas = pd.read_csv(tmp_path / "overhead_measured.csv")
    assert len(meas) == 18 and meas["theta"].between(2, 12).all()
    assert _script("dense_vs_conv").main(["--out", str(tmp_path)]) == 0
    dvc = pd.read_csv(tmp_path / "dense_vs_conv.csv")
    assert (abs(dvc["conv_params"] / dvc["dense_params"] - 1) < 0.02).all()
    for f in ("overhead.png", "overhead.md", "dense_vs_conv.png", "dense_vs_conv.md"):
        assert (tmp_path / f).stat().st_size > 0


@pytest.mark.parametrize("name", ["table6", "proxies", "linearity"])
def test_other_scripts_import(name):
    assert callable(_script(name).main)
