"""Workload conditions of issue 17 (interface): dtype fp16, memory_format, grad_scaler and the
torch version, captured by ``capture_workload`` and kept through the JSON round trip."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from predictor.engine.predict import capture_workload
from predictor.engine.workload import Workload
from profiling.errors import ExanteError


def small_cnn():
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 10))


def test_defaults_and_old_json_load():
    w = capture_workload(small_cnn(), (4, 3, 16, 16))
    assert (w.dtype, w.memory_format, w.grad_scaler, w.torch_version) == \
        ("fp32", "contiguous", False, None)
    d = json.loads(w.to_json())
    for k in ("memory_format", "grad_scaler", "torch_version"):
        del d[k]                                  # a workload written before these fields
    old = Workload.from_json(json.dumps(d))
    assert old == w


def test_fp16_channels_last_grad_scaler_round_trip():
    w = capture_workload(small_cnn(), (4, 3, 16, 16), "train_step", "fp16", "adam",
                         memory_format="channels_last", grad_scaler=True,
                         torch_version="2.4.1")
    assert (w.mode, w.dtype, w.optimizer, w.memory_format, w.grad_scaler, w.torch_version) == \
        ("train_step", "fp16", "adam", "channels_last", True, "2.4.1")
    # the CUDA autocast policy in fp16: the conv and the linear run in fp16
    types = {wl.config.type: wl.config.dtype for wl in w.layers}
    assert types["Conv2d"] == "fp16" and types["Linear"] == "fp16"
    back = Workload.from_json(w.to_json())
    assert back == w
    assert json.loads(w.to_json())["memory_format"] == "channels_last"


def test_fp16_captures_like_bf16_with_fp16_tensors():
    m = small_cnn()
    a = capture_workload(m, (4, 3, 16, 16), "inference", "bf16", cache=False)
    b = capture_workload(m, (4, 3, 16, 16), "inference", "fp16", cache=False)
    assert [wl.config.dtype.replace("bf16", "fp16") for wl in a.layers] == \
        [wl.config.dtype for wl in b.layers]
    assert [wl.config.input_shapes for wl in a.layers] == [wl.config.input_shapes for wl in b.layers]


def test_channels_last_same_layers_and_model_unchanged():
    m = small_cnn()
    before = {k: v.clone() for k, v in m.state_dict().items()}
    strides = m[0].weight.stride()
    a = capture_workload(m, (4, 3, 16, 16), cache=False)
    b = capture_workload(m, (4, 3, 16, 16), memory_format="channels_last", cache=False)
    assert [wl.config for wl in a.layers] == [wl.config for wl in b.layers]
    assert m[0].weight.stride() == strides                 # the user's weights stay NCHW
    for k, v in m.state_dict().items():
        assert torch.equal(v, before[k])


def test_channels_last_needs_4d_input():
    mlp = nn.Sequential(nn.Linear(16, 4))
    with pytest.raises(ExanteError, match="channels_last' needs a 4-D input"):
        capture_workload(mlp, (8, 16), memory_format="channels_last")


@pytest.mark.parametrize("kwargs, match", [
    ({"dtype": "fp8"}, "unknown dtype 'fp8'"),
    ({"memory_format": "NHWC"}, "unknown memory_format"),
    ({"grad_scaler": True}, "needs mode='train_step'"),
    ({"grad_scaler": "yes", "mode": "train_step"}, "True or False"),
    ({"torch_version": ""}, "version string"),
])
def test_bad_conditions_refused(kwargs, match):
    with pytest.raises(ExanteError, match=match):
        capture_workload(small_cnn(), (2, 3, 8, 8), **kwargs)
