"""profile_model end to end on CPU with cheap meters and tiny windows; replay workloads."""

import json
import math
import time

import pytest
import torch
from torch import nn
from torch.nn import functional as F

from profiling.capture.core import capture
from profiling.dataset import schema
from profiling.errors import ExanteError
from profiling.measure import replay
from profiling.measure.profiler import ProfileSession, hardware_id, profile_model
from profiling.meters import EstimatedMeter, ReplayMeter

# tiny windows: the whole file runs in a few seconds
PK = dict(min_window_s=0.003, warmup_s=0.0, warmup_calls=1, jitter_s=(0.0, 0.0), calibrate_s=0.001, max_rounds=1)


def run(model, x, **kw):
    kw.setdefault("meter", "estimated")
    kw.setdefault("rated_power_w", 150.0)
    kw.setdefault("hardware", "cpu-test")
    kw.setdefault("idle_power_w", 60.0)
    kw.setdefault("protocol_kwargs", PK)
    kw.setdefault("progress", False)
    return profile_model(model, x, **kw)


def tiny_mlp():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, 32), nn.ReLU(), nn.Linear(32, 5))


class TinyCNN(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 8, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(8)
        self.relu = nn.ReLU(inplace=True)  # in place, as torchvision writes it
        self.conv2 = nn.Conv2d(8, 8, 3, padding=1, groups=8)
        self.pool = nn.MaxPool2d(2)
        self.gap = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(8, 4)

    def forward(self, x):
        y = self.relu(self.bn1(self.conv1(x)))
        y = y + self.conv2(y)  # residual add (functional op)
        y = self.gap(self.pool(y)).flatten(1)
        return self.fc(F.dropout(y, 0.1, self.training))


def _supported_calls(model, x, mode="inference", dtype="fp32"):
    cap = capture(model, x, dtype=dtype, train=mode != "inference")
    return sum(layer.count for layer in cap.layers if layer.supported)


def test_mlp_inference_rows_follow_the_schema(tmp_path):
    model, x = tiny_mlp(), torch.randn(8, 16)
    model.train()
    res = run(model, x, model_ref="mlp:test", family="mlp")
    assert model.training and all(m.training for m in model.modules())  # restored
    assert len(res.layer_rows) == 4  # Linear 16->32, ReLU, Linear 32->32, Linear 32->5
    for row in res.layer_rows:
        assert list(row) == list(schema.LAYER_COLUMNS)
        assert row["exec"] == "eager" and row["mode"] == "inference" and row["optimizer"] is None
        assert row["time_s"] > 0 and row["energy_j"] > 0 and row["meter"] == "estimated"
        assert row["meter_measured"] is False  # an estimate, labelled as such
        assert row["hardware"] == "cpu-test" and row["session_id"] == res.session_id
        assert row["key"] == schema.row_key(row["config_key"], "inference", "eager", "fp32", None)
    m = res.model_row
    assert list(m) == list(schema.MODEL_COLUMNS)
    counts = json.loads(m["layer_counts"])
    assert sum(counts.values()) == m["n_layer_calls"] == _supported_calls(model, x) == 5
    assert counts == res.layer_counts and set(counts) == {r["config_key"] for r in res.layer_rows}
    assert m["params"] == sum(p.numel() for p in model.parameters())
    assert math.isfinite(m["additivity_ratio"]) and m["additivity_ratio"] > 0
    assert math.isfinite(m["time_additivity_ratio"]) and m["time_additivity_ratio"] > 0
    expected = sum(counts[r["config_key"]] * r["energy_j"] for r in res.layer_rows)
    assert m["sum_layer_energy_j"] == pytest.approx(expected)
    assert m["additivity_ratio"] == pytest.approx(expected / m["energy_j"])
    assert m["sum_layer_energy_graph_j"] is None  # no CUDA here
    assert any("graph" in n for n in res.notes)  # eager only on CPU, recorded
    text = res.to_text()
    assert "additivity ratio" in text and "ESTIMATE" in text
    assert res.write(tmp_path) == {"layers": 4, "models": 1}
    assert len(schema.layer_table(tmp_path).read()) == 4
    assert schema.model_table(tmp_path).read()[0]["additivity_ratio"] == pytest.approx(m["additivity_ratio"])
    meta = json.loads((tmp_path / "meta.json").read_text())
    assert res.session_id in meta["sessions"]


@pytest.mark.slow
@pytest.mark.parametrize("mode,optimizer", [("forward_backward", None), ("train_step", "sgd"), ("train_step", "adam")])
def test_cnn_training_modes(mode, optimizer):
    model, x = TinyCNN(), torch.randn(2, 3, 8, 8)
    model.eval()
    res = run(model, x, mode=mode, optimizer=optimizer)
    assert not any(m.training for m in model.modules())  # restored to eval
    assert res.skipped == [] and res.unsupported == []
    types = {r["layer_type"] for r in res.layer_rows}
    assert {"Conv2d", "BatchNorm2d", "ReLU", "add", "MaxPool2d", "AdaptiveAvgPool2d", "Linear"} <= types
    for r in res.layer_rows:
        assert r["mode"] == mode and r["optimizer"] == optimizer
    m = res.model_row
    assert m["mode"] == mode and m["optimizer"] == optimizer
    assert m["n_layer_calls"] == _supported_calls(model, x, mode)
    assert sum(json.loads(m["layer_counts"]).values()) == m["n_layer_calls"]
    assert m["additivity_ratio"] > 0 and math.isfinite(m["additivity_ratio"])


def test_train_step_defaults_to_sgd_and_bf16_runs():
    res = run(tiny_mlp(), torch.randn(4, 16), mode="train_step", dtype="bf16")
    assert res.optimizer == "sgd" and any("sgd" in n for n in res.notes)
    assert {r["optimizer"] for r in res.layer_rows} == {"sgd"} and res.model_row["optimizer"] == "sgd"
    assert {r["dtype"] for r in res.layer_rows} == {"bf16"}
    # under autocast the Linear layers compute in bf16 (capture's CUDA autocast policy)
    assert {r["dtype_bytes"] for r in res.layer_rows if r["layer_type"] == "Linear"} == {2}


def test_reference_rows_and_session_dedup():
    meter = ReplayMeter(power_w=lambda t: 120.0, clock=time.perf_counter, counter_period_s=0.0)
    session = ProfileSession(meter, device="cpu", hardware="cpu-test", idle_power_w=50.0, protocol_kwargs=PK,
                             reference=True, reference_every=2)
    a = profile_model(tiny_mlp(), torch.randn(8, 16), session=session, progress=False, execs=("eager",))
    refs = a.reference_rows
    assert len(refs) >= 2 and {r["layer_type"] for r in refs} == {"reference"}
    assert len({r["key"] for r in refs}) == len(refs)
    # the meter and the protocol read the real clock one after the other, so on millisecond
    # windows a preempted read shifts the ratio by a few percent under CPU load
    assert all(r["power_w"] == pytest.approx(120.0, rel=0.05) and r["meter"] == "replay" for r in refs)
    # the same layers again in the same session: reused, not re-measured
    deeper = nn.Sequential(*tiny_mlp()[:4], nn.Linear(32, 32), nn.ReLU(), tiny_mlp()[4])
    b = profile_model(deeper, torch.randn(8, 16), session=session, progress=False, execs=("eager",))
    assert b.layer_rows == [] and len(b.reused_keys) == 4
    assert b.model_row["layers_reused"] == 4 and b.model_row["sum_layer_energy_j"] > 0
    assert json.loads(b.model_row["layer_counts"])[a.layer_rows[2]["config_key"]] == 2  # Linear 32->32 twice
    session.close()


def test_functional_ops_replay_in_every_mode():
    class Odd(nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = nn.Linear(8, 8)
            self.emb = nn.Embedding(20, 8)
            self.mha = nn.MultiheadAttention(8, 2, batch_first=True)

        def forward(self, x):
            ids = torch.arange(4, device=x.device)
            h = torch.cat([self.lin(x) + self.emb(ids), x], dim=1) * 0.5
            mask = h > 0
            h = torch.where(mask, h, torch.zeros_like(h)).masked_fill(~mask, 1.0)
            q = h.view(2, 2, 4, 8)
            a = F.scaled_dot_product_attention(q, q, q, is_causal=True).reshape(2, 8, 8)
            return F.gelu(a).pow(2).sum(-1) + self.mha(x, x, x)[0].mean() + torch.softmax(h, -1).amax()

    for mode in ("inference", "forward_backward", "train_step"):
        res = run(Odd(), torch.randn(2, 4, 8), mode=mode, optimizer="adamw" if mode == "train_step" else None)
        assert res.skipped == [], res.skipped
        types = {r["layer_type"] for r in res.layer_rows}
        assert {"arange", "cat", "where", "masked_fill", "sdpa", "MultiheadAttention", "Embedding"} <= types
        assert res.model_row["additivity_ratio"] > 0


def test_meta_model_is_materialised():
    with torch.device("meta"):
        model = tiny_mlp()
    res = run(model, torch.empty(4, 16, device="meta"))
    assert len(res.layer_rows) == 4 and res.model_row["energy_j"] > 0
    assert all(not p.is_meta for p in model.parameters())


def test_replay_workloads_directly():
    model = TinyCNN()
    cap = capture(model, torch.randn(2, 3, 8, 8), train=True)
    conv = next(layer for layer in cap.layers if layer.config.type == "Conv2d")
    wl = replay.build_layer_workload(conv, mode="train_step", optimizer="adam", device="cpu")
    assert wl.calls_per_invocation == 1 and wl.exec == "eager" and "Conv2d" in wl.description
    before = conv.module.weight.detach().clone()
    wl.fn()
    wl.fn()
    assert torch.equal(conv.module.weight, before)  # the replay trains a copy, not the model
    wl.close()
    with pytest.raises(ExanteError, match="closed"):
        wl.fn()
    with pytest.raises(replay.GraphCaptureError, match="CUDA"):
        replay.build_layer_workload(conv, exec="graph", device="cpu")
    with pytest.raises(ExanteError, match="unknown mode"):
        replay.build_layer_workload(conv, mode="train", device="cpu")


def test_model_workload_losses():
    clf = replay.build_model_workload(tiny_mlp(), torch.randn(4, 16), mode="train_step", optimizer="sgd", device="cpu")
    assert clf.info["loss"] == "cross_entropy"
    clf.fn()
    reg = replay.build_model_workload(nn.Linear(16, 1), torch.randn(4, 16), mode="forward_backward", device="cpu")
    assert reg.info["loss"] == "mse"
    reg.fn()
    inf = replay.build_model_workload(tiny_mlp(), torch.randn(4, 16), mode="inference", dtype="bf16", device="cpu")
    inf.fn()
    ref = replay.reference_workload("cpu", size=32)
    ref.fn()


def test_bad_arguments_are_clear_errors():
    with pytest.raises(ExanteError, match="unknown mode"):
        run(tiny_mlp(), torch.randn(2, 16), mode="training")
    with pytest.raises(ExanteError, match="unknown optimizer"):
        run(tiny_mlp(), torch.randn(2, 16), mode="train_step", optimizer="lion")
    with pytest.raises(ExanteError, match="exec"):
        run(tiny_mlp(), torch.randn(2, 16), execs=("jit",))
    with pytest.raises(ExanteError, match="rated_power_w"):
        profile_model(tiny_mlp(), torch.randn(2, 16), meter="estimated", hardware="mystery", device="cpu")
    assert hardware_id("NVIDIA H100 80GB HBM3") == "h100"
    assert hardware_id("NVIDIA H200") == hardware_id("NVIDIA H200 NVL") == "h200"  # the lent GPU
    assert hardware_id("NVIDIA GH200 480GB") == "gh200"
    assert hardware_id(None, torch.device("cpu")) == "cpu"


def test_estimated_meter_instance_is_not_closed_by_profile():
    meter = EstimatedMeter(100.0)
    res = run(nn.Linear(4, 2), torch.randn(2, 4), meter=meter, rated_power_w=None)
    assert res.model_row["power_w"] == pytest.approx(100.0, rel=1e-3)
    assert meter.energy_j() > 0  # still usable


def test_keyword_and_shape_inputs():
    class KW(nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = nn.Linear(4, 3)

        def forward(self, x=None, y=None):
            return self.lin(x) + y

    res = run(KW(), {"x": torch.randn(2, 4), "y": torch.randn(2, 3)}, mode="train_step", optimizer="sgd")
    assert json.loads(res.model_row["input_shape"]) == [[2, 4], [2, 3]] and res.skipped == []
    res = run(nn.Linear(4, 3), (5, 4))  # a shape tuple: one float input of that shape
    assert json.loads(res.model_row["input_shape"]) == [[5, 4]] and res.model_row["batch"] == 5


def test_replay_call_is_the_protocols_callable_and_the_old_name_warns():
    """One class is called Workload (predictor.engine.workload); the protocol's callable is
    ReplayCall, its old name still resolving with a DeprecationWarning."""
    from profiling.measure import workload as mw
    from profiling.measure.replay import ReplayCall, reference_workload
    assert isinstance(reference_workload("cpu", size=8), ReplayCall)
    with pytest.warns(DeprecationWarning, match="renamed ReplayCall"):
        assert replay.Workload is ReplayCall
    with pytest.warns(DeprecationWarning, match="renamed ReplayCall"):
        assert mw.Workload is ReplayCall
