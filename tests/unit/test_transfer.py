"""Datasheet transfer of the shipped H100 physics model to other catalogue GPUs (issue 13)."""

import json
import math
import warnings

import pytest

from predictor import predict
from predictor.artifacts import available_hardware, load_artifact
from predictor.cli.main import main as cli_main
from predictor.engine.physics import PARAMS
from predictor.engine.transfer import (
    TRANSFER_HALFWIDTH,
    TransferredHardware,
    datasheet_distance,
    datasheet_of,
    transfer,
    transfer_halfwidth,
    transfer_params,
    transferred_artifact,
)
from profiling.errors import ExanteError
from profiling.model_refs import resolve_model_on_meta

pytestmark = pytest.mark.skipif("h100" not in available_hardware(),
                                reason="the shipped h100 artifact is needed")


def _h100():
    return load_artifact("h100").model


def test_rules_carry_efficiencies_and_host_costs_and_scale_powers():
    base = _h100()
    p = base.model.params()
    src = base.datasheet
    a100, v100 = datasheet_of("a100"), datasheet_of("v100")
    q = transfer_params(p, src, a100)
    for k in PARAMS:
        if k.startswith("h_") or k.startswith("eff_") or k in ("tau_s", "tau_conv_s", "overlap_q"):
            assert q[k] == p[k], k
    dyn = (a100.tdp_w - a100.idle_w) / (src.tdp_w - src.idle_w)
    assert q["p_fp32_w"] == pytest.approx(p["p_fp32_w"] * dyn)
    assert q["p_mem_w"] == pytest.approx(p["p_mem_w"] * dyn)
    assert q["p0_w"] == pytest.approx(p["p0_w"] * a100.idle_w / src.idle_w)
    assert q["p_cap_w"] == pytest.approx(p["p_cap_w"] * 400.0 / 700.0)
    assert q["fill_flops"] == pytest.approx(p["fill_flops"] * 19.5 / 67.0)
    # V100 has no TF32: its fp32 convolutions run on FP32 cores like fp32 matmuls
    r = transfer_params(p, src, v100)
    assert r["eff_conv_tf32"] == p["eff_mm_fp32"] != p["eff_conv_tf32"]
    assert q["eff_conv_tf32"] == p["eff_conv_tf32"]


def test_transferred_prediction_is_labelled_and_wider():
    m = resolve_model_on_meta("mlp:in=256,depth=4,width=1024,out=10")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ph = predict(m, (16, 256), mode="train_step", hardware="h100")
        pa = predict(m, (16, 256), mode="train_step", hardware="a100")
    assert pa.hardware == "a100-40gb"
    # a GPU without rows: the joint multi-GPU model's datasheet-driven parameters
    assert pa.warnings[0].startswith("datasheet-driven: a100-40gb was never measured")
    assert "-joint-" in pa.artifact["id"]
    assert not any("never measured" in w for w in ph.warnings)
    for p in (ph, pa):
        assert p.energy_j_low < p.energy_j < p.energy_j_high
        assert p.time_s_low < p.time_s < p.time_s_high
    wide = math.log(pa.energy_j_high / pa.energy_j)
    assert wide > math.log(ph.energy_j_high / ph.energy_j)
    assert wide >= min(TRANSFER_HALFWIDTH.values()) - 1e-9
    # GPU-bound work on a slower, lower-power GPU: longer and at lower average power than on
    # the H100 (host-bound work is not: a GPU never measured gets a typical host, not the
    # H100 reference machine's)
    big = resolve_model_on_meta("mlp:in=4096,depth=4,width=4096,out=10")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        bh = predict(big, (2048, 4096), mode="train_step", hardware="h100")
        ba = predict(big, (2048, 4096), mode="train_step", hardware="a100")
    assert ba.terms["regime"] == "gpu"
    assert ba.time_s > bh.time_s and ba.power_w < bh.power_w
    # a GPU without bf16 says what its bf16 prediction stands for; one with bf16 does not
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pv = predict(m, (16, 256), mode="train_step", hardware="v100", dtype="bf16")
        pb = predict(m, (16, 256), mode="train_step", hardware="a100", dtype="bf16")
    assert any("v100 has no bf16" in w for w in pv.warnings)
    assert not any("no bf16" in w for w in pb.warnings + pa.warnings)


def test_transfer_interval_grows_with_datasheet_distance():
    """The GPU-bound transfer term says how far the target is from the measured GPU: small
    for the H100's own chip on another board, up to the ceiling for a GPU generations away;
    the host-bound term does not depend on the GPU (the host is unknown either way)."""
    h100 = datasheet_of("h100")
    assert datasheet_distance(h100, h100) == 0.0
    near, mid, far = (transfer_halfwidth(h100, datasheet_of(k)) for k in ("h200", "a100", "p100-pcie"))
    assert 0.15 <= near["gpu"] < 0.25 < mid["gpu"] < far["gpu"] <= TRANSFER_HALFWIDTH["gpu"]
    assert near["host"] == far["host"] == TRANSFER_HALFWIDTH["host"]
    th = transfer(_h100(), "h200")
    assert th.widen == near and "datasheet distance 0.07" in th.label
    assert transfer(_h100(), "p100-pcie").widen == far


def test_transfer_object_and_artifact_cache():
    th = transfer(_h100(), "l4")
    assert isinstance(th, TransferredHardware) and th.hardware == "l4" and th.source == "h100"
    assert th.datasheet.tdp_w == 72.0
    a1 = transferred_artifact("l4")
    assert a1 is transferred_artifact("L4") and a1.manifest["transferred_from"] == "joint"
    a2 = transferred_artifact("l4", source="h100")       # the plain datasheet transfer
    assert a2 is transferred_artifact("L4", source="h100")
    assert a2.manifest["transferred_from"] == "h100"
    # a GPU with its own artifact is not transferred
    assert transferred_artifact("H100 SXM").model.hardware == "h100"


def test_non_gpu_and_unknown_are_errors():
    with pytest.raises(ExanteError, match="GPUs only"):
        datasheet_of("tpu-v4")
    m = resolve_model_on_meta("mlp:in=8,depth=1,width=8,out=1")
    with pytest.raises(ExanteError, match="no fitted model"):
        predict(m, (2, 8), hardware="tpu-v4")
    with pytest.raises(ExanteError, match="lacks its fp32 peak, memory bandwidth"):
        datasheet_of("m40")              # the catalogue has only its TDP
    # consumer Pascal's 1/64-rate FP16 is not what autocast runs at: the fp32 rate is
    d = datasheet_of("gtx1080ti")
    assert d.fp16_peak == d.peak_bf16 == d.peak_fp32 == pytest.approx(11.34e12)


def test_cli_predict_hardware_a100_json(capsys):
    rc = cli_main(["predict", "mlp:in=64,depth=2,width=64,out=1", "--input", "64", "--batch",
                   "8", "--hardware", "a100", "--json"])
    assert rc == 0
    d = json.loads(capsys.readouterr().out)
    assert d["hardware"] == "a100-40gb"
    assert any(w.startswith("datasheet-driven: a100-40gb") for w in d["warnings"])
    assert d["energy_j_low"] < d["energy_j"] < d["energy_j_high"]


def test_predict_resolves_the_hardware_name_once(monkeypatch):
    """issue 19: one predict(hardware="t4") looked the name up five times (memory check x2,
    can_transfer, transferred_artifact, transfer); now once."""
    from torch import nn

    import predictor.carbon.hardware as catalogue

    real, n = catalogue._lookup_index, [0]

    def counted():
        n[0] += 1
        return real()

    monkeypatch.setattr(catalogue, "_lookup_index", counted)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        p = predict(nn.Sequential(nn.Linear(64, 64), nn.ReLU()), (8, 64), hardware="t4")
    assert p.hardware == "t4" and n[0] == 1


def test_datasheet_transfer_computes_the_distance_once(monkeypatch):
    """issue 19: a datasheet transfer computed the source-target distance three times
    (choosing the source, the half-width, the label); now once per source."""
    import predictor.engine.transfer as tr
    import predictor.engine.transferred as trd

    real, n = trd.datasheet_distance, [0]

    def counted(a, b):
        n[0] += 1
        return real(a, b)

    monkeypatch.setattr(tr, "datasheet_distance", counted)
    monkeypatch.setattr(trd, "datasheet_distance", counted)
    monkeypatch.setattr(tr, "_ART_CACHE", {})
    art = transferred_artifact("t4", source="h100")
    assert n[0] == 1
    d = real(_h100().datasheet, datasheet_of("t4"))
    assert art.model.info["datasheet_distance"] == d
    assert art.model.widen == transfer_halfwidth(_h100().datasheet, datasheet_of("t4"))


def test_catalogue_gpu_without_datasheet_numbers_says_what_is_missing():
    """A catalogue GPU whose datasheet lacks what the transfer needs (GH200: no GPU-only TDP)
    is refused naming the missing numbers and the catalogue's note, not as 'no fitted model'."""
    from predictor.engine.target import load_engine, resolve
    t = resolve("gh200")
    assert t.datasheet is None and "lacks its TDP" in t.no_datasheet
    with pytest.raises(ExanteError, match=r"lacks its TDP.*catalogue note: .*Grace CPU"):
        load_engine(t)
    t = resolve("rtx-pro4000")
    with pytest.raises(ExanteError, match=r"lacks its fp32 peak \(needed"):
        load_engine(t)


def test_every_priceable_catalogue_gpu_gives_finite_positive_predictions():
    """Every catalogue GPU whose datasheet the model can use prices fp16 inference and a bf16
    training step to finite positive numbers (odd datasheets -- Pascal's 1/64-rate FP16,
    GPUs without TF32 or bf16 -- must not give NaN, zero or an exception); the rest are
    refused by `datasheet_of` with the reason."""
    from predictor.carbon.hardware import catalogue
    from profiling.model_refs import build_mlp
    m = build_mlp(64, 2, 128, 10)
    priced = 0
    for spec in catalogue():
        if spec.kind != "gpu":
            continue
        try:
            datasheet_of(spec)
        except ExanteError as exc:
            assert "lacks its" in str(exc), (spec.key, str(exc))
            continue
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            for dtype, mode, opt in (("fp16", "inference", None), ("bf16", "train_step", "adamw")):
                p = predict(m, (16, 64), hardware=spec.key, dtype=dtype, mode=mode, optimizer=opt)
                assert math.isfinite(p.time_s) and p.time_s > 0, (spec.key, dtype)
                assert math.isfinite(p.energy_j) and p.energy_j > 0, (spec.key, dtype)
        priced += 1
    assert priced >= 75
