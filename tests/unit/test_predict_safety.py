"""predict() never changes a user's model and never runs what it cannot price (issue 20):
BatchNorm statistics untouched (meta path and real-device fallback), no full-size zero inputs
for a large fallback, a parameter-free train_step refused, an integer input into a Linear
refused in one line."""

from __future__ import annotations

import warnings

import pytest
import torch
from torch import nn

import predictor.engine.model_capture as mc
from predictor.engine.predict import capture_workload, predict
from profiling.errors import ExanteError


class DataDependentBN(nn.Module):
    """Conv-BN-ReLU whose forward reads a value (cannot run on meta)."""

    def __init__(self):
        super().__init__()
        self.c = nn.Conv2d(3, 8, 3, padding=1)
        self.bn = nn.BatchNorm2d(8)
        self.r = nn.ReLU()
        self.head = nn.Linear(8, 4)

    def forward(self, x):
        y = self.r(self.bn(self.c(x)))
        if float(y.sum()) < 0:                       # reads a value: fails on meta
            y = -y
        return self.head(y.mean((2, 3)))


def _bn_state(m):
    bn = m.bn if hasattr(m, "bn") else m[1]
    return bn.running_mean.clone(), bn.running_var.clone(), bn.num_batches_tracked.clone()


def _same(a, b):
    return all(torch.equal(x, y) for x, y in zip(a, b, strict=True))


def test_train_step_meta_path_keeps_batchnorm_statistics():
    torch.manual_seed(0)
    m = nn.Sequential(nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8), nn.ReLU())
    m[1].running_mean.uniform_()
    before = _bn_state(m)
    predict(m, torch.randn(4, 3, 16, 16), mode="train_step", hardware="h100", cache=False)
    assert _same(before, _bn_state(m)) and m.training


def test_train_step_cpu_fallback_keeps_batchnorm_statistics():
    torch.manual_seed(0)
    m = DataDependentBN()
    before = _bn_state(m)
    with pytest.warns(RuntimeWarning, match="traced once on cpu"):
        p = predict(m, (4, 3, 16, 16), mode="train_step", hardware="h100", cache=False)
    assert p.time_s > 0
    after = _bn_state(m)
    assert _same(before, after), "the fallback changed the user's BatchNorm statistics"
    assert int(after[2]) == 0


def test_large_fallback_probes_small_batches_and_extrapolates(monkeypatch):
    m = DataDependentBN()
    full = capture_workload(m, (64, 3, 16, 16), "train_step", cache=False)
    # pretend the 64-sample input is too large to allocate: it is traced at batches 2 and 3
    monkeypatch.setattr(mc, "REAL_INPUT_MAX_BYTES", 1024)
    seen = []
    real_zeros = torch.zeros

    def spy(shape, *a, **k):
        seen.append(tuple(shape))
        return real_zeros(shape, *a, **k)

    monkeypatch.setattr(torch, "zeros", spy)
    before = _bn_state(m)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        probed = capture_workload(m, (64, 3, 16, 16), "train_step", cache=False)
    assert any("batches 2 and 3" in str(w.message) for w in caught)
    assert seen and all(s[0] in (2, 3) for s in seen)          # never the full batch
    assert [wl.config for wl in probed.layers] == [wl.config for wl in full.layers]
    assert probed.batch == 64 and _same(before, _bn_state(m))


def test_parameter_free_train_step_refused():
    m = nn.Sequential(nn.ReLU(), nn.Softmax(dim=-1))
    with pytest.raises(ExanteError, match="needs trainable parameters.*no optimizer step"):
        predict(m, (8, 16), mode="train_step", hardware="h100")
    frozen = nn.Linear(4, 4).requires_grad_(False)
    with pytest.raises(ExanteError, match="needs trainable parameters"):
        capture_workload(frozen, (8, 4), "train_step")
    assert predict(m, (8, 16), hardware="h100").time_s > 0      # inference is fine


@pytest.mark.parametrize("first", [nn.Linear(16, 8), nn.Conv1d(4, 8, 3)])
def test_integer_input_into_linear_or_conv_refused(first):
    shape = (8, 16) if isinstance(first, nn.Linear) else (8, 4, 16)
    x = torch.zeros(shape, dtype=torch.int64, device="meta")
    with pytest.raises(ExanteError) as e:
        predict(nn.Sequential(first, nn.ReLU()), x, hardware="h100")
    msg = str(e.value)
    assert "gets a int64 input" in msg and "needs a floating one" in msg and "\n" not in msg


def test_integer_token_ids_into_embedding_predicted():
    m = nn.Sequential(nn.Embedding(100, 16), nn.Linear(16, 4))
    p = predict(m, torch.zeros(8, 12, dtype=torch.int64, device="meta"), hardware="h100")
    assert p.dtype == "fp32" and p.time_s > 0


def test_meta_model_with_large_inputs_is_not_rebuilt_on_cpu(monkeypatch):
    def no_rebuild(*a, **k):
        raise AssertionError("the CPU rebuild ran")

    monkeypatch.setattr(mc, "capture_with_cpu_fallback", no_rebuild)
    with torch.device("meta"):
        m = DataDependentBN()
    with pytest.raises(ExanteError, match="too large to trace on the CPU"):
        capture_workload(m, (4096, 3, 128, 128), cache=False)      # 0.8 GB of input


def test_half_input_into_fp32_linear_refused_without_autocast():
    x = torch.zeros(8, 16, dtype=torch.float16, device="meta")
    m = nn.Sequential(nn.Linear(16, 8))
    with pytest.raises(ExanteError, match="gets a float16 input but its weight is float32"):
        predict(m, x, hardware="h100")
    # under fp16 autocast the same input is what runs: predicted, labelled fp16
    p = predict(m, x, dtype="fp16", hardware="h100")
    assert p.dtype == "fp16" and p.layers[0]["dtype"] == "fp16"


def test_half_input_under_autocast_conv_and_cache():
    conv = nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU())
    x16 = torch.zeros(4, 3, 16, 16, dtype=torch.float16, device="meta")
    w = capture_workload(conv, x16, "inference", "fp16")          # meta refused Half x Float
    assert [x.config.dtype for x in w.layers] == ["fp16", "fp16"]
    # an elementwise first op runs in the input's dtype: fp16 input vs fp32 input differ,
    # and the capture cache keeps them apart
    m = nn.Sequential(nn.ReLU(), nn.Linear(16, 4))
    a = capture_workload(m, torch.zeros(8, 16, device="meta"), "inference", "fp16")
    b = capture_workload(m, torch.zeros(8, 16, dtype=torch.float16, device="meta"),
                         "inference", "fp16")
    assert a.layers[0].config.dtype == "fp32" and b.layers[0].config.dtype == "fp16"


def test_input_dtype_error_skips_the_real_device_fallback(monkeypatch):
    def no_fallback(*a, **k):
        raise AssertionError("the real-device fallback ran")

    monkeypatch.setattr(mc, "_capture_real", no_fallback)
    with pytest.raises(ExanteError, match="gets a int64 input"):
        capture_workload(nn.Linear(16, 4), torch.zeros(8, 16, dtype=torch.int64), cache=False)
