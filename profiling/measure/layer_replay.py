"""One captured layer replayed alone with synthetic inputs of its real shapes (DESIGN.md §2, §4):
a module copy (hooks removed, ``meta`` parameters materialised) or the functional op behind a
LayerConfig type, in the modes/dtypes/execs of :mod:`profiling.measure.replay`.
"""

from __future__ import annotations

import contextlib
import copy
import re
from typing import Any, Callable, cast

import torch
from torch import nn

from profiling.capture import FP32_TYPES, LOWP_TYPES
from profiling.dataset.schema import check_run
from profiling.errors import UnsupportedLayerError
from profiling.measure.graphs import graph_workload
from profiling.measure.workload import (
    GraphCaptureError,
    ReplayCall,
    autocast_context,
    first_tensor,
    make_optimizer,
    materialize,
    resolve_device,
    set_grads_none,
    synth_tensor,
    torch_dtype,
)

__all__ = ["build_layer_workload", "resolve_functional"]


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
_ARG_RE = re.compile(r"arg(\d+)$")


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
        return torch_dtype(v) or v
    if isinstance(v, tuple):
        return list(v) if key in ("size", "shape") else v
    return v


def _float_dtype(cfg, dtype: str) -> torch.dtype:
    """Floating input dtype: the op's compute dtype, except for ops autocast casts itself
    (matmul-like -> their input arrives in fp32 or bf16; we use fp32, the cast is then part of
    the measurement; fp32-policy ops get fp32)."""
    if dtype != "fp32" and (cfg.type in LOWP_TYPES or cfg.type in FP32_TYPES):
        return torch.float32
    td = torch_dtype(cfg.dtype)
    return td if td is not None and td.is_floating_point else torch.float32


def _layer_args(layer, device: torch.device, dtype: str, module: nn.Module | None, requires_grad: bool):
    """(args, kwargs, tensors) to call the layer with synthetic tensors of its captured shapes."""
    cfg = layer.config
    t = cfg.type
    hp = _hp(cfg)
    fdt = _float_dtype(cfg, dtype)
    cdt = torch_dtype(cfg.dtype)
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
        elif int_compute and cdt is not None:
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
                         graph_max_calls: int = 4096) -> ReplayCall:
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
            cast(Any, module).inplace = False  # a plain bool attribute (nn.Module's stubs type Tensor | Module)
            info["note"] = "in-place layer replayed out of place"
    args, kwargs, xs = _layer_args(layer, device, dtype, module, requires_grad=training)
    call = _layer_call(layer, module, args, kwargs)
    cache = False if exec == "graph" else None  # torch docs: no autocast cache inside graph capture
    ac = lambda: autocast_context(dtype, device, cache_enabled=cache)  # noqa: E731
    desc = f"{cfg.type} {[list(s) for s in cfg.input_shapes]} {mode} {dtype} {exec}"
    opt_name = optimizer if mode == "train_step" else None
    try:  # a first call checks that the reconstructed call works
        with torch.inference_mode() if not training else contextlib.nullcontext(), ac():
            probe = first_tensor(call())
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
        grad_out = torch.ones_like(probe) if probe is not None and probe.requires_grad else None
        differentiable = grad_out is not None
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
                set_grads_none(params)
            set_grads_none(grad_inputs)
            with ac():
                out = first_tensor(call())
            if grad_out is not None:
                out.backward(grad_out)
            if opt is not None:
                opt.step()

    if exec == "eager":
        return ReplayCall(fn=step, calls_per_invocation=1, description=desc, exec="eager", device=str(device),
                        info=info, _keep=[module, args, kwargs], mode=mode, dtype=dtype, optimizer=opt_name)
    wl = graph_workload(step, device, target_s=graph_target_s, max_calls=graph_max_calls, description=desc,
                        keep=[module, args, kwargs], mode=mode, dtype=dtype, optimizer=opt_name)
    wl.info.update(info)
    return wl
