"""Autocast dtype flow, channels_last, GradScaler and the fp16 peak in the lowering/physics.

Counts are checked against what CUDA autocast really runs (see predictor/engine/rules): a
cast kernel only where a low-precision op receives an fp32 tensor, weights once per forward.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
from torch import nn

from predictor.engine.lowering import CLASSES, HOST_FEATURES, lower
from predictor.engine.physics import PARAMS, Datasheet, evaluate, stack
from predictor.engine.predict import capture_workload

DS = Datasheet("test-gpu", peak_fp32=35.6e12, peak_tf32=35.6e12, peak_bf16=71e12,
               mem_bw=936e9, tdp_w=350.0, idle_w=30.0, peak_fp16=71e12)
MEM = CLASSES.index("mem")


def _cnn():
    return nn.Sequential(nn.Conv2d(3, 32, 3, padding=1, bias=False), nn.BatchNorm2d(32), nn.ReLU(),
                         nn.Conv2d(32, 32, 3, padding=1, bias=False), nn.BatchNorm2d(32), nn.ReLU(),
                         nn.Conv2d(32, 32, 3, padding=1, bias=False), nn.BatchNorm2d(32), nn.ReLU(),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(32, 10)).eval()


def _cast_bytes(lw, layer):
    """Bytes of memory-class entries of one layer index that carry no FLOPs (casts,
    transposes)."""
    m = (lw.layer == layer) & (lw.cls == MEM) & (lw.flops == 0)
    return float((lw.bytes[m] * lw.mult[m]).sum())


def test_autocast_casts_only_fp32_inputs():
    w = capture_workload(_cnn(), (8, 3, 32, 32), "inference", "fp16", None, cache=False)
    w = replace(w, memory_format="channels_last")            # no NHWC transposes
    lw = lower(w)
    convs = [i for i, x in enumerate(w.layers) if x.config.type == "Conv2d"]
    first = convs[0]
    x0 = np.prod(w.layers[first].config.input_shapes[0])
    # the first conv reads the fp32 model input: one cast of it (6 B/el) + its weight cast
    w0 = 32 * 3 * 9
    assert _cast_bytes(lw, first) == 6.0 * x0 + 6.0 * w0
    # a conv after BN-ReLU reads a 16-bit tensor: only its weights are cast (once per module)
    later = convs[1]
    mods = len(w.layers[later].names)
    assert _cast_bytes(lw, later) == 6.0 * (32 * 32 * 9) * mods


def test_fp32_list_op_casts_a_16bit_input_once():
    m = nn.Sequential(nn.Linear(16, 64), nn.LayerNorm(64), nn.Linear(64, 8)).eval()
    w = capture_workload(m, (4, 16), "inference", "fp16", None, cache=False)
    lw = lower(w)
    ln = next(i for i, x in enumerate(w.layers) if x.config.type == "LayerNorm")
    fc2 = max(i for i, x in enumerate(w.layers) if x.config.type == "Linear")
    assert _cast_bytes(lw, ln) == 6.0 * 4 * 64          # fp16 Linear output cast up
    # the Linear after LayerNorm (fp32 output) casts its input down, and its weight
    assert _cast_bytes(lw, fc2) == 6.0 * 4 * 64 + 6.0 * (64 * 8 + 8)


def test_channels_last_drops_the_nchw_transposes():
    w = capture_workload(_cnn(), (8, 3, 32, 32), "inference", "fp16", None, cache=False)
    nchw = lower(w)
    nhwc = lower(replace(w, memory_format="channels_last"))
    extra = float((nchw.bytes * nchw.mult).sum() - (nhwc.bytes * nhwc.mult).sum())
    convs = [x for x in w.layers if x.config.type == "Conv2d"]
    want = sum(4.0 * 0.25 * x.count * (np.prod(x.config.input_shapes[0])
                                + np.prod(x.config.output_shapes[0])) for x in convs)
    assert extra == want
    # fp32 convolutions (TF32, not the 16-bit path) have none either way
    w32 = capture_workload(_cnn(), (8, 3, 32, 32), "inference", "fp32", None, cache=False)
    a, b = lower(w32), lower(replace(w32, memory_format="channels_last"))
    assert float((a.bytes * a.mult).sum()) == float((b.bytes * b.mult).sum())


def test_grad_scaler_adds_an_unscale_pass():
    w = capture_workload(_cnn().train(), (8, 3, 32, 32), "train_step", "fp16", "sgd",
                         cache=False)
    a, b = lower(w), lower(replace(w, grad_scaler=True))
    n_params = sum(w.param_numels)
    assert float((b.bytes * b.mult).sum() - (a.bytes * a.mult).sum()) == 8.0 * n_params
    j = HOST_FEATURES.index("opt_op")
    assert b.host[j] == a.host[j] + 3


def test_fp16_runs_at_the_fp16_peak():
    w = capture_workload(_cnn(), (256, 3, 64, 64), "inference", "fp16", None, cache=False)
    wb = replace(w, dtype="bf16")
    theta = np.array([1.0 if p.startswith("eff") else 1e-9 for p in PARAMS])
    theta[PARAMS.index("overlap_q")] = 3.0
    slow = replace(DS, peak_fp16=DS.peak_bf16 / 4)
    t16, _, parts16 = evaluate(theta, stack([lower(w)]), slow, parts=True)
    tbf, _, partsbf = evaluate(theta, stack([lower(wb)]), slow, parts=True)
    assert parts16["time_gpu_s"][0] > partsbf["time_gpu_s"][0]
    # without a published fp16 peak the bf16 one is used
    assert replace(DS, peak_fp16=None).fp16_peak == DS.peak_bf16


def test_torch_1x_optimizer_runs_a_per_tensor_loop():
    w = capture_workload(_cnn().train(), (8, 3, 32, 32), "train_step", "fp16", "sgd",
                         cache=False)
    a = lower(replace(w, torch_version="2.4.0"))
    b = lower(replace(w, torch_version="1.12"))
    opt_a, opt_b = a.layer == -1, b.layer == -1
    nt = len(w.param_numels)
    assert float((b.kern * b.mult)[opt_b].sum()) == 3.0 * nt          # one kernel per op/tensor
    assert float((a.kern * a.mult)[opt_a].sum()) < 3.0 * nt           # foreach: batched
    assert float((b.bytes * b.mult)[opt_b].sum()) == float((a.bytes * a.mult)[opt_a].sum())
