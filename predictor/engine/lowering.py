"""Lower a :class:`~predictor.engine.workload.Workload` to what the GPU and the host actually do.

Eager PyTorch on CUDA turns each captured layer into host work (a Python module call or
functional op, its dispatches and kernel launches, autograd nodes in training, the optimizer's
foreach loops) and GPU work (kernels, each with FLOPs of a compute class and bytes moved).
This module counts both from shapes alone, following CUDA's choices rather than the CPU's:

* fp32 matmuls run on FP32 CUDA cores (PyTorch's default ``allow_tf32=False`` for matmul),
  fp32 convolutions on TF32 tensor cores (cuDNN's default ``allow_tf32=True``), autocast
  bf16/fp16 matmul/conv on 16-bit tensor cores (fp16 at the datasheet's FP32-accumulate fp16
  rate), with the cast kernels autocast really runs
  (:func:`~predictor.engine.rules.core.autocast_casts`: an fp32 input
  of a low-precision op, each weight once per forward, a 16-bit input of an fp32-list op);
  16-bit dense convolutions in NCHW pay cuDNN's NHWC transposes, ``channels_last`` does not;
* grouped/depthwise convolutions are their own (memory-bound) class;
* ``nn.TransformerEncoderLayer`` / ``nn.MultiheadAttention`` on the inference fast path are
  one native call whose internal kernels cost launches but no Python;
* training: backward kernels per layer family (2 GEMMs + bias reduction for Linear/conv, one
  kernel for elementwise, two for LayerNorm, the dense gradient of an Embedding table, ...),
  with the traffic of what the kernels actually read and write: training BatchNorm makes 3
  activation passes forward and 5 backward (inference: 2), a unary elementwise op 3 backward,
  add/sub of two full tensors one accumulation add at the fork, mul/div of two full tensors
  two products (a scalar or broadcast operand makes them unary)
  and the optimizer as foreach kernels over the parameter tensors (``torch.optim``'s
  default on CUDA), SGD-momentum 32 B/parameter, Adam 72, AdamW 80 bytes of traffic; a
  GradScaler adds an unscale + inf-check foreach pass over the gradients.

Each layer family's counts are one rule of :mod:`predictor.engine.rules` (registered with
``register_lowering_rule``; users can add their own); this module builds each layer's
:class:`~predictor.engine.rules.LayerCtx` from its config and features, applies the rule,
and adds the call's own host work, the optimizer and the GradScaler
(:mod:`predictor.engine.rules.step`).  Counts are per call of the whole batch.  A layer the
rules cannot price -- not captured, no family or rule for its type, or a feature function
that raised -- is lowered as one memory-bound kernel over its tensor bytes and *named* in
``LoweredWorkload.unpriced`` (with the reason); ``LoweredWorkload.unknown`` lists the types
without a rule.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

import numpy as np

from predictor.engine.autocast import autocast_flow
from predictor.engine.rules import (
    CLASSES,
    HOST_FEATURES,
    LayerCtx,
    UnpricedLayer,
    family_of,
    lower_layer,
    lowering_rule,
)
from predictor.engine.rules.memory_bound import ew_arity
from predictor.engine.rules.step import (
    lower_call,
    lower_grad_scaler,
    lower_optimizer,
    param_totals,
)
from predictor.engine.workload import Workload
from profiling.features.api import DTYPE_BYTES, layer_features

__all__ = ["CLASSES", "HOST_FEATURES", "LoweredWorkload", "UnpricedLayer", "family_of",
           "layer_ctx", "lower", "torch_major"]

C = {name: i for i, name in enumerate(CLASSES)}
_H = {name: i for i, name in enumerate(HOST_FEATURES)}
#: what a feature function may raise on shapes it does not expect (recorded by name in
#: ``LoweredWorkload.unpriced``, the layer priced by the memory fallback)
FEATURE_ERRORS = (ArithmeticError, AttributeError, LookupError, TypeError, ValueError)


@dataclass
class LoweredWorkload:
    """Host event counts and GPU kernel entries of one workload (per call of the batch)."""

    host: np.ndarray                 # len(HOST_FEATURES) event counts
    cls: np.ndarray                  # int, per GPU entry: index into CLASSES
    flops: np.ndarray                # FLOPs per entry (per call of the entry's kernels, x mult)
    bytes: np.ndarray                # bytes moved per entry (x mult)
    kern: np.ndarray                 # kernels per entry (x mult)
    par: np.ndarray                  # FLOPs per kernel of matmul-like entries (0: exempt)
    conv_kern: np.ndarray            # of which convolution kernels (cuDNN extra time)
    mult: np.ndarray                 # calls of the entry per workload call
    layer: np.ndarray                # index of the workload layer (-1: optimizer, call)
    ndim: np.ndarray                 # output width N (features, channels) of GEMM/conv entries
                                     # whose tiles quantise it (0: none): forward and dX kernels
    unknown: list = field(default_factory=list)   # layer types without a lowering rule
    layer_host: np.ndarray | None = None           # per layer: host counts (n_layers x H)
    fp16: bool = False                             # fp16 autocast: 16-bit classes at fp16 peak
    #: layers priced by the generic memory fallback, by name and reason (no rule, not
    #: captured, or their feature function raised): warn about them and widen the interval
    unpriced: tuple = ()


class _Acc:
    """GPU entries and host counts of a whole workload."""

    def __init__(self, n_layers: int):
        self.rows: list = []
        self.host = np.zeros(len(HOST_FEATURES))
        self.layer_host = np.zeros((n_layers, len(HOST_FEATURES)))

    def at(self, li: int) -> _LayerEmitter:
        """An :class:`~predictor.engine.rules.Emitter` writing for layer ``li`` (-1: none)."""
        return _LayerEmitter(self, li)


class _LayerEmitter:
    """Emitter of one workload layer (see :class:`predictor.engine.rules.Emitter`)."""

    __slots__ = ("acc", "li")

    def __init__(self, acc: _Acc, li: int):
        self.acc, self.li = acc, li

    def gpu(self, mult, cls, flops, nbytes, kern=1, conv=0, par=0.0, ndim=0.0) -> None:
        """``par`` truthy: a matmul-like kernel group whose throughput ramps up with its
        FLOPs per kernel (partial waves); stored as FLOPs per kernel.  ``ndim``: the output
        width of its GEMMs (0: none), for the physics model's tile quantisation."""
        if mult > 0 and kern > 0:
            self.acc.rows.append((C[cls], float(flops), float(nbytes), float(kern), float(conv),
                                  float(mult), self.li, float(flops) / kern if par else 0.0,
                                  float(ndim)))

    def host(self, name, count) -> None:
        j = _H[name]
        self.acc.host[j] += count
        if self.li >= 0:
            self.acc.layer_host[self.li, j] += count


def _features(cfg) -> tuple[dict, str]:
    """(features, '') or ({}, the error) of one layer config."""
    try:
        return layer_features(cfg), ""
    except FEATURE_ERRORS as exc:
        return {}, f"its feature function raised {type(exc).__name__}: {exc}"


def _prefixed(names, prefixes) -> float:
    """Share of a config's calls made under one of ``prefixes`` (module paths)."""
    if not prefixes or not names:
        return 0.0
    hit = sum(1 for n in names if any(n == p or n.startswith(p + ".") or n.startswith(p + ":")
                                      for p in prefixes))
    return hit / len(names)


def layer_ctx(wl, cfg, f: dict, family: str | None, w: Workload, in32: bool = False) -> LayerCtx:
    """The :class:`~predictor.engine.rules.LayerCtx` of workload layer ``wl`` (config ``cfg``
    as it runs, features ``f``, lowering ``family``) in workload ``w``."""
    db = DTYPE_BYTES.get(cfg.dtype, 4)
    ins, outs = cfg.input_shapes, cfg.output_shapes
    n_out = sum(math.prod(s) for s in outs)
    n_in = sum(math.prod(s) for s in ins)
    ch = 1 if family == "conv" else -1
    b = f.get("bytes_read", 0) + f.get("bytes_written", 0)
    n = float(wl.count)
    mods = len({x.split(":", 1)[0] for x in wl.names}) if wl.names else n
    out_el = float(n_out)
    return LayerCtx(
        type=cfg.type, n=n, flops=float(f.get("flops", 0)),
        nbytes=float(b) if b else float((n_in + n_out) * db),
        params=float(f.get("params", wl.module_params)), out_el=out_el,
        in_el=float(sum(math.prod(s) for s in ins[:1])), in_el_all=float(n_in),
        cin=float(ins[0][ch]) if ins and len(ins[0]) > 1 else 0.0,
        cout=float(outs[0][ch]) if outs and len(outs[0]) > 1 else 0.0,
        rows=out_el / max(float(outs[0][-1]), 1.0) if outs and outs[0] else 1.0,
        db=db, low=cfg.dtype in ("bf16", "fp16"), train=w.mode in ("train_step",
                                                                    "forward_backward"),
        autocast=w.dtype in ("bf16", "fp16"),
        nchw=getattr(w, "memory_format", "contiguous") != "channels_last",
        in_ndim=len(ins[0]) if ins else 0, hp=cfg.hparams_dict(), feat=f, arity=ew_arity(cfg),
        modules=float(min(n, max(mods, 1))),
        fused_enc=_prefixed(wl.names, w.fused_encoder_prefixes),
        fused_mha=_prefixed(wl.names, w.fused_mha_prefixes), in32=bool(in32),
        torch_major=torch_major(getattr(w, "torch_version", None)))


def lower(w: Workload) -> LoweredWorkload:
    """Count host events and GPU kernels of one call of ``w`` (see the module docstring)."""
    train = w.mode in ("train_step", "forward_backward")
    lowp = w.dtype in ("bf16", "fp16")
    acc = _Acc(len(w.layers))
    fams = [family_of(x.config.type) if x.supported else None for x in w.layers]
    in_fp32, out_fp32 = autocast_flow(w.layers, fams, w.batch) if lowp else ([], [])
    unknown, unpriced = [], []
    for li, wl in enumerate(w.layers):
        cfg, fam = wl.config, fams[li]
        rule = lowering_rule(fam)
        if lowp and not out_fp32[li] and cfg.dtype not in ("bf16", "fp16"):
            cfg = replace(cfg, dtype=w.dtype)    # tagged fp32 by a mis-promotion upstream
        f: dict = {}
        reason = ""
        if not wl.supported:
            reason = "not captured (no feature function for the module)"
        elif fam is None:
            reason = f"no lowering family for layer type {cfg.type!r}"
        elif rule is None:
            reason = f"no lowering rule for family {fam!r}"
        else:
            f, reason = _features(cfg)
        ctx = layer_ctx(wl, cfg, f, fam, w, bool(in_fp32[li]) if lowp else False)
        if reason:
            if rule is None:
                unknown.append(cfg.type)
            unpriced.append(UnpricedLayer(cfg.type, fam, tuple(wl.names), ctx.n, ctx.nbytes,
                                          reason, li))
            rule = None
        lower_layer(ctx, acc.at(li), rule)

    e = acc.at(-1)
    lower_call(e, isolated=w.isolated, train=train, containers=float(_containers(w)),
               views=float(w.zero_cost_ops), fused_layers=float(len(w.fused_encoder_prefixes)))
    if w.mode == "train_step":
        totals = param_totals(w.param_numels)
        lower_optimizer(e, w.optimizer or "sgd", *totals,
                        torch_major=torch_major(getattr(w, "torch_version", None)))
        if getattr(w, "grad_scaler", False):
            lower_grad_scaler(e, *totals)
    if w.graph:                       # a CUDA graph replays kernels with no host work
        acc.host[:] = 0.0
        acc.layer_host[:] = 0.0
    rows = np.array(acc.rows, dtype=float).reshape(-1, 9)
    return LoweredWorkload(
        host=acc.host, cls=rows[:, 0].astype(int), flops=rows[:, 1], bytes=rows[:, 2],
        kern=rows[:, 3], par=rows[:, 7], conv_kern=rows[:, 4], mult=rows[:, 5],
        layer=rows[:, 6].astype(int), ndim=rows[:, 8],
        unknown=sorted(set(unknown)), layer_host=acc.layer_host, fp16=w.dtype == "fp16",
        unpriced=tuple(unpriced))


def torch_major(version) -> int | None:
    """Major torch version of a recorded condition ("1.13", "2.4.0+cu124"); None if unknown."""
    try:
        return int(str(version).split(".", 1)[0])
    except (TypeError, ValueError):
        return None


def _containers(w: Workload) -> int:
    """Non-leaf modules whose ``__call__`` runs per forward: the proper ancestors of every
    recorded module path (``"layer1.0.conv1"`` -> ``layer1``, ``layer1.0``), fused fast-path
    interiors excluded.  (A ``ModuleList`` is counted though it is never called.)"""
    seen = set()
    for wl in w.layers:
        for name in wl.names:
            path = name.split(":", 1)[0] if ":" in name else name.rsplit(".", 1)[0] \
                if "." in name else ""
            parts = path.split(".") if path else []
            for i in range(1, len(parts) + 1):
                seen.add(".".join(parts[:i]))
    for p in w.fused_encoder_prefixes:
        seen = {s for s in seen if not s.startswith(p + ".")}
    return len(seen)
