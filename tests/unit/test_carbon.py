"""Reference data and carbon conversions (predictor/carbon.py). Seed line numbers refer to
/work/shared/seeds/*.txt (shared/seeds in the project)."""

import csv
import io
import math
from importlib import resources

import pytest

from predictor.carbon import regions as carbon
from profiling.errors import ExanteError

FILES = ("grid_intensity_regions.csv", "energy_sources.csv", "equivalents.csv")
# hardware.csv has per-field source columns; tests/test_hardware.py checks them


@pytest.mark.parametrize("name", FILES)
def test_every_row_has_a_source(name):
    text = resources.files("predictor.data").joinpath(name).read_text(encoding="utf-8")
    rows = list(csv.DictReader(io.StringIO(text)))
    assert rows
    for row in rows:
        assert row["source"].strip().startswith("seed 00"), row
        assert all(v is not None for v in row.values()), row   # no ragged rows


def test_imported_regions_name_their_source():
    text = resources.files("predictor.data").joinpath("grid_intensity_codecarbon.csv").read_text(
        encoding="utf-8")
    rows = list(csv.DictReader(io.StringIO(text)))
    assert rows
    for row in rows:
        assert "codecarbon" in row["source"], row
        assert 0 <= float(row["g_co2eq_per_kwh"]) < 2000, row


def test_loaders_and_row_counts():
    regions = carbon.grid_regions()
    assert sum(k.startswith("gcp:") for k in regions) == 20
    assert sum(k.startswith("aws:") for k in regions) == 22
    assert sum(k.startswith("location:") for k in regions) == 4
    # imported from codecarbon's package data (experiments/calculator/import_codecarbon_grid.py)
    assert sum(k.startswith("azure:") for k in regions) == 32
    assert sum(k.startswith("us-state:") for k in regions) >= 50
    assert len(carbon.hardware_table()) >= 34       # one resolved row per catalogue device
    assert set(carbon.energy_sources()) == {"coal", "natural gas", "hydroelectricity", "oil",
                                            "nuclear"}
    assert len(carbon.equivalents()) == 6
    assert carbon.grid_regions() is carbon.grid_regions()     # cached


def test_spot_values_match_the_seeds():
    r = carbon.grid_regions()
    assert r["gcp:us-central1"]["g_co2eq_per_kwh"] == 566.3    # seed 001 line 358
    assert r["aws:us-east-1"]["g_co2eq_per_kwh"] == 367.8      # seed 001 line 368
    assert r["gcp:europe-west6"]["g_co2eq_per_kwh"] == 16      # seed 001 line 355
    assert r["aws:eu-north-1"]["g_co2eq_per_kwh"] == 47        # seed 001 line 385
    assert r["location:quebec"]["g_co2eq_per_kwh"] == 20       # seed 004 line 226
    assert r["location:iowa"]["g_co2eq_per_kwh"] == 736.6      # seed 004 line 226
    assert r["location:world"]["g_co2eq_per_kwh"] == 475       # seed 000 line 85
    hw = {row["key"]: row for row in carbon.hardware_table()}
    assert len(hw) == len(carbon.hardware_table())             # duplicates resolved
    r2080 = hw["rtx2080ti"]                                    # seed 001 line 430
    assert (r2080["tdp_w"], r2080["peak_tflops_fp32"]) == (250, 13.45)
    # seed 001's TFLOPS16 (26.9) is packed FP16 on CUDA cores; the catalogue's fp16 is the
    # tensor-core rate autocast runs (68 SMs x 1,545 MHz x 512 FP32-accumulate FLOP/clk)
    assert r2080["peak_tflops_fp16"] == 53.8
    assert r2080["gflops_fp32_per_w"] == 53.80                 # derived = seed's GFLOPS32/W
    assert hw["tpu-v3"]["tdp_w"] == 450 and "seed 000" in hw["tpu-v3"]["source"]  # line 277
    assert hw["tpu-v3"]["peak_tflops_fp32"] is None
    es = carbon.energy_sources()                               # seed 000 line 81
    assert es["coal"]["g_co2eq_per_kwh"] == 512.3 and es["coal"]["n_models"] == 38
    assert es["nuclear"]["g_co2eq_per_kwh"] == 147.2 and es["nuclear"]["low_carbon"]
    # the model-weighted mean reproduces the paper's sample average of 372 (seed 000 line 85)
    mean = (sum(v["g_co2eq_per_kwh"] * v["n_models"] for v in es.values())
            / sum(v["n_models"] for v in es.values()))
    assert round(mean) == 372
    eq = {row["key"]: row["t_co2_per_unit"] for row in carbon.equivalents()}   # seed 002 line 165
    assert eq == {"phone_charge": 8.22e-6, "mile_driven": 3.98e-4, "gallon_gasoline": 8.887e-3,
                  "barrel_oil": 0.43, "home_year": 8.30, "railcar_coal": 181.29}


def test_documented_defaults():
    assert carbon.DEFAULT_PUE == 1.58                          # seed 004 line 172
    assert "seed 004" in carbon.PUE_SOURCE
    assert carbon.GPU_SHARE_OF_SERVER == 0.74                  # seed 002 line 105


def test_region_lookup():
    g = carbon.grid_intensity("aws:us-east-1")
    assert g.value_g_per_kwh == 367.8 and "seed 001" in g.source and "aws:us-east-1" in g.label
    assert carbon.grid_intensity("GCP:US-CENTRAL1").value_g_per_kwh == 566.3
    assert carbon.grid_intensity("us-central1").value_g_per_kwh == 566.3   # unambiguous bare name
    d = carbon.grid_intensity()
    assert d.value_g_per_kwh == 475 and "default" in d.label
    c = carbon.grid_intensity(intensity_g_per_kwh=12.5)
    assert c.value_g_per_kwh == 12.5 and c.source == "user-supplied value"
    assert carbon.grid_intensity(intensity_g_per_kwh=0).value_g_per_kwh == 0


def test_unknown_region_lists_close_matches_and_custom_value():
    with pytest.raises(ExanteError) as exc:
        carbon.grid_intensity("aws:us-east-3")
    msg = str(exc.value)
    assert "aws:us-east-1" in msg and "aws:us-east-2" in msg
    assert "intensity_g_per_kwh" in msg and "\n" not in msg
    with pytest.raises(ExanteError, match="close matches: .*us-east1"):
        carbon.grid_intensity("useast1")
    with pytest.raises(ExanteError, match="unknown grid region"):
        carbon.grid_intensity("mars:olympus-mons")


@pytest.mark.parametrize("bad", [-1, "x", math.nan, math.inf])
def test_bad_custom_intensity(bad):
    with pytest.raises(ExanteError, match="gCO2eq/kWh"):
        carbon.grid_intensity(intensity_g_per_kwh=bad)


def test_conversions_and_equivalents():
    assert carbon.to_kwh(3.6e6) == 1.0
    assert carbon.co2_kg(2.0, 500.0) == 1.0
    assert carbon.co2_kg(2.0, carbon.grid_intensity(intensity_g_per_kwh=500)) == 1.0
    # seed 000 line 61: 0.3 kW x 100 h x 500 g/kWh = 15 kg
    assert carbon.co2_kg(0.3 * 100, 500) == pytest.approx(15.0)
    eq = {label: (amount, unit, src) for label, amount, unit, src in
          carbon.everyday_equivalents(8300.0)}
    home = next(v for k, v in eq.items() if "home" in k)
    assert home[0] == pytest.approx(1.0) and "seed 002" in home[2]
    phone = next(v for k, v in eq.items() if "phone" in k)
    assert phone[0] == pytest.approx(8300.0 / 8.22e-3)
