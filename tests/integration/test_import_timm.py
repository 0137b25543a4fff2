"""experiments/import/timm_benchmarks.py and whole_model's reading of imported GPU folders.

Step times here are MADE-UP TEST FIXTURE VALUES (not measurements).
"""

from __future__ import annotations

import csv
import gzip
import importlib.util
import json
import math
import sys
from pathlib import Path

import pytest

if importlib.util.find_spec("timm") is None:
    pytest.skip("timm is not installed", allow_module_level=True)

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "experiments" / "import"))

import timm_benchmarks  # noqa: E402

from predictor.fit.datasets import load_whole_model_data  # noqa: E402
from profiling.errors import ExanteError  # noqa: E402

HEAD = ("model,infer_img_size,infer_samples_per_sec,infer_step_time,infer_batch_size,"
        "param_count,infer_gmacs,infer_macts\n")
SOURCE_MD = "- **Repository:** x, commit\n  `" + "a" * 40 + "` (fixture).\n"


def _source(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    (src / "SOURCE.md").write_text(SOURCE_MD)
    rows = "test_vit,160,1,3.0,8,0.4,0.04,0.5\ntest_byobnet,160,1,5.0,8,0.5,0.03,0.4\n" \
           "nope_model,224,1,7.0,8,1,1,1\nbig_oom_model,224,,,,1,1,1\n"
    (src / "benchmark-infer-amp-nchw-pt240-cu124-rtx3090.csv").write_text(HEAD + rows)
    (src / "benchmark-infer-amp-nhwc-pt240-cu124-rtx3090.csv").write_text(
        HEAD + rows.replace("3.0", "2.5"))
    (src / "benchmark-train-amp-nchw-pt112-cu113-rtx4090.csv").write_text(
        "model,train_samples_per_sec,train_step_time,train_batch_size,train_img_size,"
        "param_count\ntest_vit,1,9.0,4,160,0.4\n")
    return src


def test_import_rows_workloads_meta_and_rerun(tmp_path):
    src, out = _source(tmp_path), tmp_path / "datasets"
    args = ["--source", str(src), "--out-root", str(out), "--cache", str(tmp_path / "cache")]
    assert timm_benchmarks.main(args) == 0
    d = out / "rtx3090"
    with open(d / "models.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 4                               # 2 models x 2 files; nope/oom not rows
    r = next(x for x in rows if x["memory_format"] == "channels_last" and x["family"] == "test_vit")
    assert float(r["time_s"]) == pytest.approx(0.0025) and r["energy_j"] == ""
    assert (r["dtype"], r["mode"], r["torch_version"], r["hardware"]) == (
        "fp16", "inference", "2.4.0", "rtx3090")
    assert r["licence"] == "Apache-2.0" and "Ross Wightman" in r["attribution"]
    assert r["source_commit"] == "a" * 40 and int(r["params"]) > 0
    lines = gzip.decompress((d / "workloads.jsonl.gz").read_bytes()).decode().splitlines()
    keys = [json.loads(x)["key"] for x in lines]
    assert sorted(keys) == sorted({x["task_key"] for x in rows}) and len(keys) == 2
    meta = json.loads((d / "meta.json").read_text())
    sw = meta["sweeps"]["timm:benchmark-infer-amp-nchw-pt240-cu124-rtx3090"]
    assert list(sw["failures"]) == ["nope_model"]
    assert sw["untimed_rows_not_imported"] == ["big_oom_model"] and sw["n_rows"] == 2
    assert "Apache-2.0" in (d / "README.md").read_text()

    # the loader: one record per condition, NaN energy, conditions on the workloads
    data = load_whole_model_data(d)
    assert len(data.frame) == 4 and data.frame["energy_j"].isna().all()
    for (_, f), w in zip(data.frame.iterrows(), data.workloads, strict=True):
        assert w.memory_format == f["memory_format"] and w.torch_version == "2.4.0"
        assert f["key"].startswith(f["task_key"] + "|")
    # fit's attach_workloads: extra columns read, the gz file kept, nothing recaptured
    from predictor.fit.datasets import attach_workloads
    assert attach_workloads(d) == {"added": 0, "skipped": {}}
    assert not (d / "workloads.jsonl").exists()
    t4090 = load_whole_model_data(out / "rtx4090").frame
    assert t4090["key"].tolist() == ["timm:test_vit|160|b4|train_step|fp16"]   # one condition
    assert t4090["optimizer"].tolist() == ["sgd"]

    # re-run: same rows, not duplicated; other sweeps' rows are kept
    with open(d / "models.csv", "a", newline="") as fh:
        other = dict(rows[0], sweep_id="someone-else", key="other|1")
        csv.DictWriter(fh, fieldnames=list(rows[0])).writerow(other)
    assert timm_benchmarks.main(args) == 0
    with open(d / "models.csv", newline="") as fh:
        again = list(csv.DictReader(fh))
    assert len(again) == 5 and sum(x["sweep_id"] == "someone-else" for x in again) == 1


def test_loader_drops_zero_energy_and_refuses_missing_columns(tmp_path):
    src, out = _source(tmp_path), tmp_path / "datasets"
    timm_benchmarks.main(["--source", str(src), "--out-root", str(out),
                          "--cache", str(tmp_path / "cache")])
    d = out / "rtx3090"
    head = (d / "models.csv").read_text().splitlines()[0].split(",")
    with open(d / "models.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    rows[0]["energy_j"] = "0"            # zero is not a measurement
    with open(d / "models.csv", "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=head)
        w.writeheader()
        w.writerows(rows)
    data = load_whole_model_data(d)
    assert len(data.frame) == 3
    assert all(math.isnan(e) for e in data.frame["energy_j"])
    with open(d / "models.csv", "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=[h for h in head if h != "task_key"],
                           extrasaction="ignore")
        w.writeheader()
        w.writerows(rows)
    with pytest.raises(ExanteError, match="lacks column"):
        load_whole_model_data(d)
