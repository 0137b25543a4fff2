"""Build measurable workloads: one captured layer alone, or a whole model (DESIGN.md §2, §4).

A :class:`ReplayCall` is a zero-argument ``fn`` that the protocol calls repeatedly, plus
``calls_per_invocation`` (how many layer/model calls one ``fn()`` performs: 1 in eager mode,
n for a CUDA graph holding n calls). Per-call numbers are the protocol's per-``fn()`` numbers
divided by ``calls_per_invocation``.

Modes (the same meaning everywhere, DESIGN §4):

- ``inference``: forward under ``torch.inference_mode()``; modules in ``eval()`` mode.
- ``forward_backward``: ``train()`` mode; parameter (and input) grads set to ``None``, forward,
  then ``backward`` — for a single layer, ``out.backward(ones_like(out))``; for a model, of the
  loss. For an isolated layer the floating inputs *require grad*, so the input-gradient
  kernel (which every layer but the first of a real network runs) is part of the measurement.
- ``train_step``: ``optimizer.zero_grad(set_to_none=True)`` -> forward (-> loss) -> backward ->
  ``optimizer.step()``; ``sgd`` = SGD(momentum=0.9), ``adam``/``adamw`` = torch defaults. A
  layer without parameters has no optimizer step: its train_step equals forward_backward
  (recorded in ``ReplayCall.info["note"]``).

``dtype="bf16"`` wraps the forward (and the loss) in ``torch.autocast(device.type,
dtype=torch.bfloat16)`` around an fp32 module; ``fp32`` uses no autocast.

``exec="graph"`` (CUDA only): n calls captured in one ``torch.cuda.CUDAGraph`` after a warm-up
on a side stream (as the torch docs require), n chosen so one replay lasts >= ``graph_target_s``
(1 ms). train_step in a graph uses ``capturable=True`` for adam/adamw; SGD is capturable as is.
If capture fails the builder raises :class:`GraphCaptureError` with the reason.

Modules: :mod:`~profiling.measure.workload` (:class:`ReplayCall`, shared helpers),
:mod:`~profiling.measure.graphs` (CUDA-graph execution), :mod:`~profiling.measure.layer_replay`
(one layer alone) and this one (the whole model, the reference workload); this module
re-exports the public names of the others.
"""

from __future__ import annotations

import torch
from torch import nn

from profiling.dataset.schema import check_run
from profiling.errors import ExanteError
from profiling.measure.graphs import graph_workload
from profiling.measure.layer_replay import build_layer_workload, resolve_functional
from profiling.measure.workload import (
    GraphCaptureError,
    ReplayCall,
    autocast_context,
    call_model,
    first_tensor,
    input_tensors,
    make_optimizer,
    materialize,
    min_embedding_rows,
    prepare_inputs,
    resolve_device,
    set_grads_none,
    sync,
    synth_like,
    synth_tensor,
)

__all__ = [
    "ReplayCall", "GraphCaptureError", "build_model_workload", "build_layer_workload", "reference_workload",
    "graph_workload", "resolve_functional", "resolve_device", "autocast_context", "sync", "make_optimizer",
    "materialize", "synth_like", "synth_tensor", "prepare_inputs", "call_model", "input_tensors",
    "min_embedding_rows",
]


def _loss_fn(out: torch.Tensor, device: torch.device):
    """Cross-entropy for classifier outputs (2-D, > 1 column), MSE otherwise; fixed targets."""
    if out.dim() == 2 and out.shape[1] > 1 and out.is_floating_point():
        target = torch.randint(0, out.shape[1], (out.shape[0],), device=device)
        return (lambda o: nn.functional.cross_entropy(o, target)), "cross_entropy"
    target = torch.zeros_like(out, dtype=out.dtype if out.is_floating_point() else torch.float32)
    return (lambda o: nn.functional.mse_loss(o, target)), "mse"


def build_model_workload(model: nn.Module, inputs, *, mode: str = "inference", dtype: str = "fp32",
                         optimizer: str | None = None, device=None, exec: str = "eager",
                         graph_target_s: float = 1e-3, graph_max_calls: int = 1024) -> ReplayCall:
    """The whole model per DESIGN §4: ``inference`` = one forward under inference_mode (eval);
    ``train_step`` = zero_grad(set_to_none) -> forward -> loss -> backward -> step (train);
    ``forward_backward`` = the same without the optimizer. The model is moved to ``device`` in
    place and its train/eval mode is set (callers restore it)."""
    optimizer = check_run(mode, exec, None, optimizer, default_optimizer="sgd")
    device = resolve_device(device)
    materialize(model, device)
    xs = prepare_inputs(inputs, device, int_high=min_embedding_rows(model) or 2)
    cache = False if exec == "graph" else None  # torch docs: no autocast cache inside graph capture
    ac = lambda: autocast_context(dtype, device, cache_enabled=cache)  # noqa: E731
    desc = f"model {type(model).__name__} {mode} {dtype} {exec}"
    opt_name = optimizer if mode == "train_step" else None
    info: dict = {}
    if mode == "inference":
        model.eval()

        def step():
            with torch.inference_mode(), ac():
                call_model(model, xs)
    else:
        model.train()
        with ac():
            probe = first_tensor(call_model(model, xs))
        if probe is None or not probe.is_floating_point():
            raise ExanteError(f"{type(model).__name__} output has no floating tensor to compute a loss on")
        loss_of, info["loss"] = _loss_fn(probe.detach(), device)
        del probe
        params = [p for p in model.parameters() if p.requires_grad]
        opt = make_optimizer(optimizer, params, capturable=(exec == "graph")) if (mode == "train_step" and params) else None

        def step():
            if opt is not None:
                opt.zero_grad(set_to_none=True)
            else:
                set_grads_none(params)
            with ac():
                loss = loss_of(first_tensor(call_model(model, xs)))
            loss.backward()
            if opt is not None:
                opt.step()

    if exec == "eager":
        return ReplayCall(fn=step, description=desc, exec="eager", device=str(device), info=info,
                        _keep=[xs], mode=mode, dtype=dtype, optimizer=opt_name)
    wl = graph_workload(step, device, target_s=graph_target_s, max_calls=graph_max_calls, description=desc,
                        keep=[xs], mode=mode, dtype=dtype, optimizer=opt_name)
    wl.info.update(info)
    return wl


# --------------------------------------------------------------------------- reference


def reference_workload(device=None, *, size: int | None = None) -> ReplayCall:
    """A fixed, GPU-bound reference (fp32 square matmul, 4096 on CUDA, 256 on CPU), re-measured
    every ~20 configs to detect drift (DESIGN §2 step 5)."""
    device = resolve_device(device)
    n = int(size or (4096 if device.type == "cuda" else 256))
    gen = torch.Generator(device="cpu").manual_seed(0)
    a = torch.randn(n, n, generator=gen).to(device)
    b = torch.randn(n, n, generator=gen).to(device)
    out = torch.empty(n, n, device=device)

    def fn():
        torch.mm(a, b, out=out)

    return ReplayCall(fn=fn, description=f"reference: fp32 matmul {n}x{n}", exec="eager", device=str(device),
                    info={"reference": f"matmul{n}"}, _keep=[a, b, out])


def __getattr__(name: str):
    """``Workload``: the old name of :class:`ReplayCall` (deprecated; warns)."""
    if name == "Workload":
        from profiling.measure import workload
        return workload.Workload
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
