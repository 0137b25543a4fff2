"""exante bench irene on a made-up fixture laid out like IrEne's device folders.

The fixture's energies are MADE UP (a known per-call roofline on exante's own features, plus a
per-node overhead), written to CSVs with IrEne's columns and level names: the test checks the
join of primitive rows to captured call sites, the leave-one-model-out composition and the
error paths, not real-world accuracy (that is experiments/external/run.py's job).
"""

import numpy as np
import pandas as pd
import pytest

transformers = pytest.importorskip("transformers")

from predictor.bench import irene  # noqa: E402
from predictor.bench.hf_models import build_hf_model, gelu_tanh_formula  # noqa: E402
from predictor.cli.main import main  # noqa: E402
from profiling.errors import ExanteError  # noqa: E402

MODELS = ("bert-base-uncased", "distilbert-base-uncased", "distilgpt2")
GRID = ((8, 32), (16, 64), (8, 128))
COLS = ["batch_size", "seq_len", "flops", "mem_bytes", "cpu", "mem", "gpu", "gpu_mem", "gpu_clk",
        "gpu_mem_clk", "times_mean", "gpu_energy_mean", "energy_mean", "level_name", "model_name"]
IRENE_CLS = {"Linear": "Linear", "LayerNorm": "LayerNorm", "Embedding": "Embedding",
             "Tanh": "Tanh", "matmul": "MatMul", "softmax": "Softmax"}


def _call_energy(s: pd.DataFrame) -> np.ndarray:
    """Made-up J per call: a launch cost + FLOPs and bytes terms (not a measurement)."""
    return 4e-3 + 2.5e-11 * s["flops"] + 1.5e-10 * (s["bytes_read"] + s["bytes_written"])


def _row(bs, seq, e, level, model, flops=0.0):
    return dict(batch_size=float(bs), seq_len=float(seq), flops=flops, mem_bytes=1.0, cpu=9.0,
                mem=10.0, gpu=90.0, gpu_mem=20.0, gpu_clk=1900.0, gpu_mem_clk=3800.0,
                times_mean=e / 300, gpu_energy_mean=e / 2, energy_mean=e, level_name=level,
                model_name=model)


@pytest.fixture(scope="module")
def irene_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("irene_fixture")
    ml1, ml2, modules, models = [], [], [], []
    for name in MODELS:
        gpt = "gpt" in name
        for bs, seq in GRID:
            s = irene.site_table(name, bs, seq).copy()
            s["e"] = _call_energy(s)
            for site, t, e in zip(s["site"], s["layer_type"], s["e"], strict=True):
                if t not in IRENE_CLS:
                    continue
                cls = "Conv1D" if (gpt and t == "Linear") else IRENE_CLS[t]
                path = site.split(":")[0]
                (ml2 if t in ("matmul", "softmax") else ml1).append(
                    _row(bs, seq, e, f"{path}:{cls}", name))
            blocks = sorted({".".join(x.split(":")[0].split(".")[:3 if not gpt else 2])
                             for x in s["site"] if ".layer." in x or x.startswith("h.")})
            for b in blocks:
                inside = s["site"].map(lambda x, b=b: x.startswith(b + ".") or x.startswith(b + ":"))
                modules.append(_row(bs, seq, 1.02 * float((s["e"] * s["n_calls"])[inside].sum()),
                                    f"{b}:Block", name))
            total = float((s["e"] * s["n_calls"]).sum())
            flops = float((s["flops"] * s["n_calls"]).sum()) / 1e6
            models.append(_row(bs, seq, 1.1 * total + 0.05, name, name, flops))
    for fname, rows in (("ml1", ml1), ("ml2", ml2), ("module", modules), ("model", models)):
        pd.DataFrame(rows, columns=COLS).to_csv(d / f"{fname}_level_features.csv", index=False)
    return d


def test_leave_one_model_out_recovers_made_up_process(irene_dir):
    r = irene.run_irene_bench(str(irene_dir), models=MODELS, quick=True)
    for k in ("model_lomo_mape_pct", "module_lomo_mape_pct", "flops_linear_model_lomo_mape_pct",
              "per_model", "n_rows"):
        assert k in r
    assert set(r["per_model"]) == set(MODELS)
    assert r["n_rows"]["primitive_unmatched"] == 0
    assert r["n_rows"]["primitive_matched"] == r["n_rows"]["primitive"]
    assert r["model_lomo_mape_pct"] < 8.0
    assert r["module_lomo_mape_pct"] < 12.0
    assert all(np.isfinite(v["model_mape_pct"]) for v in r["per_model"].values())


def test_bad_rows_are_skipped_and_counted(irene_dir, tmp_path):
    for f in irene.FILES.values():
        df = pd.read_csv(irene_dir / f)
        if f.startswith("model"):
            df["energy_mean"] = df["energy_mean"].astype(object)
            df.loc[0, "energy_mean"] = "n/a"
        df.to_csv(tmp_path / f, index=False)
    frames, skipped = irene.load_irene_dir(str(tmp_path))
    assert skipped["model"] == 1 and len(frames["model"]) == len(pd.read_csv(irene_dir / irene.FILES["model"])) - 1


def test_missing_file_and_column_give_one_line_errors(irene_dir, tmp_path, capsys):
    with pytest.raises(ExanteError, match="module_level_features.csv"):
        pd.read_csv(irene_dir / "model_level_features.csv").to_csv(
            tmp_path / "model_level_features.csv", index=False)
        irene.load_irene_dir(str(tmp_path))
    for f in irene.FILES.values():
        df = pd.read_csv(irene_dir / f)
        if f.startswith("ml1"):
            df = df.drop(columns=["level_name"])
        df.to_csv(tmp_path / f, index=False)
    rc = main(["bench", "irene", str(tmp_path), "--json"])
    err = capsys.readouterr().err
    assert rc == 2 and err.count("\n") == 1 and "level_name" in err


def test_published_parameter_counts_of_rebuilt_models():
    # the well-known sizes of the base models (no heads)
    counts = {"bert-base-uncased": 109_482_240, "gpt2": 124_439_808}
    for name, n in counts.items():
        m = build_hf_model(name)
        assert sum(p.numel() for p in m.parameters()) == n


def test_conv1d_swap_and_gelu_formula_are_equivalent():
    import torch
    from transformers.activations import NewGELUActivation
    from transformers.pytorch_utils import Conv1D

    from predictor.bench.hf_models import prepare_for_capture

    torch.manual_seed(0)
    x = torch.randn(2, 5, 8)
    assert torch.allclose(gelu_tanh_formula(x), NewGELUActivation()(x), atol=1e-6)
    holder = torch.nn.Sequential(Conv1D(6, 8))
    ref = holder(x)
    w, b = holder[0].weight.detach().clone(), holder[0].bias.detach().clone()
    prepare_for_capture(holder)
    lin = holder[0]
    assert isinstance(lin, torch.nn.Linear) and (lin.in_features, lin.out_features) == (8, 6)
    with torch.no_grad():
        lin.weight.copy_(w.T)
        lin.bias.copy_(b)
    assert torch.allclose(holder(x), ref, atol=1e-6)
