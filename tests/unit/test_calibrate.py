"""Few-shot calibration (issue 13 item 3): scales recovered from runs made by a known truth."""

import csv
import json
import math
import warnings

import numpy as np
import pytest

from predictor import predict
from predictor.artifacts import available_hardware
from predictor.cli.main import main as cli_main
from predictor.engine.predict import capture_workload
from predictor.engine.transfer import TransferredHardware, transferred_artifact
from predictor.fit.calibrate import (
    SCALES,
    Run,
    calibrate,
    calibration_advice,
    fit_scales,
    predict_runs,
    run_regimes,
    runs_from_csv,
    runs_from_profile,
)
from profiling.errors import ExanteError
from profiling.model_refs import resolve_model_on_meta

pytestmark = pytest.mark.skipif("h100" not in available_hardware(),
                                reason="the shipped h100 artifact is needed")

# FIXTURE workloads (small MLPs on meta); their "measurements" below are generated from the
# transferred model with known scale factors -- made-up values, not GPU measurements
# (two GPU-bound, two host-bound on an L4)
REFS = [("mlp:in=1024,depth=4,width=4096,out=10", 512, "train_step", "adam"),
        ("mlp:in=128,depth=8,width=256,out=10", 8, "train_step", "sgd"),
        ("mlp:in=2048,depth=2,width=8192,out=10", 1024, "inference", ""),
        ("mlp:in=64,depth=3,width=512,out=1", 32, "train_step", "adamw")]
TRUTH = {"matmul": math.log(0.7), "gpu": 0.0, "host": math.log(1.6), "power": math.log(1.2), "idle": 0.0}


def _workloads():
    out = []
    for ref, b, mode, opt in REFS:
        m = resolve_model_on_meta(ref)
        shape = (b, int(ref.split("in=")[1].split(",")[0]))
        out.append((ref, b, mode, opt, capture_workload(m, shape, mode, "fp32", opt or None)))
    return out


def _truth_runs(base):
    ws = _workloads()
    runs = [Run([(w, 1.0)], 1.0, 1.0, label=ref) for ref, *_, w in ws]
    y = predict_runs(base, runs, TRUTH)
    return ws, [Run(r.parts, float(t), float(e), r.label) for r, (t, e) in zip(runs, y, strict=True)]


def test_calibration_recovers_known_scales_and_cuts_error():
    base = transferred_artifact("l4").model
    ws, runs = _truth_runs(base)
    z = fit_scales(base, runs)
    assert set(z) == set(SCALES)
    # the prior pulls towards 1, the data towards the truth: within a factor ~1.25 of truth
    for s in ("matmul", "host", "power"):
        assert abs(z[s] - TRUTH[s]) < 0.22, (s, z[s], TRUTH[s])
    y = np.array([[r.time_s, r.energy_j] for r in runs])
    before = np.abs(np.log(predict_runs(base, runs) / y)).mean()
    ch = calibrate(base, runs)
    after = np.abs(np.log(predict_runs(ch, runs) / y)).mean()
    assert after < 0.5 * before
    assert isinstance(ch, TransferredHardware) and ch.hardware == "l4"
    cal = ch.info["calibration"]
    assert cal["n_runs"] == 4 and len(cal["loo_abs_log_error"]) == 4
    assert len(cal["host_over_gpu"]) == 4 and isinstance(cal["advice"], list)
    r = ch.predict_workload(ws[0][-1])
    assert r.notes[0].startswith("calibrated on 4 measured run(s) of l4")
    assert r.energy_j.low < r.energy_j.value < r.energy_j.high


def test_advice_names_the_missing_regime():
    """Runs that are all GPU-bound leave host and idle to the prior (and vice versa); the
    ratios come from the model: a small batch is more host-bound than a large one."""
    assert calibration_advice([0.1, 0.3]) and "host-bound" in calibration_advice([0.1, 0.3])[0]
    assert "GPU-bound" in calibration_advice([2.0, 5.0])[0]
    assert calibration_advice([0.2, 3.0]) == []
    base = transferred_artifact("l4").model
    ws, runs = _truth_runs(base)
    ratios = run_regimes(base, runs)
    assert len(ratios) == len(runs) and all(r > 0 for r in ratios)


def _write_csv(path, runs, ws):
    with open(path, "w", newline="") as f:
        wr = csv.writer(f)
        wr.writerow(["model", "input", "batch", "mode", "dtype", "optimizer", "time_s", "energy_j"])
        for (ref, b, mode, opt, _), r in zip(ws, runs, strict=True):
            wr.writerow([ref, ref.split("in=")[1].split(",")[0], b, mode, "fp32", opt,
                         r.time_s, r.energy_j])


def test_cli_calibrate_writes_user_artifact_that_predict_uses(tmp_path, monkeypatch, capsys):
    base = transferred_artifact("l4").model
    ws, runs = _truth_runs(base)
    f = tmp_path / "runs.csv"
    _write_csv(f, runs, ws)
    back = runs_from_csv(f)
    assert [r.time_s for r in back] == pytest.approx([r.time_s for r in runs])
    out = tmp_path / "art"
    assert cli_main(["calibrate", "--hardware", "l4", "--runs", str(f), "--out", str(out),
                     "--json"]) == 0
    rep = json.loads(capsys.readouterr().out)
    assert rep["hardware"] == "l4" and rep["n_runs"] == 4 and rep["source"] == "joint"
    assert rep["in_sample_mape_pct_after"]["time"] < rep["in_sample_mape_pct_before"]["time"]
    assert (out / "l4.joblib").is_file() and (out / "l4.json").is_file()
    m = resolve_model_on_meta(REFS[0][0])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        p = predict(m, (512, 1024), mode="train_step", optimizer="adam", hardware="l4",
                    artifact_dir=out)
    assert p.warnings[0].startswith("calibrated on 4 measured run(s) of l4")
    assert p.time_s == pytest.approx(runs[0].time_s, rel=0.25)


def test_bad_inputs_are_one_line_errors(tmp_path, capsys):
    f = tmp_path / "bad.csv"
    f.write_text("model,input,batch\nmlp:in=4,depth=1,width=4,out=1,4,2\n")
    with pytest.raises(ExanteError, match="lacks column"):
        runs_from_csv(f)
    g = tmp_path / "neg.csv"
    g.write_text("model,input,batch,mode,dtype,optimizer,time_s,energy_j\n"
                 '"mlp:in=4,depth=1,width=4,out=1",4,2,train_step,fp32,sgd,-1,2\n')
    with pytest.raises(ExanteError, match="must be positive"):
        runs_from_csv(g)
    h = tmp_path / "mode.csv"
    h.write_text("model,input,batch,mode,dtype,optimizer,time_s,energy_j\n"
                 '"mlp:in=4,depth=1,width=4,out=1",4,2,backward,fp32,sgd,1,2\n')
    with pytest.raises(ExanteError, match="accepted"):
        runs_from_csv(h)
    with pytest.raises(ExanteError, match="models.csv"):
        runs_from_profile(tmp_path)
    rc = cli_main(["calibrate", "--hardware", "l4", "--runs", str(f), "--out", str(tmp_path)])
    assert rc == 2 and capsys.readouterr().err.count("\n") == 1
