"""EnergyObjective with fp16, channels_last, a gradient scaler and a torch version: priced by
build + predict (the general path) with the same conditions (issue 17 item 2)."""

import importlib
import warnings

import pytest
import torch

from predictor.search.generators import ConvStackSpec, MLPSpec
from predictor.search.nas import EnergyObjective
from profiling.errors import ExanteError

pp = importlib.import_module("predictor.engine.predict")


@pytest.mark.parametrize("kw", [{"dtype": "fp16"}, {"memory_format": "channels_last"},
                                {"grad_scaler": True}])
def test_conditions_use_the_general_path_with_them(monkeypatch, kw):
    seen = []
    real = pp.predict

    def spy(*a, **k):
        seen.append(k)
        return real(*a, **k)

    monkeypatch.setattr(pp, "predict", spy)
    obj = EnergyObjective("h100", mode="train_step", batch=8, torch_version="2.4.1", **kw)
    spec = ConvStackSpec((3, 8, 8), (4, 6), 3, 2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        e = obj(spec)
        with torch.device("meta"):
            m = spec.build()
        direct = real(m, (8, 3, 8, 8), mode="train_step", hardware="h100",
                      torch_version="2.4.1", **kw)
    assert obj.calls == {"vectorised": 0, "general": 1}
    assert seen and all(seen[0][k] == v for k, v in kw.items())
    assert seen[0]["torch_version"] == "2.4.1"
    assert e.energy_j == pytest.approx(direct.energy_j, rel=1e-12)


def test_defaults_stay_vectorised():
    obj = EnergyObjective("h100", mode="inference", batch=8)
    obj(MLPSpec(16, (32, 32), 2))
    assert obj.calls == {"vectorised": 1, "general": 0}
    with pytest.raises(ExanteError, match="no vectorised path.*fp16"):
        EnergyObjective("h100", mode="inference", batch=8, dtype="fp16").score_mlp(
            [[32, 32]], 16, 2)


def test_bad_conditions_refused():
    with pytest.raises(ExanteError, match="unknown memory_format"):
        EnergyObjective("h100", memory_format="nhwc")
    with pytest.raises(ExanteError, match="needs mode='train_step'"):
        EnergyObjective("h100", mode="inference", grad_scaler=True)


def test_torch1_optimizer_loop_is_vectorised_as_predict_prices_it():
    """torch 1.x ran the optimizer as a per-tensor loop: the vectorised path (the same
    optimizer rule) must agree with build + predict, and differ from torch 2's foreach."""
    specs = [MLPSpec(16, (32, 32), 2), ConvStackSpec((3, 8, 8), (4, 6), 3, 2)]
    old = EnergyObjective("h100", mode="train_step", batch=8, optimizer="adam",
                          torch_version="1.13")
    new = EnergyObjective("h100", mode="train_step", batch=8, optimizer="adam")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fast = old.score_many(specs)
        slow = [old.general(s) for s in specs]
        foreach = new.score_many(specs)
    assert old.calls["vectorised"] == len(specs)
    for i, s in enumerate(specs):
        assert fast["energy_j"][i] == pytest.approx(slow[i].energy_j, rel=1e-9), s
        assert fast["time_s"][i] == pytest.approx(slow[i].time_s, rel=1e-9), s
    assert (fast["time_s"] != foreach["time_s"]).all()
