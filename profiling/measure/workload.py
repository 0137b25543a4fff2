"""What the protocol calls: a :class:`ReplayCall` (``fn()`` performing ``calls_per_invocation``
layer/model calls) and the helpers every builder shares: device, autocast, optimizer,
materialising ``meta`` parameters and synthetic inputs.
"""

from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass, field
from typing import Any, Callable

import torch
from torch import nn

from profiling.dataset.schema import OPTIMIZERS, check_choice
from profiling.errors import ExanteError

__all__ = [
    "ReplayCall", "GraphCaptureError", "TORCH_DTYPES", "resolve_device", "autocast_context", "sync", "make_optimizer",
    "materialize", "first_tensor", "min_embedding_rows", "synth_like", "synth_tensor", "prepare_inputs",
    "call_model", "input_tensors", "set_grads_none", "torch_dtype",
]

logger = logging.getLogger(__name__)

TORCH_DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16,
                 "float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16,
                 "fp64": torch.float64, "float64": torch.float64,
                 "int64": torch.int64, "long": torch.int64, "int32": torch.int32, "int": torch.int32,
                 "bool": torch.bool, "uint8": torch.uint8, "int8": torch.int8}


class GraphCaptureError(ExanteError):
    """A workload cannot be captured in a CUDA graph (the reason is in the message)."""


@dataclass
class ReplayCall:
    """Something the protocol can call: ``fn()`` performs ``calls_per_invocation`` calls."""

    fn: Callable[[], Any]
    calls_per_invocation: int = 1
    description: str = ""
    exec: str = "eager"
    mode: str = "inference"
    dtype: str = "fp32"
    optimizer: str | None = None
    device: str = "cpu"
    info: dict = field(default_factory=dict)
    _keep: list = field(default_factory=list, repr=False)  # objects that must stay alive (graph, tensors)

    def __call__(self):
        return self.fn()

    def close(self) -> None:
        """Drop references to the graph, tensors and module copy (frees device memory)."""
        self._keep.clear()
        self.fn = _closed


def _closed():
    raise ExanteError("this workload was closed")


# --------------------------------------------------------------------------- helpers


def resolve_device(device=None) -> torch.device:
    """The device to measure on: ``device``, else CUDA when available, else CPU (a bare
    ``cuda`` gets the current index); an ExanteError when CUDA is asked for but absent."""
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ExanteError(f"device {device!r} requested but CUDA is not available here")
    if dev.type == "cuda" and dev.index is None:
        dev = torch.device("cuda", torch.cuda.current_device())
    return dev


def autocast_context(dtype: str, device: torch.device, *, cache_enabled: bool | None = None):
    """``torch.autocast`` for bf16/fp16, a no-op for fp32.

    ``cache_enabled=False`` is what the torch docs require inside CUDA-graph capture (the
    autocast weight-cast cache must not outlive or straddle a captured region); eager replays
    keep torch's default (``None``: the cache is on, as in users' code)."""
    check_choice("dtype", dtype, ("fp32", "bf16", "fp16"))
    if dtype == "fp32":
        return contextlib.nullcontext()
    if cache_enabled is None:
        return torch.autocast(device.type, dtype=TORCH_DTYPES[dtype])
    return torch.autocast(device.type, dtype=TORCH_DTYPES[dtype], cache_enabled=bool(cache_enabled))


def sync(device: torch.device) -> None:
    """Wait for the work queued on ``device`` (``torch.cuda.synchronize``); a no-op on CPU."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def make_optimizer(name: str | None, params, *, capturable: bool = False) -> torch.optim.Optimizer:
    """``sgd`` = SGD(momentum=0.9) (torch default lr), ``adam``/``adamw`` = torch defaults."""
    check_choice("optimizer", name, OPTIMIZERS)
    params = [p for p in params if p.requires_grad]
    if name == "sgd":
        return torch.optim.SGD(params, lr=1e-3, momentum=0.9)
    cls = torch.optim.Adam if name == "adam" else torch.optim.AdamW
    if capturable:
        return cls(params, capturable=True)
    return cls(params)


def _has_meta(module: nn.Module) -> bool:
    return any(t.is_meta for t in list(module.parameters()) + list(module.buffers()))


def materialize(module: nn.Module, device: torch.device) -> nn.Module:
    """Move ``module`` to ``device`` in place; parameters on ``meta`` are re-created there with
    ``to_empty`` and re-initialised (``reset_parameters`` where a submodule has one, else a
    small normal init; BatchNorm-like running stats reset; every other buffer zeroed, never
    left as uninitialised memory: a garbage index buffer would be an out-of-bounds access on
    the GPU, which poisons the whole CUDA context)."""
    if not _has_meta(module):
        return module.to(device)
    module.to_empty(device=device)
    with torch.no_grad():
        for b in module.buffers():
            b.zero_()
        done: set[int] = set()
        for sub in module.modules():
            if hasattr(sub, "reset_parameters") and callable(sub.reset_parameters):
                try:
                    sub.reset_parameters()
                    done.update(id(p) for p in sub.parameters(recurse=False))
                except (RuntimeError, ValueError, TypeError, NotImplementedError, AttributeError) as exc:
                    # a user module's own init failing: its parameters get the small normal init below
                    logger.debug("%s.reset_parameters() failed (%s); normal(0, 0.02) init instead",
                                 type(sub).__name__, exc)
            if hasattr(sub, "reset_running_stats") and callable(sub.reset_running_stats):
                try:
                    sub.reset_running_stats()
                except (RuntimeError, ValueError, TypeError, NotImplementedError, AttributeError) as exc:
                    logger.debug("%s.reset_running_stats() failed (%s); buffers left zeroed",
                                 type(sub).__name__, exc)
        for p in module.parameters():
            if id(p) not in done and p.is_floating_point():
                p.normal_(0.0, 0.02)
    return module


def first_tensor(out) -> torch.Tensor | None:
    """The first tensor of a model output: the tensor itself, its ``.logits``, or the first found
    depth-first in a dict/list/tuple; None when there is none."""
    if isinstance(out, torch.Tensor):
        return out
    logits = getattr(out, "logits", None)
    if isinstance(logits, torch.Tensor):
        return logits
    if isinstance(out, dict):
        out = list(out.values())
    if isinstance(out, (list, tuple)):
        for o in out:
            t = first_tensor(o)
            if t is not None:
                return t
    return None


def min_embedding_rows(module: nn.Module) -> int | None:
    """The smallest ``num_embeddings`` of the module's Embedding/EmbeddingBag layers (a bound for
    synthetic ids), or None when it has none."""
    rows = [m.num_embeddings for m in module.modules() if isinstance(m, (nn.Embedding, nn.EmbeddingBag))]
    return min(rows) if rows else None


def synth_like(t: torch.Tensor, device: torch.device, *, int_high: int = 2) -> torch.Tensor:
    """A real tensor like ``t`` on ``device`` (randn for floats, randint for ints, random bools)."""
    return synth_tensor(tuple(t.shape), t.dtype, device, int_high=int_high)


def synth_tensor(shape, dtype: torch.dtype, device: torch.device, *, int_high: int = 2) -> torch.Tensor:
    """A random tensor of ``shape`` and ``dtype`` on ``device``: randn for floats, random bools,
    integers in ``[0, int_high)``."""
    shape = tuple(int(s) for s in shape)
    if dtype == torch.bool:
        return torch.rand(shape, device=device) > 0.5
    if dtype.is_floating_point or dtype.is_complex:
        return torch.randn(shape, device=device, dtype=dtype)
    return torch.randint(0, max(1, int(int_high)), shape, device=device, dtype=dtype)


def prepare_inputs(inputs, device: torch.device, *, int_high: int = 2):
    """Inputs on ``device``: a tuple of positional tensors, or a dict of keyword tensors.

    ``meta`` tensors become synthetic real ones (randn; integer ids below ``int_high``); a tuple
    of ints is a shape for a single float input (DESIGN §4).
    """
    def conv(x):
        if isinstance(x, torch.Tensor):
            return synth_like(x, device, int_high=int_high) if x.is_meta else x.detach().to(device)
        return x

    if isinstance(inputs, torch.Tensor):
        return (conv(inputs),)
    if isinstance(inputs, dict):
        return {k: conv(v) for k, v in inputs.items()}
    if isinstance(inputs, (tuple, list)) and inputs and all(isinstance(d, int) and not isinstance(d, bool)
                                                             for d in inputs):
        if min(inputs) < 1:
            raise ExanteError(f"input shape {tuple(inputs)} must have positive dimensions")
        return (torch.randn(tuple(inputs), device=device),)
    if isinstance(inputs, (tuple, list)):
        return tuple(conv(x) for x in inputs)
    raise ExanteError(f"inputs must be a tensor, a tuple of tensors, a dict of tensors or a shape tuple, "
                      f"got {type(inputs).__name__}")


def call_model(model: nn.Module, xs):
    """``model(**xs)`` for a dict of inputs, ``model(*xs)`` for a tuple."""
    return model(**xs) if isinstance(xs, dict) else model(*xs)


def input_tensors(xs) -> list:
    """The tensors among ``xs`` (a tuple's items or a dict's values), in order."""
    vals = xs.values() if isinstance(xs, dict) else xs
    return [x for x in vals if isinstance(x, torch.Tensor)]


def set_grads_none(tensors) -> None:
    """Set ``.grad = None`` on each tensor (drops the gradients; frees their memory)."""
    for t in tensors:
        t.grad = None


def torch_dtype(name) -> torch.dtype | None:
    """The ``torch.dtype`` of a name (``"fp32"``, ``"bfloat16"``, ``"torch.int64"`` ...) or dtype;
    None for None or an unknown name."""
    if isinstance(name, torch.dtype):
        return name
    if name is None:
        return None
    s = str(name).replace("torch.", "")
    return TORCH_DTYPES.get(s)


def __getattr__(name: str):
    """``Workload``: the old name of :class:`ReplayCall` (renamed in issue 19: the engine's
    :class:`predictor.engine.workload.Workload` is the one thing called a workload)."""
    if name == "Workload":
        import warnings
        warnings.warn(f"{__name__}.Workload was renamed ReplayCall", DeprecationWarning,
                      stacklevel=2)
        return ReplayCall
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
