"""Attention under torch 1.x: no ``F.scaled_dot_product_attention`` (added in torch 2.0), so
models ran the math path -- two batched GEMMs around a softmax over the materialised score
matrix (fp32 under autocast) -- instead of one fused kernel.  The lowering follows the
workload's recorded torch version; an unknown version keeps the fused kernel."""

from __future__ import annotations

import pytest

from predictor.engine.lowering import CLASSES, lower
from predictor.engine.workload import WLayer, Workload
from profiling.capture.records import LayerConfig

B, H, L, D = 4, 3, 256, 32                # batch, heads, tokens, head dim
S = B * H * L * L                         # attention scores per call
QKV = 3 * B * H * L * D                   # elements of q, k, v


def _sdpa_workload(torch_version, mode="train_step", dtype="fp16") -> Workload:
    shape = (B, H, L, D)
    cfg = LayerConfig("sdpa", (), (shape, shape, shape), (shape,), dtype)
    return Workload((WLayer(cfg, 1, ("attn",)),), mode, dtype, B,
                    "sgd" if mode == "train_step" else None, (), torch_version=torch_version)


def _by_class(lw):
    out = {}
    for c, f, b in zip(lw.cls, lw.flops * lw.mult, lw.bytes * lw.mult, strict=True):
        t = out.setdefault(CLASSES[c], [0.0, 0.0])
        t[0] += f
        t[1] += b
    return out


@pytest.mark.parametrize("version", ["2.4.0", None])
def test_torch2_or_unknown_keeps_the_fused_kernel(version):
    g = _by_class(lower(_sdpa_workload(version, mode="inference")))
    assert "attn_bf16" in g and "mm_bf16" not in g


@pytest.mark.parametrize("mode", ["inference", "train_step"])
def test_torch1_runs_the_math_path_with_fp32_softmax(mode):
    g = _by_class(lower(_sdpa_workload("1.12", mode=mode)))
    fused = _by_class(lower(_sdpa_workload("2.4.0", mode=mode)))
    assert "attn_bf16" not in g
    train = mode == "train_step"
    # q @ k^T and attn @ v: 2 x S x D FLOPs each; backward two GEMMs per matmul
    assert g["mm_bf16"][0] == pytest.approx(2 * 2 * S * D * (3 if train else 1))
    # scores: scale (read + write fp16), cast up, fp32 softmax, cast down -- 4 + 6 + 8 + 6 B;
    # backward: the same casts, the softmax backward (reads y and dy, writes dx: 12 B), scale
    mem_fwd, mem_bwd = 24 * S, 28 * S
    # (both paths cast the fp32 model input to fp16 first: the same bytes)
    assert g["mem"][1] - fused["mem"][1] == pytest.approx(mem_fwd + (mem_bwd if train else 0))


def test_torch1_attention_costs_more_than_the_fused_kernel():
    t1, t2 = lower(_sdpa_workload("1.13")), lower(_sdpa_workload("2.1.0"))
    assert (t1.bytes * t1.mult).sum() > 5 * (t2.bytes * t2.mult).sum()
    assert (t1.kern * t1.mult).sum() > (t2.kern * t2.mult).sum()
    assert t1.host.sum() > t2.host.sum()
