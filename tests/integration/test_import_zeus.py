"""experiments/import/zeus.py on a Zeus-shaped fixture folder.

Epoch times and powers here are MADE-UP TEST FIXTURE VALUES (not measurements).
"""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "experiments" / "import"))

import zeus as zeus_import  # noqa: E402

from predictor.fit.datasets import load_whole_model_data  # noqa: E402

HEAD = "dataset,network,batch_size,optimizer,power_limit,time_per_epoch,average_power\n"


def test_zeus_rows_at_max_power_limit_per_step(tmp_path):
    src, out = tmp_path / "zeus", tmp_path / "datasets"
    src.mkdir()
    (src / "SOURCE.md").write_text("- at HEAD `" + "b" * 40 + "`\n")
    (src / "summary_power_a40.csv").write_text(
        HEAD + "cifar100,shufflenetv2,1000,adadelta,300,50.0,200.0\n"
        "cifar100,shufflenetv2,1000,adam,300,40.0,210.0\n"
        "cifar100,shufflenetv2,1000,adadelta,200,80.0,150.0\n"      # below the max: not a row
        "movielens-1m,ncf,1024,adam,300,9.0,100.0\n")               # not rebuildable: skipped
    assert zeus_import.main(["--source", str(src), "--out-root", str(out)]) == 0
    d = out / "a40"
    with open(d / "models.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 2
    r = next(x for x in rows if json.loads(x["spec"])["source_optimizer"] == "adadelta")
    # per-step equivalent: 50 s x 1000 / 50,000 samples = 1 s; energy = 200 W x 1 s
    assert float(r["time_s"]) == pytest.approx(1.0)
    assert float(r["energy_j"]) == pytest.approx(200.0) and float(r["power_w"]) == 200.0
    assert (r["hardware"], r["mode"], r["dtype"], r["optimizer"], r["torch_version"]) == (
        "a40", "train_step", "fp32", "adam", "1.x")
    assert r["licence"] == "Apache-2.0" and "Zeus" in r["attribution"]
    meta = json.loads((d / "meta.json").read_text())["sweeps"]["zeus-nsdi23:a40"]
    assert meta["skipped_networks"]["movielens-1m/ncf"]["rows"] == 1
    assert meta["commit"] == "b" * 40 and meta["power_limit_w"] == 300
    data = load_whole_model_data(d)
    assert len(data.frame) == 2 and (data.frame["n_sessions"] == 1).all()   # not averaged
    assert sorted(data.frame["energy_j"]) == pytest.approx([168.0, 200.0])
