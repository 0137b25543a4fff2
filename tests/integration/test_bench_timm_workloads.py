"""timm workload capture + cache, and timm benchmark file names/rows (no GPU, tiny models)."""

from __future__ import annotations

import gzip
import importlib.util
import json

import pytest

if importlib.util.find_spec("timm") is None:
    pytest.skip("timm is not installed", allow_module_level=True)

from predictor.bench.timm_results import parse_file_name, read_benchmark_file, torch_version_of  # noqa: E402
from predictor.bench.timm_workloads import TimmBuildError, cache_path, timm_workload  # noqa: E402
from profiling.errors import ExanteError  # noqa: E402


def test_capture_is_cached_and_conditions_set_on_load(tmp_path):
    w = timm_workload("test_vit", 160, 4, "inference", "fp16", "channels_last",
                      torch_version="2.4.0", cache_dir=tmp_path)
    assert w.dtype == "fp16" and w.batch == 4 and w.mode == "inference"
    assert w.memory_format == "channels_last" and w.torch_version == "2.4.0"
    assert any(layer.config.dtype == "fp16" for layer in w.layers)
    path = cache_path(tmp_path, "test_vit", 160, 4, "inference", "fp16")
    assert path.is_file()
    rec = json.loads(gzip.decompress(path.read_bytes()))
    assert "timm=" in rec["key"] and "|test_vit|160|b4|inference|fp16" in rec["key"]
    # the cached file is what is read back: tamper with its batch and see it come back
    rec["workload"]["batch"] = 999
    path.write_bytes(gzip.compress(json.dumps(rec).encode()))
    w2 = timm_workload("test_vit", 160, 4, "inference", cache_dir=tmp_path)
    assert w2.batch == 999 and w2.memory_format == "contiguous"


def test_train_step_uses_sgd_and_counts_parameters(tmp_path):
    w = timm_workload("test_efficientnet", 160, 2, "train_step", cache_dir=tmp_path)
    assert w.optimizer == "sgd" and w.param_numels and sum(w.param_numels) > 0
    wi = timm_workload("test_efficientnet", 160, 2, "inference", cache_dir=tmp_path)
    assert wi.optimizer is None and not wi.param_numels


def test_fixed_size_model_built_from_the_matching_tag(tmp_path):
    # caformer_s18 at 384 is the sail_in1k_384 configuration, not the 224 default
    w = timm_workload("caformer_s18", 384, 1, "inference", cache_dir=tmp_path)
    assert any("caformer_s18.sail_in1k_384" in n for n in w.notes)


def test_failure_is_raised_and_cached(tmp_path):
    with pytest.raises(TimmBuildError, match="no model 'not_a_timm_model'"):
        timm_workload("not_a_timm_model", 224, 1, "inference", cache_dir=tmp_path)
    errs = list(tmp_path.rglob("*.err.json"))
    assert len(errs) == 1
    with pytest.raises(TimmBuildError, match="no model"):
        timm_workload("not_a_timm_model", 224, 1, "inference", cache_dir=tmp_path)


def test_bad_arguments_are_refused(tmp_path):
    with pytest.raises(ExanteError, match="memory format"):
        timm_workload("test_vit", 160, 1, memory_format="nhwc", cache_dir=tmp_path)
    with pytest.raises(ExanteError, match="mode"):
        timm_workload("test_vit", 160, 1, mode="train", cache_dir=tmp_path)


@pytest.mark.parametrize("tag,version", [("240", "2.4.0"), ("113", "1.13"), ("112", "1.12"),
                                         ("210", "2.1.0"), ("2100", "2.10.0")])
def test_torch_version_of(tag, version):
    assert torch_version_of(tag) == version


def test_file_names():
    c = parse_file_name("benchmark-infer-amp-nhwc-pt240-cu124-rtx4090.csv")
    assert c == {"mode": "inference", "dtype": "fp16", "memory_format": "channels_last",
                 "torch_version": "2.4.0", "cuda_version": "12.4", "gpu_name": "rtx4090",
                 "hardware": "rtx4090"}
    c = parse_file_name("benchmark-train-amp-nchw-pt112-cu113-rtx3090.csv")
    assert (c["mode"], c["memory_format"], c["torch_version"], c["hardware"]) == (
        "train_step", "contiguous", "1.12", "rtx3090")
    for gpu in ("v100", "t4", "l4", "h100"):
        assert parse_file_name(f"benchmark-infer-amp-nchw-pt240-cu124-{gpu}.csv")["hardware"]
    # newer files write the GPU without its brand and CUDA 13 as cu130
    for gpu, key in (("4090", "rtx4090"), ("5090", "rtx5090"), ("pro6000maxq", "rtx-pro6000-maxq")):
        c = parse_file_name(f"benchmark-infer-amp-nchw-pt291-cu130-{gpu}.csv")
        assert (c["hardware"], c["torch_version"], c["cuda_version"]) == (key, "2.9.1", "13.0")
    with pytest.raises(ExanteError, match="not eager"):
        parse_file_name("benchmark-infer-amp-nchw-pt240-cu124-rtx3090-dynamo.csv")
    with pytest.raises(ExanteError, match="a CPU run"):
        parse_file_name("benchmark-infer-fp32-nchw-pt240-cpu-i9_10940x-dynamo.csv")
    with pytest.raises(ExanteError, match="expected benchmark-"):
        parse_file_name("results-imagenet.csv")
    with pytest.raises(ExanteError, match="unknown device"):
        parse_file_name("benchmark-infer-amp-nchw-pt240-cu124-notagpu9.csv")


def test_read_rows_and_untimed(tmp_path):
    # made-up test fixture values (not measurements)
    f = tmp_path / "benchmark-infer-amp-nchw-pt240-cu124-rtx3090.csv"
    f.write_text("model,infer_img_size,infer_samples_per_sec,infer_step_time,infer_batch_size,"
                 "param_count,infer_gmacs,infer_macts\n"
                 "test_vit,160,1000,10.0,256,0.37,0.04,0.48\n"
                 "test_byobnet,160,,,,0.46,0.03,0.43\n")
    bf = read_benchmark_file(f)
    assert len(bf.rows) == 1 and bf.rows[0].step_time_s == pytest.approx(0.01)
    assert bf.rows[0].gmacs == pytest.approx(0.04) and bf.rows[0].batch == 256
    assert bf.untimed == [(3, "test_byobnet")]
    f.write_text("model,infer_img_size,infer_step_time,infer_batch_size\ntest_vit,160,-1,8\n")
    with pytest.raises(ExanteError, match=":2: "):
        read_benchmark_file(f)
    f.write_text("model,img_size\ntest_vit,160\n")
    with pytest.raises(ExanteError, match="lacks column"):
        read_benchmark_file(f)


def test_deprecated_name_with_a_stale_tag_is_built_as_its_architecture(tmp_path):
    w = timm_workload("vit_base_patch16_224_sam", 224, 1, "inference", cache_dir=tmp_path)
    assert w.notes[-1].endswith("model vit_base_patch16_224")
