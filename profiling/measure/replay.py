"""Build measurable workloads: one captured layer alone, or a whole model (DESIGN.md §2, §4).

A :class:`Workload` is a zero-argument ``fn`` that the protocol calls repeatedly, plus
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
  (recorded in ``Workload.info["note"]``).

``dtype="bf16"`` wraps the forward (and the loss) in ``torch.autocast(device.type,
dtype=torch.bfloat16)`` around an fp32 module; ``fp32`` uses no autocast.

``exec="graph"`` (CUDA only): n calls captured in one ``torch.cuda.CUDAGraph`` after a warm-up
on a side stream (as the torch docs require), n chosen so one replay lasts >= ``graph_target_s``
(1 ms). train_step in a graph uses ``capturable=True`` for adam/adamw; SGD is capturable as is.
If capture fails the builder raises :class:`GraphCaptureError` with the reason.
"""

from __future__ import annotations

import contextlib
import copy
import math
import time
import warnings
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import torch
from torch import nn

from profiling.dataset.schema import OPTIMIZERS, check_choice, check_run
from profiling.errors import ExanteError, UnsupportedLayerError

_TORCH_DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16,
                 "float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16,
                 "fp64": torch.float64, "float64": torch.float64,
                 "int64": torch.int64, "long": torch.int64, "int32": torch.int32, "int": torch.int32,
                 "bool": torch.bool, "uint8": torch.uint8, "int8": torch.int8}


class GraphCaptureError(ExanteError):
    """A workload cannot be captured in a CUDA graph (the reason is in the message)."""


@dataclass
class Workload:
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
        return torch.autocast(device.type, dtype=_TORCH_DTYPES[dtype])
    return torch.autocast(device.type, dtype=_TORCH_DTYPES[dtype], cache_enabled=bool(cache_enabled))


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def make_optimizer(name: str, params, *, capturable: bool = False) -> torch.optim.Optimizer:
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
                except Exception:
                    pass
            if hasattr(sub, "reset_running_stats") and callable(sub.reset_running_stats):
                with contextlib.suppress(Exception):
                    sub.reset_running_stats()
        for p in module.parameters():
            if id(p) not in done and p.is_floating_point():
                p.normal_(0.0, 0.02)
    return module


def _first_tensor(out) -> torch.Tensor | None:
    if isinstance(out, torch.Tensor):
        return out
    logits = getattr(out, "logits", None)
    if isinstance(logits, torch.Tensor):
        return logits
    if isinstance(out, dict):
        out = list(out.values())
    if isinstance(out, (list, tuple)):
        for o in out:
            t = _first_tensor(o)
            if t is not None:
                return t
    return None


def _min_embedding_rows(module: nn.Module) -> int | None:
    rows = [m.num_embeddings for m in module.modules() if isinstance(m, (nn.Embedding, nn.EmbeddingBag))]
    return min(rows) if rows else None


def synth_like(t: torch.Tensor, device: torch.device, *, int_high: int = 2) -> torch.Tensor:
    """A real tensor like ``t`` on ``device`` (randn for floats, randint for ints, random bools)."""
    return synth_tensor(tuple(t.shape), t.dtype, device, int_high=int_high)


def synth_tensor(shape, dtype: torch.dtype, device: torch.device, *, int_high: int = 2) -> torch.Tensor:
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
    return model(**xs) if isinstance(xs, dict) else model(*xs)


def input_tensors(xs) -> list:
    vals = xs.values() if isinstance(xs, dict) else xs
    return [x for x in vals if isinstance(x, torch.Tensor)]


def _set_grads_none(tensors) -> None:
    for t in tensors:
        t.grad = None


# --------------------------------------------------------------------------- CUDA graphs


def _time_calls(fn: Callable, n: int, device: torch.device) -> float:
    sync(device)
    t0 = time.perf_counter()
    for _ in range(n):
        fn()
    sync(device)
    return (time.perf_counter() - t0) / n


def _capture_graph(step: Callable, n: int, device: torch.device, warmup: int = 3):
    """Warm up ``step`` on a side stream, then capture ``n`` calls in one CUDA graph (torch docs,
    "CUDA Graphs": whole-network capture). On failure the caller's current stream is restored
    (``torch.cuda.graph.__exit__`` skips that when ``capture_end`` itself raises)."""
    prev = torch.cuda.current_stream(device)
    s = torch.cuda.Stream(device=device)
    s.wait_stream(prev)
    try:
        with torch.cuda.stream(s):
            for _ in range(warmup):
                step()
        prev.wait_stream(s)
        torch.cuda.synchronize(device)
        g = torch.cuda.CUDAGraph()
        with torch.cuda.graph(g):
            for _ in range(n):
                step()
        torch.cuda.synchronize(device)
    except BaseException:
        with contextlib.suppress(Exception):
            torch.cuda.set_stream(prev)
        raise
    return g


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text.splitlines()[0] if text else ''}"


def _capture_reason(exc: BaseException) -> str:
    """The error that broke the capture: when an op fails inside ``torch.cuda.graph``, its
    ``__exit__`` (capture_end) raises a second, generic CUDA error whose ``__context__`` is the
    real cause (e.g. a host sync inside an op: "operation not permitted when stream is capturing")."""
    outer = _one_line(exc)
    inner = exc
    seen = {id(exc)}
    while inner.__context__ is not None and id(inner.__context__) not in seen:
        inner = inner.__context__
        seen.add(id(inner))
    if inner is exc:
        return outer
    return f"{_one_line(inner)} (then {outer})"


@contextlib.contextmanager
def _quiet_capturable_warning():
    """Eager warm-ups of a ``capturable=True`` optimizer warn once per instance (torch >= 2.x:
    "capturable=True ... step() is running without CUDA graph capture"); expected here."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r".*capturable=True.*", category=UserWarning)
        yield


def graph_workload(step: Callable, device: torch.device, *, target_s: float = 1e-3, max_calls: int = 4096,
                   description: str = "", keep: Sequence = (), **meta) -> Workload:
    """Capture ``n`` calls of ``step`` in one CUDA graph so that one replay lasts >= ``target_s``."""
    if device.type != "cuda":
        raise GraphCaptureError(f"CUDA graphs need a CUDA device (device is {device})")
    g = None
    try:
        with _quiet_capturable_warning():
            for _ in range(3):  # eager warm-up (lazy init, cuDNN/cuBLAS heuristics, optimizer state)
                step()
            t_eager = _time_calls(step, 3, device)
            n = int(min(max_calls, max(1, math.ceil(target_s / max(t_eager, 1e-7)))))
            g = _capture_graph(step, n, device)
        g.replay()  # the first replay uploads the graph: keep it out of the timing
        t_replay = _time_calls(g.replay, 3, device)
        if t_replay < target_s and n < max_calls:  # graph replay is faster than eager: grow n
            n = int(min(max_calls, math.ceil(n * 1.2 * target_s / max(t_replay, 1e-9))))
            g = None  # free the first graph (and its private memory pool) before the second capture
            with _quiet_capturable_warning():
                g = _capture_graph(step, n, device)
            g.replay()
            t_replay = _time_calls(g.replay, 3, device)
    except Exception as exc:  # capture errors: keep the reason, leave the device usable
        g = None
        with contextlib.suppress(Exception):
            torch.cuda.synchronize(device)
        raise GraphCaptureError(f"CUDA graph capture failed: {_capture_reason(exc)}") from exc
    info = {"graph_calls": n, "graph_replay_s": t_replay, "eager_call_s": t_eager}
    return Workload(fn=g.replay, calls_per_invocation=n, description=description, exec="graph",
                    device=str(device), info=info, _keep=[g, step, *keep], **meta)


# --------------------------------------------------------------------------- layers


def _torch_dtype(name) -> torch.dtype | None:
    if isinstance(name, torch.dtype):
        return name
    if name is None:
        return None
    s = str(name).replace("torch.", "")
    return _TORCH_DTYPES.get(s)


def _layer_module(layer, device: torch.device) -> nn.Module | None:
    module = getattr(layer, "module", None)
    if module is None:
        return None
    mod = copy.deepcopy(module)
    for h in ("_forward_hooks", "_forward_pre_hooks", "_backward_hooks", "_forward_hooks_with_kwargs",
              "_forward_pre_hooks_with_kwargs"):
        d = getattr(mod, h, None)
        if d:
            d.clear()
    return materialize(mod, device)


_FUNCTIONAL_ALIASES = {
    "sdpa": torch.nn.functional.scaled_dot_product_attention,
    "scaled_dot_product_attention": torch.nn.functional.scaled_dot_product_attention,
    "linalg_vector_norm": torch.linalg.vector_norm,
    "setitem": None,
}
_LIST_OPS = frozenset({"cat", "stack", "hstack", "vstack", "dstack", "concat", "concatenate", "broadcast_tensors",
                       "block_diag", "cartesian_prod", "meshgrid"})
_FACTORY_OPS = frozenset({"zeros", "ones", "empty", "full", "arange", "rand", "randn", "randint", "randperm",
                          "linspace", "logspace", "eye", "tensor", "as_tensor", "triu_indices", "tril_indices"})
# (type, argument position) of integer / boolean tensor arguments
_LONG_ARGS = {"gather": {2}, "index_select": {2}, "take": {1}, "take_along_dim": {1}, "scatter": {2},
              "scatter_add": {2}, "index_add": {2}, "index_copy": {2}, "index_put": {1}, "F.embedding": {0},
              "Embedding": {0}, "EmbeddingBag": {0, 1}, "F.one_hot": {0}, "F.cross_entropy": {1}, "F.nll_loss": {1},
              "CrossEntropyLoss": {1}, "NLLLoss": {1}, "index": {1}, "repeat_interleave": set()}
_BOOL_ARGS = {"where": {0}, "masked_fill": {1}, "masked_select": {1}, "masked_scatter": {1},
              "logical_not": {0}, "logical_and": {0, 1}, "logical_or": {0, 1}, "logical_xor": {0, 1}}
_ARG_RE = __import__("re").compile(r"arg(\d+)$")


def resolve_functional(layer) -> Callable:
    """The callable behind a functional LayerConfig type ("F.relu", "matmul", "add", "sdpa", ...):
    ``torch.nn.functional`` for ``F.*``, else ``torch.<name>``, else the Tensor method."""
    fn = getattr(layer, "func", None) or getattr(layer, "fn", None)
    if callable(fn):
        return fn
    t = layer.config.type
    if t in _FUNCTIONAL_ALIASES and _FUNCTIONAL_ALIASES[t] is not None:
        return _FUNCTIONAL_ALIASES[t]
    if t.startswith("F."):
        f = getattr(torch.nn.functional, t[2:], None)
        if callable(f):
            return f
        raise UnsupportedLayerError(f"cannot replay functional op {t!r}: torch.nn.functional has no {t[2:]!r}")
    f = getattr(torch, t, None)
    if callable(f) and not isinstance(f, type):
        return f
    meth = getattr(torch.Tensor, t, None)
    if callable(meth):
        return lambda self, *a, **k: getattr(self, t)(*a, **k)
    raise UnsupportedLayerError(f"cannot replay functional op {t!r}: no torch function or Tensor method of that name")


def _hp(cfg) -> dict:
    return cfg.hparams_dict() if hasattr(cfg, "hparams_dict") else dict(cfg.hparams)


def _scalar(v, name: str, key: str):
    """A recorded non-tensor argument back to a value ("float"/"int" = scalar recorded by type)."""
    if v == "float":
        return 2.0 if name == "pow" else 1.0
    if v == "int":
        return 2 if name == "pow" else 1
    if key == "dtype" or (isinstance(v, str) and v in ("fp32", "bf16", "fp16", "fp64", "int64", "int32", "bool")):
        return _torch_dtype(v) or v
    if isinstance(v, tuple):
        return list(v) if key in ("size", "shape") else v
    return v


def _float_dtype(cfg, dtype: str) -> torch.dtype:
    """Floating input dtype: the op's compute dtype, except for ops autocast casts itself
    (matmul-like -> their input arrives in fp32 or bf16; we use fp32, the cast is then part of
    the measurement; fp32-policy ops get fp32)."""
    try:
        from profiling.capture.core import FP32_TYPES, LOWP_TYPES
    except Exception:  # pragma: no cover
        LOWP_TYPES = FP32_TYPES = frozenset()
    if dtype != "fp32" and (cfg.type in LOWP_TYPES or cfg.type in FP32_TYPES):
        return torch.float32
    td = _torch_dtype(cfg.dtype)
    return td if td is not None and td.is_floating_point else torch.float32


def _layer_args(layer, device: torch.device, dtype: str, module: nn.Module | None, requires_grad: bool):
    """(args, kwargs, tensors) to call the layer with synthetic tensors of its captured shapes."""
    cfg = layer.config
    t = cfg.type
    hp = _hp(cfg)
    fdt = _float_dtype(cfg, dtype)
    cdt = _torch_dtype(cfg.dtype)
    int_compute = cdt is not None and not cdt.is_floating_point
    int_high = int(getattr(module, "num_embeddings", 0) or hp.get("num_embeddings") or 0)
    if t == "F.embedding" and len(cfg.input_shapes) > 1:
        int_high = int(cfg.input_shapes[1][0])
    shapes = list(cfg.input_shapes)
    tensors: list[torch.Tensor] = []

    def make(pos: int, shape) -> torch.Tensor:
        if pos in _LONG_ARGS.get(t, ()):
            x = (torch.randint(0, int_high, tuple(shape), device=device) if int_high
                 else torch.zeros(tuple(shape), dtype=torch.long, device=device))
        elif pos in _BOOL_ARGS.get(t, ()):
            x = torch.rand(tuple(shape), device=device) > 0.5
        elif int_compute:
            x = synth_tensor(shape, cdt, device, int_high=2)
        else:
            x = torch.randn(tuple(shape), device=device, dtype=fdt)
            if requires_grad:
                x.requires_grad_(True)
        tensors.append(x)
        return x

    if module is not None:
        if isinstance(module, nn.MultiheadAttention):
            # self-attention when q, k, v have one shape (the packed in-projection path);
            # masks passed as keyword tensors are not replayed
            q = make(0, shapes[0])
            if len(shapes) >= 3 and shapes[0] == shapes[1] == shapes[2]:
                return [q, q, q], {"need_weights": False}, tensors
            kv = [make(i, s) for i, s in enumerate(shapes[1:3], start=1)]
            return [q, *kv], {"need_weights": False}, tensors
        return [make(i, s) for i, s in enumerate(shapes)], {}, tensors

    name = t[2:] if t.startswith("F.") else t
    pos_vals = {int(m.group(1)): v for k, v in hp.items() if (m := _ARG_RE.match(k))}
    kwargs = {k: _scalar(v, name, k) for k, v in hp.items() if not _ARG_RE.match(k) and k != "inplace"}
    args: list = []
    si = 0
    if name in _LIST_OPS:
        args.append([make(i, s) for i, s in enumerate(shapes)])
        si = len(shapes)
        start = 1
    else:
        start = 0
    n_pos = max(pos_vals, default=-1) + 1
    for i in range(start, max(n_pos, start)):
        if i in pos_vals:
            args.append(_scalar(pos_vals[i], name, f"arg{i}"))
        elif si < len(shapes):
            args.append(make(i, shapes[si]))
            si += 1
        else:
            args.append(None)
    while si < len(shapes):  # tensors after the last recorded non-tensor argument
        args.append(make(len(args), shapes[si]))
        si += 1
    if name in _FACTORY_OPS or not shapes:
        kwargs.setdefault("device", device)
    return args, kwargs, tensors


def _layer_call(layer, module: nn.Module | None, args: list, kwargs: dict) -> Callable[[], Any]:
    if module is not None:
        return lambda: module(*args, **kwargs)
    fn = resolve_functional(layer)
    return lambda: fn(*args, **kwargs)


def build_layer_workload(layer, *, mode: str = "inference", dtype: str = "fp32", device=None, exec: str = "eager",
                         optimizer: str | None = None, graph_target_s: float = 1e-3,
                         graph_max_calls: int = 4096) -> Workload:
    """The captured ``layer`` (a ``capture.CapturedLayer``) alone, with synthetic inputs of its
    real shapes, on ``device``; see the module docstring for modes, dtype and exec."""
    optimizer = check_run(mode, exec, None, optimizer, default_optimizer="sgd")
    device = resolve_device(device)
    if exec == "graph" and device.type != "cuda":
        raise GraphCaptureError(f"exec='graph' needs a CUDA device (device is {device})")
    cfg = layer.config
    module = _layer_module(layer, device)
    training = mode != "inference"
    info: dict = {}
    if module is not None:
        module.train(training)
        if training and getattr(module, "inplace", False) is True:
            # an in-place activation on a leaf that requires grad is an autograd error; in the
            # network its input is an intermediate. Out of place reads/writes the same bytes.
            module.inplace = False
            info["note"] = "in-place layer replayed out of place"
    args, kwargs, xs = _layer_args(layer, device, dtype, module, requires_grad=training)
    call = _layer_call(layer, module, args, kwargs)
    cache = False if exec == "graph" else None  # torch docs: no autocast cache inside graph capture
    ac = lambda: autocast_context(dtype, device, cache_enabled=cache)  # noqa: E731
    desc = f"{cfg.type} {[list(s) for s in cfg.input_shapes]} {mode} {dtype} {exec}"
    meta = dict(mode=mode, dtype=dtype, optimizer=optimizer if mode == "train_step" else None)
    try:  # a first call checks that the reconstructed call works
        with torch.inference_mode() if not training else contextlib.nullcontext(), ac():
            probe = _first_tensor(call())
    except Exception as exc:
        raise UnsupportedLayerError(
            f"cannot replay {cfg.type} alone: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
        ) from None

    if mode == "inference":
        del probe

        def step():
            with torch.inference_mode(), ac():
                call()
    else:
        params = [p for p in (module.parameters() if module is not None else []) if p.requires_grad]
        grad_inputs = [x for x in xs if x.requires_grad]
        differentiable = probe is not None and probe.requires_grad
        grad_out = torch.ones_like(probe) if differentiable else None
        del probe
        if not differentiable:
            # e.g. arange, comparisons, masks: in a training step they run forward only
            info["note"] = "output has no gradient: forward only (as in the training step)"
            grad_inputs = []
        opt = None
        if mode == "train_step":
            if params:
                opt = make_optimizer(optimizer, params, capturable=(exec == "graph"))
            else:
                info["note"] = "layer has no parameters: train_step = forward_backward (no optimizer step)"

        def step():
            if opt is not None:
                opt.zero_grad(set_to_none=True)
            else:
                _set_grads_none(params)
            _set_grads_none(grad_inputs)
            with ac():
                out = _first_tensor(call())
            if grad_out is not None:
                out.backward(grad_out)
            if opt is not None:
                opt.step()

    if exec == "eager":
        return Workload(fn=step, calls_per_invocation=1, description=desc, exec="eager", device=str(device),
                        info=info, _keep=[module, args, kwargs], **meta)
    wl = graph_workload(step, device, target_s=graph_target_s, max_calls=graph_max_calls, description=desc,
                        keep=[module, args, kwargs], **meta)
    wl.info.update(info)
    return wl


# --------------------------------------------------------------------------- models


def _loss_fn(out: torch.Tensor, device: torch.device):
    """Cross-entropy for classifier outputs (2-D, > 1 column), MSE otherwise; fixed targets."""
    if out.dim() == 2 and out.shape[1] > 1 and out.is_floating_point():
        target = torch.randint(0, out.shape[1], (out.shape[0],), device=device)
        return (lambda o: nn.functional.cross_entropy(o, target)), "cross_entropy"
    target = torch.zeros_like(out, dtype=out.dtype if out.is_floating_point() else torch.float32)
    return (lambda o: nn.functional.mse_loss(o, target)), "mse"


def build_model_workload(model: nn.Module, inputs, *, mode: str = "inference", dtype: str = "fp32",
                         optimizer: str | None = None, device=None, exec: str = "eager",
                         graph_target_s: float = 1e-3, graph_max_calls: int = 1024) -> Workload:
    """The whole model per DESIGN §4: ``inference`` = one forward under inference_mode (eval);
    ``train_step`` = zero_grad(set_to_none) -> forward -> loss -> backward -> step (train);
    ``forward_backward`` = the same without the optimizer. The model is moved to ``device`` in
    place and its train/eval mode is set (callers restore it)."""
    optimizer = check_run(mode, exec, None, optimizer, default_optimizer="sgd")
    device = resolve_device(device)
    materialize(model, device)
    xs = prepare_inputs(inputs, device, int_high=_min_embedding_rows(model) or 2)
    cache = False if exec == "graph" else None  # torch docs: no autocast cache inside graph capture
    ac = lambda: autocast_context(dtype, device, cache_enabled=cache)  # noqa: E731
    desc = f"model {type(model).__name__} {mode} {dtype} {exec}"
    meta = dict(mode=mode, dtype=dtype, optimizer=optimizer if mode == "train_step" else None)
    info: dict = {}
    if mode == "inference":
        model.eval()

        def step():
            with torch.inference_mode(), ac():
                call_model(model, xs)
    else:
        model.train()
        with ac():
            probe = _first_tensor(call_model(model, xs))
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
                _set_grads_none(params)
            with ac():
                loss = loss_of(_first_tensor(call_model(model, xs)))
            loss.backward()
            if opt is not None:
                opt.step()

    if exec == "eager":
        return Workload(fn=step, description=desc, exec="eager", device=str(device), info=info,
                        _keep=[xs], **meta)
    wl = graph_workload(step, device, target_s=graph_target_s, max_calls=graph_max_calls, description=desc,
                        keep=[xs], **meta)
    wl.info.update(info)
    return wl


# --------------------------------------------------------------------------- reference


def reference_workload(device=None, *, size: int | None = None) -> Workload:
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

    return Workload(fn=fn, description=f"reference: fp32 matmul {n}x{n}", exec="eager", device=str(device),
                    info={"reference": f"matmul{n}"}, _keep=[a, b, out])
