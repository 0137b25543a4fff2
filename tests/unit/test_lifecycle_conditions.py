"""Life-cycle estimates pass fp16, the gradient scaler, channels_last and the torch version to
the predictor (issue 17 item 2), from Python, TOML and the CLI flags."""

from __future__ import annotations

import argparse

import pytest

from predictor.carbon.lifecycle import (
    InferencePlan,
    Scenario,
    TrainingRun,
    dump_scenario,
    estimate,
    load_scenario,
    scenario_from_args,
)
from profiling.errors import ExanteError


class Recorder:
    """A predict_fn that records its keyword arguments and returns a fixed cost."""

    def __init__(self):
        self.calls = []

    def __call__(self, model, inputs, **kw):
        self.calls.append(kw)
        return type("P", (), {"energy_j": 1.0, "time_s": 1e-3, "warnings": []})()


def _scenario(**kw):
    base = dict(model="mlp:in=4,depth=1,width=8,out=2", input_shape="3x8x8",
                training=TrainingRun(1, 100, 10, optimizer="sgd", dtype="fp16", grad_scaler=True),
                inference=InferencePlan(1000, 10, dtype="fp16"),
                memory_format="channels_last", torch_version="2.4.1")
    base.update(kw)
    return Scenario(**base)


def test_conditions_reach_the_predictor():
    rec = Recorder()
    r = estimate(_scenario(), predict_fn=rec)
    train = [c for c in rec.calls if c["mode"] == "train_step"]
    inf = [c for c in rec.calls if c["mode"] == "inference"]
    assert train and all(c["dtype"] == "fp16" and c["grad_scaler"] is True for c in train)
    assert inf and all("grad_scaler" not in c for c in inf)       # no scaler in inference
    assert all(c["memory_format"] == "channels_last" and c["torch_version"] == "2.4.1"
               for c in rec.calls)
    assert r.to_dict()["stages"]["training"]["items"][0]["grad_scaler"] is True


def test_defaults_pass_nothing_new():
    rec = Recorder()
    estimate(_scenario(memory_format="contiguous", torch_version=None,
                       training=TrainingRun(1, 100, 10)), predict_fn=rec)
    assert all(set(c) == {"mode", "dtype", "hardware", "optimizer"} for c in rec.calls)


def test_toml_round_trip_keeps_conditions(tmp_path):
    s = _scenario()
    path = tmp_path / "plan.toml"
    path.write_text(dump_scenario(s))
    text = path.read_text()
    assert 'memory_format = "channels_last"' in text and "grad_scaler = true" in text
    back = load_scenario(path)
    assert back.memory_format == "channels_last" and back.torch_version == "2.4.1"
    assert back.training[0].grad_scaler is True and back.training[0].dtype == "fp16"


@pytest.mark.parametrize("kw, match", [
    ({"memory_format": "nhwc"}, "unknown memory_format 'nhwc'"),
    ({"torch_version": "latest"}, "torch_version must be a version string"),
])
def test_bad_conditions(kw, match):
    with pytest.raises(ExanteError, match=match):
        _scenario(**kw)


def test_grad_scaler_must_be_bool():
    with pytest.raises(ExanteError, match="grad_scaler must be true or false"):
        TrainingRun(1, 100, 10, grad_scaler="yes")


def test_from_cli_args():
    ns = argparse.Namespace(model_ref="mlp:in=4,depth=1,width=8,out=2", input="3x8x8",
                            epochs=1, dataset_size=100, batch=10, optimizer=None, dtype="fp16",
                            grad_scaler=True, memory_format="channels_last",
                            torch_version=None)
    s = scenario_from_args(ns)
    assert s.training[0].grad_scaler and s.training[0].dtype == "fp16"
    assert s.memory_format == "channels_last"
    ns.epochs = ns.dataset_size = ns.batch = None
    ns.inferences = 10
    with pytest.raises(ExanteError, match="--grad-scaler prices a training run"):
        scenario_from_args(ns)
