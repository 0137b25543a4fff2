"""Wide-group convolutions in channels_last 16-bit training under torch 1.x: cuDNN (8.3, the
torch 1.12 wheels) runs their backward as its grouped *direct* kernels on CUDA cores
(``wgrad2d_grouped_direct_kernel``, pytorch/pytorch#34977), the ``conv_grouped`` class, not
as tensor-core convolutions.  Torch 2, NCHW, inference, dense and depthwise/narrow-group
convolutions keep their lowering."""

from __future__ import annotations

import numpy as np
import pytest

from predictor.engine.lowering import CLASSES, lower
from predictor.engine.workload import WLayer, Workload
from profiling.capture.records import LayerConfig

B, C, HW, K = 8, 256, 14, 3                 # batch, channels, spatial side, kernel
FLOPS = 2.0 * B * C * HW * HW * C * K * K   # groups 1; divided by groups below


def _conv(groups, torch_version="1.12.1", mode="train_step", fmt="channels_last",
          dtype="fp16") -> Workload:
    x = (B, C, HW, HW)
    hp = (("bias", False), ("dilation", (1, 1)), ("groups", groups), ("in_channels", C),
          ("kernel_size", (K, K)), ("out_channels", C), ("padding", (1, 1)), ("stride", (1, 1)))
    cfg = LayerConfig("Conv2d", hp, (x,), (x,), dtype)
    return Workload((WLayer(cfg, 1, ("conv",)),), mode, dtype, B,
                    "sgd" if mode == "train_step" else None, (C * C * K * K // groups,),
                    memory_format=fmt, torch_version=torch_version)


def _flops_by_class(w: Workload) -> dict:
    lw = lower(w)
    out: dict = {}
    for c, f in zip(lw.cls, lw.flops * lw.mult, strict=True):
        out[CLASSES[c]] = out.get(CLASSES[c], 0.0) + f
    return {k: v for k, v in out.items() if v > 0}


def test_torch1_channels_last_grouped_training_backward_on_cuda_cores():
    g = 4                                   # 64 channels per group (repvgg_b*g4-like)
    got = _flops_by_class(_conv(g))
    # forward stays a tensor-core conv; dgrad + wgrad (2x the forward FLOPs) go direct
    assert got["conv_bf16"] == pytest.approx(FLOPS / g)
    assert got["conv_grouped"] == pytest.approx(2 * FLOPS / g)


@pytest.mark.parametrize("kw", [
    {"torch_version": "2.4.0"},             # torch 2 (newer cuDNN)
    {"torch_version": None},                # unknown: taken as current
    {"fmt": "contiguous"},                  # NCHW
    {"mode": "inference"},                  # torch 1.13 NHWC inference is not slower
    {"dtype": "fp32"},                      # not 16-bit
])
def test_other_conditions_keep_tensor_core_backward(kw):
    got = _flops_by_class(_conv(4, **kw))
    assert "conv_grouped" not in got
    assert sum(got.values()) == pytest.approx(FLOPS / 4 * (3 if kw.get("mode") != "inference"
                                                           else 1))


@pytest.mark.parametrize("groups", [1, C // 4, C])   # dense, 4 ch/group, depthwise
def test_dense_and_narrow_group_convs_unchanged_by_torch_version(groups):
    l1, l2 = lower(_conv(groups, "1.12.1")), lower(_conv(groups, "2.4.0"))
    for a in ("cls", "flops", "bytes", "kern", "mult"):
        np.testing.assert_array_equal(getattr(l1, a), getattr(l2, a))


def test_direct_backward_costs_more_than_tensor_core_backward_on_an_rtx3090_like_gpu():
    """Priced at the prior's centre (conv_grouped far below the 16-bit tensor rate), the
    torch 1.x NHWC step's GPU time is longer -- the direction timm measures."""
    from predictor.engine.physics import Datasheet, PhysicsModel

    ds = Datasheet("x", 35.6e12, 35.6e12, 71e12, 936e9, 350.0, 30.0)
    m = PhysicsModel(datasheet=ds)
    m.theta_ = m._ds().prior()[0]
    w1, w2 = _conv(8, "1.12.1"), _conv(8, "2.4.0")
    gpu_s = m.predict_parts([w1, w2])[2]["time_gpu_s"]
    assert gpu_s[0] > 1.5 * gpu_s[1]
