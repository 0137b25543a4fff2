"""Tests for profiling.capture (CPU only, fast)."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from profiling.capture import Capture, LayerConfig, capture, module_type_name
from profiling.errors import ExanteError


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


class Bottleneck(nn.Module):
    def __init__(self, inplanes, planes, stride=1, downsample=None):
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, planes * 4, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * 4)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x):
        identity = x
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        if self.downsample is not None:
            identity = self.downsample(x)
        out += identity
        return self.relu(out)


class ResNet50Like(nn.Module):
    """torchvision's resnet50 structure (torchvision is not importable here)."""

    def __init__(self, layers=(3, 4, 6, 3), num_classes=1000):
        super().__init__()
        self.inplanes = 64
        self.conv1 = nn.Conv2d(3, 64, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        self.layer1 = self._make(64, layers[0])
        self.layer2 = self._make(128, layers[1], 2)
        self.layer3 = self._make(256, layers[2], 2)
        self.layer4 = self._make(512, layers[3], 2)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(2048, num_classes)

    def _make(self, planes, blocks, stride=1):
        ds = None
        if stride != 1 or self.inplanes != planes * 4:
            ds = nn.Sequential(nn.Conv2d(self.inplanes, planes * 4, 1, stride, bias=False),
                               nn.BatchNorm2d(planes * 4))
        layers = [Bottleneck(self.inplanes, planes, stride, ds)]
        self.inplanes = planes * 4
        layers += [Bottleneck(self.inplanes, planes) for _ in range(1, blocks)]
        return nn.Sequential(*layers)

    def forward(self, x):
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(torch.flatten(self.avgpool(x), 1))


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
    code = ("from profiling.capture import LayerConfig;print(LayerConfig('Linear',"
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


def test_unsupported_custom_leaf():
    model = nn.Sequential(nn.Linear(4, 6), Scale(6), nn.ReLU())
    cap = capture(model, torch.randn(2, 4))
    assert _types(cap) == ["Linear", "Scale", "ReLU"]
    (u,) = cap.unsupported
    assert u.config.type == "Scale" and not u.supported and u.names == ["1"]
    hp = u.config.hparams_dict()
    assert hp["mode"] == "per-channel" and hp["param_shapes"] == (("gain", (6,)),)
    # the op inside the custom leaf is not recorded as a functional op
    assert "mul" not in _types(cap)


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
# ResNet-50-like on meta: correctness and speed


def test_resnet50_like_meta_fast():
    with torch.device("meta"):
        model = ResNet50Like()
    x = torch.zeros(32, 3, 224, 224, device="meta")
    capture(model, x)                                     # warm-up (first meta kernels)
    t0 = time.perf_counter()
    cap = capture(model, x)
    elapsed = time.perf_counter() - t0
    # 53 conv + 53 bn + 49 relu calls + maxpool + 16 residual adds + avgpool + flatten + fc
    assert cap.total_calls == 175
    count = {}
    for layer in cap.layers:
        count[layer.config.type] = count.get(layer.config.type, 0) + layer.count
    assert count == {"Conv2d": 53, "BatchNorm2d": 53, "ReLU": 49, "MaxPool2d": 1, "add": 16,
                     "AdaptiveAvgPool2d": 1, "flatten": 1, "Linear": 1}
    assert cap.unsupported == [] and _no_hooks(model)
    print(f"\nResNet-50-like meta capture: {elapsed * 1e3:.1f} ms")
    assert elapsed < 1.0          # ~40-50 ms on 2 CPU cores; loose bound against CI noise
