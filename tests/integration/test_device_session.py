"""The lent-GPU call end to end on a CPU: experiments/device/h200_session.sh -> h200_measure.py
(self-test, counter-change meter over a replay power, refset + host-launch subsets, files copied
to $OUT as it goes) -> collect.py into a datasets root -> a second call resumes from it."""

import csv
import json
import os
import shutil
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SCRIPT = os.path.join(ROOT, "experiments", "device", "h200_session.sh")
PROTOCOL = '{"min_window_s": 0.2, "warmup_s": 0.0, "max_rounds": 1}'
FIRST = r"mlp-d10-w100:inference:fp32:-:b1#|layer:Linear:inference:fp32:-:b1#"
SECOND = FIRST + r"|layer:ReLU:inference:fp32:-:b1#"


def _call(tmp_path, out, tasks, selftest):
    env = dict(os.environ, OUT=str(out), DEVICE="cpu", METER="replay-changes", HARDWARE="cpu-dryrun",
               DATASETS=str(tmp_path / "datasets"), WORK=str(tmp_path / f"work-{out.name}"), TASKS=tasks,
               PROTOCOL=PROTOCOL, PLAN="refset:60 host-launch:30", SELFTEST_S=str(selftest), SKIP_WHEELS="1",
               PYTHON=sys.executable)
    r = subprocess.run(["bash", SCRIPT, "150"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=240)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-2000:]
    return r.stdout


def _rows(path):
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def _collect(src, datasets, capsys):
    import importlib.util

    spec = importlib.util.spec_from_file_location("collect", os.path.join(ROOT, "experiments", "device", "collect.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    assert mod.main([str(src), "--datasets", str(datasets)]) == 0
    return capsys.readouterr().out


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("bash") is None or shutil.which("timeout") is None, reason="needs bash and timeout")
def test_session_dry_run_collect_and_resume(tmp_path, capsys):
    out1 = tmp_path / "out1"
    log = _call(tmp_path, out1, FIRST, selftest=10)
    files = sorted(os.listdir(out1))
    assert files == ["layers.csv", "meta.json", "models.csv", "selftest.json", "selftest.tsv", "session.log",
                     "tasks.csv"], files  # <= 8 files, no temporary leftovers
    assert "hardware id 'cpu-dryrun'" in log and "== sweep refset" in log and "== sweep host-launch" in log
    tasks = _rows(out1 / "tasks.csv")
    # the refset MLP at batch 1, the tiny Linear eager, and its CUDA-graph twin (recorded: CUDA only)
    assert sorted((t["sweep_id"], t["status"]) for t in tasks) == [("host-launch", "error"), ("host-launch", "ok"),
                                                                   ("refset", "ok")]
    assert "CUDA graphs need a CUDA device" in next(t["error"] for t in tasks if t["status"] == "error")
    model = _rows(out1 / "models.csv")[0]
    sid = model["session_id"]
    assert model["family"] == "refset/mlp" and model["model_ref"] == "mlp:in=100,depth=10,width=100,out=1"
    assert model["meter"] == "replay-changes" and model["protocol_version"] == "2" and sid.startswith("cpu-dryrun-")
    assert model["torch_version"] and model["date"] and float(model["energy_j"]) > 0
    layers = [r for r in _rows(out1 / "layers.csv") if r["layer_type"] != "reference"]
    assert {r["session_id"] for r in layers} == {sid}  # one session id for every sweep of the call
    meta = json.loads((out1 / "meta.json").read_text())
    call = meta["calls"][sid]
    assert call["plan"] == "refset:60 host-launch:30" and call["idle_power_w"] == pytest.approx(100.0, rel=0.05)
    assert json.loads((out1 / "selftest.json").read_text())["counts"].get("FAIL", 0) == 0

    datasets = tmp_path / "datasets"
    text = _collect(out1, datasets, capsys)
    assert "added" in text and (datasets / "cpu-dryrun" / "plan.csv").is_file()
    again = _collect(out1, datasets, capsys)  # collecting the same files twice adds nothing
    assert "added 0 layer, 0 model, 0 task rows" in again
    plan = _rows(datasets / "cpu-dryrun" / "plan.csv")
    assert len([p for p in plan if p["sweep_id"] == "refset"]) == 95
    assert sum(p["status"] == "ok" for p in plan) == 2

    out2 = tmp_path / "out2"
    log2 = _call(tmp_path, out2, SECOND, selftest=0)  # a later lent GPU: resumes from datasets/
    assert "copied from" in log2
    tasks2 = _rows(out2 / "tasks.csv")
    assert len(tasks2) == len(tasks) + 2  # only the new tasks ran (the ReLU eager + its graph twin)
    _collect(out2, datasets, capsys)
    merged = _rows(datasets / "cpu-dryrun" / "tasks.csv")
    assert len(merged) == len({(t["sweep_id"], t["key"]) for t in merged}) == len(tasks2)
    sessions = {r["session_id"] for r in _rows(datasets / "cpu-dryrun" / "models.csv")
                + _rows(datasets / "cpu-dryrun" / "layers.csv")}
    assert len(sessions) == 2
