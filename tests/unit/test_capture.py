"""Tests for profiling.capture.core (CPU only, fast)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from profiling.capture.core import Capture, LayerConfig, capture, module_type_name
from profiling.errors import ExanteError
from profiling.zoo import Bottleneck
from profiling.zoo import ResNet as ResNet50Like

# --------------------------------------------------------------------------------------
# helpers / model zoo


def _types(cap: Capture) -> list:
    return [layer.config.type for layer in cap.layers]


def _by_type(cap: Capture, t: str) -> list:
    return [layer for layer in cap.layers if layer.config.type == t]


def _no_hooks(model: nn.Module) -> bool:
    return all(
        not m._forward_hooks and not m._forward_pre_hooks and not m._forward_hooks_with_kwargs
        and not m._forward_pre_hooks_with_kwargs
        for m in model.modules()
    )


class Shared(nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(8, 8)
        self.act = nn.ReLU()

    def forward(self, x):
        return self.lin(self.act(self.lin(x)))


class Functional(nn.Module):
    """Functional ops in a parent's forward, outside any leaf."""

    def __init__(self):
        super().__init__()
        self.proj = nn.Linear(16, 48)
        self.out = nn.Linear(16, 16)

    def forward(self, x):                                   # x: (B, T, 16)
        b, t, _ = x.shape
        q, k, v = self.proj(x).chunk(3, dim=-1)
        q = q.view(b, t, 2, 8).transpose(1, 2)
        k = k.reshape(b, t, 2, 8).permute(0, 2, 1, 3)
        v = v.view(b, t, 2, 8).transpose(1, 2).contiguous()
        a = F.scaled_dot_product_attention(q, k, v)          # (B, 2, T, 8)
        a = a.transpose(1, 2).reshape(b, t, 16)
        s = torch.matmul(a, a.transpose(1, 2))               # (B, T, T)
        s = s.softmax(dim=-1)
        a = s @ a
        y = self.out(a) + x                                  # residual add
        y = F.relu(y)
        y = torch.cat([y, y], dim=-1)
        return y.mean(dim=1) * 0.5


class Boom(nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(4, 4)
        self.bn = nn.BatchNorm1d(4)

    def forward(self, x):
        x = self.bn(self.lin(x))
        raise RuntimeError("kaboom")


class Scale(nn.Module):
    """A custom leaf with a parameter: no feature function."""

    def __init__(self, n):
        super().__init__()
        self.gain = nn.Parameter(torch.ones(n))
        self.mode = "per-channel"

    def forward(self, x):
        return x * self.gain


# --------------------------------------------------------------------------------------
# LayerConfig


def test_layerconfig_key_stable_and_hashable():
    cfg = LayerConfig("Linear", (("bias", True), ("in_features", 4), ("out_features", 8)),
                      ((2, 4),), ((2, 8),), "fp32")
    k = cfg.key()
    assert len(k) == 16 and all(c in "0123456789abcdef" for c in k)
    same = LayerConfig("Linear", (("bias", True), ("in_features", 4), ("out_features", 8)),
                       ((2, 4),), ((2, 8),), "fp32")
    assert same == cfg and hash(same) == hash(cfg) and same.key() == k
    assert LayerConfig("Linear", cfg.hparams, ((2, 4),), ((2, 8),), "bf16").key() != k
    assert cfg.batch == 2 and cfg.hparams_dict()["out_features"] == 8
    assert LayerConfig("arange", (), (), ((5,),), "int64").batch == 1
    json.dumps(cfg.to_dict())
    code = ("from profiling.capture.core import LayerConfig;print(LayerConfig('Linear',"
            "(('bias',True),('in_features',4),('out_features',8)),((2,4),),((2,8),),'fp32').key())")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, env={"PYTHONHASHSEED": "123", **_env()})
    assert out.stdout.strip() == k


def _env():
    import os

    return {k: v for k, v in os.environ.items() if k != "PYTHONHASHSEED"}


# --------------------------------------------------------------------------------------
# basic capture


def test_mlp_dedup_counts_names_and_dtype():
    model = nn.Sequential(nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, 32), nn.ReLU(),
                          nn.Linear(32, 32), nn.ReLU(), nn.Linear(32, 1))
    cap = capture(model, torch.randn(5, 16))
    assert _types(cap) == ["Linear", "ReLU", "Linear", "Linear"]
    lin32 = cap.layers[2]
    assert lin32.count == 2 and lin32.names == ["2", "4"]
    assert cap.layers[1].count == 3 and cap.layers[1].names == ["1", "3", "5"]
    assert cap.total_calls == 7
    assert all(layer.config.dtype == "fp32" for layer in cap.layers)
    first = cap.layers[0]
    assert first.config.input_shapes == ((5, 16),) and first.config.output_shapes == ((5, 32),)
    assert first.config.hparams_dict() == {"in_features": 16, "out_features": 32, "bias": True}
    assert first.module is model[0] and first.supported
    assert cap.unsupported == [] and cap.mode_restored
    assert _no_hooks(model)
    # deterministic
    assert [l.config.key() for l in capture(model, torch.randn(5, 16)).layers] == \
        [l.config.key() for l in cap.layers]


def test_shared_module_called_twice():
    model = Shared()
    cap = capture(model, torch.randn(3, 8))
    (lin,) = _by_type(cap, "Linear")
    assert lin.count == 2 and lin.names == ["lin"]
    assert cap.total_calls == 3


def test_functional_ops_recorded_views_zero_cost():
    model = Functional()
    cap = capture(model, torch.randn(2, 6, 16))
    types = _types(cap)
    for t in ("Linear", "sdpa", "matmul", "softmax", "add", "F.relu", "cat", "mean", "mul"):
        assert t in types, (t, types)
    names = {n for layer in cap.layers for n in layer.names}
    assert "(root):sdpa" in names and "(root):add" in names and "(root):matmul" in names
    # view / metadata ops: not layers, not unsupported, but counted
    for t in ("view", "reshape", "transpose", "permute", "chunk", "shape", "getitem"):
        assert t not in types
    assert cap.unsupported == []
    for t in ("view", "reshape", "transpose", "permute", "chunk", "shape"):
        assert cap.zero_cost_ops.get(t, 0) >= 1, (t, cap.zero_cost_ops)
    # contiguous() on a non-contiguous tensor is a real copy
    assert "contiguous" in types
    # both matmuls (torch.matmul and @) have different shapes -> two configs
    mm = _by_type(cap, "matmul")
    assert sum(l.count for l in mm) == 2
    sdpa = _by_type(cap, "sdpa")[0]
    assert sdpa.config.input_shapes == ((2, 2, 6, 8),) * 3 and sdpa.module is None
    # no double counting: F.linear inside nn.Linear is not a layer
    assert "F.linear" not in types
    assert cap.total_calls == sum(l.count for l in cap.layers) == 12
    mul = _by_type(cap, "mul")[0]
    assert mul.config.hparams_dict() == {"arg1": "float"}     # scalar recorded by type


def test_zero_cost_identity_casts_and_advanced_indexing():
    class M(nn.Module):
        def forward(self, x):
            x = x.contiguous().to(torch.float32).float()   # all return x itself
            idx = torch.tensor([0, 2])
            return x[idx] + x[:2]                          # gather + slice view

    cap = capture(M(), torch.randn(4, 3))
    types = _types(cap)
    assert "contiguous" not in types and "to" not in types and "float" not in types
    assert cap.zero_cost_ops["contiguous"] == 1 and cap.zero_cost_ops["to"] == 1
    assert "index" in types and "add" in types and "tensor" in types
    assert cap.zero_cost_ops["getitem"] == 1


def test_inplace_ops_are_not_zero_cost():
    class M(nn.Module):
        def forward(self, x):
            y = x * 2
            y += x
            y.relu_()
            return F.relu(y, inplace=True)

    cap = capture(M(), torch.randn(4, 3))
    types = _types(cap)
    assert types == ["mul", "add", "F.relu"]
    add = _by_type(cap, "add")[0]
    assert add.config.hparams_dict()["inplace"] is True
    relu = _by_type(cap, "F.relu")[0]          # relu_() and F.relu(inplace=True): one config
    assert relu.count == 2 and relu.config.hparams_dict() == {"inplace": True}
    assert cap.total_calls == 4


def test_mha_is_atomic():
    mha = nn.MultiheadAttention(16, 4, batch_first=True)
    model = nn.Sequential(mha)

    class Wrap(nn.Module):
        def __init__(self):
            super().__init__()
            self.attn = mha

        def forward(self, x):
            return self.attn(x, x, x, need_weights=False)[0]

    cap = capture(Wrap(), torch.randn(2, 5, 16))
    assert _types(cap) == ["MultiheadAttention"]
    layer = cap.layers[0]
    assert layer.count == 1 and layer.names == ["attn"] and layer.supported
    hp = layer.config.hparams_dict()
    assert hp["embed_dim"] == 16 and hp["num_heads"] == 4 and hp["batch_first"] is True
    assert hp["bias"] is True and hp["add_bias_kv"] is False
    assert layer.config.input_shapes == ((2, 5, 16),) * 3
    assert layer.config.output_shapes == ((2, 5, 16),)
    assert _no_hooks(model)


def test_transformer_encoder():
    enc_layer = nn.TransformerEncoderLayer(d_model=32, nhead=4, dim_feedforward=64,
                                           batch_first=True)
    model = nn.TransformerEncoder(enc_layer, num_layers=2, enable_nested_tensor=False)
    model.train()
    model.layers[1].eval()
    cap = capture(model, torch.randn(3, 10, 32))
    types = set(_types(cap))
    assert types == {"MultiheadAttention", "Dropout", "add", "LayerNorm", "Linear", "F.relu"}
    count = {t: sum(l.count for l in _by_type(cap, t)) for t in types}
    assert count == {"MultiheadAttention": 2, "Dropout": 6, "add": 4, "LayerNorm": 4,
                     "Linear": 4, "F.relu": 2}
    # out_proj (a Linear inside MHA) is not recorded separately
    assert not any("out_proj" in n for l in cap.layers for n in l.names)
    assert cap.total_calls == 22 and cap.unsupported == []
    # eval during capture, flags restored afterwards
    assert all(l.config.hparams_dict().get("training") is False
               for l in _by_type(cap, "Dropout"))
    assert model.training and model.layers[0].training and not model.layers[1].training
    assert not model.layers[1].dropout.training
    assert _no_hooks(model)


def test_train_flag_records_training_mode():
    model = nn.Sequential(nn.Linear(4, 4), nn.BatchNorm1d(4), nn.Dropout(0.1))
    model.eval()
    cap = capture(model, torch.randn(3, 4), train=True)
    assert cap.layers[1].config.hparams_dict()["training"] is True
    assert not any(m.training for m in model.modules())


def test_hooks_removed_and_modes_restored_when_forward_raises():
    model = Boom()
    model.train()
    model.bn.eval()
    before = {name: m.training for name, m in model.named_modules()}
    with pytest.raises(ExanteError, match="kaboom"):
        capture(model, torch.randn(2, 4))
    assert _no_hooks(model)
    assert {name: m.training for name, m in model.named_modules()} == before
    # and the model still works normally afterwards, with no TorchFunctionMode left behind
    assert torch.overrides._get_current_function_mode() is None \
        if hasattr(torch.overrides, "_get_current_function_mode") else True
    model.lin(torch.randn(2, 4))


def test_shape_mismatch_is_exante_error():
    model = nn.Sequential(nn.Linear(8, 4))
    with pytest.raises(ExanteError):
        capture(model, torch.randn(2, 5))
    assert _no_hooks(model)


def test_bad_arguments():
    with pytest.raises(ExanteError):
        capture(nn.Linear(2, 2), torch.randn(1, 2), dtype="int8")
    with pytest.raises(ExanteError):
        capture(nn.Linear(2, 2), "not a tensor")
    with pytest.raises(ExanteError):
        capture(lambda x: x, torch.randn(1, 2))


def test_inputs_tuple_and_dict():
    class Two(nn.Module):
        def __init__(self):
            super().__init__()
            self.a = nn.Linear(3, 4)

        def forward(self, x, y):
            return self.a(x) + y

    m = Two()
    cap1 = capture(m, (torch.randn(2, 3), torch.randn(2, 4)))
    cap2 = capture(m, {"x": torch.randn(2, 3), "y": torch.randn(2, 4)})
    assert _types(cap1) == _types(cap2) == ["Linear", "add"]


def test_root_leaf_module():
    cap = capture(nn.Conv2d(3, 4, 3), torch.randn(1, 3, 8, 8))
    assert _types(cap) == ["Conv2d"] and cap.layers[0].names == ["(root)"]


# --------------------------------------------------------------------------------------
# meta device, unsupported, type names


def test_meta_device_model_and_to_meta():
    with torch.device("meta"):
        m1 = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
                           nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 10))
    x = torch.zeros(4, 3, 16, 16, device="meta")
    cap = capture(m1, x)
    assert _types(cap) == ["Conv2d", "BatchNorm2d", "ReLU", "AdaptiveAvgPool2d", "Flatten",
                           "Linear"]
    assert cap.layers[0].config.output_shapes == ((4, 8, 16, 16),)
    m2 = nn.Sequential(nn.Linear(8, 8), nn.GELU()).to("meta")
    cap2 = capture(m2, torch.zeros(2, 8, device="meta"))
    assert _types(cap2) == ["Linear", "GELU"]
    # MHA, sdpa and LSTM on meta
    with torch.device("meta"):
        enc = nn.TransformerEncoder(
            nn.TransformerEncoderLayer(16, 2, 32, batch_first=True, norm_first=True,
                                       activation="gelu"),
            num_layers=1, enable_nested_tensor=False)
        lstm = nn.LSTM(8, 16, num_layers=2, batch_first=True)
    cap3 = capture(enc, torch.zeros(2, 7, 16, device="meta"))
    assert "MultiheadAttention" in _types(cap3) and "F.gelu" in _types(cap3)
    cap4 = capture(lstm, torch.zeros(2, 5, 8, device="meta"))
    assert _types(cap4) == ["LSTM"]
    assert cap4.layers[0].config.output_shapes[0] == (2, 5, 16)


class Opaque(nn.Module):
    """A custom leaf whose work is invisible to the function mode (like a C extension)."""

    def __init__(self, n):
        super().__init__()
        self.gain = nn.Parameter(torch.ones(n))
        self.mode = "per-channel"

    def forward(self, x):
        with torch._C.DisableTorchFunction():
            return x * self.gain


def test_custom_leaf_is_descended_into():
    model = nn.Sequential(nn.Linear(4, 6), Scale(6), nn.ReLU())
    cap = capture(model, torch.randn(2, 4))
    # the op inside the custom leaf is recorded, attributed to the leaf's path
    assert _types(cap) == ["Linear", "mul", "ReLU"]
    (mul,) = _by_type(cap, "mul")
    assert mul.names == ["1:mul"] and mul.supported and mul.module is None
    assert mul.config.input_shapes == ((2, 6), (6,))
    assert cap.unsupported == []


def test_opaque_custom_leaf_is_unsupported_not_zero():
    model = nn.Sequential(nn.Linear(4, 6), Opaque(6), nn.ReLU())
    cap = capture(model, torch.randn(2, 4))
    assert _types(cap) == ["Linear", "Opaque", "ReLU"]
    (u,) = cap.unsupported
    assert u.config.type == "Opaque" and not u.supported and u.names == ["1"]
    hp = u.config.hparams_dict()
    assert hp["mode"] == "per-channel" and hp["param_shapes"] == (("gain", (6,)),)


def test_leaf_returning_its_input_records_nothing():
    class PassThrough(nn.Module):
        def forward(self, x):
            return x

    class Perm(nn.Module):
        def forward(self, x):
            return x.permute(1, 0)

    cap = capture(nn.Sequential(nn.Linear(4, 6), PassThrough(), Perm()), torch.randn(2, 4))
    assert _types(cap) == ["Linear"] and cap.zero_cost_ops == {"permute": 1}


def test_torch_layer_subclass_with_own_forward_counts_its_conv():
    """timm's StdConv2d / Conv2dSame pattern: a Conv2d subclass with its own forward."""

    class StdConv(nn.Conv2d):
        def forward(self, x):
            w = F.batch_norm(self.weight.reshape(1, self.out_channels, -1), None, None,
                             training=True, momentum=0.0, eps=1e-6).reshape_as(self.weight)
            return F.conv2d(x, w, self.bias, self.stride, self.padding, self.dilation,
                            self.groups)

    class PadConv(nn.Conv2d):
        def forward(self, x):
            return F.conv2d(F.pad(x, (0, 1, 0, 1)), self.weight, self.bias, self.stride, 0)

    from profiling.features.api import feature_table

    x = torch.zeros(2, 3, 16, 16, device="meta")
    with torch.device("meta"):
        m = nn.Sequential(StdConv(3, 8, 3, padding=1), PadConv(8, 8, 3, stride=2))
    cap = capture(m, x)
    assert _types(cap) == ["F.batch_norm", "F.conv2d", "F.pad", "F.conv2d"]
    assert cap.unsupported == []
    table = feature_table(m, x)
    # 2·3·16·16·8·27 + 2·8·8·8·8·72 MACs (the same count as nn.Conv2d)
    conv_macs = sum(r["macs"] * r["count"] for r in table.rows if r["type"] == "F.conv2d")
    assert conv_macs == 2 * 16 * 16 * 8 * 27 + 2 * 8 * 8 * 8 * 72


def test_unknown_functional_op_is_unsupported_not_dropped():
    class M(nn.Module):
        def forward(self, x):
            return torch.roll(x, 1, 0).cumsum(0)

    cap = capture(M(), torch.randn(3, 2))
    assert _types(cap) == ["roll", "cumsum"]
    assert cap.layers[0].supported and cap.layers[1].supported
    class N(nn.Module):
        def forward(self, x):
            return torch.special.i0(x)

    cap = capture(N(), torch.randn(3, 2))
    assert len(cap.unsupported) == 1 and cap.unsupported[0].module is None


def test_module_type_names():
    class MyConv(nn.Conv2d):
        pass

    class Linear(nn.Module):            # user class colliding with a registered name
        def forward(self, x):
            return x

    class MyLin(nn.Linear):
        def forward(self, x):
            return super().forward(x) * 2

    assert module_type_name(MyConv(1, 1, 1)) == "Conv2d"
    assert module_type_name(nn.modules.linear.NonDynamicallyQuantizableLinear(2, 2)) == \
        "NonDynamicallyQuantizableLinear"
    assert module_type_name(Linear()).endswith(".Linear") and module_type_name(Linear()) != "Linear"
    assert module_type_name(MyLin(2, 2)) == "MyLin"


def test_a_user_class_registered_by_its_name_is_captured_as_one_layer():
    """``@register("MyScan")`` for a user module with its own forward: the capture keeps the
    bare name (it collides with no torch layer), so the module is one layer, its ops unrecorded."""
    from profiling.features import register, unregister
    from profiling.features.families.common import _feat, _prod, _x

    class MyScan(nn.Module):
        def forward(self, x):
            return torch.cumsum(x, dim=-1) * 2 + 1

    register("MyScan")(lambda cfg: _feat(cfg, flops=3 * _prod(_x(cfg))))
    try:
        cap = capture(nn.Sequential(nn.Linear(8, 8), MyScan()), torch.randn(4, 8))
        types = {cl.config.type: cl.count for cl in cap.layers}
        assert types.get("MyScan") == 1, types
        assert not {"cumsum", "mul", "add"} & set(types), types   # inside the unit: not recorded
    finally:
        unregister("MyScan")


# --------------------------------------------------------------------------------------
# autocast dtype


def test_bf16_dtypes():
    class M(nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = nn.Linear(8, 8)
            self.act = nn.ReLU()
            self.norm = nn.LayerNorm(8)
            self.conv = nn.Conv1d(8, 8, 1)
            self.bn = nn.BatchNorm1d(8)

        def forward(self, x):                       # x: (B, 8) fp32
            h = self.act(self.lin(x))               # bf16, bf16
            r = x + h                               # fp32 + bf16 -> fp32
            h2 = h + h                              # bf16
            n = self.norm(h2)                       # fp32
            s = torch.softmax(h2, -1)               # fp32
            c = self.bn(self.conv(h2.unsqueeze(-1)))   # bf16, bf16 (view keeps bf16)
            h2.mul_(x)                              # in-place: keeps h2's bf16
            return r, n, s, c, h2 * 2               # bf16

    for dev in ("cpu", "meta"):
        m = M().to(dev)
        cap = capture(m, torch.zeros(4, 8, device=dev), dtype="bf16")
        dt = {(l.config.type, l.names[0]): l.config.dtype for l in cap.layers}
        assert dt[("Linear", "lin")] == "bf16"
        assert dt[("ReLU", "act")] == "bf16"
        assert dt[("LayerNorm", "norm")] == "fp32"
        assert dt[("softmax", "(root):softmax")] == "fp32"
        assert dt[("Conv1d", "conv")] == "bf16"
        assert dt[("BatchNorm1d", "bn")] == "bf16"
        assert [l.config.dtype for l in cap.layers if l.config.type == "mul"] == ["bf16"] * 2
        adds = [l for l in cap.layers if l.config.type == "add"]
        assert sorted(l.config.dtype for l in adds) == ["bf16", "fp32"]
        # no tags left behind on parameters or inputs
        assert all("_exante_vdtype" not in p.__dict__ for p in m.parameters())
    cap16 = capture(nn.Linear(4, 4), torch.randn(2, 4), dtype="fp16")
    assert cap16.layers[0].config.dtype == "fp16" and cap16.dtype == "fp16"
    cap32 = capture(nn.Linear(4, 4), torch.randn(2, 4))
    assert cap32.layers[0].config.dtype == "fp32"


# --------------------------------------------------------------------------------------
# ResNet-50-like on meta: correctness (its speed is measured by experiments/bench_predict.py)


def test_resnet50_like_meta():
    with torch.device("meta"):
        model = ResNet50Like()
    x = torch.zeros(32, 3, 224, 224, device="meta")
    cap = capture(model, x)
    # 53 conv + 53 bn + 49 relu calls + maxpool + 16 residual adds + avgpool + flatten + fc
    assert cap.total_calls == 175
    count = {}
    for layer in cap.layers:
        count[layer.config.type] = count.get(layer.config.type, 0) + layer.count
    assert count == {"Conv2d": 53, "BatchNorm2d": 53, "ReLU": 49, "MaxPool2d": 1, "add": 16,
                     "AdaptiveAvgPool2d": 1, "flatten": 1, "Linear": 1}
    assert cap.unsupported == [] and _no_hooks(model)


# --------------------------------------------------------------------------------------
# meta fast path (shape rules instead of the real forward): identical results

import profiling.capture.core as capture_mod  # noqa: E402
import profiling.capture.fastpath as fastpath_mod  # noqa: E402  (owns the rules the capture looks up)


def _snapshot(cap: Capture) -> tuple:
    return (
        [(l.config, l.count, tuple(l.names), id(l.module) if l.module is not None else None,
          l.supported) for l in cap.layers],
        [l.config for l in cap.unsupported],
        cap.total_calls, cap.mode_restored, dict(cap.zero_cost_ops), cap.dtype,
    )


def _count_fast_hits(monkeypatch) -> dict:
    """Wrap the rules so that the test can check the fast path really ran."""
    hits = {"module": 0, "functional": 0}
    rules = {}
    for cls, rule in fastpath_mod._FAST_RULES.items():
        def counted(mod, x, _rule=rule):
            out = _rule(mod, x)
            if out is not None:
                hits["module"] += 1
            return out
        rules[cls] = counted
    monkeypatch.setattr(fastpath_mod, "_FAST_RULES", rules)
    orig_fn = fastpath_mod._fast_functional

    def counted_fn(func, args, kwargs):
        out = orig_fn(func, args, kwargs)
        if out is not None:
            hits["functional"] += 1
        return out

    monkeypatch.setattr(fastpath_mod, "_fast_functional", counted_fn)
    return hits


def _outcome(monkeypatch, model, inputs, *, fast: bool, **kw) -> tuple:
    monkeypatch.setattr(capture_mod, "_FAST_PATH", fast)
    try:
        return ("ok", _snapshot(capture(model, inputs, **kw)))
    except ExanteError as exc:
        return ("error", str(exc))


def _module_state(model: nn.Module) -> list:
    return [(dict(m._forward_hooks), dict(m._forward_pre_hooks),
             dict(m._forward_hooks_with_kwargs), m.__dict__.get("forward"), m.training)
            for m in model.modules()]


def _same_with_and_without_fast_path(monkeypatch, model, inputs, **kw) -> dict:
    """Capture with the fast path off and on: identical results, and the model (hooks,
    forwards, training flags) left as it was."""
    before = _module_state(model)
    monkeypatch.setattr(capture_mod, "_FAST_PATH", False)
    slow = _snapshot(capture(model, inputs, **kw))
    monkeypatch.setattr(capture_mod, "_FAST_PATH", True)
    hits = _count_fast_hits(monkeypatch)
    fast = _snapshot(capture(model, inputs, **kw))
    assert fast == slow
    assert _module_state(model) == before
    return hits


class _BenchBottleneck(Bottleneck):
    """Residual as ``out + identity`` (not in place), as in experiments/bench_predict.py."""

    def forward(self, x):
        identity = x
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        if self.downsample is not None:
            identity = self.downsample(x)
        return self.relu(out + identity)


class _ConvZoo(nn.Module):
    """Depthwise / dilated / strided / grouped / 'same' / 'valid' convs, 1d-3d, norms,
    pools and activations, in place or not."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(3, 16, 3, stride=2, padding=1)
        self.bn = nn.BatchNorm2d(16)
        self.act = nn.SiLU(inplace=True)
        self.dw = nn.Conv2d(16, 16, 5, padding=4, dilation=2, groups=16, bias=False)
        self.gn = nn.GroupNorm(4, 16)
        self.hs = nn.Hardswish()
        self.pw = nn.Conv2d(16, 32, 1)
        self.grp = nn.Conv2d(32, 32, (3, 1), stride=(2, 1), padding=(1, 0), groups=4)
        self.inorm = nn.InstanceNorm2d(32, affine=True)
        self.same = nn.Conv2d(32, 32, 4, padding="same", dilation=(1, 2))
        self.valid = nn.Conv2d(32, 24, 3, padding="valid")
        self.lrelu = nn.LeakyReLU(0.2, inplace=True)
        self.mish = nn.Mish()
        self.relu6 = nn.ReLU6()
        self.ht = nn.Hardtanh(-2.0, 2.0)
        self.elu = nn.ELU()
        self.hsig = nn.Hardsigmoid()
        self.pool = nn.AdaptiveAvgPool2d((None, 2))
        self.pool7 = nn.AdaptiveAvgPool2d(3)
        self.c1 = nn.Conv1d(24, 8, 3, padding=2, dilation=2)
        self.bn1d = nn.BatchNorm1d(8)
        self.in1d = nn.InstanceNorm1d(8)
        self.p1 = nn.AdaptiveAvgPool1d(2)
        self.c3 = nn.Conv3d(2, 4, (1, 3, 3), padding=(0, 1, 1))
        self.bn3d = nn.BatchNorm3d(4)
        self.p3 = nn.AdaptiveAvgPool3d((1, None, 2))
        self.sig = nn.Sigmoid()
        self.tanh = nn.Tanh()
        self.gelu = nn.GELU(approximate="tanh")
        self.unb = nn.Conv1d(8, 4, 1)          # called on an unbatched (C, L) input
        self.head = nn.Linear(8, 5)
        self.bnf = nn.BatchNorm1d(5)
        self.drop = nn.Dropout(0.3)

    def forward(self, x):
        x = self.act(self.bn(self.stem(x)))
        x = self.hs(self.gn(self.dw(x)))
        x = self.inorm(self.grp(self.pw(x)))
        x = self.lrelu(self.same(x))
        x = self.valid(x)
        x = self.ht(self.relu6(self.mish(x))) + self.elu(x) * self.hsig(x)
        a = self.pool(x)
        b = self.pool7(x)
        s = a.flatten(2)                                   # (B, 24, L)
        s = self.p1(self.in1d(self.bn1d(self.c1(s))))      # (B, 8, 2)
        v = self.bn3d(self.c3(b[:, :2].unsqueeze(2).expand(-1, -1, 2, -1, -1).contiguous()))
        v = self.p3(self.sig(v))
        u = self.unb(s[0])                                 # unbatched Conv1d
        h = self.drop(self.bnf(self.head(self.gelu(self.tanh(s.mean(-1))))))
        return h, v, u


class _MLP(nn.Module):
    def __init__(self):
        super().__init__()
        self.l1 = nn.Linear(16, 32)
        self.ln = nn.LayerNorm(32)
        self.act = nn.GELU()
        self.drop = nn.Dropout(0.1, inplace=True)
        self.l2 = nn.Linear(32, 32, bias=False)
        self.l3 = nn.Linear(32, 4)

    def forward(self, x):
        h = self.drop(self.act(self.ln(self.l1(x))))
        h = h + self.l2(h)
        h = F.relu(h) - 1
        h = 2 - h
        h = torch.mul(h, h) / 3
        h = F.silu(h, inplace=True) + torch.sigmoid(h) + h.tanh() + F.gelu(h, approximate="tanh")
        return self.l3(0.5 * h)


def _meta(model: nn.Module, dtype=torch.float32) -> nn.Module:
    return model.to(device="meta", dtype=dtype)


@pytest.mark.parametrize("train", [False, True])
@pytest.mark.parametrize("dtype", ["fp32", "bf16"])
def test_fast_path_resnet_like_identical(monkeypatch, train, dtype):
    model = _meta(ResNet50Like(layers=(1, 2, 1, 1)))
    x = torch.zeros(2, 3, 64, 64, device="meta")
    hits = _same_with_and_without_fast_path(monkeypatch, model, x, dtype=dtype, train=train)
    assert hits["module"] > 0
    bench = _meta(nn.Sequential(
        nn.Conv2d(3, 64, 7, 2, 3, bias=False), nn.BatchNorm2d(64), nn.ReLU(inplace=True),
        nn.MaxPool2d(3, 2, 1),
        _BenchBottleneck(64, 16, 1, nn.Sequential(nn.Conv2d(64, 64, 1, bias=False),
                                                 nn.BatchNorm2d(64))),
        _BenchBottleneck(64, 16), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(64, 10)))
    hits = _same_with_and_without_fast_path(monkeypatch, bench, x, dtype=dtype, train=train)
    assert hits["module"] > 0 and hits["functional"] == 2      # the two residual adds


@pytest.mark.parametrize("train", [False, True])
@pytest.mark.parametrize("dtype", ["fp32", "bf16"])
def test_fast_path_cnn_zoo_and_mlp_identical(monkeypatch, train, dtype):
    zoo = _meta(_ConvZoo())
    hits = _same_with_and_without_fast_path(
        monkeypatch, zoo, torch.zeros(3, 3, 32, 32, device="meta"), dtype=dtype, train=train)
    assert hits["module"] >= 30
    mlp = _meta(_MLP())
    hits = _same_with_and_without_fast_path(
        monkeypatch, mlp, torch.zeros(4, 7, 16, device="meta"), dtype=dtype, train=train)
    assert hits["module"] >= 5 and hits["functional"] >= 8


@pytest.mark.parametrize("real", [torch.bfloat16, torch.float16, torch.float64])
def test_fast_path_low_precision_models_identical(monkeypatch, real):
    zoo = _meta(_ConvZoo(), real)
    hits = _same_with_and_without_fast_path(
        monkeypatch, zoo, torch.zeros(2, 3, 32, 32, device="meta", dtype=real))
    assert hits["module"] >= 30
    cap = capture(zoo, torch.zeros(2, 3, 32, 32, device="meta", dtype=real))
    name = {torch.bfloat16: "bf16", torch.float16: "fp16", torch.float64: "fp64"}[real]
    assert {l.config.dtype for l in cap.layers} == {name}
    mlp = _meta(_MLP(), real)
    _same_with_and_without_fast_path(monkeypatch, mlp, torch.zeros(4, 16, device="meta",
                                                                   dtype=real))
    # an fp32 input into a model of another dtype: the first rule declines (dtype
    # mismatch), whatever the real forward then does is kept
    lin = _meta(nn.Sequential(nn.Linear(4, 4), nn.LayerNorm(4), nn.BatchNorm1d(4)), real)
    assert _outcome(monkeypatch, lin, torch.zeros(2, 4, device="meta"), fast=True) == \
        _outcome(monkeypatch, lin, torch.zeros(2, 4, device="meta"), fast=False)


@pytest.mark.parametrize("norm_first", [False, True])
@pytest.mark.parametrize("train", [False, True])
def test_fast_path_transformer_identical(monkeypatch, norm_first, train):
    enc = nn.TransformerEncoder(
        nn.TransformerEncoderLayer(32, 4, 64, batch_first=True, norm_first=norm_first,
                                   activation="gelu" if norm_first else "relu"),
        num_layers=2, enable_nested_tensor=False, norm=nn.LayerNorm(32))
    enc = _meta(enc)
    for dtype in ("fp32", "bf16"):
        hits = _same_with_and_without_fast_path(
            monkeypatch, enc, torch.zeros(3, 10, 32, device="meta"), dtype=dtype, train=train)
        assert hits["module"] >= 9          # LayerNorm x5, Linear x4 (+ dropout in train)


def test_fast_path_channels_last_and_odd_inputs_identical(monkeypatch):
    model = _meta(ResNet50Like(layers=(1, 1, 1, 1)))
    x = torch.zeros(2, 3, 64, 64, device="meta").to(memory_format=torch.channels_last)
    _same_with_and_without_fast_path(monkeypatch, model, x)
    # a zero-copy ``.contiguous()`` after a fast-path op stays zero-cost
    class C(nn.Module):
        def __init__(self):
            super().__init__()
            self.bn = nn.BatchNorm2d(4)
            self.conv = nn.Conv2d(4, 4, 1)

        def forward(self, x):
            y = self.bn(x).contiguous()
            z = self.conv(x.to(memory_format=torch.channels_last)).contiguous()
            return (y + 1).view(-1), z
    c = _meta(C())
    _same_with_and_without_fast_path(monkeypatch, c, torch.zeros(2, 4, 5, 5, device="meta"))
    _same_with_and_without_fast_path(monkeypatch, c, torch.zeros(2, 4, 1, 1, device="meta"))
    # channels_last weights, contiguous input
    cl = _meta(ResNet50Like(layers=(1, 1, 1, 1))).to(memory_format=torch.channels_last)
    hits = _same_with_and_without_fast_path(monkeypatch, cl,
                                            torch.zeros(2, 3, 64, 64, device="meta"))
    assert hits["module"] > 0


@pytest.mark.parametrize("case", [
    "bn_batch1_train", "bn_momentum_none_train", "bn_channels", "ln_shape", "linear_in",
    "conv_channels", "conv_kernel_too_big", "gn_channels", "in_spatial1", "aap_dims",
])
def test_fast_path_error_cases_identical(monkeypatch, case):
    """Where the real forward raises, the fast path declines and the same error results."""
    m, x, train = {
        "bn_batch1_train": (nn.BatchNorm1d(4), torch.zeros(1, 4), True),
        "bn_momentum_none_train": (nn.BatchNorm2d(4, momentum=None), torch.zeros(2, 4, 3, 3),
                                   True),
        "bn_channels": (nn.BatchNorm2d(4), torch.zeros(2, 5, 3, 3), False),
        "ln_shape": (nn.LayerNorm(8), torch.zeros(2, 7), False),
        "linear_in": (nn.Linear(8, 4), torch.zeros(2, 7), False),
        "conv_channels": (nn.Conv2d(4, 4, 3), torch.zeros(2, 3, 8, 8), False),
        "conv_kernel_too_big": (nn.Conv2d(4, 4, 5), torch.zeros(2, 4, 3, 3), False),
        "gn_channels": (nn.GroupNorm(2, 4), torch.zeros(2, 6, 3), False),
        "in_spatial1": (nn.InstanceNorm2d(4), torch.zeros(2, 4, 1, 1), True),
        "aap_dims": (nn.AdaptiveAvgPool2d(2), torch.zeros(4), False),
    }[case]
    m = nn.Sequential(_meta(m))
    x = x.to("meta")
    slow = _outcome(monkeypatch, m, x, fast=False, train=train)
    assert _outcome(monkeypatch, m, x, fast=True, train=train) == slow
    assert _no_hooks(m) and "forward" not in m[0].__dict__


# the rule declines these (the real forward then runs): eval-mode dropout (returns its
# input anyway), asymmetric "same" padding (pads a copy of the input, with a warning)
_RULE_DECLINES = [
    (nn.Dropout(0.2), (2, 6), False), (nn.Conv2d(6, 4, 4, padding="same"), (2, 6, 7, 7), None),
    (nn.Conv2d(6, 4, (3, 2), padding="same", dilation=3), (2, 6, 7, 7), None),
    (nn.Linear(6, 4), (), None), (nn.Linear(6, 4), (0, 6), None),
    (nn.BatchNorm2d(6), (2, 6, 5, 5), None),            # with a channels_last input below
]
_RULE_CASES = [
    (nn.BatchNorm1d(6), (4, 6)), (nn.BatchNorm1d(6), (4, 6, 5)), (nn.BatchNorm2d(6), (2, 6, 5, 5)),
    (nn.BatchNorm2d(6), (1, 6, 1, 1)), (nn.BatchNorm3d(6), (2, 6, 2, 3, 3)),
    (nn.BatchNorm2d(6, affine=False, track_running_stats=False), (2, 6, 3, 3)),
    (nn.InstanceNorm1d(6), (2, 6, 5)), (nn.InstanceNorm2d(6, affine=True), (2, 6, 4, 4)),
    (nn.InstanceNorm3d(6, track_running_stats=True), (2, 6, 2, 2, 2)),
    (nn.LayerNorm(6), (3, 6)), (nn.LayerNorm((5, 6), bias=False), (2, 5, 6)),
    (nn.LayerNorm(6, elementwise_affine=False), (2, 3, 6)),
    (nn.GroupNorm(3, 6), (2, 6, 4, 4)), (nn.GroupNorm(1, 6, affine=False), (2, 6)),
    (nn.ReLU(), (2, 6, 3)), (nn.ReLU(inplace=True), (2, 6)), (nn.ReLU6(inplace=True), (2, 6)),
    (nn.GELU(), (2, 6)), (nn.GELU("tanh"), (2, 6)), (nn.SiLU(inplace=True), (2, 6)),
    (nn.Sigmoid(), (6,)), (nn.Tanh(), (2, 6)), (nn.Hardswish(inplace=True), (2, 6)),
    (nn.Hardsigmoid(), (2, 6)), (nn.Mish(inplace=True), (2, 6)),
    (nn.LeakyReLU(inplace=True), (2, 6)), (nn.ELU(inplace=True), (2, 6)),
    (nn.Hardtanh(-1.0, 3.0), (2, 6)),
    (nn.Linear(6, 4), (6,)), (nn.Linear(6, 4), (2, 6)), (nn.Linear(6, 4, bias=False), (2, 3, 6)),
    (nn.modules.linear.NonDynamicallyQuantizableLinear(6, 4), (5, 2, 6)),
    (nn.Conv1d(6, 4, 3), (2, 6, 9)), (nn.Conv1d(6, 4, 3, stride=2, padding=1), (6, 9)),
    (nn.Conv2d(6, 6, 3, groups=6, dilation=2, padding=2), (2, 6, 7, 7)),
    (nn.Conv2d(6, 4, (2, 3), stride=(2, 3), padding=(1, 0)), (2, 6, 7, 8)),
    (nn.Conv2d(6, 4, 3, padding="same"), (2, 6, 7, 7)),
    (nn.Conv2d(6, 4, (5, 2), padding="same", dilation=(1, 2)), (2, 6, 7, 7)),
    (nn.Conv2d(6, 4, 3, padding="valid", bias=False), (2, 6, 7, 7)),
    (nn.Conv2d(6, 4, 1), (2, 6, 1, 1)), (nn.Conv2d(6, 4, 3, padding=1), (1, 6, 1, 1)),
    (nn.Conv3d(6, 4, 3, padding=1, stride=2), (2, 6, 5, 5, 5)),
    (nn.AdaptiveAvgPool1d(3), (2, 6, 8)), (nn.AdaptiveAvgPool1d(3), (6, 8)),
    (nn.AdaptiveAvgPool2d(1), (2, 6, 7, 7)), (nn.AdaptiveAvgPool2d((None, 2)), (6, 7, 7)),
    (nn.AdaptiveAvgPool2d((5, 5)), (2, 6, 3, 3)),
    (nn.AdaptiveAvgPool3d((1, None, 2)), (2, 6, 3, 4, 5)),
    (nn.Dropout(0.2), (2, 6)), (nn.Dropout(0.2, inplace=True), (2, 6)),
]


@pytest.mark.parametrize("train", [False, True])
@pytest.mark.parametrize("dt", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("i", range(len(_RULE_CASES)))
def test_fast_rules_match_real_meta_outputs(i, dt, train):
    """Each rule's output has the real forward's shape, dtype and strides, and is the input
    object itself exactly when the real forward returns its input."""
    mod, shape = _RULE_CASES[i]
    mod = _meta(mod, dt).train(train)
    rule = fastpath_mod._FAST_RULES[type(mod)]
    x = torch.empty(shape, device="meta", dtype=dt)
    with torch.no_grad():
        with torch._C.DisableTorchFunction():
            fast = fastpath_mod._fast_input((x,), {})
            fast = rule(mod, fast) if fast is not None else None
        try:
            real = mod(x)
        except Exception:               # the real forward raises: the rule must decline
            assert fast is None
            return
    if fast is None:                    # declined: only eval-mode dropout among these cases
        assert isinstance(mod, nn.Dropout) and not train
        return
    assert fast.shape == real.shape and fast.dtype == real.dtype
    assert fast.stride() == real.stride() and fast.is_meta
    assert (fast is x) == (real is x)


@pytest.mark.parametrize("i", range(len(_RULE_DECLINES)))
def test_fast_rules_decline(i):
    mod, shape, train = _RULE_DECLINES[i]
    mod = _meta(mod).train(bool(train))
    x = torch.empty(shape, device="meta")
    if isinstance(mod, nn.BatchNorm2d):
        x = x.to(memory_format=torch.channels_last)
    with torch._C.DisableTorchFunction():
        checked = fastpath_mod._fast_input((x,), {})
        assert checked is None or fastpath_mod._FAST_RULES[type(mod)](mod, checked) is None


def test_fast_functional_matches_real_ops():
    T = torch.Tensor
    x = torch.empty(3, 4, 5, device="meta")
    y = torch.empty(3, 4, 5, device="meta")
    cases = [
        (torch.add, (x, y), {}), (T.add, (x, 2), {}), (T.add, (x, 2.5), {}),
        (torch.sub, (x, y), {}), (T.sub, (x, 1), {}), (T.__rsub__, (x, 3), {}),
        (torch.mul, (x, 0.5), {}), (T.mul, (x, y), {}), (torch.div, (x, y), {}),
        (T.div, (x, 3), {}), (T.__rdiv__, (x, 2), {}), (T.__rtruediv__, (x, 2.0), {}),
        (torch.relu, (x,), {}), (T.relu, (x,), {}), (torch.sigmoid, (x,), {}),
        (T.sigmoid, (x,), {}), (torch.tanh, (x,), {}), (T.tanh, (x,), {}),
        (F.gelu, (x,), {}), (F.gelu, (x,), {"approximate": "tanh"}),
        (F.relu, (x,), {"inplace": False}), (F.relu, (x,), {"inplace": True}),
        (F.silu, (x,), {"inplace": True}),
    ]
    for func, args, kwargs in cases:
        for dt in (torch.float32, torch.bfloat16):
            a = tuple(t.to(dt) if isinstance(t, torch.Tensor) else t for t in args)
            with torch._C.DisableTorchFunction():
                fast = fastpath_mod._fast_functional(func, a, kwargs)
            real = func(*a, **kwargs)
            assert fast is not None, func
            assert (fast.shape, fast.dtype, fast.stride()) == (real.shape, real.dtype,
                                                               real.stride()), func
            assert (fast is a[0]) == (real is a[0]), func
    # declined: broadcasting, mixed dtypes, kwargs, bool/huge scalars, integer tensors, cpu
    declined = [
        (torch.add, (x, torch.empty(5, device="meta")), {}),
        (torch.add, (x, y.to(torch.bfloat16)), {}), (torch.add, (x, y), {"alpha": 2}),
        (T.add, (x, True), {}), (T.mul, (x, 2 ** 40), {}),
        (torch.add, (torch.empty(3, dtype=torch.int64, device="meta"), 1), {}),
        (torch.relu, (torch.zeros(3),), {}), (torch.div, (x, y), {"rounding_mode": "floor"}),
        (F.gelu, (x,), {"approximate": "bogus"}), (torch.add, (x.transpose(0, 1), 1), {}),
        (torch.exp, (x,), {}),
    ]
    for func, args, kwargs in declined:
        with torch._C.DisableTorchFunction():
            assert fastpath_mod._fast_functional(func, args, kwargs) is None, func


def test_fast_path_keeps_user_forward_hooks_and_overrides(monkeypatch):
    model = _meta(nn.Sequential(nn.Linear(4, 6), nn.BatchNorm1d(6), nn.ReLU(), nn.Linear(6, 2)))
    handle = model[1].register_forward_hook(lambda m, a, o: o[:, :3])  # (3, 6) -> (3, 3)
    model[2].forward = lambda x: torch.cat([x, x], 1)                 # (3, 3) -> (3, 6)
    x = torch.zeros(3, 4, device="meta")
    cap = capture(model, x)
    assert [l.config.output_shapes for l in cap.layers] == [((3, 6),), ((3, 3),), ((3, 6),),
                                                           ((3, 2),)]
    assert "forward" in model[2].__dict__ and len(model[1]._forward_hooks) == 1
    hits = _same_with_and_without_fast_path(monkeypatch, model, x)
    assert hits["module"] == 3                  # not the ReLU with its own forward
    assert "forward" in model[2].__dict__
    del model[2].forward
    handle.remove()
    assert _same_with_and_without_fast_path(monkeypatch, model, x)["module"] == 4


def test_fast_path_forwards_restored_when_forward_raises():
    model = _meta(Boom())
    with pytest.raises(ExanteError, match="kaboom"):
        capture(model, torch.zeros(2, 4, device="meta"))
    assert _no_hooks(model)
    assert all("forward" not in m.__dict__ for m in model.modules())


def test_fast_path_not_used_off_meta(monkeypatch):
    hits = _count_fast_hits(monkeypatch)
    model = nn.Sequential(nn.Linear(4, 4), nn.BatchNorm1d(4), nn.ReLU())
    x = torch.randn(3, 4)
    cap = capture(model, (x,))
    assert hits == {"module": 0, "functional": 0} and len(cap.layers) == 3


class _SEViT(nn.Module):
    """Squeeze-excitation CNN stem + ViT-style encoder: broadcasting products, parameter
    operands and a class token (functional rules decline these), patchify conv."""

    def __init__(self, d=32):
        super().__init__()
        self.stem = nn.Conv2d(3, 16, 3, 1, 1)
        self.se_pool = nn.AdaptiveAvgPool2d(1)
        self.se_fc1 = nn.Conv2d(16, 4, 1)
        self.se_act = nn.SiLU()
        self.se_fc2 = nn.Conv2d(4, 16, 1)
        self.se_gate = nn.Sigmoid()
        self.patch = nn.Conv2d(16, d, 4, stride=4)
        self.cls = nn.Parameter(torch.zeros(1, 1, d))
        self.pos = nn.Parameter(torch.zeros(1, 17, d))
        self.blocks = nn.TransformerEncoder(
            nn.TransformerEncoderLayer(d, 4, 2 * d, batch_first=True, norm_first=True,
                                       activation="gelu"), 1, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(d)
        self.head = nn.Linear(d, 10)

    def forward(self, x):
        x = self.stem(x)
        x = x * self.se_gate(self.se_fc2(self.se_act(self.se_fc1(self.se_pool(x)))))
        x = self.patch(x).flatten(2).transpose(1, 2)           # (B, 16, d)
        x = torch.cat([self.cls.expand(x.shape[0], -1, -1), x], 1) + self.pos
        x = self.norm(self.blocks(x))
        return self.head(x[:, 0])


@pytest.mark.parametrize("dtype", ["fp32", "bf16"])
@pytest.mark.parametrize("train", [False, True])
def test_fast_path_se_vit_identical(monkeypatch, dtype, train):
    model = _meta(_SEViT())
    hits = _same_with_and_without_fast_path(
        monkeypatch, model, torch.zeros(2, 3, 16, 16, device="meta"), dtype=dtype, train=train)
    assert hits["module"] >= 10


def test_fast_path_off_under_outer_modes(monkeypatch):
    """An outer dispatch / function mode (e.g. FlopCounterMode) still sees every op."""
    from torch.utils.flop_counter import FlopCounterMode

    model = _meta(nn.Sequential(nn.Linear(8, 8), nn.BatchNorm1d(8), nn.ReLU()))
    x = torch.zeros(4, 8, device="meta")
    hits = _count_fast_hits(monkeypatch)
    with FlopCounterMode(display=False) as fc:
        cap = capture(model, x)
    assert hits["module"] == 0 and fc.get_total_flops() == 2 * 4 * 8 * 8
    with torch.device("meta"):                  # a device context does not count
        cap2 = capture(model, x)
    # (FlopCounterMode's module tracker adds ``requires_grad`` reads to zero_cost_ops)
    assert hits["module"] == 3 and _snapshot(cap2)[:3] == _snapshot(cap)[:3]


def test_meta_value_reads_take_the_typical_input_path():
    """Hugging Face's mask helpers read ``mask.all()`` / ``mask.sum() == mask.numel()``;
    on meta those predicates read True (an all-ones mask); other value reads still fail."""

    class MaskedAttn(nn.Module):
        def forward(self, q, mask):
            if mask.all() and bool(mask.sum() == mask.numel()):
                return F.scaled_dot_product_attention(q, q, q, is_causal=True)
            return F.scaled_dot_product_attention(q, q, q, attn_mask=mask[:, None, None, :])

    q = torch.zeros(2, 4, 8, 16, device="meta")
    mask = torch.ones(2, 8, dtype=torch.bool, device="meta")
    cap = capture(MaskedAttn(), (q, mask))
    (sdpa,) = _by_type(cap, "sdpa")
    assert sdpa.config.hparams_dict()["is_causal"] is True
    assert len(sdpa.config.input_shapes) == 3          # no mask tensor passed
    assert not hasattr(mask, "_exante_truth")           # tags removed
    # on CPU the real values decide
    cap_cpu = capture(MaskedAttn(), (torch.zeros(2, 4, 8, 16), torch.zeros(2, 8, dtype=torch.bool)))
    assert len(_by_type(cap_cpu, "sdpa")[0].config.input_shapes) == 4

    class ReadsNumber(nn.Module):
        def forward(self, x):
            return x[: int(x.sum().item())]

    with pytest.raises(ExanteError, match="meta"):
        capture(ReadsNumber(), torch.zeros(4, device="meta"))


def test_capture_never_changes_the_model():
    """What a forward assigns (a cached tensor, a new buffer) is undone after the capture."""

    class Caching(nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = nn.Linear(4, 4)
            self.register_buffer("scale", torch.ones(4))

        def forward(self, x):
            self.cached = x * 2                          # e.g. a mask kept for later
            self.scale = torch.zeros(4, device=x.device)  # a reassigned buffer
            self.register_buffer("extra", torch.ones(1, device=x.device))
            return self.lin(x) * self.scale

    m = Caching()
    before = dict(m.state_dict(keep_vars=True))
    capture(m, torch.zeros(2, 4))
    assert not hasattr(m, "cached") and "extra" not in dict(m.named_buffers())
    assert all(m.state_dict(keep_vars=True)[k] is before[k] for k in before)
    assert m.scale.sum().item() == 4
    assert m(torch.ones(2, 4)).shape == (2, 4)           # still runs on its own device


def test_opaque_leaf_with_no_tensor_out_is_still_reported():
    class Counts(nn.Module):
        def forward(self, x):
            with torch._C.DisableTorchFunction():
                return int(x.sum())

    class Model(nn.Module):
        def __init__(self):
            super().__init__()
            self.c = Counts()
            self.lin = nn.Linear(3, 2)

        def forward(self, x):
            self.c(x)
            return self.lin(x)

    cap = capture(Model(), torch.ones(2, 3))
    assert [u.config.type for u in cap.unsupported] == ["Counts"]
    assert cap.unsupported[0].config.input_shapes == ((2, 3),)


def test_fold_unfold_are_functional_layers_and_tensor_unfold_a_view():
    class M(nn.Module):
        def forward(self, x):
            x.unfold(2, 2, 2)
            return F.fold(F.unfold(x, 3, padding=1), (8, 8), 3, padding=1)

    cap = capture(M(), torch.zeros(2, 3, 8, 8))
    assert _types(cap) == ["F.unfold", "F.fold"] and cap.unsupported == []
    assert cap.zero_cost_ops == {"unfold_view": 1}


def test_capture_package_exposes_its_public_names_only():
    import profiling.capture as pc

    assert {"capture", "Capture", "CapturedLayer", "LayerConfig", "MetaTruthMode"} <= set(pc.__all__)
    assert not [n for n in pc.__all__ if n.startswith("_")]
    assert pc.capture is capture_mod.capture and pc.LayerConfig is LayerConfig
    with pytest.raises(AttributeError):       # no forwarding of core's private names
        pc._FAST_PATH  # noqa: B018
    with pytest.raises(AttributeError):
        capture_mod._fast_functional  # noqa: B018  (lives in profiling.capture.fastpath)
