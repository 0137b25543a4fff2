"""Sweep designs (deterministic, space-filling, deduplicated) and the resumable runner."""

import json
from collections import Counter

import pytest

from profiling import sweeps
from profiling.dataset import schema
from profiling.errors import ExanteError
from profiling.sweeps import SWEEPS, run_sweep

PK = dict(min_window_s=0.003, warmup_s=0.0, warmup_calls=1, jitter_s=(0.0, 0.0), calibrate_s=0.001, max_rounds=1)
CHEAP = dict(meter="replay", hardware="cpu-test", device="cpu", protocol_kwargs=PK, idle_power_w=50.0, progress=False)


def keyset(directory, table="layers"):
    t = schema.layer_table(directory) if table == "layers" else (
        schema.model_table(directory) if table == "models" else schema.task_table(directory))
    return [(r["sweep_id"], r["key"]) for r in t.read() if r.get("layer_type") != "reference"]


# --------------------------------------------------------------------------- designs


def test_registry_names_and_durations():
    required = {"layers-smoke", "layers", "mlp", "cnn", "transformer", "mixed", "models-smoke", "reference"}
    assert required <= set(SWEEPS)
    for name, sw in SWEEPS.items():
        assert sw.name == name and sw.description
        assert sw.expected_duration_s is not None
        assert sw.expected_duration_s <= (5 * 60 if sw.smoke else 30 * 60), name
    with pytest.raises(ExanteError, match="unknown sweep"):
        sweeps.get_sweep("nope")


@pytest.mark.slow
def test_tasks_are_deterministic_and_distinct():
    for name in ("layers", "mlp", "cnn", "transformer", "mixed"):
        a = SWEEPS[name].tasks()
        b = SWEEPS[name].generate()  # regenerated from scratch: same design, same order
        assert [t.key for t in a] == [t.key for t in b if t.key in {x.key for x in a}], name
        assert [t.key for t in a] == list(dict.fromkeys(t.key for t in b)), name
        assert len({t.key for t in a}) == len(a), name
        assert len({json.dumps([t.spec, t.mode, t.dtype, t.optimizer], sort_keys=True) for t in a}) == len(a)
    t = SWEEPS["layers"].tasks(limit=3)
    assert len(t) == 3 and SWEEPS["layers"].tasks(limit=0) == []
    shards = [SWEEPS["layers"].tasks(shard=(i, 4)) for i in range(4)]
    assert sum(len(s) for s in shards) == len(SWEEPS["layers"].tasks())
    assert not set(t.key for t in shards[0]) & set(t.key for t in shards[1])
    with pytest.raises(ExanteError, match="shard"):
        SWEEPS["layers"].tasks(shard=(4, 4))


def test_latin_hypercube_is_stratified():
    pts = sweeps.lhs(37, 5, seed=1)
    assert pts.shape == (37, 5)
    for j in range(5):
        assert sorted(int(u * 37) for u in pts[:, j]) == list(range(37))
    assert (sweeps.lhs(37, 5, seed=1) == pts).all()
    assert not (sweeps.lhs(37, 5, seed=2) == pts).all()


@pytest.mark.slow
def test_layer_designs_cover_the_ranges():
    tasks = SWEEPS["layers"].tasks() + SWEEPS["layers-train"].tasks()
    types = Counter(t.spec["type"] for t in tasks)
    assert set(sweeps.supported_layer_types()) <= set(types)
    for t in ("Linear", "Conv2d", "LayerNorm", "MultiheadAttention", "sdpa", "Embedding", "MaxPool2d", "ReLU"):
        assert t in types
    batches = [t.batch for t in tasks]
    assert min(batches) <= 2 and max(batches) >= 256
    lin = [t.spec for t in tasks if t.spec["type"] == "Linear"]
    assert min(s["in"] for s in lin) < 40 and max(s["in"] for s in lin) > 2000
    conv = [t.spec for t in tasks if t.spec["type"] == "Conv2d"]
    assert {s["stride"] for s in conv} == {1, 2} and {s["k"] for s in conv} >= {1, 3, 5}
    assert any(s["groups"] == s["cin"] > 1 for s in conv) and any(1 < s["groups"] < s["cin"] for s in conv)
    attn = [t.spec for t in tasks if t.spec["type"] in ("sdpa", "MultiheadAttention")]
    assert min(s["seq"] for s in attn) < 48 and max(s["seq"] for s in attn) > 700
    assert {t.dtype for t in tasks} == {"fp32", "bf16"}
    assert {(t.mode, t.optimizer) for t in tasks} == {("inference", None), ("forward_backward", None),
                                                    ("train_step", "sgd"), ("train_step", "adam")}
    assert all(t.execs == ("eager", "graph") for t in tasks)


def test_model_designs_cover_the_ranges_and_seed_anchors():
    mlp = SWEEPS["mlp"].tasks()
    depths = [t.spec["depth"] for t in mlp]
    widths = [t.spec["width"] for t in mlp]
    assert min(depths) <= 2 and max(depths) >= 200 and min(widths) <= 15 and max(widths) >= 700
    grid = {(t.spec["depth"], t.spec["width"]) for t in mlp if t.spec["in"] == 100 and t.batch == 32}
    assert set(sweeps.SEED004_TABLE6) <= grid
    assert {t.mode for t in mlp} == {"inference", "train_step"} and {t.optimizer for t in mlp} >= {"sgd", "adam"}
    assert len({t.batch for t in mlp}) >= 8
    seed4 = {(t.spec["depth"], t.spec["width"], t.mode) for t in SWEEPS["mlp-seed004"].tasks()}
    assert len(seed4) == 17 * 4 * 2 and (170, 100, "train_step") in seed4
    tr = [t.spec for t in SWEEPS["transformer"].tasks()]
    assert min(s["d_model"] for s in tr) <= 96 and max(s["d_model"] for s in tr) >= 700
    assert min(s["layers"] for s in tr) == 1 and max(s["layers"] for s in tr) >= 16
    assert min(s["seq"] for s in tr) < 48 and max(s["seq"] for s in tr) > 600
    cnn = [t.spec for t in SWEEPS["cnn"].tasks()]
    assert {s["residual"] for s in cnn} == {True, False} and len({s["res"] for s in cnn}) >= 3
    assert {t.spec["kind"] for t in SWEEPS["mixed"].tasks()} == {"vector", "image", "sequence"}
    for name in ("mlp", "cnn", "transformer", "mixed"):
        assert {t.kind for t in SWEEPS[name].tasks()} == {"model"}


@pytest.mark.slow
def test_every_task_builds_and_captures_on_meta():
    import importlib.util

    from profiling.capture.core import capture

    for name in SWEEPS:
        for t in SWEEPS[name].tasks()[:6]:
            pkg = (t.model_ref or "").split(":")[0]
            if pkg in ("torchvision", "timm") and importlib.util.find_spec(pkg) is None:
                continue  # optional model zoos (exante[models]); the refset's other kinds are built here
            model, inputs = t.build("meta")
            cap = capture(model, inputs, dtype=t.dtype, train=t.mode != "inference")
            assert cap.layers and not cap.unsupported, (t.key, [u.config.type for u in cap.unsupported])
            if t.family == "mlp":
                assert t.model_ref.startswith("mlp:")
                from profiling.model_refs import resolve_model

                assert sum(p.numel() for p in resolve_model(t.model_ref).parameters()) == sum(
                    p.numel() for p in model.parameters())


def test_estimate_counts_distinct_configs():
    est = sweeps.estimate_sweep("models-smoke")
    assert est["tasks"] == 5 and est["model_configs"] == 5
    assert est["expected_h100_s"] == pytest.approx(
        (est["layer_configs"] + 5 + est["reference_measurements"]) * sweeps.SECONDS_PER_CONFIG)


# --------------------------------------------------------------------------- runner


def test_smoke_sweep_dedups_and_resumes(tmp_path):
    s1 = run_sweep("models-smoke", tmp_path, limit=2, **CHEAP)
    assert s1.n_run == 2 and s1.n_ok == 2 and s1.n_tasks == 2
    tasks = schema.task_table(tmp_path).read()
    assert [t["status"] for t in tasks] == ["ok", "ok"]
    # the depth-3 MLP shares all its layer configs with the depth-2 one: measured once
    assert tasks[0]["n_layer_rows"] == 4 and tasks[1]["n_layer_rows"] == 0
    models = schema.model_table(tmp_path).read()
    assert [m["layers_reused"] for m in models] == [0, 4]
    assert models[1]["sum_layer_energy_j"] > 0 and models[1]["additivity_ratio"] > 0
    assert json.loads(models[1]["layer_counts"]) != json.loads(models[0]["layer_counts"])
    # resume: the two finished tasks are skipped, the rest run, nothing duplicated
    s2 = run_sweep("models-smoke", tmp_path, limit=3, **CHEAP)
    assert s2.n_already_done == 2 and s2.n_run == 1 and s2.complete
    for table in ("layers", "models", "tasks"):
        keys = keyset(tmp_path, table)
        assert len(keys) == len(set(keys)), table
    s3 = run_sweep("models-smoke", tmp_path, limit=3, **CHEAP)
    assert s3.n_run == 0 and s3.complete
    meta = json.loads((tmp_path / "meta.json").read_text())
    assert meta["sweeps"]["models-smoke"]["n_tasks_done"] == 3
    assert set(meta["sweeps"]["models-smoke"]["sessions"]) == set(s1.sessions + s2.sessions)
    assert all(meta["sessions"][sid]["env"]["meter"] == "replay" for sid in s1.sessions)


def test_interrupted_sweep_resumes_without_duplicates(tmp_path, monkeypatch):
    real = sweeps.runner._execute
    calls = {"n": 0}

    def crash_on_third(task, session):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt  # the process dies in the middle of task 3
        return real(task, session)

    monkeypatch.setattr(sweeps.runner, "_execute", crash_on_third)
    with pytest.raises(KeyboardInterrupt):
        run_sweep("layers-smoke", tmp_path, **CHEAP)
    assert len(keyset(tmp_path, "tasks")) == 2
    meta = json.loads((tmp_path / "meta.json").read_text())
    assert meta["sweeps"]["layers-smoke"]["n_tasks_done"] == 2
    monkeypatch.setattr(sweeps.runner, "_execute", real)
    s = run_sweep("layers-smoke", tmp_path, **CHEAP)
    n = len(SWEEPS["layers-smoke"].tasks())
    assert s.n_already_done == 2 and s.n_run == n - 2 and s.complete
    tasks = keyset(tmp_path, "tasks")
    assert len(tasks) == len(set(tasks)) == n
    layers = keyset(tmp_path, "layers")
    assert len(layers) == len(set(layers)) == n  # one config per single-layer task, CPU: eager only


def test_time_budget_stops_cleanly_and_stays_resumable(tmp_path):
    s = run_sweep("layers-smoke", tmp_path, time_budget_s=0, **CHEAP)
    assert s.n_run == 0 and s.stopped == "time_budget" and not s.complete
    s = run_sweep("layers-smoke", tmp_path, time_budget_s=3600, limit=3, **CHEAP)
    assert s.n_run == 3 and s.stopped is None
    s = run_sweep("layers-smoke", tmp_path, **CHEAP)
    assert s.complete and s.n_already_done == 3
    assert "complete" in str(s)


def test_errors_are_recorded_and_skipped_on_resume(tmp_path, monkeypatch):
    broken = SWEEPS["layers-smoke"].tasks()[1].key
    real_build = sweeps.SweepTask.build

    def build(self, device="meta"):
        if self.key == broken:
            raise RuntimeError("CUDA out of memory (simulated)")
        return real_build(self, device)

    monkeypatch.setattr(sweeps.SweepTask, "build", build)
    s = run_sweep("layers-smoke", tmp_path, limit=3, **CHEAP)
    assert s.n_run == 3 and s.n_errors == 1 and s.errors[0][0] == broken and "out of memory" in s.errors[0][1]
    status = {r["key"]: r["status"] for r in schema.task_table(tmp_path).read()}
    assert status[broken] == "error"
    assert run_sweep("layers-smoke", tmp_path, limit=3, **CHEAP).n_run == 0  # not retried by default
    monkeypatch.setattr(sweeps.SweepTask, "build", real_build)
    s = run_sweep("layers-smoke", tmp_path, limit=3, retry_errors=True, **CHEAP)
    assert s.n_run == 1 and s.n_ok == 1


def test_tagged_repeat_is_a_separate_sweep_id(tmp_path):
    run_sweep("layers-smoke", tmp_path, limit=2, **CHEAP)
    s = run_sweep("layers-smoke", tmp_path, limit=2, tag="s2", **CHEAP)
    assert s.sweep_id == "layers-smoke@s2" and s.n_run == 2
    ids = Counter(sid for sid, _ in keyset(tmp_path, "layers"))
    assert ids == {"layers-smoke": 2, "layers-smoke@s2": 2}
    with pytest.raises(ExanteError, match="tag"):
        run_sweep("layers-smoke", tmp_path, tag="a b", **CHEAP)
    with pytest.raises(ExanteError, match="backend"):
        run_sweep("layers-smoke", tmp_path, backend="ray", **CHEAP)


def test_dask_backend_matches_local(tmp_path):
    distributed = pytest.importorskip("dask.distributed")
    local = tmp_path / "local"
    remote = tmp_path / "dask"
    run_sweep("layers-smoke", local, limit=5, **CHEAP)
    import dask

    with dask.config.set({"temporary-directory": str(tmp_path)}), \
            distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=False, protocol="tcp",
                                     host="127.0.0.1", dashboard_address=None) as cluster:
        with distributed.Client(cluster) as client:
            s = run_sweep("layers-smoke", remote, backend="dask", scheduler=client, limit=5, **CHEAP)
            assert s.n_run == 5 and s.n_errors == 0 and s.complete
            assert 1 <= len(s.sessions) <= 2  # one session per worker that got tasks
            again = run_sweep("layers-smoke", remote, backend="dask", scheduler=client, limit=5, **CHEAP)
            assert again.n_run == 0
    assert sorted(keyset(local)) == sorted(keyset(remote))
    assert sorted(keyset(local, "tasks")) == sorted(keyset(remote, "tasks"))
    meta = json.loads((remote / "meta.json").read_text())
    assert all(meta["sessions"][sid].get("worker", "").startswith("tcp://127.0.0.1") for sid in s.sessions)


def test_dataset_card(tmp_path):
    run_sweep("models-smoke", tmp_path, limit=2, **CHEAP)
    stats = sweeps.dataset_card_stats(tmp_path)
    assert stats["n_layer_rows"] == 4 and stats["n_model_rows"] == 2 and stats["n_reference_rows"] >= 1
    assert stats["layers_by_mode"] == {"inference": 4} and stats["models_by_family"] == {"mlp": 2}
    assert stats["additivity_ratio"]["n"] == 2 and stats["additivity_ratio"]["median"] > 0
    assert stats["spread_layers"]["p90"] >= stats["spread_layers"]["median"] >= 0
    assert stats["n_sessions"] == 1 and stats["tasks_ok"] == 2 and stats["hardware"] == "cpu-test"
    path = sweeps.write_dataset_card(tmp_path)
    text = open(path, encoding="utf-8").read()
    assert "# exante dataset: cpu-test" in text and "## Columns" in text
    assert "4 layer rows" in text and "2 model rows" in text
    run_sweep("models-smoke", tmp_path, limit=3, **CHEAP)
    sweeps.write_dataset_card(tmp_path)
    text = open(path, encoding="utf-8").read()
    assert text.count(sweeps.COUNTS_BEGIN) == 1 and "3 model rows" in text and "4 layer rows" not in text
    empty = sweeps.dataset_card_stats(tmp_path / "nothing")
    assert empty["n_layer_rows"] == 0 and empty["additivity_ratio"] is None


# --------------------------------------------------------------------------- lent-GPU sweeps (issue 13)

REFSET_JSON = __import__("pathlib").Path(__file__).resolve().parents[3] / "shared" / "reference" / "h100" / "h100_reference.json"


def test_refset_matches_the_h100_reference_definitions():
    from profiling.dataset.reference_set import reference_workloads

    ws = reference_workloads()
    assert len(ws) == 95 and len(SWEEPS["refset"].tasks()) == 95
    assert [w["kind"] for w in ws[:10]] == ["vision"] * 4 + ["transformer"] * 3 + ["mlp"] * 3  # interleaved
    if not REFSET_JSON.is_file():
        pytest.skip("../shared/reference/h100 not present")
    ref = json.loads(REFSET_JSON.read_text())["rows"]
    dtype = {"fp32": "fp32", "bf16-autocast": "bf16"}
    opt = {None: None, "sgd-momentum": "sgd", "adam": "adam", "adamw": "adamw"}
    want = Counter((r["model"], r["kind"], r.get("source"), json.dumps(r.get("arch"), sort_keys=True), r["mode"],
                    dtype[r["dtype"]], r["batch"], tuple(r["input"]), opt[r.get("optimizer")]) for r in ref)
    have = Counter()
    for w in ws:
        arch = w["arch"]
        if w["kind"] == "mlp":
            assert w["model_ref"] == f"mlp:in=100,depth={arch['depth']},width={arch['width']},out=1"
        have[(w["name"], w["kind"], w["model_ref"] if w["kind"] == "vision" else None,
              json.dumps(arch, sort_keys=True), w["mode"], w["dtype"], w["batch"], tuple(w["input"]),
              w["optimizer"])] += 1
    assert have == want


def test_refset_encoder_is_the_reference_architecture():
    import torch

    from profiling.dataset.reference_set import EncoderClassifier
    from profiling.model_refs import resolve_model

    m = resolve_model("profiling.dataset.reference_set:encoder_tiny_256x2_seq64")
    assert isinstance(m, EncoderClassifier) and len(m.encoder.layers) == 2
    layer = m.encoder.layers[0]
    assert layer.self_attn.num_heads == 4 and layer.linear1.out_features == 4 * 256 and layer.self_attn.batch_first
    assert m.emb.num_embeddings == 30522 and m.head.out_features == 2
    m.eval()
    with torch.inference_mode():
        assert m(torch.randint(0, 30522, (3, 64))).shape == (3, 2)


@pytest.mark.slow
def test_refset_whole_models_through_the_runner(tmp_path):
    """refset tasks (whole model only, sync_every windows) with the counter-change code path."""
    import torch

    keep = ("mlp-d10-w100", "encoder-tiny-256x2-seq64", "resnet18")
    picked = [t for t in sweeps.refset_design() if t.spec["name"] in keep and t.batch == 1]
    sw = sweeps.SweepDefinition("refset", "test subset", lambda: picked, protocol=sweeps.REFSET_PROTOCOL,
                                torch_flags=sweeps.TORCH_DEFAULT_FLAGS, reference_every=40)
    before = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    seen = []
    s = run_sweep(sw, tmp_path, meter="replay-changes", hardware="cpu-test", device="cpu", idle_power_w=50.0,
                  progress=False, protocol_kwargs={"min_window_s": 0.2, "warmup_s": 0.0}, on_task=seen.append)
    assert (torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32) == before
    assert s.n_run == len(picked) == 3 and [r["task_key"] for r in seen] == [t.key for t in picked]
    status = {r["key"]: r for r in schema.task_table(tmp_path).read()}
    vision = next(t.key for t in picked if t.spec["kind"] == "vision")
    if status[vision]["status"] == "error":  # torchvision is optional: a clear, recorded failure
        assert "torchvision" in status[vision]["error"]
    models = {r["task_key"]: r for r in schema.model_table(tmp_path).read()}
    for t in picked:
        if t.spec["kind"] == "vision" and t.key not in models:
            continue
        r = models[t.key]
        assert status[t.key]["status"] == "ok" and status[t.key]["n_model_rows"] == 1
        assert r["family"] == f"refset/{t.spec['kind']}" and r["model_ref"] == t.model_ref
        assert r["meter"] == "replay-changes" and r["protocol_version"] == "2" and r["n_windows"] == 2
        assert r["time_s"] > 0 and r["energy_j"] == pytest.approx(100.0 * r["time_s"], rel=0.1)
        windows = json.loads(r["windows_json"])
        assert all(w["calls"] % 8 == 0 and w["n_changes"] >= 2 and w["time_s"] >= 0.2 for w in windows)
        assert r["n_unsupported"] == 0 and json.loads(r["layer_counts"]) and r["macs"] > 0
    assert not [r for r in schema.layer_table(tmp_path).read() if r["layer_type"] != "reference"]
    assert run_sweep(sw, tmp_path, meter="replay", hardware="cpu-test", device="cpu", idle_power_w=50.0,
                     progress=False).n_run == 0  # resumed: all done


def test_torch_flags_are_set_and_restored():
    import torch

    before = torch.backends.cudnn.allow_tf32
    with sweeps.torch_flags({"allow_tf32_cudnn": not before}):
        assert torch.backends.cudnn.allow_tf32 is (not before)
    assert torch.backends.cudnn.allow_tf32 is before
    with pytest.raises(ExanteError, match="unknown torch flag"):
        with sweeps.torch_flags({"fast_math": True}):
            pass


def test_host_launch_and_gpu_eff_designs():
    host = SWEEPS["host-launch"].tasks()
    n_eager_tiny = next(i for i, t in enumerate(host) if t.execs == ("graph",))
    assert all(t.execs == ("eager",) for t in host[:n_eager_tiny])  # eager tier first: any prefix is eager
    modes = {}
    for t in host[:n_eager_tiny]:
        modes.setdefault(t.spec["type"], set()).add((t.mode, t.optimizer, t.dtype))
    assert set(modes) == set(sweeps.supported_layer_types())
    assert {("train_step", "sgd", "fp32"), ("train_step", "adam", "fp32")} <= modes["Linear"]
    assert ("inference", None, "bf16") in modes["sdpa"] and all(m[0] != "train_step" for m in modes["ReLU"])
    assert max(t.batch for t in host[:n_eager_tiny]) <= 2
    eff, tf32 = SWEEPS["gpu-eff"].tasks(), SWEEPS["gpu-eff-tf32"].tasks()
    assert {t.dtype for t in eff} == {"fp32", "bf16"} and {t.dtype for t in tf32} == {"fp32"}
    assert {t.spec["type"] for t in tf32} == {"Linear", "Conv2d", "sdpa"}
    assert {t.spec["type"] for t in eff} >= {"Linear", "Conv2d", "sdpa", "LayerNorm", "BatchNorm2d"}
    assert SWEEPS["gpu-eff"].torch_flags["allow_tf32_matmul"] is False
    assert SWEEPS["gpu-eff-tf32"].torch_flags["allow_tf32_matmul"] is True
    assert len({t.key for t in eff}) == len(eff)  # tf32 repeats keys of gpu-eff: its own sweep id tells them apart
