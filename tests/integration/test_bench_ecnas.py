"""exante bench ecnas on a made-up fixture: energies generated from known per-step work terms.

The fixture's architectures are real NAS-Bench-101 cells drawn at random here; their
energies are MADE UP (a known linear function of the captured work terms, ±1 % noise), so
the test checks that the training composition recovers a generating process, that bad rows
are skipped and counted, and that the test file's energies are read only after predicting.
"""

import json
import random

import numpy as np
import pandas as pd
import pytest

from predictor.bench import ecnas
from predictor.bench.ecnas import WORK_TERMS, featurize, run_ecnas_bench
from predictor.cli.main import main
from profiling.errors import ExanteError

OPS = ("conv3x3-bn-relu", "conv1x1-bn-relu", "maxpool3x3")


def _random_cells(n: int, seed: int):
    rng = random.Random(seed)
    cells = []
    while len(cells) < n:
        v = rng.choice((4, 5))
        adj = [[0] * v for _ in range(v)]
        for j in range(1, v):                   # a chain keeps every vertex on a path
            adj[j - 1][j] = 1
        for i in range(v):
            for j in range(i + 2, v):
                adj[i][j] = int(rng.random() < 0.3)
        ops = ["input"] + [rng.choice(OPS) for _ in range(v - 2)] + ["output"]
        cells.append((json.dumps(ops), json.dumps(adj)))
    return cells


@pytest.fixture(scope="module")
def csvs(tmp_path_factory):
    d = tmp_path_factory.mktemp("ecnas")
    cells = _random_cells(36, seed=1)
    df = pd.DataFrame(cells, columns=["ops_json", "adjacency_json"])
    F, info = featurize(df)
    assert info["build_failures"] == 0
    # made-up "true" J per unit of work (not real measurements)
    theta = {"flops_conv3x3": 2e-11, "flops_conv1x1": 3e-11, "bytes_conv": 1e-10,
             "bytes_bn": 3e-10, "bytes_relu": 2e-10, "bytes_pool": 2.5e-10,
             "bytes_merge": 2e-10, "calls": 5e-3, "params": 1e-8}
    step_j = 20.0 + sum(F[k] * v for k, v in theta.items())
    noise = np.random.default_rng(0).normal(0, 0.01, len(F))
    steps = ecnas.EPOCHS * -(-ecnas.TRAIN_SAMPLES // ecnas.BATCH)
    df["params"] = F["params"].astype(int)
    df[ecnas.TARGET] = step_j * steps / 3.6e6 * (1 + noise)
    df["energy_kWh_div_PUE1.59"] = df[ecnas.TARGET] / 1.59
    df.iloc[:26].to_csv(d / "train.csv", index=False)
    test = df.iloc[26:].copy()
    bad = pd.DataFrame([{"ops_json": '["input", "conv7x7", "output"]',
                         "adjacency_json": "[[0,1,0],[0,0,1],[0,0,0]]", "params": 1,
                         ecnas.TARGET: 0.01, "energy_kWh_div_PUE1.59": 0.006}])
    pd.concat([test, bad]).to_csv(d / "test.csv", index=False)
    return d


def test_recovers_generating_process_and_counts_bad_rows(csvs):
    r = run_ecnas_bench(str(csvs / "train.csv"), str(csvs / "test.csv"), correction=False)
    assert r["n_test"] == 10 and r["n_train"] == 26
    assert r["build_failures"] == 1 and "unknown op" in next(iter(r["failure_reasons"]))
    assert r["params_mismatch"] == 0
    assert r["mape_pct"] < 4.0
    assert r["kendall_tau"] > 0.6
    for k in ("mape_pct", "mae_wh", "mae_pct_of_mean", "kendall_tau", "params_linear_mape_pct",
              "n_test", "build_failures", "archs_per_s"):
        assert k in r
    assert r["archs_per_s"] > 0


def test_params_mismatch_is_counted(csvs, tmp_path):
    df = pd.read_csv(csvs / "train.csv")
    df.loc[0, "params"] += 7
    F, info = featurize(df)
    assert info["params_mismatch"] == 1 and len(F) == len(df)


def test_test_energies_read_only_after_prediction(csvs, monkeypatch):
    events = []
    real_read, real_predict = ecnas.read_archs, ecnas.EcnasEnergyModel.predict

    def read(path, *, with_target):
        events.append(("read", str(path).endswith("test.csv"), with_target))
        return real_read(path, with_target=with_target)

    def predict(self, X):
        events.append(("predict",))
        return real_predict(self, X)

    monkeypatch.setattr(ecnas, "read_archs", read)
    monkeypatch.setattr(ecnas.EcnasEnergyModel, "predict", predict)
    run_ecnas_bench(str(csvs / "train.csv"), str(csvs / "test.csv"), correction=False)
    first_predict = events.index(("predict",))
    test_target_reads = [i for i, e in enumerate(events) if e == ("read", True, True)]
    assert test_target_reads and min(test_target_reads) > first_predict


def test_missing_column_and_missing_file_are_one_line_errors(csvs, tmp_path, capsys):
    df = pd.read_csv(csvs / "train.csv").drop(columns=["adjacency_json"])
    df.to_csv(tmp_path / "nocol.csv", index=False)
    with pytest.raises(ExanteError, match="adjacency_json"):
        run_ecnas_bench(str(tmp_path / "nocol.csv"), str(csvs / "test.csv"))
    rc = main(["bench", "ecnas", "--train", str(tmp_path / "absent.csv"),
               "--test", str(csvs / "test.csv"), "--json"])
    err = capsys.readouterr().err
    assert rc == 2 and err.count("\n") == 1 and "absent.csv" in err


def test_estimator_is_physical_and_correction_bounded(csvs):
    df = pd.read_csv(csvs / "train.csv")
    F, _ = featurize(df)
    y = df[ecnas.TARGET].to_numpy(float)
    m = ecnas.EcnasEnergyModel(max_log_correction=0.1).fit(F, y)
    assert all(v >= 0 for v in m.theta_.values())
    lin = ecnas.EcnasEnergyModel(correction=False).fit(F, y)
    ratio = m.predict(F) / lin.predict(F)
    assert np.all(ratio <= np.exp(0.1) + 1e-9) and np.all(ratio >= np.exp(-0.1) - 1e-9)
    # twice the work terms -> twice the energy above the per-step constant (no flattening
    # outside the training range, unlike a tree alone)
    steps = ecnas.EPOCHS * -(-ecnas.TRAIN_SAMPLES // ecnas.BATCH)
    c = lin.theta_["per_step_j"] * steps / 3.6e6
    assert np.allclose(lin.predict(F * 2) - c, 2 * (lin.predict(F) - c))
    assert np.all(m.predict(F * 4) >= np.exp(-0.1) * lin.predict(F * 4) - 1e-12)
    assert list(F.columns) == list(WORK_TERMS)
