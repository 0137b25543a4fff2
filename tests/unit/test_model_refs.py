"""MODEL_REF / --input / --batch parsing (profiling.model_refs)."""

import sys
import textwrap

import pytest
import torch
from torch import nn

from profiling.errors import ExanteError
from profiling.model_refs import (
    build_mlp,
    check_batch,
    example_inputs,
    parse_input_shape,
    resolve_model,
)


def test_mlp_ref_builds_depth_hidden_layers_with_relu_between():
    m = resolve_model("mlp:in=100,depth=3,width=64,out=2")
    linears = [l for l in m if isinstance(l, nn.Linear)]
    assert [(l.in_features, l.out_features) for l in linears] == [(100, 64), (64, 64), (64, 64), (64, 2)]
    assert sum(isinstance(l, nn.ReLU) for l in m) == 3
    assert resolve_model("mlp:in=5,depth=1,width=4")[-1].out_features == 1  # out defaults to 1


@pytest.mark.parametrize("ref", ["mlp:in=100,depth=x", "mlp:in=1,bogus=3", "mlp:depth=2,width=3",
                                 "mlp:in=0,depth=1,width=1", "nocolon", "???:x", "9bad.mod:f"])
def test_bad_refs_are_clear_errors(ref):
    with pytest.raises(ExanteError) as err:
        resolve_model(ref)
    assert "\n" not in str(err.value)


def test_file_and_module_factories(tmp_path, monkeypatch):
    f = tmp_path / "mymodels.py"
    f.write_text(textwrap.dedent("""
        from torch import nn
        def small():
            return nn.Sequential(nn.Linear(4, 3))
        def not_a_model():
            return 3
    """))
    assert isinstance(resolve_model(f"{f}:small"), nn.Sequential)
    monkeypatch.syspath_prepend(str(tmp_path))
    assert isinstance(resolve_model("mymodels:small"), nn.Sequential)
    with pytest.raises(ExanteError, match="expected a torch.nn.Module"):
        resolve_model("mymodels:not_a_model")
    with pytest.raises(ExanteError, match="no callable"):
        resolve_model("mymodels:missing")
    with pytest.raises(ExanteError, match="does not exist"):
        resolve_model(f"{tmp_path}/nothere.py:small")
    with pytest.raises(ExanteError, match="cannot import"):
        resolve_model("no_such_module_xyz:f")


def test_missing_optional_package_is_a_clear_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "timm", None)          # import raises ModuleNotFoundError
    with pytest.raises(ExanteError, match=r"not installed.*exante\[models\]"):
        resolve_model("timm:resnet18")
    monkeypatch.setitem(sys.modules, "torchvision", None)
    with pytest.raises(ExanteError, match=r"not installed.*exante\[models\]"):
        resolve_model("torchvision:resnet18")


@pytest.mark.parametrize("text,shape", [("100", (100,)), ("3x224x224", (3, 224, 224)), ("3X32X32", (3, 32, 32))])
def test_parse_input_shape(text, shape):
    assert parse_input_shape(text) == shape


@pytest.mark.parametrize("text", ["", "3x", "axb", "0x3", "-1", "3x224x224x", "1.5"])
def test_malformed_input_shape(text):
    with pytest.raises(ExanteError, match="malformed --input"):
        parse_input_shape(text)


@pytest.mark.parametrize("bad", [0, -3, "x", "2.5", None])
def test_non_positive_or_bad_batch(bad):
    with pytest.raises(ExanteError, match="positive integer"):
        check_batch(bad)


def test_example_inputs_on_meta_allocate_nothing():
    x = example_inputs((3, 224, 224), 512)
    assert x.device.type == "meta" and x.shape == (512, 3, 224, 224) and x.dtype == torch.float32
    assert build_mlp(2, 1, 2, 1)(torch.zeros(1, 2)).shape == (1, 1)


def test_zoo_resnet50_matches_torchvision_layout():
    m = resolve_model("profiling.zoo:resnet50")
    assert sum(p.numel() for p in m.parameters()) == 25_557_032  # torchvision's resnet50
    with torch.device("meta"):
        out = resolve_model("profiling.zoo:resnet50")(torch.zeros(2, 3, 224, 224))
    assert out.shape == (2, 1000)


def test_meta_build_allocates_nothing_and_falls_back(tmp_path):
    from profiling.model_refs import resolve_model_on_meta

    big = resolve_model_on_meta("mlp:in=65536,depth=4,width=65536,out=1")  # ~17 G params
    assert all(p.device.type == "meta" for p in big.parameters())
    f = tmp_path / "picky.py"
    f.write_text("import torch\nfrom torch import nn\n"
                 "def make():\n    m = nn.Linear(3, 3)\n    assert m.weight.sum().item() == m.weight.sum().item()\n"
                 "    return m\n")
    m = resolve_model_on_meta(f"{f}:make")          # .item() fails on meta: built on CPU, moved
    assert m.weight.device.type == "meta"
    with pytest.raises(ExanteError):
        resolve_model_on_meta("mlp:in=0,depth=1,width=1")


# --------------------------------------------------------------------------------------
# torchvision beside the CPU torch, the CPU fallback, Hugging Face refs

_FAKE_TV = {
    "__init__.py": "import torch\nfrom . import extension\nfrom . import _meta_registrations\n"
                   "from . import models\n__version__ = 'fake'\n",
    "extension.py": "def _has_ops():\n    return False\n",
    # what PyPI's CUDA-built torchvision does beside a CPU torch: registers a fake kernel
    # for an op its (unloadable) C++ extension would have defined
    "_meta_registrations.py": "import torch\n\n@torch.library.register_fake('torchvision::nms')\n"
                              "def meta_nms(dets, scores, iou_threshold):\n"
                              "    return dets.new_empty(0, dtype=torch.long)\n",
    "models.py": "def list_models(module=None):\n    return ['tiny']\n",
}


def _run_with_fake_torchvision(tmp_path, files: dict, code: str):
    import subprocess

    pkg = tmp_path / "torchvision"
    pkg.mkdir()
    for name, text in files.items():
        (pkg / name).write_text(text)
    import os
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(tmp_path), os.getcwd()]))
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env=env, timeout=120)


def test_torchvision_without_its_cpp_ops_imports(tmp_path):
    res = _run_with_fake_torchvision(tmp_path, _FAKE_TV, (
        "import torch\n"
        "try:\n    import torchvision\nexcept RuntimeError as e:\n    print('plain:', e)\n"
        "from profiling.model_refs import import_torchvision\n"
        "tv = import_torchvision()\n"
        "print('shim:', tv.__version__, tv.models.list_models())\n"))
    assert res.returncode == 0, res.stderr
    assert "plain: operator torchvision::nms does not exist" in res.stdout
    assert "shim: fake ['tiny']" in res.stdout


def test_broken_torchvision_says_it_cannot_be_imported(tmp_path):
    files = dict(_FAKE_TV, **{"__init__.py": "raise OSError('libc10_cuda.so: cannot open')\n"})
    res = _run_with_fake_torchvision(tmp_path, files, (
        "from profiling.model_refs import resolve_model\n"
        "from profiling.errors import ExanteError\n"
        "try:\n    resolve_model('torchvision:tiny')\n"
        "except ExanteError as e:\n    print(e)\n"))
    assert res.returncode == 0, res.stderr
    assert "torchvision is installed but cannot be imported beside torch" in res.stdout
    assert "libc10_cuda.so" in res.stdout and "pip install" not in res.stdout


def test_cpu_fallback_for_refs_only(tmp_path):
    from profiling.model_refs import capture_with_cpu_fallback, resolve_model_on_meta

    f = tmp_path / "nz.py"
    f.write_text("import torch\nfrom torch import nn\n"
                 "class Pick(nn.Module):\n"
                 "    def __init__(self):\n        super().__init__()\n"
                 "        self.lin = nn.Linear(4, 4)\n"
                 "    def forward(self, x):\n"
                 "        keep = torch.nonzero(x[:, 0] >= 0).flatten()\n"
                 "        return self.lin(x[keep])\n"
                 "def make():\n    return Pick()\n")
    model = resolve_model_on_meta(f"{f}:make")
    x = torch.zeros(3, 4, device="meta")
    cap, note = capture_with_cpu_fallback(model, x)
    assert note and "built on the CPU" in note
    assert [l.config.type for l in cap.layers if l.config.type == "Linear"] == ["Linear"]
    assert all(p.is_meta for p in model.parameters())     # the meta model is untouched
    plain = resolve_model(f"{f}:make").to("meta")          # not built from a ref: no rebuild
    with pytest.raises(ExanteError, match="nonzero|meta"):
        capture_with_cpu_fallback(plain, x)


def test_unknown_zoo_names_are_one_line_errors():
    pytest.importorskip("transformers")
    with pytest.raises(ExanteError, match="no model type 'no_such_type'"):
        resolve_model("hf:no_such_type")
    with pytest.raises(ExanteError, match="bad hf spec"):
        resolve_model("hf:gpt2,n_layer")


def test_hf_ref_on_meta_with_attention_mask_matches_flop_counter():
    pytest.importorskip("transformers")
    from torch.utils.flop_counter import FlopCounterMode

    from profiling.capture.core import MetaTruthMode
    from profiling.features.api import feature_table
    from profiling.model_refs import hf_example_inputs, resolve_model_on_meta

    model = resolve_model_on_meta("hf:gpt2,n_layer=2,n_embd=64,n_head=4,vocab_size=100")
    assert model.config.n_layer == 2 and all(p.is_meta for p in model.parameters())
    inputs = hf_example_inputs(model, 2, seq_len=16)
    assert set(inputs) == {"input_ids", "attention_mask"}
    table = feature_table(model, inputs)
    assert table.unsupported == []              # GPT-2's Conv1D: addmm, counted
    types = {r["type"] for r in table.rows}
    assert "addmm" in types and "sdpa" in types
    ours = sum(2 * r["macs"] * r["count"] for r in table.rows
               if r["type"] in ("addmm", "sdpa", "Linear", "matmul"))
    with torch.no_grad(), FlopCounterMode(display=False) as fc, MetaTruthMode():
        model(**inputs)
    assert ours == fc.get_total_flops() > 0


def _torchvision():
    from profiling.model_refs import import_torchvision

    try:
        return import_torchvision()
    except ExanteError as exc:
        pytest.skip(str(exc))


def test_torchvision_regnet_falls_back_to_a_cpu_build():
    _torchvision()
    from profiling.model_refs import resolve_model_on_meta

    m = resolve_model_on_meta("torchvision:regnet_y_400mf")    # .tolist() in its constructor
    assert all(p.is_meta for p in m.parameters())


def test_torchvision_detection_never_downloads(monkeypatch):
    _torchvision()
    import torch.hub

    def no_download(*a, **k):
        raise AssertionError("a download was attempted")

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", no_download)
    monkeypatch.setattr(torch.hub, "download_url_to_file", no_download)
    from profiling.model_refs import resolve_model_on_meta

    for name in ("fasterrcnn_mobilenet_v3_large_320_fpn", "deeplabv3_mobilenet_v3_large"):
        m = resolve_model_on_meta(f"torchvision:{name}")
        assert all(p.is_meta for p in m.parameters())
