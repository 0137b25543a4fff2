"""Tests for profiling.features.api: closed-form counts per layer type, fvcore agreement,
parameter cross-checks and the FeatureTable (CPU only, fast)."""

from __future__ import annotations

import json
import math
import warnings

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from profiling.capture.core import LayerConfig, capture
from profiling.errors import UnsupportedLayerError
from profiling.features.api import (
    CORE_FEATURES,
    FEATURE_REGISTRY,
    UnsupportedLayerWarning,
    feature_table,
    layer_features,
)

B4 = 4  # fp32 bytes


def prod(xs):
    return math.prod(xs)


def feats(module: nn.Module, *inputs, dtype="fp32", train=False, index=0):
    """Features of the ``index``-th distinct layer captured from ``module`` alone."""
    cap = capture(module, inputs if len(inputs) > 1 else inputs[0], dtype=dtype, train=train)
    layer = cap.layers[index]
    assert layer.supported, layer.config.type
    return layer.config, layer_features(layer.config)


def nparams(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def check_core(f: dict):
    for k in CORE_FEATURES:
        assert k in f, k
        assert isinstance(f[k], (int, float))
    moved = f["bytes_read"] + f["bytes_written"]
    assert f["arith_intensity"] == pytest.approx(f["flops"] / moved if moved else 0.0)


# --------------------------------------------------------------------------------------
# linear / matmul


@pytest.mark.parametrize("shape", [(8, 20), (2, 5, 20), (3, 2, 4, 20)])
@pytest.mark.parametrize("bias", [True, False])
def test_linear(shape, bias):
    m = nn.Linear(20, 12, bias=bias)
    cfg, f = feats(m, torch.randn(*shape))
    rows = prod(shape[:-1])
    assert f["macs"] == rows * 20 * 12
    assert f["flops"] == 2 * rows * 20 * 12
    assert f["params"] == nparams(m) == 20 * 12 + (12 if bias else 0)
    assert f["bytes_read"] == (rows * 20 + f["params"]) * B4
    assert f["bytes_written"] == rows * 12 * B4
    assert f["input_numel"] == rows * 20 and f["output_numel"] == rows * 12
    assert f["batch"] == shape[0] and f["dtype_bytes"] == 4
    assert f["rows"] == rows and f["in_features"] == 20 and f["out_features"] == 12
    check_core(f)


def test_linear_bf16_bytes():
    cfg, f = feats(nn.Linear(16, 8), torch.randn(4, 16), dtype="bf16")
    assert cfg.dtype == "bf16" and f["dtype_bytes"] == 2
    assert f["bytes_read"] == (4 * 16 + 16 * 8 + 8) * 2 and f["bytes_written"] == 4 * 8 * 2


def test_nondynamically_quantizable_linear_config():
    cfg = LayerConfig("NonDynamicallyQuantizableLinear",
                      (("bias", True), ("in_features", 6), ("out_features", 6)),
                      ((2, 3, 6),), ((2, 3, 6),), "fp32")
    f = layer_features(cfg)
    assert f["macs"] == 2 * 3 * 6 * 6 and f["params"] == 42


class Fn(nn.Module):
    """Wraps a callable so a functional op can be captured at the root."""

    def __init__(self, fn):
        super().__init__()
        self.fn = fn

    def forward(self, *xs):
        return self.fn(*xs)


def fn_feats(fn, *xs, type_=None, dtype="fp32"):
    cap = capture(Fn(fn), xs, dtype=dtype)
    layers = [l for l in cap.layers if type_ is None or l.config.type == type_]
    assert layers, [l.config.type for l in cap.layers]
    layer = layers[0]
    assert layer.supported, layer.config.type
    return layer.config, layer_features(layer.config)


@pytest.mark.parametrize("a,b", [((5, 7), (7, 3)), ((4, 5, 7), (4, 7, 3)),
                                 ((2, 4, 5, 7), (7, 3)), ((4, 5, 7), (7,)), ((7,), (7, 3))])
def test_matmul(a, b):
    cfg, f = fn_feats(torch.matmul, torch.randn(*a), torch.randn(*b))
    assert cfg.type == "matmul"
    out = torch.matmul(torch.randn(*a), torch.randn(*b)).numel()
    assert f["macs"] == out * 7 and f["flops"] == 2 * out * 7
    assert f["params"] == 0
    assert f["bytes_read"] == (prod(a) + prod(b)) * B4 and f["bytes_written"] == out * B4
    check_core(f)


def test_matmul_operator_bmm_mm_addmm_baddbmm_flinear_einsum():
    x, y = torch.randn(3, 4, 5), torch.randn(3, 5, 6)
    cfg, f = fn_feats(lambda p, q: p @ q, x, y)
    assert cfg.type == "matmul" and f["macs"] == 3 * 4 * 5 * 6
    cfg, f = fn_feats(torch.bmm, x, y)
    assert cfg.type == "bmm" and f["macs"] == 3 * 4 * 5 * 6 and f["flops"] == 2 * 360
    cfg, f = fn_feats(torch.mm, torch.randn(4, 5), torch.randn(5, 6))
    assert cfg.type == "mm" and f["macs"] == 120
    cfg, f = fn_feats(torch.addmm, torch.randn(6), torch.randn(4, 5), torch.randn(5, 6))
    assert cfg.type == "addmm" and f["macs"] == 120
    cfg, f = fn_feats(torch.baddbmm, torch.randn(3, 4, 6), x, y)
    assert cfg.type == "baddbmm" and f["macs"] == 360
    cfg, f = fn_feats(F.linear, torch.randn(2, 3, 5), torch.randn(7, 5), torch.randn(7))
    assert cfg.type == "F.linear" and f["macs"] == 2 * 3 * 5 * 7 and f["params"] == 0
    assert f["bytes_read"] == (30 + 35 + 7) * B4
    cfg, f = fn_feats(lambda p, q: torch.einsum("bij,bjk->bik", p, q), x, y)
    assert cfg.type == "einsum" and f["macs"] == 360


# --------------------------------------------------------------------------------------
# convolutions


def conv_macs(n, cout, out_spatial, cin, groups, kernel):
    return n * cout * prod(out_spatial) * (cin // groups) * prod(kernel)


@pytest.mark.parametrize("kw", [
    dict(in_channels=3, out_channels=8, kernel_size=3),                          # plain
    dict(in_channels=3, out_channels=8, kernel_size=3, stride=2, padding=1),    # strided
    dict(in_channels=4, out_channels=8, kernel_size=3, dilation=2, padding=2),  # dilated
    dict(in_channels=8, out_channels=8, kernel_size=3, padding=1, groups=8),    # depthwise
    dict(in_channels=8, out_channels=16, kernel_size=(1, 5), groups=4, bias=False),
    dict(in_channels=4, out_channels=6, kernel_size=3, padding="same"),
])
def test_conv2d(kw):
    m = nn.Conv2d(**kw)
    x = torch.randn(2, kw["in_channels"], 15, 17)
    y = m(x)
    cfg, f = feats(m, x)
    k = m.kernel_size
    expected = conv_macs(2, m.out_channels, y.shape[2:], m.in_channels, m.groups, k)
    assert f["macs"] == expected and f["flops"] == 2 * expected
    assert f["params"] == nparams(m)
    assert f["bytes_read"] == (x.numel() + nparams(m)) * B4
    assert f["bytes_written"] == y.numel() * B4
    assert f["groups"] == m.groups and f["kernel_numel"] == prod(k)
    assert f["depthwise"] == int(m.groups == m.in_channels and m.groups > 1)
    assert f["stride"] == max(m.stride) and f["dilation"] == max(m.dilation)
    assert f["out_spatial"] == prod(y.shape[2:]) and f["batch"] == 2
    check_core(f)


def test_conv1d_conv3d_transposed_unbatched():
    m = nn.Conv1d(4, 6, 5, stride=2)
    x = torch.randn(3, 4, 50)
    y = m(x)
    _, f = feats(m, x)
    assert f["macs"] == 3 * 6 * y.shape[-1] * 4 * 5 and f["params"] == nparams(m)
    m = nn.Conv3d(2, 4, (3, 3, 3), padding=1)
    x = torch.randn(1, 2, 5, 6, 7)
    _, f = feats(m, x)
    assert f["macs"] == 1 * 4 * (5 * 6 * 7) * 2 * 27 and f["params"] == nparams(m)
    m = nn.ConvTranspose2d(4, 6, 3, stride=2, groups=2)
    x = torch.randn(2, 4, 7, 7)
    _, f = feats(m, x)
    # transposed: N * Cin * (Cout/groups) * k * Hin * Win (fvcore)
    assert f["macs"] == 2 * 4 * 3 * 9 * 49 and f["params"] == nparams(m)
    m = nn.Conv2d(3, 5, 3)
    x = torch.randn(3, 10, 10)                                  # unbatched
    _, f = feats(m, x)
    assert f["macs"] == 5 * 64 * 3 * 9 and f["batch"] == 1


def test_functional_conv():
    x, w = torch.randn(2, 4, 9, 9), torch.randn(8, 2, 3, 3)
    cfg, f = fn_feats(lambda a, b: F.conv2d(a, b, None, 2, 1, 1, 2), x, w)
    y = F.conv2d(x, w, None, 2, 1, 1, 2)
    assert cfg.type == "F.conv2d"
    assert f["macs"] == conv_macs(2, 8, y.shape[2:], 4, 2, (3, 3)) and f["groups"] == 2


# --------------------------------------------------------------------------------------
# normalisation


def test_batchnorm_eval_train_and_no_affine():
    m = nn.BatchNorm2d(6)
    x = torch.randn(2, 6, 5, 5)
    n = x.numel()
    _, f = feats(m, x)
    assert f["macs"] == 2 * n and f["flops"] == 2 * n and f["params"] == nparams(m) == 12
    assert f["bytes_read"] == (n + 12 + 12) * B4 and f["bytes_written"] == n * B4
    _, f = feats(m, x, train=True)
    assert f["macs"] == 5 * n and f["batch_stats"] == 1
    m = nn.BatchNorm1d(6, affine=False, track_running_stats=False)
    _, f = feats(m, torch.randn(4, 6))
    assert f["macs"] == 4 * 24 and f["params"] == 0 and f["bytes_read"] == 24 * B4
    check_core(f)


def test_layernorm_groupnorm_instancenorm():
    x = torch.randn(2, 7, 16)
    m = nn.LayerNorm(16)
    _, f = feats(m, x)
    assert f["macs"] == 5 * x.numel() and f["params"] == nparams(m) == 32
    m = nn.LayerNorm((7, 16), elementwise_affine=False)
    _, f = feats(m, x)
    assert f["macs"] == 4 * x.numel() and f["params"] == 0
    m = nn.LayerNorm(16, bias=False)
    _, f = feats(m, x)
    assert f["params"] == nparams(m) == 16
    x = torch.randn(2, 8, 5, 5)
    m = nn.GroupNorm(4, 8)
    _, f = feats(m, x)
    assert f["macs"] == 5 * x.numel() and f["params"] == nparams(m) == 16
    assert f["bytes_read"] == (x.numel() + 16) * B4
    m = nn.InstanceNorm2d(8, affine=True)
    _, f = feats(m, x)
    assert f["macs"] == 5 * x.numel() and f["params"] == nparams(m)


def test_functional_norms():
    x = torch.randn(3, 10)
    cfg, f = fn_feats(lambda a: F.layer_norm(a, (10,)), x)
    assert cfg.type == "F.layer_norm" and f["macs"] == 4 * 30
    cfg, f = fn_feats(lambda a, w, b: F.layer_norm(a, (10,), w, b), x, torch.ones(10),
                      torch.zeros(10))
    assert f["macs"] == 5 * 30


# --------------------------------------------------------------------------------------
# activations, elementwise, softmax, reductions


@pytest.mark.parametrize("m", [nn.ReLU(), nn.GELU(), nn.SiLU(), nn.Sigmoid(), nn.Tanh(),
                               nn.Hardswish(), nn.LeakyReLU(0.1), nn.ReLU6(), nn.ELU(),
                               nn.Mish(), nn.Hardsigmoid(), nn.GELU(approximate="tanh")])
def test_activation_modules(m):
    x = torch.randn(3, 4, 5)
    _, f = feats(m, x)
    assert f["macs"] == 0 and f["flops"] == 60 and f["params"] == 0
    assert f["bytes_read"] == 60 * B4 and f["bytes_written"] == 60 * B4
    check_core(f)


def test_prelu_params():
    m = nn.PReLU(4)
    _, f = feats(m, torch.randn(2, 4, 3))
    assert f["params"] == nparams(m) == 4 and f["flops"] == 24


@pytest.mark.parametrize("fn,t", [(F.relu, "F.relu"), (F.gelu, "F.gelu"), (F.silu, "F.silu"),
                                  (torch.sigmoid, "F.sigmoid"), (torch.tanh, "F.tanh"),
                                  (torch.exp, "exp"), (lambda a: -a, "neg")])
def test_functional_unary(fn, t):
    cfg, f = fn_feats(fn, torch.randn(6, 5))
    assert cfg.type == t and f["flops"] == 30 and f["macs"] == 0


@pytest.mark.parametrize("fn,t", [(lambda a, b: a + b, "add"), (lambda a, b: a * b, "mul"),
                                  (lambda a, b: a - b, "sub"), (lambda a, b: a / b, "div"),
                                  (torch.maximum, "maximum")])
def test_binary_elementwise_with_broadcast(fn, t):
    a, b = torch.randn(4, 6), torch.randn(6)
    cfg, f = fn_feats(fn, a, b)
    assert cfg.type == t and f["flops"] == 24 and f["macs"] == 0
    assert f["bytes_read"] == (24 + 6) * B4 and f["bytes_written"] == 24 * B4


def test_softmax_cat_mean_flatten():
    x = torch.randn(2, 3, 7)
    _, f = feats(nn.Softmax(dim=-1), x)
    assert f["flops"] == 5 * 42 and f["macs"] == 0
    cfg, f = fn_feats(lambda a: F.softmax(a, dim=-1), x)
    assert cfg.type == "softmax" and f["flops"] == 5 * 42
    cfg, f = fn_feats(lambda a: torch.cat([a, a, a], dim=1), x)
    assert cfg.type == "cat" and cfg.input_shapes == ((2, 3, 7),) * 3
    assert f["flops"] == 0 and f["bytes_read"] == 3 * 42 * B4 and f["bytes_written"] == 126 * B4
    cfg, f = fn_feats(lambda a: a.mean(dim=-1), x)
    assert cfg.type == "mean" and f["flops"] == 42 and f["bytes_written"] == 6 * B4
    cfg, f = fn_feats(lambda a: torch.flatten(a, 1), x)
    assert cfg.type == "flatten" and f["flops"] == 0 and f["bytes_read"] == 42 * B4
    for m in (nn.Flatten(), nn.Identity()):
        _, f = feats(m, x)
        assert f["flops"] == 0 and f["macs"] == 0 and f["bytes_written"] == 42 * B4


# --------------------------------------------------------------------------------------
# pooling, dropout, embedding


def test_pooling():
    x = torch.randn(2, 3, 12, 12)
    _, f = feats(nn.MaxPool2d(3, 2, 1), x)
    assert f["flops"] == 2 * 3 * 6 * 6 * 9 and f["macs"] == 0 and f["kernel_numel"] == 9
    _, f = feats(nn.AvgPool2d(2), x)
    assert f["flops"] == 2 * 3 * 6 * 6 * 4 and f["bytes_written"] == 2 * 3 * 36 * B4
    _, f = feats(nn.AdaptiveAvgPool2d(1), x)
    assert f["macs"] == x.numel() and f["flops"] == x.numel()
    _, f = feats(nn.AdaptiveMaxPool2d((2, 2)), x)
    assert f["macs"] == 0 and f["flops"] == x.numel()
    x1 = torch.randn(2, 3, 20)
    _, f = feats(nn.MaxPool1d(4), x1)
    assert f["flops"] == 2 * 3 * 5 * 4
    _, f = feats(nn.AvgPool1d(5, stride=5), x1)
    assert f["flops"] == 2 * 3 * 4 * 5
    _, f = feats(nn.AdaptiveAvgPool1d(4), x1)
    assert f["macs"] == x1.numel()
    cfg, f = fn_feats(lambda a: F.max_pool2d(a, 2), x)
    assert cfg.type == "F.max_pool2d" and f["flops"] == 2 * 3 * 36 * 4


def test_dropout_eval_and_train():
    x = torch.randn(4, 10)
    _, f = feats(nn.Dropout(0.1), x)
    assert f["flops"] == 0 and f["training"] == 0 and f["bytes_read"] == 40 * B4
    _, f = feats(nn.Dropout(0.1), x, train=True)
    assert f["flops"] == 40 and f["training"] == 1


def test_embedding():
    m = nn.Embedding(1000, 16)
    idx = torch.randint(0, 1000, (4, 7))
    cfg, f = feats(m, idx)
    assert cfg.dtype == "fp32"
    assert f["params"] == nparams(m) == 16000 and f["macs"] == 0 and f["flops"] == 0
    assert f["bytes_read"] == 28 * 8 + 28 * 16 * B4 and f["bytes_written"] == 28 * 16 * B4
    assert f["lookups"] == 28 and f["batch"] == 4


# --------------------------------------------------------------------------------------
# attention


@pytest.mark.parametrize("batch_first", [True, False])
def test_multihead_attention_closed_form(batch_first):
    n, L, e, h = 3, 10, 32, 4
    m = nn.MultiheadAttention(e, h, batch_first=batch_first)
    x = torch.randn(n, L, e) if batch_first else torch.randn(L, n, e)

    class W(nn.Module):
        def __init__(self):
            super().__init__()
            self.m = m

        def forward(self, q):
            return self.m(q, q, q, need_weights=False)[0]

    cfg, f = feats(W(), x)
    assert cfg.type == "MultiheadAttention"
    in_proj = 3 * n * L * e * e
    qk = n * h * L * L * (e // h)          # QK^T
    av = n * h * L * L * (e // h)          # A V
    out_proj = n * L * e * e
    assert f["macs"] == in_proj + qk + av + out_proj
    assert f["attn_macs"] == qk + av
    assert f["flops"] == 2 * f["macs"] + 5 * n * h * L * L
    assert f["params"] == nparams(m)
    assert f["batch"] == n and f["seq_len"] == L and f["heads"] == h and f["head_dim"] == 8
    assert f["bytes_read"] == (3 * n * L * e + nparams(m)) * B4
    check_core(f)


def test_mha_cross_attention_kdim_vdim_and_weights():
    m = nn.MultiheadAttention(16, 2, batch_first=True, kdim=8, vdim=12, bias=False,
                              add_bias_kv=True)
    q, k, v = torch.randn(2, 5, 16), torch.randn(2, 9, 8), torch.randn(2, 9, 12)
    cfg, f = feats(m, q, k, v)
    assert cfg.output_shapes == ((2, 5, 16), (2, 5, 10))          # need_weights default
    s_eff = 9 + 1                                                   # bias_k appended
    assert f["macs"] == (2 * 5 * 16 * 16 + 2 * 9 * 8 * 16 + 2 * 9 * 12 * 16
                         + 2 * 2 * 5 * s_eff * 16 + 2 * 5 * 16 * 16)
    assert f["params"] == nparams(m)


def test_sdpa_closed_form():
    q = torch.randn(2, 4, 6, 8)
    k = torch.randn(2, 4, 9, 8)
    v = torch.randn(2, 4, 9, 5)
    cfg, f = fn_feats(lambda a, b, c: F.scaled_dot_product_attention(a, b, c), q, k, v)
    assert cfg.type == "sdpa"
    assert f["macs"] == 2 * 4 * 6 * 9 * 8 + 2 * 4 * 6 * 9 * 5
    assert f["flops"] == 2 * f["macs"] + 5 * 2 * 4 * 6 * 9
    assert f["heads"] == 4 and f["seq_len"] == 6 and f["kv_len"] == 9 and f["batch"] == 2
    cfg, f = fn_feats(lambda a, b, c: F.scaled_dot_product_attention(a, b, c, is_causal=True),
                      q, q, q)
    assert f["is_causal"] == 1


# --------------------------------------------------------------------------------------
# recurrent, params cross-check


@pytest.mark.filterwarnings("ignore:LSTM with projections")
@pytest.mark.parametrize("m", [nn.LSTM(8, 16, num_layers=2, batch_first=True),
                               nn.GRU(8, 16, bidirectional=True),
                               nn.RNN(8, 16, bias=False),
                               nn.LSTM(8, 16, proj_size=4, bidirectional=True, num_layers=2)])
def test_rnn_params_and_macs(m):
    x = torch.randn(3, 5, 8)
    _, f = feats(m, x)
    assert f["params"] == nparams(m)
    if isinstance(m, nn.LSTM) and m.proj_size == 0:       # 2 layers, T=5, N=3
        assert f["macs"] == 3 * 5 * 4 * 16 * (8 + 16) + 3 * 5 * 4 * 16 * (16 + 16)


ZOO = [
    (nn.Linear(5, 3), (2, 5)), (nn.Linear(5, 3, bias=False), (2, 5)),
    (nn.Conv1d(3, 6, 3, groups=3), (2, 3, 9)), (nn.Conv2d(4, 8, 3, bias=False), (1, 4, 6, 6)),
    (nn.Conv3d(2, 2, 1), (1, 2, 3, 3, 3)), (nn.ConvTranspose1d(4, 2, 3), (1, 4, 5)),
    (nn.ConvTranspose2d(4, 8, 2, stride=2, groups=4, bias=False), (1, 4, 3, 3)),
    (nn.BatchNorm1d(5), (3, 5)), (nn.BatchNorm2d(4, affine=False), (2, 4, 3, 3)),
    (nn.BatchNorm3d(2), (2, 2, 2, 2, 2)), (nn.LayerNorm(5), (2, 5)),
    (nn.GroupNorm(2, 4, affine=False), (2, 4, 3)), (nn.Embedding(10, 3), None),
    (nn.PReLU(), (2, 3)), (nn.MultiheadAttention(8, 2), (4, 2, 8)),
    (nn.Bilinear(3, 4, 5), None), (nn.Upsample(scale_factor=2), (1, 2, 3, 3)),
    (nn.Upsample(scale_factor=2, mode="bilinear"), (1, 2, 3, 3)), (nn.PixelShuffle(2), (1, 8, 2, 2)),
    (nn.ZeroPad2d(1), (1, 2, 3, 3)), (nn.Softmax2d(), (1, 2, 3, 3)), (nn.LogSoftmax(1), (2, 3)),
]


@pytest.mark.parametrize("m,shape", ZOO, ids=[type(m).__name__ for m, _ in ZOO])
def test_params_match_module_and_core_keys(m, shape):
    if isinstance(m, nn.Embedding):
        inputs = (torch.randint(0, 10, (2, 3)),)
    elif isinstance(m, nn.Bilinear):
        inputs = (torch.randn(2, 3), torch.randn(2, 4))
    elif isinstance(m, nn.MultiheadAttention):
        x = torch.randn(*shape)
        inputs = (x, x, x)
    else:
        inputs = (torch.randn(*shape),)
    cfg, f = feats(m, *inputs)
    assert f["params"] == nparams(m), cfg.type
    check_core(f)
    assert f["flops"] >= 0 and f["bytes_written"] > 0


def test_upsample_fvcore_counts():
    x = torch.randn(1, 2, 3, 3)
    _, f = feats(nn.Upsample(scale_factor=2), x)
    assert f["macs"] == 72
    _, f = feats(nn.Upsample(scale_factor=2, mode="bilinear"), x)
    assert f["macs"] == 4 * 72


# --------------------------------------------------------------------------------------
# agreement with fvcore.nn.FlopCountAnalysis


class SmallCNN(nn.Module):
    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(16, 32, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(32),
            nn.ReLU(), nn.Conv2d(32, 32, 3, padding=2, dilation=2, groups=32), nn.ReLU(),
            nn.Conv2d(32, 64, 1), nn.GroupNorm(8, 64), nn.ReLU(),
        )
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.head = nn.Sequential(nn.Flatten(), nn.Linear(64, 32), nn.LayerNorm(32),
                                  nn.GELU(), nn.Linear(32, 10))

    def forward(self, x):
        return self.head(self.pool(self.features(x)))


def _fvcore_total(model, inputs):
    from fvcore.nn import FlopCountAnalysis

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fca = FlopCountAnalysis(model, inputs)
        fca.unsupported_ops_warnings(False).uncalled_modules_warnings(False)
        return fca.total()


@pytest.mark.parametrize("make,shape", [
    (SmallCNN, (2, 3, 32, 32)),
    (lambda: nn.Sequential(nn.Linear(100, 64), nn.ReLU(), nn.Linear(64, 64), nn.ReLU(),
                           nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 1)), (16, 100)),
    (lambda: nn.Sequential(nn.Linear(12, 24), nn.Tanh(), nn.Linear(24, 6)), (4, 5, 12)),
])
def test_macs_match_fvcore(make, shape):
    model = make().eval()
    x = torch.randn(*shape)
    table = feature_table(model, x)
    ours = sum(r["count"] * r["macs"] for r in table.rows)
    assert ours == table.totals["macs"]
    assert ours == _fvcore_total(model, (x,))
    assert table.totals["params"] == table.totals["model_params"] == nparams(model)


# --------------------------------------------------------------------------------------
# FeatureTable, unsupported handling


class Scale(nn.Module):
    """Work invisible to the capture's function mode (like a C extension): opaque."""

    def __init__(self, n):
        super().__init__()
        self.gain = nn.Parameter(torch.ones(n))

    def forward(self, x):
        with torch._C.DisableTorchFunction():
            return x * self.gain


def test_feature_table_unsupported_and_rendering():
    model = nn.Sequential(nn.Linear(4, 6), Scale(6), nn.ReLU(), Scale(6), nn.Linear(6, 2))
    with pytest.warns(UnsupportedLayerWarning, match="Scale x2"):
        table = feature_table(model, torch.randn(3, 4))
    assert [r["type"] for r in table.rows] == ["Linear", "Scale", "ReLU", "Linear"]
    (u,) = table.unsupported
    assert u["type"] == "Scale" and u["count"] == 2 and u["names"] == ["1", "3"]
    row = table.rows[1]
    assert row["supported"] is False and "macs" not in row and "flops" not in row
    assert row["reason"]
    sup = [r for r in table.rows if r["supported"]]
    assert table.totals["macs"] == sum(r["count"] * r["macs"] for r in sup) == 3 * 24 + 3 * 12
    assert table.totals["unsupported_calls"] == 2 and table.totals["calls"] == 5
    text = table.to_text()
    assert "UNSUPPORTED" in text and "Scale x2" in text and "Linear" in text
    lines = text.splitlines()
    assert len({len(l) for l in lines[:2]}) == 1          # header and rule aligned
    js = table.to_json()
    json.dumps(js)
    assert js["unsupported"][0]["type"] == "Scale" and len(js["rows"]) == 4
    r0 = table.rows[0]
    for k in ("name", "names", "type", "count", "key", "hparams", "input_shapes",
              "output_shapes", "dtype"):
        assert k in r0
    assert r0["input_shapes"] == [[3, 4]] and r0["hparams"]["in_features"] == 4


def test_feature_table_clean_model_no_warning_and_shared_params():
    class Shared(nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = nn.Linear(8, 8)

        def forward(self, x):
            return self.lin(torch.relu(self.lin(x)))

    with warnings.catch_warnings():
        warnings.simplefilter("error", UnsupportedLayerWarning)
        table = feature_table(Shared(), torch.randn(2, 8))
    assert table.unsupported == []
    assert table.totals["params"] == 72 == table.totals["model_params"]   # shared: once
    assert table.totals["macs"] == 2 * 2 * 64


def test_layer_features_unsupported_raises():
    cfg = LayerConfig("WeirdLayer", (), ((2, 3),), ((2, 3),), "fp32")
    with pytest.raises(UnsupportedLayerError, match="WeirdLayer"):
        layer_features(cfg)


def test_registry_covers_required_types():
    required = [
        "Linear", "NonDynamicallyQuantizableLinear", "Conv1d", "Conv2d", "Conv3d",
        "ConvTranspose2d", "BatchNorm1d", "BatchNorm2d", "LayerNorm", "GroupNorm", "ReLU",
        "GELU", "SiLU", "Sigmoid", "Tanh", "Hardswish", "LeakyReLU", "ReLU6", "Softmax",
        "MaxPool1d", "MaxPool2d", "AvgPool1d", "AvgPool2d", "AdaptiveAvgPool1d",
        "AdaptiveAvgPool2d", "AdaptiveMaxPool2d", "Dropout", "Embedding", "MultiheadAttention",
        "sdpa", "Flatten", "Identity", "add", "mul", "sub", "div", "matmul", "bmm", "softmax",
        "F.relu", "F.gelu", "F.silu", "cat", "mean", "flatten",
    ]
    missing = [t for t in required if t not in FEATURE_REGISTRY]
    assert not missing


def test_meta_feature_table_resnet_block():
    with torch.device("meta"):
        model = nn.Sequential(nn.Conv2d(3, 64, 7, 2, 3, bias=False), nn.BatchNorm2d(64),
                              nn.ReLU(inplace=True), nn.MaxPool2d(3, 2, 1))
    table = feature_table(model, torch.zeros(8, 3, 224, 224, device="meta"))
    conv = table.rows[0]
    assert conv["macs"] == 8 * 64 * 112 * 112 * 3 * 49
    assert table.totals["params"] == 64 * 3 * 49 + 128


def test_features_package_exposes_its_public_names_only():
    import profiling.features as pf
    import profiling.features.api as api

    assert set(pf.__all__) == set(api.__all__)
    assert {"layer_features", "register", "FeatureTable", "feature_table", "features_for_capture",
            "UnsupportedLayerWarning", "FEATURE_REGISTRY"} <= set(pf.__all__)
    assert not [n for n in pf.__all__ if n.startswith("_")]
    for n in pf.__all__:
        assert getattr(pf, n) is getattr(api, n), n
    with pytest.raises(AttributeError):       # helpers are imported from their own module
        pf._linear  # noqa: B018
    with pytest.raises(AttributeError):
        api._feat  # noqa: B018


def test_register_refuses_a_second_feature_function_for_a_type():
    """Like torch's register_flop_formula: a type keeps one feature function until unregistered."""
    from profiling.errors import ExanteError
    from profiling.features import FEATURE_REGISTRY, register, unregister

    def mine(cfg):
        return {}

    with pytest.raises(ExanteError, match="'Linear'.*already have a feature function"):
        register("Linear")(mine)
    assert FEATURE_REGISTRY["Linear"] is not mine
    register("MyOwnLayer")(mine)
    try:
        register("MyOwnLayer")(mine)          # the same function again: a no-op, not an error
        with pytest.raises(ExanteError, match="unregister them first"):
            register("MyOwnLayer")(lambda cfg: {})
    finally:
        unregister("MyOwnLayer")
    assert "MyOwnLayer" not in FEATURE_REGISTRY
