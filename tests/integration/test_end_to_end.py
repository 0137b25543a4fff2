"""CLI end to end on an artifact fitted in a temp dir from the SYNTHETIC fixture.

Checks the DESIGN.md §4/§5 JSON contracts of `exante predict` and `exante estimate` through
the real predictor (no stub), and the interval/θ relations between them. The numbers are
synthetic: these tests check plumbing and arithmetic, never accuracy on any GPU.
"""

import json
import math

import pytest
from synthetic_fixture import SYNTH_HW as HW

from predictor.cli.main import main


def run_json(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    assert code == 0, err
    return json.loads(out)


MLP = "mlp:in=64,depth=4,width=256,out=10"


def test_predict_json_contract(art_dir, capsys, monkeypatch):
    monkeypatch.setenv("EXANTE_ARTIFACT_DIR", str(art_dir))
    p = run_json(capsys, "predict", MLP, "--input", "64", "--batch", "32", "--hardware", HW, "--json")
    for key in ("energy_j", "energy_j_low", "energy_j_high", "time_s", "hardware", "mode", "dtype",
                "batch", "layers"):
        assert key in p, key
    assert p["hardware"] == HW and p["mode"] == "inference" and p["dtype"] == "fp32" and p["batch"] == 32
    assert 0 < p["energy_j_low"] <= p["energy_j"] <= p["energy_j_high"]
    assert sum(r["count"] for r in p["layers"] if r["type"] == "Linear") == 5
    assert any("NOT fitted on measurements" in w for w in p["warnings"])


def test_estimate_json_contract_and_composition(art_dir, capsys, monkeypatch):
    monkeypatch.setenv("EXANTE_ARTIFACT_DIR", str(art_dir))
    common = ("--hardware", HW, "--json")
    inf = run_json(capsys, "predict", MLP, "--input", "64", "--batch", "32", *common)
    step = run_json(capsys, "predict", MLP, "--input", "64", "--batch", "32", "--mode",
                    "train_step", "--optimizer", "adam", *common)
    serve = run_json(capsys, "predict", MLP, "--input", "64", "--batch", "1", *common)
    r = run_json(capsys, "estimate", MLP, "--input", "64", "--epochs", "3", "--dataset-size",
                 "3200", "--batch", "32", "--optimizer", "adam", "--trials", "4",
                 "--inferences", "1000", "--inference-batch", "1", "--intensity", "400",
                 "--pue", "1.5", *common)
    for key in ("training_energy_j", "search_energy_j", "inference_energy_j", "total_energy_kwh",
                "co2_kg"):
        assert key in r and f"{key}_low" in r and f"{key}_high" in r, key
        assert r[f"{key}_low"] <= r[key] <= r[f"{key}_high"]
    # 3 epochs x 100 full steps of the predicted train step; 1000 single requests
    assert r["training_energy_j"] == pytest.approx(300 * step["energy_j"], rel=1e-9)
    assert r["inference_energy_j"] == pytest.approx(1000 * serve["energy_j"], rel=1e-9)
    assert r["theta"] == pytest.approx(step["energy_j"] / inf["energy_j"], rel=1e-9)
    assert r["theta"] > 1
    total_j = r["search_energy_j"] + r["training_energy_j"] + r["inference_energy_j"]
    assert r["total_energy_kwh"] == pytest.approx(total_j / 3.6e6 * 1.5, rel=1e-9)
    assert r["co2_kg"] == pytest.approx(r["total_energy_kwh"] * 400 / 1000, rel=1e-9)
    assert math.isfinite(r["search_energy_j"]) and r["search_energy_j"] > 0
    # the predictor's warnings reach the life-cycle report
    assert any(n.startswith("predictor (") and "NOT fitted on measurements" in n for n in r["notes"])


def test_estimate_bad_counts_exit_2(art_dir, capsys, monkeypatch):
    monkeypatch.setenv("EXANTE_ARTIFACT_DIR", str(art_dir))
    for bad in (("--epochs", "0"), ("--dataset-size", "-5"), ("--optimizer", "lion")):
        args = {"--epochs": "3", "--dataset-size": "3200", "--optimizer": "adam"}
        args[bad[0]] = bad[1]
        argv = ["estimate", MLP, "--input", "64", "--batch", "32", "--hardware", HW]
        for k, v in args.items():
            argv += [k, v]
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert err.startswith("exante: error:") and len(err.strip().splitlines()) == 1, err
