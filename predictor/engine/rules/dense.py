"""Lowering rules of the compute-bound families: GEMMs, convolutions, attention, RNNs.

fp32 matmuls run on FP32 CUDA cores (PyTorch's default ``allow_tf32=False`` for matmul),
fp32 convolutions on TF32 tensor cores (cuDNN's default ``allow_tf32=True``), 16-bit
(autocast) ones on 16-bit tensor cores; 16-bit dense convolutions in NCHW pay cuDNN's NHWC
transposes, ``channels_last`` does not; grouped/depthwise convolutions are their own
(memory-bound) class; ``nn.MultiheadAttention`` on the inference fast path is one native
call whose kernels cost launches but no Python; ``F.scaled_dot_product_attention`` is one
fused kernel on torch 2.x and, on torch 1.x (which lacks it), the math path models wrote.
Training: a GEMM's backward is two GEMMs (dX, dW) plus the bias gradient's reduction.  Units:
FLOPs and bytes per call.
"""

from __future__ import annotations

import numpy as np

from predictor.engine.rules.core import (
    Emitter,
    LayerCtx,
    bwd,
    bwd_mm,
    fwd,
    register_lowering_rule,
)

__all__ = ["NCHW_SHARE", "attn_class", "mm_class"]

#: share of a 16-bit NCHW convolution's input + output that cuDNN transposes to NHWC (it has
#: native NCHW tensor-core kernels for many shapes): 1/4 puts timm's ResNet-50-like nets ~15 %
#: slower in NCHW than channels_last at large batch, as timm measures (RTX 3090, torch 2.4:
#: median 1.14 for resnets, 1.17 EfficientNets, 1.01 ViTs)
NCHW_SHARE = 0.25


def mm_class(ctx: LayerCtx) -> str:
    """The matmul compute class of the layer's dtype."""
    return "mm_bf16" if ctx.low else "mm_fp32"


def attn_class(ctx: LayerCtx) -> str:
    """The fused-attention compute class of the layer's dtype."""
    return "attn_bf16" if ctx.low else "attn_fp32"


def _matmul(ctx: LayerCtx, e: Emitter, linear: bool) -> None:
    """A Linear-like GEMM (``linear``: weight and maybe bias; dX + dW backward) or a batched
    matmul of two activations (two GEMMs backward)."""
    bias = 1 if (linear and ctx.hp.get("bias", True)) else 0
    if ctx.type == "addmm" and ctx.in_ndim == 1:
        linear, bias = True, 1          # addmm(bias, x, W): a Linear (e.g. GPT-2's Conv1D)
    mm = mm_class(ctx)
    if bias and ctx.type != "Bilinear":
        # addmm with a bias vector and > 1 row takes cuBLASLt's bias epilogue
        # (gemm_and_bias), whose per-call descriptor/heuristic set-up costs host time
        e.host("lt", ctx.n * (ctx.rows > 1))
    fwd(ctx, e, mm, ctx.flops, ctx.nbytes, par=ctx.out_el, nd=ctx.cout)
    if linear:
        bwd_mm(ctx, e, mm, ctx.flops, ctx.nbytes)
    else:
        bwd(ctx, e, mm, 2 * ctx.flops, 2 * ctx.nbytes, 2, par=ctx.out_el)
    if bias:
        bwd(ctx, e, "mem", 0.0, ctx.out_bytes, 1, nodes=0)


@register_lowering_rule("gemm", autocast="lowp")
def gemm_rule(ctx: LayerCtx, e: Emitter) -> None:
    """``nn.Linear``, ``F.linear``, ``nn.Bilinear``: forward GEMM, dX and dW GEMMs, the
    bias gradient's reduction."""
    _matmul(ctx, e, linear=True)


@register_lowering_rule("bgemm", autocast="lowp")
def bgemm_rule(ctx: LayerCtx, e: Emitter) -> None:
    """matmul/bmm/addmm/einsum of activations: one GEMM forward, two backward."""
    _matmul(ctx, e, linear=False)


@register_lowering_rule("grouped_mm")
def grouped_mm_rule(ctx: LayerCtx, e: Emitter) -> None:
    """Mixture-of-experts ``torch._grouped_mm``: one grouped GEMM kernel over all groups
    (the features' FLOPs = 2 x numel(out) x k, bytes of both operands and the output) on the
    matmul class; backward two grouped GEMMs (d activations, d expert weights)."""
    mm = mm_class(ctx)
    fwd(ctx, e, mm, ctx.flops, ctx.nbytes, par=ctx.out_el, nd=ctx.cout)
    bwd(ctx, e, mm, 2 * ctx.flops, 2 * ctx.nbytes, 2, par=ctx.out_el)


@register_lowering_rule("conv", autocast="lowp")
def conv_rule(ctx: LayerCtx, e: Emitter) -> None:
    """Convolutions: cuDNN kernels (TF32 / 16-bit tensor cores; grouped and depthwise ones
    their own class), NHWC transposes of 16-bit NCHW convolutions, the bias add and its
    gradient."""
    groups = int(ctx.hp.get("groups", 1) or 1)
    grouped = groups > 1 and bool(groups >= ctx.cin // 8)
    cls = "conv_grouped" if grouped else ("conv_bf16" if ctx.low else "conv_tf32")
    bias = 1 if ctx.hp.get("bias", False) else 0
    e.host("conv", ctx.n)
    if ctx.low and ctx.nchw and not grouped:
        # fp16/bf16 tensor-core convolutions prefer NHWC: for part of the NCHW shapes cuDNN
        # transposes input and output (read + write), which channels_last avoids
        # (NCHW_SHARE of the full passes; training: dY and dX again)
        tb = NCHW_SHARE * 2.0 * (ctx.in_el_all * 2.0 + ctx.out_el * 2.0)
        fwd(ctx, e, "mem", 0.0, tb, 1)
        bwd(ctx, e, "mem", 0.0, tb, 1, nodes=0)
    fwd(ctx, e, cls, ctx.flops, ctx.nbytes, 1, 1, par=0.0 if grouped else ctx.out_el,
        nd=0.0 if grouped else ctx.cout)
    if bias:
        fwd(ctx, e, "mem", 0.0, 2 * ctx.out_bytes)
    if grouped:
        bwd(ctx, e, cls, 2 * ctx.flops, 2 * ctx.nbytes, 2, 2)
    else:
        bwd_mm(ctx, e, cls, ctx.flops, ctx.nbytes, conv=1)
    if bias:
        bwd(ctx, e, "mem", 0.0, ctx.out_bytes, 1, nodes=0)


@register_lowering_rule("mha", autocast="lowp")
def mha_rule(ctx: LayerCtx, e: Emitter) -> None:
    """``nn.MultiheadAttention``: in-projection GEMM, fused attention, out-projection GEMM
    and q/k/v layout copies (5 kernels); on the inference fast path one native op launched
    from C++ (a share ``max(fused_enc, fused_mha)`` of the calls); training (never fused):
    4 GEMMs, 2 attention backward kernels, 4 copies and 8 autograd nodes."""
    proj = ctx.feat.get("proj_macs", 0) * 2.0
    att = ctx.flops - proj
    mm, attn, n = mm_class(ctx), attn_class(ctx), ctx.n
    fused = np.maximum(ctx.fused_enc, ctx.fused_mha)
    e.host("fused", n * ctx.fused_mha)          # one native op (C++ dispatch chain)
    for m in (n * fused, n * (1 - fused)):      # fused calls, then unfused ones
        e.gpu(m, mm, proj, ctx.nbytes, 2, par=3 * ctx.out_el)
        e.gpu(m, attn, att, 3 * ctx.nbytes / 4, 1, par=ctx.out_el)
        e.gpu(m, "mem", 0.0, ctx.nbytes, 2)
        e.host("kern", m * 5)
    m = n * (1 - fused)
    e.host("mha", m)
    if ctx.train:
        e.gpu(m, mm, 2 * proj, 2 * ctx.nbytes, 4, par=3 * ctx.out_el)
        e.gpu(m, attn, 2.5 * att, 1.5 * ctx.nbytes, 2, par=ctx.out_el)
        e.gpu(m, "mem", 0.0, 2 * ctx.nbytes, 4)
        e.host("kern", m * 10)
        e.host("bnode", m * 8)


@register_lowering_rule("sdpa", autocast="lowp")
def sdpa_rule(ctx: LayerCtx, e: Emitter) -> None:
    """``F.scaled_dot_product_attention``: one fused kernel; backward 2 (2.5x the FLOPs).
    Under torch 1.x, which has no such function, the same attention ran as its math path
    (:func:`_math_attention`)."""
    if ctx.torch_major == 1:
        _math_attention(ctx, e)
        return
    attn = attn_class(ctx)
    fwd(ctx, e, attn, ctx.flops, ctx.nbytes, par=ctx.out_el)
    bwd(ctx, e, attn, 2.5 * ctx.flops, 2 * ctx.nbytes, 2, par=ctx.out_el)


def _math_attention(ctx: LayerCtx, e: Emitter) -> None:
    """Attention as models wrote it before ``F.scaled_dot_product_attention`` (torch 2.0;
    timm, HF transformers under torch 1.x): ``(q @ k.transpose(-2, -1)) * scale``,
    ``softmax(-1)``, ``@ v``, materialising the S = batch x heads x L x S_kv score matrix.
    Under autocast the softmax is on the fp32 list: a cast of the scores up to fp32, the
    fp32 softmax, a cast down for the 16-bit ``@ v`` (6 + 8 + 6 bytes per score).  Training:
    each op's backward (two GEMMs per matmul, the casts, the fp32 softmax backward reading
    output and gradient, the scale).  Units: FLOPs and bytes per call."""
    f, db = ctx.feat, float(ctx.db)
    sc = float(f.get("attn_numel", 0.0))                 # scores per call
    hd = float(f.get("head_dim", 0.0))
    dv = float(f.get("macs", 0.0)) / sc - hd if sc else 0.0
    kv = float(f.get("kv_len", 0.0))
    qkv, out = ctx.in_el_all * db, ctx.out_bytes
    mm = mm_class(ctx)
    up = ctx.autocast and ctx.low                         # softmax in fp32 under autocast
    sm_f = sc * (db + 4.0) + 8.0 * sc + sc * (4.0 + db) if up else 2.0 * sc * db
    sm_b = sc * (db + 4.0) + 12.0 * sc + sc * (4.0 + db) if up else 3.0 * sc * db
    sm_k = 3 if up else 1
    e.host("disp", ctx.n * 3)                            # mul, softmax, second matmul
    e.host("cast", ctx.n * (2 if up else 0))
    fwd(ctx, e, mm, 2.0 * sc * hd, 2.0 * qkv / 3.0 + sc * db, par=1.0, nd=kv)
    fwd(ctx, e, "mem", sc, 2.0 * sc * db)                # * scale
    fwd(ctx, e, "mem", 5.0 * sc, sm_f, sm_k)             # softmax (+ its casts)
    fwd(ctx, e, mm, 2.0 * sc * dv, sc * db + qkv / 3.0 + out, par=1.0, nd=dv)
    # backward: d(attn), dv; the softmax (and casts); the scale; dq, dk
    bwd(ctx, e, mm, 4.0 * sc * dv, 2.0 * (sc * db + qkv / 3.0 + out), 2, nodes=1, par=1.0)
    bwd(ctx, e, "mem", 5.0 * sc, sm_b, sm_k, nodes=sm_k)
    bwd(ctx, e, "mem", sc, 2.0 * sc * db, 1, nodes=1)
    bwd(ctx, e, mm, 4.0 * sc * hd, 2.0 * (sc * db + 2.0 * qkv / 3.0), 2, nodes=1, par=1.0)


@register_lowering_rule("rnn", autocast="lowp")
def rnn_rule(ctx: LayerCtx, e: Emitter) -> None:
    """LSTM/GRU/RNN (cuDNN): 2 GEMM kernels per layer and direction; backward twice that."""
    k = 2 * int(ctx.hp.get("num_layers", 1)) * (2 if ctx.hp.get("bidirectional") else 1)
    mm = mm_class(ctx)
    fwd(ctx, e, mm, ctx.flops, ctx.nbytes, k, par=ctx.out_el)
    bwd(ctx, e, mm, 2 * ctx.flops, 2 * ctx.nbytes, 2 * k, par=ctx.out_el)
