"""Failures in the middle of a sweep task (the GPU session's OOMs): the sweep goes on, and what
was measured before the failure is written, not lost."""

from profiling import sweeps
from profiling.dataset import schema
from profiling.measure import profiler
from profiling.sweeps import SWEEPS, run_sweep

PK = dict(min_window_s=0.003, warmup_s=0.0, warmup_calls=1, jitter_s=(0.0, 0.0), calibrate_s=0.001, max_rounds=1)
CHEAP = dict(meter="replay", hardware="cpu-test", device="cpu", protocol_kwargs=PK, idle_power_w=50.0, progress=False)


def test_model_oom_keeps_the_layer_rows_measured_before_it(tmp_path, monkeypatch):
    tasks = SWEEPS["models-smoke"].tasks()
    first, second = tasks[0], tasks[1]  # two MLPs sharing their layers

    class OutOfMemoryError(RuntimeError):  # torch.OutOfMemoryError's name (torch >= 2.5 exposes it there)
        pass

    def oom(*a, **k):
        raise OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB (simulated)")

    real = profiler._measure_model
    monkeypatch.setattr(profiler, "_measure_model", oom)
    s = run_sweep("models-smoke", tmp_path, limit=1, **CHEAP)
    assert s.n_run == 1 and s.n_errors == 1 and "OutOfMemoryError" in s.errors[0][1]
    layers = [r for r in schema.layer_table(tmp_path).read() if r["layer_type"] != "reference"]
    tasks_rows = {r["key"]: r for r in schema.task_table(tmp_path).read()}
    assert layers and all(r["task_key"] == first.key for r in layers)
    assert tasks_rows[first.key]["status"] == "error" and tasks_rows[first.key]["n_layer_rows"] == len(layers)
    assert not schema.model_table(tmp_path).read()
    # the next task reuses those rows (resume seeds them) and its model row sums them
    monkeypatch.setattr(profiler, "_measure_model", real)
    s = run_sweep("models-smoke", tmp_path, limit=2, **CHEAP)
    assert s.n_run == 1 and s.n_ok == 1
    models = schema.model_table(tmp_path).read()
    assert [m["key"] for m in models] == [second.key] and models[0]["sum_layer_energy_j"] is not None


def test_layer_replay_failures_are_noted_on_ok_tasks(tmp_path, monkeypatch):
    real = profiler.replay.build_layer_workload

    def flaky(layer, *, exec="eager", **kw):
        if layer.config.type == "ReLU":
            raise RuntimeError("CUDA graph capture failed (simulated)")
        return real(layer, exec=exec, **kw)

    monkeypatch.setattr(profiler.replay, "build_layer_workload", flaky)
    run_sweep("models-smoke", tmp_path, limit=1, **CHEAP)
    row = schema.task_table(tmp_path).read()[0]
    assert row["status"] == "ok" and row["error"].startswith("not measured: ReLU [eager]")


def test_a_poisoned_cuda_context_stops_the_sweep_at_once(tmp_path, monkeypatch):
    import pytest

    from profiling.errors import ExanteError

    broken = SWEEPS["layers-smoke"].tasks()[0].key
    real_build = sweeps.SweepTask.build

    def build(self, device="meta"):
        if self.key == broken:
            raise RuntimeError("CUDA error: an illegal memory access was encountered (simulated)")
        return real_build(self, device)

    monkeypatch.setattr(sweeps.SweepTask, "build", build)
    monkeypatch.setattr(sweeps.execution, "_cuda_context_error", lambda device: "RuntimeError: illegal memory access")
    with pytest.raises(ExanteError, match="CUDA context unusable"):
        run_sweep("layers-smoke", tmp_path, limit=3, **CHEAP)
    rows = schema.task_table(tmp_path).read()
    assert [(r["key"], r["status"]) for r in rows] == [(broken, "error")]  # the others stay to do
