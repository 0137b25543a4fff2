"""predict() and GPU memory: the estimate (Prediction.memory_gb), the one-line refusal of what
does not fit (issue 17 item 2, issue 20), and batches that fit but lie outside the measured
range still predicted."""

from __future__ import annotations

import importlib
import time

import pytest
import torch
from torch import nn

from predictor.engine.memory import GIB, estimate_memory
from predictor.engine.predict import capture_workload, predict
from profiling.errors import ExanteError

pp = importlib.import_module("predictor.engine.predict")   # the module (predictor.predict is the function)


def small_cnn():
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, 10))


def test_huge_input_refused_before_capture(monkeypatch):
    def no_capture(*a, **k):
        raise AssertionError("the capture ran")

    monkeypatch.setattr(pp, "captured", no_capture)
    monkeypatch.setattr(pp, "_load_or_transfer", no_capture)
    t0 = time.perf_counter()
    with pytest.raises(ExanteError) as e:
        predict(small_cnn(), (1, 3, 100000, 100000), hardware="h100")
    assert time.perf_counter() - t0 < 2.0
    msg = str(e.value)
    assert "\n" not in msg
    # 3 x 1e10 float32 = 1.2e11 bytes = 112 GiB, on an 80 GB H100
    assert msg.startswith("does not fit: needs 112 GB") and "has 80 GB" in msg


def test_640_gb_activation_refused():
    m = nn.Sequential(nn.Linear(10, 10_000_000))          # weights 0.4 GB
    with pytest.raises(ExanteError, match=r"does not fit: needs 5\d\d GB .*activations.* has "
                                          r"80 GB"):
        predict(m, (16_000, 10), hardware="h100")         # output 16000 x 1e7 fp32 = 596 GiB


def test_memory_estimate_parts():
    m = small_cnn()
    n = sum(p.numel() for p in m.parameters())
    inf = capture_workload(m, (64, 3, 32, 32))
    sgd = capture_workload(m, (64, 3, 32, 32), "train_step", "fp32", "sgd")
    adam = capture_workload(m, (64, 3, 32, 32), "train_step", "fp32", "adam")
    e_inf = estimate_memory(inf, weights_bytes=4 * n, trainable_numel=n)
    e_sgd = estimate_memory(sgd)
    e_adam = estimate_memory(adam)
    assert e_sgd.optimizer_bytes == 4 * n and e_adam.optimizer_bytes == 8 * n
    assert e_inf.optimizer_bytes == 0 and e_inf.gradients_bytes == 0
    # inference: largest live pair = conv/BN/ReLU input+output, 2 x 64x16x32x32 fp32
    assert e_inf.activations_bytes == 2 * 64 * 16 * 32 * 32 * 4
    # train_step keeps the conv output (BatchNorm's input), the ReLU output (its own) and the
    # pooled features (the Linear's input, through the Flatten view); BatchNorm's output is
    # not kept (ReLU keeps what it writes)
    assert e_sgd.activations_bytes == 2 * 64 * 16 * 32 * 32 * 4 + 64 * 16 * 4
    assert e_adam.total_bytes > e_sgd.total_bytes > e_inf.total_bytes


def test_prediction_reports_memory_gb_and_json():
    p = predict(small_cnn(), (64, 3, 32, 32), hardware="h100")
    assert p.memory_gb is not None and 0 < p.memory_gb < 1
    assert p.to_dict()["memory_gb"] == pytest.approx(p.memory_gb)
    assert "memory" in p.to_text()
    t = predict(small_cnn(), (64, 3, 32, 32), mode="train_step", hardware="h100")
    assert t.memory_gb > p.memory_gb


def test_large_batch_that_fits_is_predicted():
    # far outside the measured batches (1-32), 0.8 GB input: fits in 80 GB, so predicted
    p = predict(small_cnn(), (65536, 3, 32, 32), hardware="h100")
    assert p.batch == 65536 and p.time_s > 0 and 0.8 < p.memory_gb < 80


def test_unknown_gpu_memory_skips_check():
    from predictor.engine.memory import check_fits
    check_fits(10 ** 15, "no-such-gpu")                    # not in the catalogue: no claim
    with pytest.raises(ExanteError, match="the H100 SXM has 80 GB"):
        check_fits(81 * GIB, "h100")
    check_fits(79 * GIB, "h100")
    # above the memory but within the estimate's tolerance: a note, not a refusal
    note = check_fits(100 * GIB, "h100", tolerance=1.5)
    assert note.startswith("may not fit: estimated 100 GB") and "80 GB" in note
    with pytest.raises(ExanteError, match="needs 121 GB"):
        check_fits(121 * GIB, "h100", tolerance=1.5)


def test_estimate_just_above_memory_is_predicted_with_a_note():
    m = nn.Sequential(nn.Linear(10, 1_000_000))       # output 24000 x 1e6 fp32 = 89 GiB
    with pytest.warns(UserWarning, match="may not fit"):
        p = predict(m, (24_000, 10), hardware="h100")
    assert 80 < p.memory_gb < 120 and any(w.startswith("may not fit") for w in p.warnings)


def test_kept_activations_follow_autograd_and_autocast():
    blk = nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.BatchNorm2d(16), nn.Identity(),
                        nn.GELU(), nn.Conv2d(16, 16, 3, padding=1), nn.Flatten())
    t = 64 * 16 * 32 * 32                                # elements of one activation
    w32 = capture_workload(blk, (64, 3, 32, 32), "train_step", "fp32", cache=False)
    # conv1 out (kept by BN), BN out -> Identity (an alias, not counted) kept by GELU, GELU
    # out kept by conv2; conv2's output is kept by nobody
    assert estimate_memory(w32).activations_bytes == 3 * t * 4
    w16 = capture_workload(blk, (64, 3, 32, 32), "train_step", "fp16", cache=False)
    # under fp16 autocast the conv writes fp16 and BatchNorm keeps its 16-bit input dtype
    assert estimate_memory(w16).activations_bytes == 3 * t * 2
    assert estimate_memory(w16).autocast_copies_bytes == 2 * sum(w16.param_numels)


def _saved_bytes(model, x) -> int:
    """Bytes of the unique storages autograd saves for the backward (parameters and the
    input excluded)."""
    skip = {p.untyped_storage().data_ptr() for p in model.parameters()}
    skip.add(x.untyped_storage().data_ptr())
    seen = {}

    def pack(t):
        s = t.untyped_storage()
        if s.data_ptr() not in skip:
            seen[s.data_ptr()] = s.nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        model(x)
    return sum(seen.values())


@pytest.mark.parametrize("make", [
    lambda: nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(),
                          nn.Conv2d(16, 32, 3, stride=2, padding=1), nn.BatchNorm2d(32),
                          nn.ReLU(inplace=True), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                          nn.Linear(32, 10)),
    lambda: nn.Sequential(nn.Linear(64, 256), nn.GELU(), nn.Linear(256, 256), nn.LayerNorm(256),
                          nn.Tanh(), nn.Linear(256, 8)),
])
def test_activation_estimate_matches_what_autograd_saves(make):
    torch.manual_seed(0)
    m = make().train()
    x = torch.randn((16, 3, 32, 32) if isinstance(m[0], nn.Conv2d) else (512, 64))
    measured = _saved_bytes(m, x)
    est = estimate_memory(capture_workload(m, x, "train_step", cache=False)).activations_bytes
    assert 0.8 * measured <= est <= 1.25 * measured, (est, measured)
