"""Lowering of what a whole call adds beyond its layers: the model call, the optimizer step,
the GradScaler.

The optimizer runs as foreach kernels over the trainable parameter tensors (``torch.optim``'s
default on CUDA): SGD-momentum 32 B/parameter, Adam 72, AdamW 80 bytes of traffic; torch 1.x
ran a per-tensor loop (one aten call and kernel per op and tensor).  A GradScaler adds an
unscale + inf-check foreach pass over the gradients.  Sizes may be floats (one workload) or
numpy arrays (one value per design, vectorised scorer); a workload without parameter
tensors (``n_tensors`` 0) adds nothing.  Units: elements, bytes, kernels per call.
"""

from __future__ import annotations

import numpy as np

from predictor.engine.rules.core import Emitter, Size
from profiling.errors import ExanteError

__all__ = ["CHUNK", "FOREACH_CHUNKS", "FOREACH_TENSORS", "LOOP_OPS", "OPTIMIZER_TRAFFIC",
           "foreach_launches", "lower_grad_scaler", "lower_optimizer", "lower_call",
           "param_totals"]

#: optimizer: (foreach ops per step, bytes of traffic per parameter at fp32)
OPTIMIZER_TRAFFIC = {"sgd": (3, 32.0), "adam": (7, 72.0), "adamw": (8, 80.0)}
#: torch 1.x per-tensor loop: ops per tensor
LOOP_OPS = {"sgd": 3, "adam": 9, "adamw": 10}
FOREACH_TENSORS = 48          #: tensors per multi_tensor_apply launch (depth 3-4 lists)
FOREACH_CHUNKS = 320          #: 65536-element chunks per launch
CHUNK = 65536                 #: elements per multi_tensor_apply chunk


def param_totals(numels) -> tuple[Size, Size, Size]:
    """(tensors, 65536-element chunks summed per tensor, elements) of parameter tensors
    ``numels`` (1-d: one workload; 2-d: one row per design, 0 = no tensor)."""
    a = np.asarray(numels, dtype=float)
    if a.ndim <= 1:
        return float(len(a)), float(np.ceil(a / CHUNK).sum()), float(a.sum())
    return ((a > 0).sum(axis=1).astype(float), np.ceil(a / CHUNK).sum(axis=1),
            a.sum(axis=1))


def foreach_launches(n_tensors: Size, chunks: Size) -> Size:
    """Kernel launches of one foreach op over the tensors (by tensor count or by chunks)."""
    return np.maximum(np.ceil(np.asarray(n_tensors, float) / FOREACH_TENSORS),
                      np.ceil(np.asarray(chunks, float) / FOREACH_CHUNKS))


def lower_optimizer(e: Emitter, optimizer: str, n_tensors: Size, chunks: Size, elements: Size,
                    torch_major: int | None = None) -> None:
    """``torch.optim`` step: foreach kernels (torch >= 2; ``torch_major`` 1: the per-tensor
    loop) over ``n_tensors`` tensors of ``elements`` parameters in ``chunks`` chunks."""
    if optimizer not in OPTIMIZER_TRAFFIC:
        raise ExanteError(f"unknown optimizer {optimizer!r}; accepted: "
                          f"{', '.join(OPTIMIZER_TRAFFIC)}")
    ops, per_param = OPTIMIZER_TRAFFIC[optimizer]
    if torch_major == 1:
        # every (op, tensor) pair is one Python-level aten call and one kernel
        n = LOOP_OPS[optimizer] * n_tensors
        e.host("disp", n)
        e.host("kern", n)
        e.gpu(1.0, "mem", 0.0, per_param * elements, n)
        return
    has = np.asarray(n_tensors) > 0
    launches = foreach_launches(n_tensors, chunks)
    e.host("opt_tensor", n_tensors)
    e.host("opt_op", ops * has)
    e.host("opt_launch", ops * launches)
    e.gpu(1.0, "mem", 0.0, per_param * elements, ops * launches)


def lower_grad_scaler(e: Emitter, n_tensors: Size, chunks: Size, elements: Size) -> None:
    """torch.cuda.amp.GradScaler in an fp16 train step: scale the loss (1 kernel), unscale +
    inf/NaN check of every gradient (foreach kernels, read + write 4 B/param), the found-inf
    read before ``step`` (host waits on the GPU) and ``update`` (1 kernel)."""
    has = np.asarray(n_tensors) > 0
    launches = foreach_launches(n_tensors, chunks)
    e.host("opt_tensor", n_tensors)
    e.host("opt_op", 3.0 * has)
    e.host("opt_launch", (launches + 2) * has)
    e.gpu(1.0, "mem", 0.0, 8.0 * elements, launches)
    e.gpu(1.0, "mem", 0.0, 0.0, 2 * has)


def lower_call(e: Emitter, *, isolated: bool, train: bool, containers: Size, views: Size,
               fused_layers: Size) -> None:
    """Host events of the call itself: the model's ``__call__`` and its ``containers``
    (non-leaf modules; none for an ``isolated`` layer replay), ``views`` view/metadata ops,
    each fused encoder layer's Python call + native op, and ``step`` (backward +
    ``zero_grad``) in training."""
    if not isolated:
        e.host("call", 1.0)
        e.host("container", containers)
    e.host("view", views)
    e.host("disp", fused_layers)
    e.host("fused", fused_layers)
    if train and not isolated:
        e.host("step", 1.0)
