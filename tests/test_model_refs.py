"""MODEL_REF / --input / --batch parsing (profiling.model_refs)."""

import textwrap

import pytest
import torch
from torch import nn

from profiling.errors import ExanteError
from profiling.model_refs import (build_mlp, check_batch, example_inputs, parse_input_shape,
                                  resolve_model)


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
    import builtins
    real_import = builtins.__import__

    def fake_import(name, *a, **k):
        if name == "timm" or name.startswith("timm."):
            raise ImportError("No module named 'timm'")
        return real_import(name, *a, **k)

    monkeypatch.setattr(builtins, "__import__", fake_import)
    with pytest.raises(ExanteError, match=r"exante\[models\]"):
        resolve_model("timm:resnet18")


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
