"""``exante bench timm`` on a tiny folder laid out like extdata/timm_benchmarks.

The step times below are MADE-UP TEST FIXTURE VALUES (not measurements): they only exercise
the parsing, the per-file metrics and the failure reporting.
"""

from __future__ import annotations

import importlib.util
import json

import numpy as np
import pytest

if importlib.util.find_spec("timm") is None:
    pytest.skip("timm is not installed", allow_module_level=True)

from predictor.bench.timm import run_timm_bench, score  # noqa: E402
from predictor.cli.main import main as cli_main  # noqa: E402

INFER_HEAD = ("model,infer_img_size,infer_samples_per_sec,infer_step_time,infer_batch_size,"
              "param_count,infer_gmacs,infer_macts\n")
# fixture rows: model, img, step ms, batch, gmacs (made up)
INFER_ROWS = [("test_vit", 160, 3.0, 64, 0.04), ("test_byobnet", 160, 5.0, 64, 0.03),
              ("test_efficientnet", 160, 4.0, 64, 0.02), ("test_vit", 192, 4.5, 64, 0.06),
              ("no_such_timm_model", 224, 9.0, 64, 1.0)]
TRAIN_HEAD = "model,train_samples_per_sec,train_step_time,train_batch_size,train_img_size,param_count\n"
TRAIN_ROWS = [("test_vit", 12.0, 32, 160), ("test_byobnet", 20.0, 32, 160),
              ("test_efficientnet", 16.0, 32, 160)]


def _folder(tmp_path):
    d = tmp_path / "bench"
    d.mkdir()
    (d / "benchmark-infer-amp-nhwc-pt240-cu124-rtx3090.csv").write_text(INFER_HEAD + "".join(
        f"{m},{s},1,{t},{b},0.1,{g},0.1\n" for m, s, t, b, g in INFER_ROWS))
    (d / "benchmark-train-amp-nchw-pt112-cu113-rtx4090.csv").write_text(TRAIN_HEAD + "".join(
        f"{m},1,{t},{b},{s},0.1\n" for m, t, b, s in TRAIN_ROWS))
    (d / "benchmark-infer-amp-nchw-pt240-cu124-rtx3090-dynamo.csv").write_text(INFER_HEAD)
    (d / "SOURCE.md").write_text("fixture\n")
    return d


def test_bench_reports_every_file_and_its_failures(tmp_path):
    d = _folder(tmp_path)
    r = run_timm_bench(d, cache_dir=tmp_path / "cache")
    inf = r["files"]["benchmark-infer-amp-nhwc-pt240-cu124-rtx3090.csv"]
    assert (inf["hardware"], inf["mode"], inf["dtype"], inf["memory_format"],
            inf["torch_version"]) == ("rtx3090", "inference", "fp16", "channels_last", "2.4.0")
    assert inf["n"] == 4 and inf["rows_in_file"] == 5
    assert list(inf["failures"]) == ["no_such_timm_model"]
    assert inf["failed_pct"] == pytest.approx(20.0)
    for k in ("mape_pct", "median_ape_pct", "within_25_pct", "kendall_tau",
              "gmacs_linear_mape_pct", "one_constant_mape_pct"):
        assert inf[k] is not None and np.isfinite(inf[k]), k
    assert inf["gmacs_source"] == "file column"
    tr = r["files"]["benchmark-train-amp-nchw-pt112-cu113-rtx4090.csv"]
    assert (tr["hardware"], tr["mode"], tr["torch_version"], tr["n"]) == (
        "rtx4090", "train_step", "1.12", 3)
    assert tr["gmacs_source"].startswith("captured") and tr["failures"] == {}
    assert "dynamo" in next(iter(r["skipped_files"]))
    assert set(r["engine"]) == {"rtx3090", "rtx4090"}
    assert r["per_gpu"]["rtx3090"]["n"] == 4 and r["per_gpu"]["rtx4090"]["n"] == 3
    assert r["per_gpu"]["rtx3090"]["mape_pct"] == pytest.approx(inf["mape_pct"])


def test_sample_limit_and_glob(tmp_path):
    d = _folder(tmp_path)
    r = run_timm_bench(d, files="*infer*", sample=2, seed=1, cache_dir=tmp_path / "cache")
    assert list(r["files"]) == ["benchmark-infer-amp-nhwc-pt240-cu124-rtx3090.csv"]
    f = r["files"]["benchmark-infer-amp-nhwc-pt240-cu124-rtx3090.csv"]
    assert f["n"] + f["n_failed_rows"] == 2
    r2 = run_timm_bench(d, files="*infer*", sample=2, seed=1, cache_dir=tmp_path / "cache")
    assert r2["files"] == r["files"]          # the same seed draws the same rows
    r3 = run_timm_bench(d, files="*train*", limit=1, cache_dir=tmp_path / "cache",
                        rows_out=tmp_path / "rows.csv")
    assert next(iter(r3["files"].values()))["n"] == 1
    lines = (tmp_path / "rows.csv").read_text().splitlines()
    assert lines[0].startswith("file,hardware,model") and len(lines) == 2
    assert ",rtx4090,test_vit,160,32,0.012," in lines[1]


def test_score_metrics():
    true = np.array([1.0, 2.0, 4.0, 8.0])
    s = score(2 * true, true, gmacs_x_batch=true * 10)
    assert s["mape_pct"] == pytest.approx(100.0) and s["median_ape_pct"] == pytest.approx(100.0)
    assert s["within_25_pct"] == 0.0 and s["kendall_tau"] == pytest.approx(1.0)
    assert s["one_constant_mape_pct"] == pytest.approx(0.0, abs=1e-9)
    assert s["gmacs_linear_mape_pct"] == pytest.approx(0.0, abs=1e-6)
    s = score(true[::-1], true)
    assert s["kendall_tau"] == pytest.approx(-1.0) and "gmacs_linear_mape_pct" not in s


def test_cli_json_and_errors(tmp_path, capsys):
    d = _folder(tmp_path)
    assert cli_main(["bench", "timm", str(d), "--json", "--quiet", "--files", "*train*",
                     "--cache", str(tmp_path / "cache")]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["files"]["benchmark-train-amp-nchw-pt112-cu113-rtx4090.csv"]["n"] == 3
    assert cli_main(["bench", "timm", str(tmp_path / "nope")]) == 2
    assert "exante: error:" in capsys.readouterr().err
    assert cli_main(["bench", "timm", str(d), "--files", "*.md"]) == 2
    assert "no benchmark file" in capsys.readouterr().err
    assert cli_main(["bench", "timm", str(d), "--limit", "0"]) == 2


def test_a_gpu_without_predictor_is_reported_not_fatal(tmp_path, monkeypatch):
    import importlib

    from profiling.errors import ExanteError

    P = importlib.import_module("predictor.engine.predict")      # the module, not the function

    real = P._load_or_transfer

    def fake(hw, artifact_dir):
        if hw == "rtx4090":
            raise ExanteError("no fitted model for hardware 'rtx4090' (test)")
        return real(hw, artifact_dir)

    monkeypatch.setattr(P, "_load_or_transfer", fake)
    r = run_timm_bench(_folder(tmp_path), cache_dir=tmp_path / "cache")
    assert "no predictor for rtx4090" in r["skipped_files"][
        "benchmark-train-amp-nchw-pt112-cu113-rtx4090.csv"]
    assert list(r["files"]) == ["benchmark-infer-amp-nhwc-pt240-cu124-rtx3090.csv"]


@pytest.mark.slow
def test_jobs_capture_first_in_processes_same_report(tmp_path):
    d = _folder(tmp_path)
    one = run_timm_bench(d, cache_dir=tmp_path / "c1", files="*infer*")
    two = run_timm_bench(d, cache_dir=tmp_path / "c2", files="*infer*", jobs=2)
    assert two["files"] == one["files"]
    assert len(list((tmp_path / "c2").rglob("*.json.gz"))) == 4     # captured by the workers
    assert len(list((tmp_path / "c2").rglob("*.err.json"))) == 1    # the missing model
    with pytest.raises(Exception, match="--jobs"):
        run_timm_bench(d, cache_dir=tmp_path / "c2", jobs=0)
