"""`exante predict` / `exante estimate` with the issue 17 conditions and the issue 20 refusals
(one line, exit 2)."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import pytest

from predictor.cli.main import main

CONV = "convstack:in=3x16x16,filters=8-8,kernel=3,out=1"
MLP = "mlp:in=100,depth=2,width=10,out=1"


def _err(capsys):
    err = capsys.readouterr().err
    assert err.startswith("exante: error:") and err.count("\n") == 1, err
    return err


def test_predict_fp16_channels_last_grad_scaler_json(capsys):
    assert main(["predict", CONV, "--input", "3x16x16", "--batch", "16", "--dtype", "fp16",
                 "--memory-format", "channels_last", "--mode", "train_step", "--grad-scaler",
                 "--torch-version", "2.4.1", "--json"]) == 0
    d = json.loads(capsys.readouterr().out)
    assert (d["dtype"], d["memory_format"], d["grad_scaler"], d["torch_version"]) == \
        ("fp16", "channels_last", True, "2.4.1")
    assert d["memory_gb"] > 0 and d["time_s"] > 0


def test_huge_input_refused_fast_without_torch():
    # a fresh interpreter: the refusal must come before torch is imported
    code = ("import sys, time; t = time.time(); from predictor.cli.main import main; "
            f"rc = main(['predict', '{MLP}', '--input', '3x100000x100000', '--batch', '1']); "
            "print(rc, 'torch' in sys.modules, round(time.time() - t, 2))")
    t0 = time.time()
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=60)
    rc, torch_loaded, _ = out.stdout.split()
    assert rc == "2" and torch_loaded == "False", out
    assert "does not fit: needs 112 GB (the input alone), the H100 SXM has 80 GB" in out.stderr
    assert time.time() - t0 < 10


def test_activation_too_large_refused(capsys):
    # 16,000 x 10,000,000 fp32 outputs: 596 GB of activations on an 80 GB GPU
    assert main(["predict", "mlpseq:in=10,sizes=10000000-1", "--input", "10",
                 "--batch", "16000"]) == 2
    err = _err(capsys)
    assert "does not fit" in err and "activations" in err


@pytest.mark.parametrize("argv, match", [
    (["--memory-format", "channels_last"], "needs a 4-D input"),
    (["--input-dtype", "int64"], "needs a floating one"),
    (["--grad-scaler"], "grad_scaler=True needs mode='train_step'"),
    (["--torch-version", "latest"], "version string"),
])
def test_bad_conditions_one_line(capsys, argv, match):
    assert main(["predict", MLP, "--input", "100", "--batch", "8", *argv]) == 2
    assert match in _err(capsys)


def test_parameter_free_train_step_one_line(capsys, tmp_path):
    f = tmp_path / "free.py"
    f.write_text("import torch\ndef build():\n    return torch.nn.Sequential(torch.nn.ReLU())\n")
    assert main(["predict", f"{f}:build", "--input", "100", "--batch", "8",
                 "--mode", "train_step"]) == 2
    assert "needs trainable parameters" in _err(capsys)


def test_estimate_fp16_grad_scaler(capsys):
    assert main(["estimate", CONV, "--input", "3x16x16", "--epochs", "1", "--dataset-size",
                 "1000", "--batch", "50", "--dtype", "fp16", "--grad-scaler",
                 "--memory-format", "channels_last", "--json"]) == 0
    d = json.loads(capsys.readouterr().out)
    item = d["stages"]["training"]["items"][0]
    assert item["dtype"] == "fp16" and item["grad_scaler"] is True
