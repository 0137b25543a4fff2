"""Calculator mode (predictor/calc.py, ``exante calc``) and the imported grid regions."""

import json

import pytest

import predictor
from predictor.carbon import regions as carbon
from predictor.carbon.calc import calc, human_energy, human_mass
from predictor.cli.main import main
from profiling.errors import ExanteError


def test_arithmetic_and_defaults_are_stated():
    r = calc("v100", count=8, hours=36, region="aws:us-east-1")
    assert r.power_w == 300 and r.device_hours == 288
    assert r.device_energy_kwh == pytest.approx(300 * 288 / 1000)
    assert r.pue == 1.58 == carbon.DEFAULT_PUE     # as exante estimate (seed 004)
    assert r.energy_kwh == pytest.approx(r.device_energy_kwh * 1.58)
    assert r.co2_kg == pytest.approx(86.4 * 1.58 * 367.8 / 1000)
    assert any("PUE 1.58" in n for n in r.notes) and any("TDP" in n for n in r.notes)
    assert set(r.sources) >= {"power_w", "pue", "grid_intensity", "hours"}
    assert "seed 001" in r.sources["grid_intensity"]


def test_power_pue_offset_and_gpu_hours():
    r = calc("a100-80gb", count=4, gpu_hours=100, power_w=250, pue=1.2, intensity=100,
             offset_pct=25)
    assert r.hours == 25 and r.device_energy_kwh == pytest.approx(25.0)
    assert r.energy_kwh == pytest.approx(30.0) and r.co2_kg == pytest.approx(3.0)
    assert r.co2_kg_after_offset == pytest.approx(2.25)
    u = calc("h100", hours=10, utilization=0.5)
    assert u.power_w == 350 and "0.5 × TDP 700" in u.sources["power_w"]
    assert not any("TDP of" in n for n in u.notes)


def test_energy_source_intensity_and_regions():
    assert calc("t4", hours=1, intensity="coal").grid_intensity_g_per_kwh == 512.3
    assert calc("t4", hours=1, intensity="gas").grid_intensity_g_per_kwh == 350.5
    assert calc("t4", hours=1, intensity="hydro").grid_intensity_g_per_kwh == 100.6
    for key in ("france", "us:average", "us-state:oklahoma", "us-state:georgia",
                "location:quebec", "ca-province:quebec", "azure:eastus", "eastus2",
                "United States"):
        g = carbon.grid_intensity(key)
        assert 0 < g.value_g_per_kwh < 1200 and g.source
    # Azure values match the legible pairs of seed 001's garbled Azure table
    regions = carbon.grid_regions()
    assert regions["azure:canadacentral"]["g_co2eq_per_kwh"] == 69.3
    assert regions["azure:centralus"]["g_co2eq_per_kwh"] == 736.6
    assert regions["azure:southafricanorth"]["g_co2eq_per_kwh"] == 1009
    # eGRID lbs/MWh converted to g/kWh
    assert "0.45359237" in regions["us-state:oklahoma"]["source"]
    with pytest.raises(ExanteError, match="ambiguous.*country:georgia.*us-state:georgia"):
        carbon.grid_intensity("georgia")
    with pytest.raises(ExanteError, match="unknown energy source"):
        calc("t4", hours=1, intensity="peat")


@pytest.mark.parametrize("kwargs,match", [
    (dict(device="v100"), "exactly one duration"),
    (dict(device="v100", hours=1, gpu_hours=2), "exactly one duration"),
    (dict(device="v100", hours=-1), "hours"),
    (dict(device="v100", hours=1, count=0), "count"),
    (dict(device="v100", hours=1, count=2.5), "count"),
    (dict(device="v100", hours=1, pue=0.9), "pue must be >= 1"),
    (dict(device="v100", hours=1, utilization=1.5), "utilization"),
    (dict(device="v100", hours=1, offset_pct=120), "offset_pct"),
    (dict(device="tpu-v5e", hours=1), "no published TDP"),
    (dict(hours=1), "give a device"),
    (dict(device="v100", hours=1, region="aws:us-east-1", intensity=10), "not both"),
    (dict(device="h100", params=1e9, tokens=1e9, mfu=1.5), "mfu"),
    (dict(device="h100", params=1e9, tokens=1e9, sharding="zero9"), "sharding"),
    (dict(device="tpu-v3", params=1e9, tokens=1e9, mfu_mode="physics"), "GPUs only"),
    (dict(device="h100", count=8, params=1e9, tokens=1e9, mfu=0.3, tp=3), "multiple"),
    (dict(device="h100", count=8, params=1e9, tokens=1e9, mfu=0.3, dp=2, tp=2), "must equal"),
])
def test_bad_input_is_one_clear_error(kwargs, match):
    with pytest.raises(ExanteError, match=match):
        calc(**kwargs)


def test_llm_scale_training_flops_and_memory():
    # 6·N·D at a given MFU of the dense bf16 peak
    r = calc("h100", count=64, params=7e9, tokens=1e12, mfu=0.4, tp=8, pp=1, pue=1.1,
             region="france")
    t = r.training
    assert t["flops"] == pytest.approx(6 * 7e9 * 1e12)
    assert r.device_hours == pytest.approx(6 * 7e9 * 1e12 / (0.4 * 989.5e12) / 3600)
    assert r.hours == pytest.approx(r.device_hours / 64)
    assert (t["dp"], t["tp"], t["pp"]) == (8, 8, 1)
    assert t["model_states_gb"] == pytest.approx(16 * 7e9 / 8 / 1e9)   # no sharding needed
    assert t["memory_fits"] is True and t["sharding"] == "none"
    big = calc("v100", count=8, params=175e9, tokens=1e9, mfu=0.2, dtype="fp16")
    assert big.training["memory_fits"] is False
    assert any("does not fit (needs" in n for n in big.notes)
    # fp16 vs fp32 peaks differ on V100: 125 vs 15.7 TFLOP/s
    fp32 = calc("v100", count=8, params=1e9, tokens=1e9, mfu=0.2, dtype="fp32")
    fp16 = calc("v100", count=8, params=1e9, tokens=1e9, mfu=0.2, dtype="fp16")
    assert fp32.device_hours / fp16.device_hours == pytest.approx(125 / 15.7)


def test_units_switch_to_mwh_and_tonnes():
    assert human_energy(1287000).endswith("MWh") and human_energy(999).endswith("kWh")
    assert "kWh" in human_energy(999) and "t" in human_mass(552100) and "kg" in human_mass(9)


def test_package_attribute_is_the_function():
    assert predictor.calc is calc


def test_cli_json_keys_and_errors(capsys):
    rc = main(["calc", "--device", "Tesla V100", "--count", "8", "--hours", "36",
               "--region", "aws:us-east-1", "--json"])
    assert rc == 0
    out = json.loads(capsys.readouterr().out)
    for k in ("device_energy_kwh", "energy_kwh", "co2_kg", "pue", "power_w",
              "grid_intensity_g_per_kwh", "sources"):
        assert k in out
    assert out["co2_kg"] == pytest.approx(86.4 * 1.58 * 0.3678)
    rc = main(["calc", "--device", "nonsense", "--hours", "1"])
    err = capsys.readouterr().err
    assert rc == 2 and err.count("\n") == 1 and "unknown device 'nonsense'" in err
    rc = main(["calc", "--device", "h100", "--hours", "1", "--pue", "abc"])
    assert rc == 2 and "pue must be a number" in capsys.readouterr().err
    assert main(["calc", "--list-devices"]) == 0
    assert "b200" in capsys.readouterr().out


def test_ex_ante_llm_default_mfu_interval_and_json_keys(capsys):
    """No --mfu: the published-runs default with an interval; the issue-18 JSON keys."""
    rc = main(["calc", "--params", "70e9", "--tokens", "2e12", "--device", "a100-80gb",
               "--count", "2048", "--json"])
    assert rc == 0
    out = json.loads(capsys.readouterr().out)
    for k in ("device_hours", "mfu", "mfu_source", "mfu_low", "mfu_high", "fits",
              "memory_gb_per_device"):
        assert out[k] is not None, k
    assert out["mfu_low"] < out["mfu"] < out["mfu_high"] <= 1
    assert "published" in out["mfu_source"] and out["fits"] is True
    # the published Llama 2 70B hours (1,720,320, Touvron et al. 2023 Table 2) lie inside
    lo = out["training"]["device_hours_low"]
    hi = out["training"]["device_hours_high"]
    assert lo < 1720320 < hi
    assert out["device_hours"] == pytest.approx(
        6 * 70e9 * 2e12 / (out["mfu"] * 312e12) / 3600)


def test_mfu_override_and_flavours():
    a = calc("h100", count=1024, params=70e9, tokens=1e12, mfu=0.5)
    assert a.training["mfu"] == 0.5 and a.training["mfu_source"] == "user-supplied --mfu"
    pub = calc("h100", count=1024, params=70e9, tokens=1e12)
    trn = calc("h100", count=1024, params=70e9, tokens=1e12, mfu_flavour="training")
    assert trn.training["mfu"] > pub.training["mfu"]       # goodput < 1: restarts excluded
    assert trn.device_hours < pub.device_hours


def test_v100_bf16_falls_back_to_fp16_with_a_note():
    r = calc("v100", count=8, params=1e9, tokens=1e9, mfu=0.3)
    assert r.training["dtype"] == "fp16" and r.training["peak_tflops"] == 125
    assert any("no bf16" in n for n in r.notes)


def test_sharding_makes_large_configs_fit():
    none = calc("a100-80gb", count=1024, params=175e9, tokens=1e9, mfu=0.3, tp=8, pp=8,
                sharding="none", checkpointing="none")
    auto = calc("a100-80gb", count=1024, params=175e9, tokens=1e9, mfu=0.3, tp=8, pp=8)
    z3 = calc("a100-80gb", count=1024, params=175e9, tokens=1e9, mfu=0.3, tp=8, pp=8,
              sharding="zero3", checkpointing="full")
    assert auto.training["memory_fits"] is True
    assert z3.training["memory_per_device_gb"] < none.training["memory_per_device_gb"]
    # ZeRO-3 divides weights, grads and optimizer states by dp
    assert z3.training["model_states_gb"] == pytest.approx(175e9 * 16 / 64 / 16 / 1e9)


def test_tpu_power_measured_by_default_tdp_on_request():
    m = calc("tpu-v3", count=512, hours=480)
    t = calc("tpu-v3", count=512, hours=480, tpu_power="tdp")
    assert m.power_w == pytest.approx(288.5) and "Patterson" in m.sources["power_w"]
    assert t.power_w == 450


def test_intensity_energy_source_names():
    coal = calc("v100", hours=1, intensity="coal").grid_intensity_g_per_kwh
    assert coal > calc("v100", hours=1, intensity="hydro").grid_intensity_g_per_kwh > 0


def test_training_mfu_and_device_hours_are_intervals():
    """Issue 19: calc's interval-carrying results are predictor.engine.interval.Interval."""
    from predictor.engine.interval import Interval

    r = calc("a100-80gb", count=2048, params=70e9, tokens=2e12)
    assert isinstance(r.mfu, Interval) and r.mfu.level == 0.9
    assert r.mfu.low < r.mfu.value < r.mfu.high <= 1
    h = r.training_device_hours
    assert h.low < h.value == r.device_hours < h.high    # hours fall as the MFU rises
    d = r.to_dict()
    assert (d["mfu"], d["mfu_low"], d["device_hours_high"]) == (r.mfu.value, r.mfu.low, h.high)
    given = calc("h100", count=8, params=7e9, tokens=1e11, mfu=0.4)
    assert given.mfu == Interval(0.4, 0.4, 0.4, 1.0)
    plain = calc("v100", count=8, hours=36)
    assert plain.mfu is None and plain.training_device_hours is None
    assert plain.to_dict()["mfu_low"] is None
