"""Smoke tests of the life-cycle experiments (experiments/lifecycle/, experiments/wide_vs_deep/)
on CPU: the `replay` / `estimated` meters stand in for NVML, so the numbers mean nothing; the
tests check the plumbing: output files and columns, resume, "no prediction" without an
artifact, and the prediction path with the synthetic artifact (conftest's ``art_dir``)."""

import csv
import functools
import importlib.util
import json
import math
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
LC = os.path.join(ROOT, "experiments", "lifecycle")
WVD = os.path.join(ROOT, "experiments", "wide_vs_deep")
NO_HW = "nohw-test"           # a hardware id that never has an artifact anywhere


def _load(name, path):
    mod_name = f"exante_exp_{name}"
    if mod_name in sys.modules:
        return sys.modules[mod_name]
    spec = importlib.util.spec_from_file_location(mod_name, path)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[mod_name] = mod
    spec.loader.exec_module(mod)
    return mod


VT = _load("validate_training", os.path.join(LC, "validate_training.py"))
LIN = _load("linearity", os.path.join(LC, "linearity.py"))
WV = _load("wide_vs_deep", os.path.join(WVD, "run.py"))
LB = sys.modules["lcbench"]


def _rows(path):
    with open(path, newline="") as f:
        r = csv.DictReader(f)
        return r.fieldnames, list(r)


def _common(out, *extra, meter="replay", hardware=NO_HW, artifact_dir=None):
    args = ["--out", str(out), "--smoke", "--device", "cpu", "--meter", meter, "--hardware", hardware]
    if artifact_dir is not None:
        args += ["--artifact-dir", str(artifact_dir)]
    if meter == "estimated":
        args += ["--rated-power-w", "50"]
    return args + list(extra)


# --------------------------------------------------------------------------- validate_training


def test_validate_training_no_artifact_measures_and_resumes(tmp_path):
    out = tmp_path / "lc"
    assert VT.main(_common(out, "--artifact-dir", str(tmp_path / "empty"))) == 0
    cols, rows = _rows(out / VT.RESULTS)
    assert tuple(cols) == VT.RUN_COLUMNS
    assert [r["model"] for r in rows] == [r[0] for r in VT.SMOKE_RUNS]
    for r in rows:
        assert r["prediction_status"] == "no prediction" and "no fitted model" in r["prediction_note"]
        assert r["pred_energy_j"] == "" and r["pred_error_pct"] == ""
        assert float(r["energy_j"]) > 0 and float(r["time_s"]) > 0
        assert r["meter"] == "replay" and r["smoke"] == "true" and r["protocol_version"]
        assert r["torch_version"] and r["date"] and r["idle_power_w"]
        n, e, b = int(r["dataset_size"]), int(r["epochs"]), int(r["batch"])
        assert int(r["steps"]) == math.ceil(n / b) * e           # drop_last=False: last batch kept
        marks = json.loads(r["epoch_marks_json"])
        assert len(marks) == e and marks[-1][1] == pytest.approx(float(r["energy_j"]))
    assert rows[0]["last_batch"] == "8"                           # 200 samples, batch 64
    preds = json.loads((out / LB.PREDICTIONS).read_text())       # recorded before each run
    assert sorted(preds) == sorted(r["run_key"] for r in rows)
    assert all(p["prediction_status"] == "no prediction" for p in preds.values())
    assert not list(out.glob("*.lock"))                             # the device tool returns <= 8 files
    assert "no prediction" in (out / "summary.md").read_text()
    # resume: nothing measured again
    assert VT.main(_common(out, "--artifact-dir", str(tmp_path / "empty"))) == 0
    assert len(_rows(out / VT.RESULTS)[1]) == 3
    status = json.loads((out / "validate_status.json").read_text())
    assert status["measured"] == [] and len(status["skipped_existing"]) == 3 and status["failed"] == []


def test_validate_training_prediction_path(tmp_path, art_dir):
    from predictor.carbon.lifecycle import Scenario, TrainingRun, estimate
    from predictor.engine.predict import predict

    out = tmp_path / "lc"
    assert VT.main(_common(out, "--models", "mlp-d2-w16,cnn-tiny", meter="estimated", hardware="synthtest",
                           artifact_dir=art_dir)) == 0
    _, rows = _rows(out / VT.RESULTS)
    assert [r["model"] for r in rows] == ["mlp-d2-w16", "cnn-tiny"]
    for r in rows:
        assert r["prediction_status"] == "ok" and r["artifact_id"].startswith("synthtest-")
        e, p = float(r["energy_j"]), float(r["pred_energy_j"])
        assert float(r["pred_energy_j_low"]) <= p <= float(r["pred_energy_j_high"])
        assert float(r["pred_ratio"]) == pytest.approx(p / e)
        assert float(r["pred_error_pct"]) == pytest.approx(100 * (p - e) / e)
        assert r["meter_measured"] == "false"                     # the estimated meter is labelled
        assert float(r["power_w"]) == pytest.approx(50.0, rel=0.02)   # rated power x time
        pred = json.loads((out / LB.PREDICTIONS).read_text())[r["run_key"]]
        assert pred["predicted_at"] <= r["date"]                  # predicted before it was measured
        assert pred["pred_energy_j"] == pytest.approx(float(r["pred_energy_j"]))
    # the row holds exactly the life-cycle estimate of that training run
    r = rows[0]
    rep = estimate(Scenario(model=r["model_ref"], input_shape=r["input_shape"], hardware="synthtest",
                            training=TrainingRun(int(r["epochs"]), int(r["dataset_size"]), int(r["batch"]),
                                                 optimizer=r["optimizer"])),
                   predict_fn=functools.partial(predict, artifact_dir=art_dir))
    assert float(r["pred_energy_j"]) == pytest.approx(rep.stages["training"].energy_j, rel=1e-9)
    assert "mean |error|" in (out / "summary.md").read_text()


def test_validate_training_time_budget(tmp_path):
    out = tmp_path / "lc"
    assert VT.main(_common(out, "--models", "mlp-d2-w16", "--time-budget-s", "0")) == 0
    assert not (out / VT.RESULTS).exists()
    status = json.loads((out / "validate_status.json").read_text())
    assert status["measured"] == [] and len(status["skipped_budget"]) == 1


# --------------------------------------------------------------------------- linearity


def test_linearity_no_artifact_fits_theta_and_resume(tmp_path):
    out = tmp_path / "lin"
    assert LIN.main(_common(out)) == 0
    cols, rows = _rows(out / LIN.RUNS)
    assert tuple(cols) == LIN.RUN_COLUMNS
    train = [r for r in rows if r["kind"] == "train"]
    inf = [r for r in rows if r["kind"] == "inference"]
    assert len(train) == 7 and len(inf) == 1                      # 4 + 4 runs share one point
    assert all(r["prediction_status"] == "no prediction" for r in rows)
    fcols, fits = _rows(out / LIN.FITS)
    assert tuple(fcols) == LIN.FIT_COLUMNS
    assert {f["sweep"] for f in fits} == {"dataset_size", "epochs"}
    for f in fits:
        assert f["n_points"] == "4" and float(f["slope_j"]) > 0 and float(f["r2"]) <= 1.0
        assert f["pred_slope_j"] == ""                            # nothing to fit without predictions
    tcols, th = _rows(out / LIN.THETA)
    assert tuple(tcols) == LIN.THETA_COLUMNS and len(th) == 1
    assert float(th[0]["theta"]) > 0 and th[0]["pred_theta_step"] == ""
    for name in ("linearity.md", "linearity.png", "linearity_status.json"):
        assert (out / name).exists(), name
    assert "No prediction" in (out / "linearity.md").read_text()
    assert LIN.main(_common(out)) == 0                            # resume
    assert len(_rows(out / LIN.RUNS)[1]) == 8
    status = json.loads((out / "linearity_status.json").read_text())
    assert status["measured"] == [] and status["failed"] == [] and len(status["skipped_existing"]) == 8


def test_linearity_prediction_path(tmp_path, art_dir):
    out = tmp_path / "lin"
    assert LIN.main(_common(out, "--factors", "1,2", "--epochs", "1,2", meter="estimated", hardware="synthtest",
                            artifact_dir=art_dir)) == 0
    _, rows = _rows(out / LIN.RUNS)
    assert len(rows) == 4 and all(r["prediction_status"] == "ok" for r in rows)
    inf = [r for r in rows if r["kind"] == "inference"][0]
    assert float(inf["pred_energy_j"]) == pytest.approx(float(inf["pred_inference_energy_j"]))
    _, fits = _rows(out / LIN.FITS)
    for f in fits:
        assert float(f["pred_slope_j"]) > 0              # measured CPU timings are noise: only finite
        assert math.isfinite(float(f["slope_ratio_pred_over_measured"]))
    _, th = _rows(out / LIN.THETA)
    assert float(th[0]["pred_theta_step"]) > 0 and float(th[0]["pred_theta_per_sample"]) > 0


def test_linfit_and_steps():
    fit = LIN.linfit([1, 2, 4, 8], [3, 5, 9, 17])
    assert fit["slope"] == pytest.approx(2) and fit["intercept"] == pytest.approx(1)
    assert fit["r2"] == pytest.approx(1) and fit["max_abs_rel_residual"] == pytest.approx(0, abs=1e-9)
    assert LIN.linfit([1], [2])["slope"] is None
    assert LB.steps_per_epoch(10, 4) == (2, 2) and LB.steps_per_epoch(10, 4, drop_last=True) == (2, 0)


# --------------------------------------------------------------------------- wide vs deep


def test_wide_vs_deep_seed_grid():
    assert len(WV.SEED_GRID) == 18
    assert all(WV.mlp_params(100, d, w) == p for _, d, w, _, p, _ in WV.SEED_GRID)
    text = open(WV.SEED_FILE).read().splitlines() if os.path.exists(WV.SEED_FILE) else None
    if text is not None:                                          # the quoted lines are the table's
        for line, d, w, nodes, p, _ in WV.SEED_GRID:
            cells = text[line - 1].split("\t")
            assert [int(c) for c in cells[3:7]] == [d, w, nodes, p]


@pytest.mark.slow
def test_wide_vs_deep_no_artifact_resume_as_a_script(tmp_path):
    out = tmp_path / "wvd"
    cmd = [sys.executable, os.path.join(WVD, "run.py")] + _common(out)
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=120, cwd=str(tmp_path))
    assert res.returncode == 0, res.stderr[-2000:]
    cols, rows = _rows(out / WV.RESULTS)
    assert tuple(cols) == WV.COLUMNS and len(rows) == 2 * len(WV.SMOKE_GRID)
    assert {r["mode"] for r in rows} == {"train_step", "inference"}
    assert {r["shape"] for r in rows} == {"wide", "deep"}
    assert all(r["prediction_status"] == "no prediction" and float(r["energy_j"]) > 0 for r in rows)
    from profiling.dataset.schema import MODEL_COLUMNS

    mcols, mrows = _rows(out / WV.MODELS)
    assert tuple(mcols) == MODEL_COLUMNS and len(mrows) == len(rows)
    assert all(json.loads(r["layer_counts"]) for r in mrows)
    for name in ("table.md", "wide_vs_deep.png", "wide_vs_deep_summary.json"):
        assert (out / name).exists(), name
    assert json.loads((out / "wide_vs_deep_status.json").read_text())["failed"] == []
    assert WV.main(_common(out)) == 0                             # resume, in process
    assert len(_rows(out / WV.RESULTS)[1]) == len(rows)
    assert len(_rows(out / WV.MODELS)[1]) == len(rows)


def test_wide_vs_deep_prediction_path(tmp_path, art_dir):
    out = tmp_path / "wvd"
    assert WV.main(_common(out, "--configs", "8x4,4x8", meter="estimated", hardware="synthtest",
                           artifact_dir=art_dir)) == 0
    _, rows = _rows(out / WV.RESULTS)
    assert len(rows) == 4
    for r in rows:
        assert r["prediction_status"] == "ok" and float(r["pred_energy_j"]) > 0
        assert r["optimizer"] == ("adam" if r["mode"] == "train_step" else "")
    summary = json.loads((out / "wide_vs_deep_summary.json").read_text())
    assert summary["n_predicted"] == 4


# --------------------------------------------------------------------------- --repredict


def test_repredict_adds_predictions_after_measurement(tmp_path, art_dir):
    """Rows measured without an artifact get predictions later (no meter, no device), in
    separate *_repredicted files whose notes say so; the measured files stay untouched."""
    later = ["--repredict", "--hardware", "synthtest", "--artifact-dir", str(art_dir)]
    cases = ((VT, tmp_path / "v", ["--models", "mlp-d2-w16"], VT.RESULTS, "summary_repredicted.md"),
             (LIN, tmp_path / "l", ["--factors", "1,2", "--epochs", "1,2"], LIN.RUNS, "linearity_repredicted.md"),
             (WV, tmp_path / "w", ["--configs", "8x4"], WV.RESULTS, "table_repredicted.md"))
    for mod, out, extra, results, md in cases:
        assert mod.main(_common(out, *extra)) == 0
        before = (out / results).read_bytes()
        assert mod.main(["--out", str(out)] + extra + later + (["--smoke"] if mod is LIN else [])) == 0
        assert (out / results).read_bytes() == before
        _, rows = _rows(out / LB.repredicted_name(results))
        _, orig = _rows(out / results)
        assert len(rows) == len(orig) > 0
        for r, o in zip(rows, orig, strict=True):
            assert r["prediction_status"] == "ok" and r["prediction_note"].startswith(LB.REPREDICTED)
            assert r["energy_j"] == o["energy_j"] and o["prediction_status"] == "no prediction"
            assert float(r["pred_ratio"]) == pytest.approx(float(r["pred_energy_j"]) / float(r["energy_j"]))
        assert "AFTER the measurement" in (out / md).read_text()


# --------------------------------------------------------------------------- --export, --analyse-only


def test_export_and_analyse_only(tmp_path):
    """--export copies each script's files flat (at most 8: the device tool's limit);
    --analyse-only rebuilds the derived files from the rows without measuring."""
    work, exp = tmp_path / "work", tmp_path / "OUT"
    assert VT.main(_common(work / "lc", "--models", "mlp-d2-w16", "--export", str(exp / "v"))) == 0
    assert LIN.main(_common(work / "lc", "--factors", "1,2", "--epochs", "1,2", "--export", str(exp / "l"))) == 0
    assert WV.main(_common(work / "wvd", "--configs", "8x4", "--export", str(exp / "w"))) == 0
    for mod, sub in ((VT, "v"), (LIN, "l"), (WV, "w")):
        names = sorted(os.listdir(exp / sub))
        assert names == sorted(mod.own_files()) and len(names) <= 8, (sub, names)
    for f in ("linearity.md", "linearity.png", LIN.FITS):
        (work / "lc" / f).unlink()
    before = (work / "lc" / LIN.RUNS).read_bytes()
    assert LIN.main(["--out", str(work / "lc"), "--smoke", "--factors", "1,2", "--epochs", "1,2",
                     "--analyse-only"]) == 0
    assert (work / "lc" / "linearity.png").exists() and (work / "lc" / LIN.FITS).exists()
    assert (work / "lc" / LIN.RUNS).read_bytes() == before
    (work / "wvd" / "table.md").unlink()
    assert WV.main(["--out", str(work / "wvd"), "--analyse-only"]) == 0
    assert (work / "wvd" / "table.md").exists()


def test_predictor_refusal_still_measures(tmp_path, art_dir, monkeypatch):
    """A predictor that refuses (ExanteError; the physics engine's own refusals -- memory, an
    untrainable model -- are tested in test_predict) costs no measurement: the run is measured
    and the prediction recorded as failed with the refusal's message."""
    import predictor.engine.predict as engine_predict
    from profiling.errors import ExanteError

    def refuse(*args, **kwargs):
        raise ExanteError("refused for the test: optimizer adamw")

    monkeypatch.setattr(engine_predict, "predict", refuse)
    out2 = tmp_path / "w"
    assert WV.main(_common(out2, "--configs", "8x4", "--modes", "train_step", "--optimizer", "adamw",
                           meter="estimated", hardware="synthtest", artifact_dir=art_dir)) == 0
    _, rows = _rows(out2 / WV.RESULTS)
    assert len(rows) == 1 and rows[0]["prediction_status"] == "failed"
    assert "adamw" in rows[0]["prediction_note"] and float(rows[0]["energy_j"]) > 0
