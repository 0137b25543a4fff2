"""Lowering rules of the memory-bound families: norms, elementwise ops, copies, embeddings.

Each is one or a few kernels whose time is their traffic: what the kernels really read and
write.  Training BatchNorm makes 3 activation passes forward and 5 backward (inference: 2);
a unary elementwise op 3 backward; add/sub of two full tensors one accumulation add at the
fork; mul/div of two full tensors two products (a scalar or broadcast operand makes them
unary).  Units: FLOPs and bytes per call.
"""

from __future__ import annotations

import math

from predictor.engine.rules.core import Emitter, LayerCtx, bwd, fwd, register_lowering_rule

__all__ = ["BN_BWD", "BN_FWD_TRAIN", "EW_BWD", "EW_BWD_UNARY", "ew_arity"]

#: backward traffic of an elementwise op, x its forward traffic (inputs + output): add/sub of
#: two full tensors passes the gradient through, leaving one accumulation add at the fork (3
#: passes against 3); mul/div of two full tensors writes two products (6 against 3); with a
#: scalar or a broadcast operand, mul/div/add/sub are unary: grad x scalar (2 against 2),
#: add/sub nothing at all
EW_BWD = {"add2": 1.0, "mul2": 2.0, "add1": 0.0, "mul1": 1.0}
#: a unary op reads the gradient and its input or output and writes one gradient (3 passes
#: against 2)
EW_BWD_UNARY = 1.5
#: training BatchNorm reads its input twice (batch statistics, then normalise) and its
#: backward makes a reduction pass (dy, x) and an element pass (dy, x -> dx): 3 and 5
#: activation passes against inference's 2 (nbytes = input + output)
BN_FWD_TRAIN, BN_BWD = 1.5, 2.5


def ew_arity(cfg) -> str:
    """'add2'/'mul2' (two operands of the output's size), 'add1'/'mul1' (one), or '' (not
    an add/sub/mul/div) of a ``LayerConfig``."""
    t = cfg.type
    kind = "add" if t in ("add", "sub", "rsub") else "mul" if t in ("mul", "div",
                                                                    "true_divide") else ""
    if not kind or not cfg.output_shapes:
        return ""
    out = math.prod(cfg.output_shapes[0])
    full = sum(1 for s in cfg.input_shapes if math.prod(s) == out)
    return f"{kind}{2 if full >= 2 else 1}"


@register_lowering_rule("bn")
def bn_rule(ctx: LayerCtx, e: Emitter) -> None:
    """BatchNorm: one kernel forward (3 passes in training, 2 in inference), one backward
    (5 passes)."""
    fwd(ctx, e, "mem", ctx.flops, (BN_FWD_TRAIN if ctx.train else 1.0) * ctx.nbytes)
    bwd(ctx, e, "mem", ctx.flops, BN_BWD * ctx.nbytes)


def _elementwise(ctx: LayerCtx, e: Emitter) -> None:
    fwd(ctx, e, "mem", ctx.flops, ctx.nbytes)
    bwd(ctx, e, "mem", ctx.flops, EW_BWD.get(ctx.arity, EW_BWD_UNARY) * ctx.nbytes)


@register_lowering_rule("ew")
def ew_rule(ctx: LayerCtx, e: Emitter) -> None:
    """Elementwise ops, activations, reductions, pooling, upsampling: one kernel each way,
    the backward's traffic by :data:`EW_BWD` (``ctx.arity``)."""
    _elementwise(ctx, e)


@register_lowering_rule("softmax", autocast="fp32")
def softmax_rule(ctx: LayerCtx, e: Emitter) -> None:
    """Softmax / log-softmax: as an elementwise op, on autocast's fp32 list."""
    _elementwise(ctx, e)


def _norm(ctx: LayerCtx, e: Emitter) -> None:
    fwd(ctx, e, "mem", ctx.flops, ctx.nbytes)
    bwd(ctx, e, "mem", 2 * ctx.flops, 2 * ctx.nbytes, 2)


@register_lowering_rule("ln", autocast="fp32")
def ln_rule(ctx: LayerCtx, e: Emitter) -> None:
    """LayerNorm / RMSNorm: one kernel forward, two backward (dX, dgamma/dbeta)."""
    _norm(ctx, e)


@register_lowering_rule("gn", autocast="fp32")
def gn_rule(ctx: LayerCtx, e: Emitter) -> None:
    """GroupNorm / InstanceNorm: as LayerNorm."""
    _norm(ctx, e)


@register_lowering_rule("dropout")
def dropout_rule(ctx: LayerCtx, e: Emitter) -> None:
    """Dropout: nothing in eval mode or at p = 0; else one kernel each way writing the mask
    too (1.25x the traffic)."""
    if ctx.feat.get("training", 0) and ctx.feat.get("p", 0.5) > 0:
        fwd(ctx, e, "mem", ctx.flops, ctx.nbytes * 1.25)
        bwd(ctx, e, "mem", ctx.flops, ctx.nbytes * 1.25)


@register_lowering_rule("view")
def view_rule(ctx: LayerCtx, e: Emitter) -> None:
    """Identity, Flatten, views: no kernel, one autograd node in training."""
    if ctx.train:
        e.host("bnode", ctx.n)


@register_lowering_rule("copy")
def copy_rule(ctx: LayerCtx, e: Emitter) -> None:
    """cat, stack, contiguous, dtype/device casts, padding, gathers: one copy each way."""
    fwd(ctx, e, "mem", 0.0, ctx.nbytes)
    bwd(ctx, e, "mem", 0.0, ctx.nbytes)


@register_lowering_rule("factory")
def factory_rule(ctx: LayerCtx, e: Emitter) -> None:
    """zeros, ones, arange, rand...: one fill kernel, no backward."""
    fwd(ctx, e, "mem", 0.0, ctx.nbytes)


@register_lowering_rule("embedding")
def embedding_rule(ctx: LayerCtx, e: Emitter) -> None:
    """Embedding: a gather forward; training: the dense table gradient (zero-fill of the
    fp32 table + sort/segment kernels + scatter, 5 kernels)."""
    fwd(ctx, e, "mem", 0.0, ctx.nbytes)
    if ctx.train:
        bwd(ctx, e, "mem", 0.0, ctx.params * 4.0 + 2 * ctx.out_bytes, 5)


@register_lowering_rule("loss", autocast="fp32")
def loss_rule(ctx: LayerCtx, e: Emitter) -> None:
    """Losses: two kernels (elementwise + reduction) each way."""
    fwd(ctx, e, "mem", ctx.flops, ctx.nbytes, 2)
    bwd(ctx, e, "mem", ctx.flops, ctx.nbytes, 2)
