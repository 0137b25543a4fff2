"""compare() and `exante compare` with fp16, channels_last, the gradient scaler and the torch
version (issue 17 item 2); --plot checked before the work (issue 20)."""

from __future__ import annotations

import importlib
import json
import warnings

import pytest

from predictor.cli.main import main
from predictor.search.compare import compare
from profiling.errors import ExanteError

CONV = ["convstack:in=3x16x16,filters=8-8,kernel=3,out=1",
        "convstack:in=3x16x16,filters=16,kernel=3,out=1"]
pp = importlib.import_module("predictor.engine.predict")


@pytest.fixture
def spy(monkeypatch):
    calls = []
    real = pp.predict

    def wrapped(*a, **k):
        calls.append(k)
        return real(*a, **k)

    monkeypatch.setattr(pp, "predict", wrapped)
    return calls


def test_conditions_reach_predict_and_the_result(spy):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        c = compare(CONV, "3x16x16", 8, mode="train_step", dtype="fp16",
                    memory_format="channels_last", grad_scaler=True, torch_version="2.4.1")
    assert len(spy) == 2 and all(
        k["dtype"] == "fp16" and k["memory_format"] == "channels_last" and k["grad_scaler"]
        and k["torch_version"] == "2.4.1" for k in spy)
    assert (c.dtype, c.memory_format, c.grad_scaler, c.torch_version) == \
        ("fp16", "channels_last", True, "2.4.1")
    assert all(d.memory_gb and d.memory_gb > 0 for d in c.designs)
    assert "channels_last, grad scaler, torch 2.4.1" in c.to_text()


def test_channels_last_needs_4d_input():
    with pytest.raises(ExanteError, match="4-D input"):
        compare(["mlp:in=100,depth=2,width=10,out=1", "mlp:in=100,depth=3,width=10,out=1"],
                "100", 8, memory_format="channels_last")


def test_cli_fp16_channels_last_json(capsys):
    assert main(["compare", *CONV, "--input", "3x16x16", "--batch", "8", "--dtype", "fp16",
                 "--memory-format", "channels_last", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["dtype"] == "fp16" and out["memory_format"] == "channels_last"
    assert all(d["memory_gb"] > 0 for d in out["designs"])


@pytest.mark.parametrize("plot, match", [("", ".png or .svg"),
                                         ("/no/such/folder/c.svg", "does not exist")])
def test_bad_plot_refused_before_the_work(capsys, spy, plot, match):
    assert main(["compare", *CONV, "--input", "3x16x16", "--batch", "8", "--plot", plot]) == 2
    err = capsys.readouterr().err
    assert match in err and err.count("\n") == 1 and not spy
