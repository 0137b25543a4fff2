"""The GPU self-test (experiments/device/gpu_selftest.py) on a CPU: its skip path, and its
layer-type loop (every sweep layer type x mode x dtype, eager) through the real replay code."""

import csv
import importlib.util
import json
import os

import pytest
import torch

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PATH = os.path.join(ROOT, "experiments", "device", "gpu_selftest.py")


def _load():
    spec = importlib.util.spec_from_file_location("gpu_selftest", PATH)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_skips_cleanly_without_cuda(monkeypatch, tmp_path, capsys):
    st = _load()
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert st.main(["--out", str(tmp_path)]) == 0
    assert "SKIPPED" in capsys.readouterr().out
    assert st.main(["--device", "cuda", "--out", str(tmp_path)]) == 0


def test_bad_section_is_an_argument_error():
    st = _load()
    with pytest.raises(SystemExit):
        st.parse_args(["--sections", "layers,nope"])


def test_every_sweep_layer_type_builds_and_runs_on_cpu_eager(tmp_path, capsys):
    from profiling import sweeps

    st = _load()
    rc = st.main(["--device", "cpu", "--eager-only", "--sections", "layers", "--no-extras", "--calls", "1",
                  "--out", str(tmp_path)])
    out = capsys.readouterr().out
    report = json.loads((tmp_path / "selftest.json").read_text())
    rows = [r for r in report["rows"] if r["section"] == "layers"]
    fails = [r for r in rows if r["status"] == "FAIL"]
    assert rc == 0 and not fails, fails[:5]
    seen = {}
    for r in rows:
        t = r.get("layer")
        if t:
            seen.setdefault(r["name"].split("(")[0], set()).add((r["exec"], r["mode"], r["optimizer"], r["dtype"]))
    combos = {("eager", m, o or "", d) for m, o in st.LAYER_MODES for d in st.DTYPES}
    for t in sweeps.supported_layer_types():
        assert seen.get(t) == combos, t
    with open(tmp_path / "selftest.tsv", newline="") as f:
        tsv = list(csv.DictReader(f, delimiter="\t"))
    assert len(tsv) == len(report["rows"]) and set(tsv[0]) == set(st.Report.TSV_COLUMNS)
    assert "layer workloads" in out and "FAIL" not in out
