"""The lowering-rule registry: one rule per layer family, and the context a rule sees.

A *rule* turns one captured layer into what eager PyTorch on CUDA runs for it: GPU kernel
entries (compute class, FLOPs, bytes, kernels) and host events (dispatches, kernel launches,
autograd nodes), forward and -- in training -- backward.  It is a function
``rule(ctx: LayerCtx, e: Emitter) -> None`` registered for a family name::

    from predictor.engine.rules import register_lowering_rule, assign_layer_types, fwd, bwd

    @register_lowering_rule("my_scan", autocast=None)
    def _my_scan(ctx, e):
        fwd(ctx, e, "mem", ctx.flops, ctx.nbytes)            # one memory-bound kernel
        bwd(ctx, e, "mem", ctx.flops, 2 * ctx.nbytes, k=2)   # two in the backward

    assign_layer_types("my_scan", "MyScan")                 # LayerConfig.type -> family

Registering a family twice, or assigning a type that already has a family, raises
:class:`~profiling.errors.ExanteError` (as torch's ``register_flop_formula`` refuses a
duplicate).  A layer whose type has no family or no rule is lowered by
:func:`fallback_rule` (one memory-bound kernel over its tensor bytes) and *named* in
``LoweredWorkload.unpriced`` -- never priced silently.

The same rules price one layer in :func:`predictor.engine.lowering.lower` (sizes are floats)
and many layers of one kind at once in the vectorised NAS scorer (sizes are numpy arrays, one
value per layer slot), so a rule must compute its sizes with arithmetic only and branch only
on the context's flags (``train``, ``low``, ``nchw``, ``autocast``, ``type``, ``hp``,
``arity``).  Units: FLOPs, bytes and kernels per call; ``n`` calls per workload call.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, NamedTuple, Protocol

import numpy as np

from profiling.errors import ExanteError

__all__ = ["CLASSES", "HOST_FEATURES", "Emitter", "LayerCtx", "LoweringRule", "UnpricedLayer",
           "assign_layer_types", "autocast_casts", "bwd", "bwd_mm", "fallback_rule", "family_of",
           "fwd",           "layer_families", "lower_layer", "lowering_rule", "register_lowering_rule",
           "rules_with_autocast", "unregister_lowering_rule"]

#: GPU compute classes: each has an efficiency parameter against a datasheet peak
CLASSES = ("mm_fp32", "conv_tf32", "mm_bf16", "conv_bf16", "conv_grouped", "mem",
           "attn_fp32", "attn_bf16")
#: host event counts the physics model prices (seconds per event are fitted)
HOST_FEATURES = ("call", "container", "disp", "disp_train", "kern", "conv", "lt", "view", "mha",
                 "fused", "cast", "bnode", "step", "opt_tensor", "opt_op", "opt_launch")

#: a size: a float (one layer) or a numpy array (one value per layer slot, vectorised scorer)
Size = Any

AUTOCAST_LISTS = ("lowp", "fp32")


class Emitter(Protocol):
    """Where a rule writes: GPU kernel entries and host event counts of one layer (slot)."""

    def gpu(self, mult: Size, cls: str, flops: Size, nbytes: Size, kern: Size = 1,
            conv: Size = 0, par: Size = 0.0, ndim: Size = 0.0) -> None:
        """``mult`` calls of ``kern`` kernels of class ``cls`` doing ``flops`` FLOPs and
        moving ``nbytes`` bytes per call (``conv`` of them cuDNN kernels); ``par`` nonzero:
        a matmul-like group whose throughput ramps with FLOPs per kernel; ``ndim``: output
        width N of its GEMM tiles (0: none)."""

    def host(self, name: str, count: Size) -> None:
        """``count`` host events of kind ``name`` (one of :data:`HOST_FEATURES`)."""


@dataclass
class LayerCtx:
    """One captured layer (or many of one kind, as arrays) as a rule sees it.

    Sizes (float or array): ``n`` calls per workload call; ``flops`` FLOPs and ``nbytes``
    bytes read + written per call (the layer's features); ``params`` parameter elements;
    ``out_el`` elements of all outputs, ``in_el`` of the first input, ``in_el_all`` of all
    inputs; ``cin``/``cout`` the channel (conv: dim 1) or feature (last dim) width of the first
    input/output (0: a 1-d tensor); ``rows`` output elements per output feature; ``modules``
    distinct modules making the calls (autocast casts a weight once per module and forward);
    ``fused_enc``/``fused_mha`` shares of the calls inside PyTorch's fused inference fast
    paths; ``in32`` whether the input is fp32 under autocast.  Flags (scalars): ``db`` bytes
    per element of the layer's dtype, ``low`` it computes in 16-bit, ``train`` the workload
    runs a backward, ``autocast`` it runs under bf16/fp16 autocast, ``nchw`` not
    channels_last, ``type`` the ``LayerConfig.type``, ``in_ndim`` dimensions of the first
    input, ``hp`` hyper-parameters, ``feat`` the full feature dict, ``arity`` the elementwise
    operand form ('add2', 'mul2', 'add1', 'mul1' or ''), ``torch_major`` the major torch
    version the workload runs under (None: unknown, taken as current).
    """

    type: str
    n: Size
    flops: Size
    nbytes: Size
    params: Size
    out_el: Size
    in_el: Size
    in_el_all: Size
    cin: Size
    cout: Size
    rows: Size
    db: int
    low: bool
    train: bool
    autocast: bool = False
    nchw: bool = True
    in_ndim: int = 2
    hp: dict = field(default_factory=dict)
    feat: dict = field(default_factory=dict)
    arity: str = ""
    modules: Size = 1.0
    fused_enc: Size = 0.0
    fused_mha: Size = 0.0
    in32: Size = False
    torch_major: int | None = None

    @property
    def out_bytes(self) -> Size:
        """Bytes of all outputs at the layer's dtype."""
        return self.out_el * float(self.db)


Rule = Callable[[LayerCtx, Emitter], None]


@dataclass(frozen=True)
class LoweringRule:
    """A registered rule: ``family``, the function, and the autocast list its ops are on
    (``"lowp"``: matmul/conv/attention, cast to 16-bit; ``"fp32"``: norms, softmax, losses,
    cast up to fp32; None: runs in its input's dtype)."""

    family: str
    fn: Rule
    autocast: str | None = None


class UnpricedLayer(NamedTuple):
    """A layer priced by the generic memory fallback (:func:`fallback_rule`), by name.

    ``type``: its ``LayerConfig.type``; ``family``: its family (None: none assigned);
    ``names``: the module paths that ran it; ``calls``: calls per workload call; ``bytes``:
    bytes the fallback moves per forward call; ``reason``: why (no rule, not captured, or
    the exception text of its feature function); ``layer``: its index in ``Workload.layers``
    (-1: not a workload layer)."""

    type: str
    family: str | None
    names: tuple
    calls: float
    bytes: float
    reason: str
    layer: int = -1


_RULES: dict[str, LoweringRule] = {}
_TYPE_FAMILY: dict[str, str] = {}


def register_lowering_rule(family: str, *, autocast: str | None = None) -> Callable[[Rule], Rule]:
    """Decorator: register ``fn(ctx, e)`` as the lowering rule of layer family ``family``;
    ``autocast``: "lowp", "fp32" or None (see :class:`LoweringRule`).  A family registered
    twice raises :class:`ExanteError` (unregister first to replace a rule)."""
    if autocast not in (None, *AUTOCAST_LISTS):
        raise ExanteError(f"autocast must be None, 'lowp' or 'fp32', got {autocast!r}")

    def deco(fn: Rule) -> Rule:
        if family in _RULES:
            raise ExanteError(f"a lowering rule for family {family!r} is already registered "
                              f"({_RULES[family].fn.__module__}.{_RULES[family].fn.__name__})")
        _RULES[family] = LoweringRule(family, fn, autocast)
        return fn

    return deco


def unregister_lowering_rule(family: str) -> None:
    """Remove the rule of ``family`` and the layer types assigned to it (KeyError: none)."""
    del _RULES[family]
    for t in [t for t, f in _TYPE_FAMILY.items() if f == family]:
        del _TYPE_FAMILY[t]


def assign_layer_types(family: str, *types: str) -> None:
    """Lower the layers of ``types`` (``LayerConfig.type`` names) with ``family``'s rule.
    A type that already has a family raises :class:`ExanteError`."""
    for t in types:
        old = _TYPE_FAMILY.get(t)
        if old is not None:
            raise ExanteError(f"layer type {t!r} already belongs to family {old!r}")
    for t in types:
        _TYPE_FAMILY[t] = family


def family_of(type_name: str) -> str | None:
    """The lowering family of a ``LayerConfig.type`` (None: no family assigned)."""
    return _TYPE_FAMILY.get(type_name)


def lowering_rule(family: str | None) -> LoweringRule | None:
    """The rule registered for ``family`` (None: none)."""
    return None if family is None else _RULES.get(family)


def layer_families() -> dict[str, LoweringRule]:
    """A copy of the registry: family -> :class:`LoweringRule`."""
    return dict(_RULES)


def rules_with_autocast(kind: str) -> frozenset:
    """Families whose ops are on autocast's ``kind`` list ("lowp" or "fp32")."""
    return frozenset(f for f, r in _RULES.items() if r.autocast == kind)


# ------------------------------------------------------------------ helpers for rules
def fwd(ctx: LayerCtx, e: Emitter, cls: str, fl: Size, by: Size, k: Size = 1, conv: Size = 0,
        par: Size = 0.0, nd: Size = 0.0) -> None:
    """Forward kernels of every call: ``k`` kernels of class ``cls`` (``fl`` FLOPs, ``by``
    bytes per call), each one host launch."""
    e.gpu(ctx.n, cls, fl, by, k, conv, par, nd)
    e.host("kern", ctx.n * k)


def bwd(ctx: LayerCtx, e: Emitter, cls: str, fl: Size, by: Size, k: Size = 1, conv: Size = 0,
        nodes: Size = 1, par: Size = 0.0, nd: Size = 0.0) -> None:
    """Backward kernels (training only), with ``nodes`` autograd nodes per call."""
    if ctx.train:
        e.gpu(ctx.n, cls, fl, by, k, conv, par, nd)
        e.host("kern", ctx.n * k)
        e.host("bnode", ctx.n * nodes)


def bwd_mm(ctx: LayerCtx, e: Emitter, cls: str, fl: Size, by: Size, conv: Size = 0) -> None:
    """The dX (input-shaped output, width ``cin``) and dW (weight-shaped) kernels of a GEMM
    or convolution, each with the forward's FLOPs and bytes."""
    bwd(ctx, e, cls, fl, by, 1, conv, par=ctx.in_el, nd=ctx.cin)
    bwd(ctx, e, cls, fl, by, 1, conv, nodes=0, par=ctx.in_el)


def fallback_rule(ctx: LayerCtx, e: Emitter) -> None:
    """A layer without a rule: one memory-bound kernel over its tensor bytes forward, 1.5x
    that backward (reported in ``LoweredWorkload.unpriced``)."""
    fwd(ctx, e, "mem", 0.0, ctx.nbytes)
    bwd(ctx, e, "mem", 0.0, 1.5 * ctx.nbytes)


def autocast_casts(ctx: LayerCtx, e: Emitter, kind: str | None) -> None:
    """Cast kernels autocast really runs (CUDA policy): an op of the low-precision list
    casts an fp32 input (the model input, the output of an fp32-list op; inside a
    conv-BN-ReLU or Linear-GELU chain the input is already 16-bit) and its weights once per
    forward (the weight cache of leaf parameters); an fp32-list op casts a 16-bit input up.
    6 bytes per element (read fp32 + write 16-bit, or the reverse); training runs each
    cast's backward.  Host: autocast's wrapper checks every input and weight."""
    ins = ctx.in_el_all * 2.0 * 3
    kb = 2 if ctx.train else 1
    in32 = np.asarray(ctx.in32, float) if isinstance(ctx.in32, np.ndarray) else float(ctx.in32)
    if kind == "lowp" and ctx.low:
        has_p = ctx.params > 0
        e.host("cast", ctx.n * (1 + 1 * has_p))
        e.gpu(ctx.n, "mem", 0.0, ins * kb * in32, kb * in32)
        e.host("kern", ctx.n * kb * in32)
        e.gpu(ctx.modules, "mem", 0.0, ctx.params * 6.0 * kb, kb * has_p)
        e.host("kern", ctx.modules * kb * has_p)
    elif kind == "fp32":
        e.host("cast", ctx.n)
        e.gpu(ctx.n, "mem", 0.0, ins * kb * (1 - in32), kb * (1 - in32))
        e.host("kern", ctx.n * kb * (1 - in32))


def lower_layer(ctx: LayerCtx, e: Emitter, rule: LoweringRule | None) -> None:
    """Everything one layer costs: its Python-level calls (``disp``; the fused fast path
    costs none), autocast's casts, and its rule's kernels (``None``: the fallback)."""
    n_py = ctx.n * (1.0 - ctx.fused_enc)
    e.host("disp", n_py)
    if ctx.train:
        e.host("disp_train", n_py)
    if rule is None:
        fallback_rule(ctx, e)
        return
    if ctx.autocast:
        autocast_casts(ctx, e, rule.autocast)
    rule.fn(ctx, e)
