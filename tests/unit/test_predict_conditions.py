"""predict() records what it was asked to price: dtype fp16, channels_last, the gradient
scaler and the torch version (issue 17 item 2), with the shipped h100 physics artifact."""

import importlib
import warnings

import torch
from torch import nn

from predictor.engine.predict import predict

pp = importlib.import_module("predictor.engine.predict")


def cnn():
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(),
                         nn.Conv2d(32, 32, 3, padding=1), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                         nn.Linear(32, 10))


def _quiet(**kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return predict(cnn(), (64, 3, 32, 32), hardware="h100", **kw)


def test_conditions_reach_the_engine_and_the_result(monkeypatch):
    seen = []
    real = pp.CalibratedHardware.predict_workload

    def spy(self, w):
        seen.append(w)
        return real(self, w)

    monkeypatch.setattr(pp.CalibratedHardware, "predict_workload", spy)
    p = _quiet(mode="train_step", dtype="fp16", memory_format="channels_last",
               grad_scaler=True, torch_version="2.4.1")
    (w,) = seen
    assert (w.dtype, w.memory_format, w.grad_scaler, w.torch_version) == \
        ("fp16", "channels_last", True, "2.4.1")
    assert {x.config.dtype for x in w.layers if x.config.type == "Conv2d"} == {"fp16"}
    d = p.to_dict()
    assert (d["dtype"], d["memory_format"], d["grad_scaler"], d["torch_version"]) == \
        ("fp16", "channels_last", True, "2.4.1")
    assert "fp16" in p.to_text().splitlines()[0] and "grad scaler" in p.to_text()


def test_scaler_and_fp16_are_priced():
    plain = _quiet(mode="train_step", dtype="fp16")
    scaled = _quiet(mode="train_step", dtype="fp16", grad_scaler=True)
    # the scaler adds the unscale + inf-check passes over the gradients
    assert scaled.time_s > plain.time_s
    assert plain.time_s > 0 and _quiet(mode="train_step", dtype="bf16").time_s > 0


def test_torch_version_outside_the_measured_ones_is_noted(monkeypatch):
    from predictor.artifacts import load_artifact

    art = load_artifact("h100")
    monkeypatch.setitem(art.model.domain, "torch_versions", ["2.11.0+cu130"])
    monkeypatch.setattr(pp, "_load_or_transfer", lambda hw, d: art)
    p = _quiet(torch_version="2.4.1")
    assert p.torch_versions_modelled == ["2.11.0+cu130"]
    assert any("torch 2.4.1 was never measured" in n for n in p.warnings)
    same = _quiet(torch_version="2.11.0+cu130")
    assert not any("was never measured on" in n and "torch" in n for n in same.warnings)
