"""Hardware catalogue (predictor/hardware.py, predictor/data/hardware.csv)."""

import csv
import io
from importlib import resources

import pytest

from predictor.carbon.hardware import DTYPES, HardwareSpec, catalogue, keys, lookup
from profiling.errors import ExanteError

REQUIRED = ["agx-xavier", "k80", "p40", "p100", "t4", "v100", "a10", "a100-40gb", "a100-80gb",
            "l4", "l40s", "h100", "h100-pcie", "h200", "b200", "rtx3090", "rtx4090", "mi250x",
            "mi300x", "tpu-v2", "tpu-v3", "tpu-v4", "tpu-v5e",
            # the seed tables' devices (seed 001 Appendix B, seed 000 Table 3)
            "rtx2080ti", "rtx2080", "gtx1080ti", "gtx1080", "rx480", "titanv", "xeon-e5-2699",
            "m40"]


def test_required_devices_present_and_unique():
    ks = keys()
    assert len(ks) == len(set(ks))
    missing = [k for k in REQUIRED if k not in ks]
    assert not missing, missing


@pytest.mark.parametrize("name,key", [
    ("h100-sxm", "h100"), ("H100", "h100"), ("h100", "h100"), ("NVIDIA H100 80GB HBM3", "h100"),
    ("NVIDIA H200", "h200"), ("v100", "v100"), ("Tesla V100", "v100"),
    ("Tesla V100-SXM2-16GB", "v100"), ("a100-80gb", "a100-80gb"),
    ("NVIDIA A100-SXM4-80GB", "a100-80gb"), ("A100", "a100-40gb"), ("TPU3", "tpu-v3"),
    ("tpu v3", "tpu-v3"), ("AGX Xavier", "agx-xavier"), ("nvidia l40s", "l40s"),
    ("NVIDIA L4", "l4"), ("mi300x", "mi300x"), ("RTX_4090", "rtx4090"), ("H100 PCIe", "h100-pcie"),
])
def test_lookup_by_alias_case_insensitive(name, key):
    assert lookup(name).key == key


def test_h100_datasheet_dense_numbers():
    h = lookup("h100-sxm")
    assert isinstance(h, HardwareSpec)
    assert h.name == "H100 SXM" and h.kind == "gpu" and h.vendor == "NVIDIA"
    assert h.tdp_w == 700 and h.memory_gb == 80 and h.mem_bw_gbs == 3350
    # datasheet 'with sparsity' 989 / 1979 / 3958 halved
    assert h.peak_tflops["tf32"] == 494.5
    assert h.peak_tflops["fp16"] == h.peak_tflops["bf16"] == 989.5
    assert h.peak_tflops["fp8"] == 1979 and h.peak_tflops["fp32"] == 67
    assert h.idle_w is None                          # no published idle figure
    assert 123 < h.measured_idle_w < 127 and "reference" in h.sources["measured_idle_w"]
    assert h.peak("BF16") == 989.5


def test_h200_same_chip_bigger_memory():
    h, h2 = lookup("h100"), lookup("h200")
    assert dict(h.peak_tflops) == dict(h2.peak_tflops)
    assert (h2.memory_gb, h2.mem_bw_gbs) == (141, 4800)


def test_every_value_has_a_source_and_dtypes_are_known():
    for spec in catalogue():
        assert set(spec.peak_tflops) <= set(DTYPES), spec.key
        assert spec.kind in ("gpu", "tpu", "cpu", "soc")
        for fld in ("tdp_w", "idle_w", "measured_idle_w", "memory_gb", "mem_bw_gbs"):
            if getattr(spec, fld) is not None:
                assert spec.sources.get(fld, "").strip(), (spec.key, fld)
        if spec.peak_tflops:
            assert spec.sources["peak_tflops"].strip(), spec.key
        assert all(v > 0 for v in spec.peak_tflops.values()), spec.key
        assert spec.tdp_w is None or spec.tdp_w > 0


def test_no_sparsity_numbers_slipped_in():
    # dense tensor throughput per watt: nothing shipping reaches 10 TFLOPS/W in bf16/fp16 dense
    for spec in catalogue():
        for d in ("fp16", "bf16"):
            if d in spec.peak_tflops and spec.tdp_w:
                assert spec.peak_tflops[d] / spec.tdp_w < 3.0, spec.key


def test_tpu_v3_conflict_resolved_with_note():
    t = lookup("TPU v3")
    assert t.tdp_w == 450
    assert "200 W" in t.notes and "seed 001" in t.notes


def test_seed_values_kept():
    assert lookup("RTX 2080 Ti").peak_tflops["fp32"] == 13.45          # seed 001 App. B
    assert lookup("AGX Xavier").tdp_w == 30                            # seed 001 App. B
    assert lookup("Tesla M40").tdp_w == 250                            # seed 000 Table 3
    assert lookup("tpu-v5e").tdp_w is None                             # none published


def test_unknown_device_error_names_input_and_close_matches():
    with pytest.raises(ExanteError) as e:
        lookup("h1000")
    msg = str(e.value)
    assert "'h1000'" in msg and "h100" in msg and "\n" not in msg
    with pytest.raises(ExanteError, match="list-hardware"):
        lookup("nonsense")
    with pytest.raises(ExanteError):
        lookup("")
    with pytest.raises(ExanteError, match="no published fp8"):
        lookup("v100").peak("fp8")
    with pytest.raises(ExanteError, match="unknown dtype"):
        lookup("v100").peak("fp12")


def test_csv_is_rectangular_and_keys_lowercase():
    text = resources.files("predictor.data").joinpath("hardware.csv").read_text(encoding="utf-8")
    rows = list(csv.DictReader(io.StringIO(text)))
    assert len(rows) == len(catalogue())
    for row in rows:
        assert None not in row and all(v is not None for v in row.values()), row
        assert row["key"] == row["key"].lower()


def test_issue17_catalogue_devices_resolve_by_nvidia_smi_name():
    for smi, key in [("NVIDIA GeForce RTX 4090", "rtx4090"), ("NVIDIA GeForce RTX 5090", "rtx5090"),
                     ("NVIDIA GeForce RTX 3080 Ti", "rtx3080ti"), ("NVIDIA H100 80GB HBM3", "h100"),
                     ("NVIDIA A100-SXM4-80GB", "a100-80gb"), ("NVIDIA A800-SXM4-80GB", "a800-80gb"),
                     ("NVIDIA H800", "h800"), ("NVIDIA H20", "h20"), ("NVIDIA L40", "l40"),
                     ("NVIDIA RTX A6000", "rtx-a6000"), ("NVIDIA RTX 6000 Ada Generation", "rtx6000-ada"),
                     ("NVIDIA H100 NVL", "h100-nvl"), ("AMD Instinct MI355X", "mi355x"),
                     ("Tesla T4", "t4"), ("NVIDIA A10G", "a10g"), ("NVIDIA GB200", "gb200")]:
        assert lookup(smi).key == key, smi


def test_bare_rtx_model_numbers_resolve_as_file_names_write_them():
    # timm's newer benchmark files name the GPU "4090", "5090", "pro6000maxq"
    for bare, key in [("5090", "rtx5090"), ("4090", "rtx4090"), ("3080ti", "rtx3080ti"),
                      ("pro6000maxq", "rtx-pro6000-maxq"), ("pro6000", "rtx-pro6000"),
                      ("a6000", "rtx-a6000"), ("GeForce RTX 3090", "rtx3090")]:
        assert lookup(bare).key == key, bare
    with pytest.raises(ExanteError, match="unknown device '9999'"):
        lookup("9999")          # the rtx fallback finds nothing: the usual error


def test_new_columns_sourced_and_generation_set():
    for spec in catalogue():
        if spec.sm_count is not None or spec.boost_clock_mhz is not None:
            assert spec.sources.get("sm_count"), spec.key
        if spec.kind == "gpu":
            assert spec.generation, spec.key
    h100 = lookup("h100")
    assert (h100.sm_count, h100.boost_clock_mhz, h100.generation) == (132, 1980, "hopper")
    # GeForce fp16 = dense tensor rate with FP32 accumulate (half the FP16-accumulate rate)
    assert lookup("rtx4090").peak("fp16") == 165.2 and lookup("rtx5090").peak("fp16") == 209.5


def test_dtype_fallback_is_stated_never_an_error():
    d, note = lookup("v100").training_dtype("bf16")
    assert d == "fp16" and "bf16" in note
    assert lookup("h100").training_dtype("bf16") == ("bf16", None)
    assert lookup("t4").training_dtype("tf32")[0] == "fp32"


def test_catalogue_table_lists_every_device():
    from predictor.carbon.hardware import catalogue_table
    text = catalogue_table()
    assert len(text.splitlines()) == len(catalogue()) + 1
    assert "rtx5090" in text and "170" in text


def test_close_matches_helper_for_other_commands():
    from predictor.carbon.hardware import close_matches
    assert close_matches("h1000")[0] in ("h100", "h800", "h200")
    assert "h100" in close_matches("h1000") and close_matches("zzzzzz") == []


def test_fallback_picks_the_faster_real_option():
    assert lookup("gtx1080").training_dtype("bf16")[0] == "fp32"    # 1/64-rate FP16 on Pascal
    assert lookup("p100").training_dtype("bf16")[0] == "fp16"
    assert lookup("a100-80gb").training_dtype("fp8")[0] == "bf16"
