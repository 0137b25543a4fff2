"""The capture side of :func:`predictor.engine.predict.predict`: the user's inputs as ``meta`` tensors,
the model captured without being changed, and :func:`capture_workload`.

The model is captured on the ``meta`` device (its parameters and buffers swapped for ``meta``
placeholders for the duration, ``torch.nn.utils.stateless._reparametrize_module``), so no
real computation runs and no weight is copied.  A forward that cannot run on ``meta``
(data-dependent control flow) is retried on the model's own device when the model is small
(<= 50 M parameters), with a warning: its buffers are swapped for copies (BatchNorm running
statistics and ``num_batches_tracked`` stay the user's), and inputs larger than
:data:`REAL_INPUT_MAX_BYTES` are never allocated -- the model is traced at batches 2 and 3
and each batch-dependent dimension extrapolated linearly to the real batch (refused when
the two probes do not line up).

``memory_format="channels_last"``: the model's 4-D parameters and the 4-D floating inputs
are NHWC (``torch.channels_last``) during the capture, as ``model.to(memory_format=...)``
and ``x.to(memory_format=...)`` would make them; other inputs than 4-D are refused.
"""

from __future__ import annotations

import logging
import warnings
import weakref
from dataclasses import dataclass, replace
from typing import Any, NamedTuple

import numpy as np
import torch
from torch import nn
from torch.nn.utils.stateless import _reparametrize_module

from predictor.engine.workload import Workload, workload_from_capture
from profiling.capture.core import LayerConfig, capture
from profiling.capture.dtypes import _TAG, dtype_name
from profiling.capture.hooks import InputDtypeError
from profiling.errors import ExanteError
from profiling.model_refs import capture_with_cpu_fallback

__all__ = ["capture_workload", "clear_capture_cache", "MODES", "DTYPES", "OPTIMIZERS",
           "MEMORY_FORMATS", "DEFAULT_TRAIN_OPTIMIZER"]

MODES = ("inference", "train_step")
DTYPES = ("fp32", "bf16", "fp16")
OPTIMIZERS = ("sgd", "adam", "adamw")
MEMORY_FORMATS = ("contiguous", "channels_last")
DEFAULT_TRAIN_OPTIMIZER = "sgd"
REAL_DEVICE_FALLBACK_MAX_PARAMS = 50_000_000
REAL_INPUT_MAX_BYTES = 256 * 2**20     # larger inputs are probed at batches 2 and 3

log = logging.getLogger(__name__)

_CAPTURE_CACHE: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()
_CAPTURES_PER_MODEL = 32
_SIMPLE = (int, float, bool, str, type(None))


@dataclass(frozen=True)
class _Layer:
    """What predict needs of a CapturedLayer (no module reference: cache-safe)."""

    config: Any
    count: int
    names: tuple
    supported: bool
    module_params: int


class _LightCapture(NamedTuple):
    layers: tuple
    total_calls: int
    zero_cost: int = 0          # view/metadata ops per forward (host work, no kernel)


def clear_capture_cache() -> None:
    """Forget every cached light capture (the per-model cache :func:`captured` fills)."""
    _CAPTURE_CACHE.clear()


# ----------------------------------------------------------------------------- checks
def check_args(mode, dtype, optimizer, memory_format="contiguous", grad_scaler=False,
               torch_version=None) -> None:
    """One ``ExanteError`` line for a value outside the accepted ones."""
    if mode not in MODES:
        raise ExanteError(f"unknown mode {mode!r}; accepted: {', '.join(MODES)}")
    if dtype not in DTYPES:
        raise ExanteError(f"unknown dtype {dtype!r}; accepted: {', '.join(DTYPES)}")
    if optimizer is not None and optimizer not in OPTIMIZERS:
        raise ExanteError(f"unknown optimizer {optimizer!r}; accepted: {', '.join(OPTIMIZERS)} "
                          "(or None)")
    if memory_format not in MEMORY_FORMATS:
        raise ExanteError(f"unknown memory_format {memory_format!r}; accepted: "
                          f"{', '.join(MEMORY_FORMATS)}")
    if not isinstance(grad_scaler, bool):
        raise ExanteError(f"grad_scaler must be True or False, got {grad_scaler!r}")
    if grad_scaler and mode != "train_step":
        raise ExanteError("grad_scaler=True needs mode='train_step' (a gradient scaler only "
                          "acts on the backward and the optimizer step)")
    if torch_version is not None and (not isinstance(torch_version, str)
                                      or not torch_version.strip()
                                      or not torch_version.strip()[0].isdigit()):
        raise ExanteError(f"torch_version must be a version string like '2.4.1', got "
                          f"{torch_version!r}")


def _is_shape(x) -> bool:
    return isinstance(x, (tuple, list, torch.Size)) and len(x) > 0 and all(
        isinstance(d, (int, np.integer)) and not isinstance(d, bool) for d in x)


def meta_inputs(inputs, memory_format: str = "contiguous") -> tuple[Any, int]:
    """Inputs as meta tensors (same shapes and dtypes; 4-D floating ones NHWC for
    ``channels_last``) and the batch size."""
    if _is_shape(inputs):
        shape = tuple(int(d) for d in inputs)
        if any(d < 1 for d in shape):
            raise ExanteError(f"input shape {shape} must have positive dimensions "
                              "(the first one is the batch)")
        args, batch = (torch.empty(shape, device="meta"),), shape[0]
    else:
        args, batch = _meta_tensors(inputs)
    if memory_format == "channels_last":
        first = _first_tensor(args)
        if first.dim() != 4:
            raise ExanteError(
                f"memory_format='channels_last' needs a 4-D input (N, C, H, W); the input "
                f"has shape {tuple(first.shape)}: use memory_format='contiguous'")
        args = _map_tensors(args, _to_channels_last)
    return args, batch


def autocast_inputs(args, dtype: str):
    """Under autocast, 16-bit floating inputs as fp32 meta tensors tagged with their dtype
    (the capture's virtual dtype): on CUDA autocast casts the weights to the input's dtype,
    on ``meta`` a float16 input meets float32 weights and the kernel refuses."""
    if dtype == "fp32":
        return args

    def conv(t):
        if t.dtype not in (torch.float16, torch.bfloat16):
            return t
        f = torch.empty_strided(t.shape, t.stride(), dtype=torch.float32, device="meta")
        f.__dict__[_TAG] = dtype_name(t.dtype)
        return f

    return _map_tensors(args, conv)


def _to_channels_last(t: torch.Tensor) -> torch.Tensor:
    if t.dim() == 4 and t.is_floating_point():
        return t.contiguous(memory_format=torch.channels_last)
    return t


def _map_tensors(obj, fn):
    if isinstance(obj, torch.Tensor):
        return fn(obj)
    if isinstance(obj, (list, tuple)):
        return type(obj)(_map_tensors(v, fn) for v in obj)
    if isinstance(obj, dict):
        return {k: _map_tensors(v, fn) for k, v in obj.items()}
    return obj


def _meta_tensors(inputs) -> tuple[Any, int]:
    def conv(t, where):
        if isinstance(t, torch.Tensor):
            return t if t.device.type == "meta" else torch.empty(t.shape, dtype=t.dtype,
                                                                device="meta")
        if t is None or isinstance(t, (int, float, bool, str)):
            return t
        if isinstance(t, (list, tuple)):          # e.g. detection models take [img, ...]
            return type(t)(conv(v, f"{where}[{i}]") for i, v in enumerate(t))
        if isinstance(t, dict):
            return {k: conv(v, f"{where}[{k!r}]") for k, v in t.items()}
        raise ExanteError(f"inputs{where} is a {type(t).__name__}; expected tensors (batch "
                          "dimension first) or a shape tuple like (32, 3, 224, 224)")

    args: tuple | dict
    if isinstance(inputs, torch.Tensor):
        args = (conv(inputs, ""),)
    elif isinstance(inputs, (tuple, list)) and inputs:
        args = tuple(conv(t, f"[{i}]") for i, t in enumerate(inputs))
    elif isinstance(inputs, dict) and inputs:
        args = {k: conv(v, f"[{k!r}]") for k, v in inputs.items()}
    else:
        raise ExanteError("inputs must be a tensor, a tuple of tensors (batch dimension first) "
                          f"or a shape tuple like (32, 3, 224, 224); got {inputs!r:.80}")
    first = _first_tensor(args)
    if first is None:
        raise ExanteError("inputs hold no tensor")
    batch = int(first.shape[0]) if first.dim() > 0 else 1
    lead = args[0] if isinstance(args, tuple) and args else None
    if isinstance(lead, (list, tuple)) and lead and all(isinstance(t, torch.Tensor) for t in lead):
        batch = len(lead)            # a list of samples (detection: [img, ...]) is the batch
    if batch < 1:  # issue 11: a batch of 0 is an error, not an empty prediction
        raise ExanteError(f"inputs have batch {batch} (the first dimension); give one or more")
    return args, batch


def _first_tensor(obj):
    """The first tensor in nested tuples/lists/dicts (the batch is its first dimension)."""
    if isinstance(obj, torch.Tensor):
        return obj
    items = obj.values() if isinstance(obj, dict) else obj if isinstance(obj, (list, tuple)) \
        else ()
    for v in items:
        t = _first_tensor(v)
        if t is not None:
            return t
    return None


def input_bytes(args) -> int:
    """Bytes of every tensor in ``args`` (nested)."""
    ts: list = []
    _map_tensors(args, ts.append)
    return int(sum(t.numel() * t.element_size() for t in ts))


# ----------------------------------------------------------------------------- cache
def _fingerprint(model: nn.Module) -> tuple:
    """Cheap structural signature: module tree, types, training flags, forward overrides,
    hook counts, parameter/buffer shapes and dtypes, and simple public attributes
    (kernel_size, stride, ...).  Changing any of these invalidates a cached capture; code
    changes invisible to it (e.g. a global flag read in ``forward``) are not detected --
    pass ``cache=False`` for such models."""
    items = []
    for name, m in model.named_modules():
        d = m.__dict__
        attrs = tuple((k, v) for k, v in d.items() if not k.startswith("_") and (
            type(v) in _SIMPLE or (type(v) is tuple and all(type(x) in _SIMPLE for x in v))))
        items.append((
            name, type(m), m.training, id(d.get("forward")),
            len(m._forward_hooks), len(m._forward_pre_hooks),
            tuple((k, tuple(p.shape), p.dtype) for k, p in m._parameters.items() if p is not None),
            tuple((k, tuple(b.shape), b.dtype) for k, b in m._buffers.items() if b is not None),
            attrs,
        ))
    return tuple(items)


def _input_signature(args) -> tuple:
    def sig(v):
        if isinstance(v, torch.Tensor):
            return ("T", tuple(v.shape), v.dtype, tuple(v.stride()), v.__dict__.get(_TAG))
        return ("V", repr(v))
    if isinstance(args, dict):
        return tuple(sorted((k, sig(v)) for k, v in args.items()))
    return tuple(sig(v) for v in args)


def _light(cap) -> _LightCapture:
    layers = []
    for layer in cap.layers:
        mp = 0
        if not layer.supported and layer.module is not None:
            mp = int(sum(p.numel() for p in layer.module.parameters()))
        layers.append(_Layer(layer.config, int(layer.count), tuple(layer.names),
                             bool(layer.supported), mp))
    return _LightCapture(tuple(layers), int(cap.total_calls),
                         int(sum(getattr(cap, "zero_cost_ops", {}).values())))


def captured(model, args, dtype, train, notes, use_cache: bool,
             memory_format: str = "contiguous") -> _LightCapture:
    """The (cached) light capture of ``model`` on meta ``args``."""
    if not use_cache:
        return _capture_meta(model, args, dtype, train, notes, memory_format)
    key = (_input_signature(args), dtype, train, memory_format)
    fp = _fingerprint(model)
    try:
        per_model = _CAPTURE_CACHE.setdefault(model, {})
    except TypeError:           # not weak-referenceable: no caching
        return _capture_meta(model, args, dtype, train, notes, memory_format)
    hit = per_model.get(key)
    if hit is not None and hit[0] == fp:
        log.debug("capture cache hit: %s", type(model).__name__)
        return hit[1]
    light = _capture_meta(model, args, dtype, train, notes, memory_format)
    if len(per_model) >= _CAPTURES_PER_MODEL:
        per_model.pop(next(iter(per_model)))
    per_model[key] = (fp, light)
    return light


# ----------------------------------------------------------------------------- capture
def _on_meta(model: nn.Module) -> bool:
    return all(t.device.type == "meta" for t in model.parameters()) and all(
        t.device.type == "meta" for t in model.buffers())


def _state_swap(model: nn.Module, make) -> dict:
    """name -> ``make(tensor)`` for every parameter and buffer (tied ones share one)."""
    swap, made = {}, {}
    for name, t in list(model.named_parameters(remove_duplicate=False)) + list(
            model.named_buffers(remove_duplicate=False)):
        if id(t) not in made:
            made[id(t)] = make(t)
        swap[name] = made[id(t)]
    return swap


def _capture_meta(model: nn.Module, args, dtype: str, train: bool, notes: list,
                  memory_format: str = "contiguous") -> _LightCapture:
    """Capture on meta without touching the user's model (see module docstring)."""

    cl = memory_format == "channels_last"
    if _on_meta(model) and not cl:
        size = input_bytes(args)
        if size > REAL_INPUT_MAX_BYTES:     # never let the CPU rebuild allocate such inputs
            try:
                return _light(capture(model, args, dtype=dtype, train=train))
            except ExanteError as exc:
                raise ExanteError(
                    f"cannot trace the model on the meta device ({exc}), and its inputs "
                    f"({size / 1e9:.1f} GB) are too large to trace on the CPU; try a smaller "
                    "batch") from None
        cap, note = capture_with_cpu_fallback(model, args, dtype=dtype, train=train)
        if note:
            notes.append(note)
        return _light(cap)

    def placeholder(t):
        p = torch.empty(t.shape, dtype=t.dtype, device="meta")
        return _to_channels_last(p) if cl else p

    swap = _state_swap(model, placeholder)
    try:
        with _reparametrize_module(model, swap, tie_weights=True, strict=False):
            return _light(capture(model, args, dtype=dtype, train=train))
    except InputDtypeError:
        raise                               # the same on any device: no fallback
    except ExanteError as exc:
        meta_error = exc
    return _capture_real(model, args, dtype, train, notes, memory_format, meta_error)


def _capture_real(model, args, dtype, train, notes, memory_format, meta_error) -> _LightCapture:
    """The meta capture failed: trace once on the model's device with copies of its buffers
    (and NHWC copies of its 4-D parameters for channels_last), at full size when the inputs
    are small, else at batches 2 and 3 extrapolated to the real batch."""

    n = sum(p.numel() for p in model.parameters())
    if n > REAL_DEVICE_FALLBACK_MAX_PARAMS or _on_meta(model):
        raise ExanteError(f"cannot trace the model on the meta device ({meta_error}); if its "
                          "forward reads tensor values, make it shape-only") from None
    dev = next((t.device for t in model.parameters()), torch.device("cpu"))
    cl = memory_format == "channels_last"

    def copy(t):
        if isinstance(t, nn.Parameter):
            return _to_channels_last(t.detach()) if cl else t
        c = t.detach().clone()
        return _to_channels_last(c) if cl else c

    swap = _state_swap(model, copy)
    _, batch = _meta_tensors(args)
    size = input_bytes(args)

    def run(real_args):
        with _reparametrize_module(model, swap, tie_weights=True, strict=False):
            return _light(capture(model, real_args, dtype=dtype, train=train))

    try:
        if size <= REAL_INPUT_MAX_BYTES:
            light = run(_real_like(args, dev, batch, batch, cl))
            how = "once on {dev} with zero inputs"
        else:
            light = _probe(run, args, dev, batch, cl)
            how = f"on {{dev}} at batches 2 and 3 (inputs of {size / 1e9:.1f} GB never allocated), " \
                  f"extrapolated to batch {batch}"
    except ExanteError:
        raise meta_error from None          # the same failure on a real device: report it
    if light is None:
        raise ExanteError(
            f"cannot trace the model on the meta device ({meta_error}), and its inputs "
            f"({size / 1e9:.1f} GB) are too large to trace on {dev}: the probes at batches 2 "
            "and 3 do not line up; make the forward shape-only") from None
    msg = (f"the forward could not run on the meta device ({meta_error}); traced "
           f"{how.format(dev=dev)} instead (slower; the model's buffers were not changed)")
    notes.append(msg)
    warnings.warn(msg, RuntimeWarning, stacklevel=4)
    return light


def _real_like(args, dev, batch: int, b: int, cl: bool):
    """Zero tensors like ``args`` on ``dev``, the batch dimension set to ``b`` (ones for an
    ``attention_mask``)."""
    def make(t, key=None):
        if not isinstance(t, torch.Tensor):
            return t
        shape = tuple(t.shape)
        if shape and shape[0] == batch:
            shape = (b,) + shape[1:]
        z = (torch.ones if key == "attention_mask" else torch.zeros)(shape, dtype=t.dtype,
                                                                      device=dev)
        return _to_channels_last(z) if cl else z

    if isinstance(args, dict):
        return {k: _map_tensors(v, lambda t, k=k: make(t, k)) for k, v in args.items()}
    return _map_tensors(args, make)


def _probe(run, args, dev, batch: int, cl: bool) -> _LightCapture | None:
    """Captures at batches 2 and 3, each batch-dependent dimension ``d(b) = a + k b``
    extrapolated to ``batch``; None when the two captures differ otherwise."""
    c2 = run(_real_like(args, dev, batch, 2, cl))
    c3 = run(_real_like(args, dev, batch, 3, cl))
    if len(c2.layers) != len(c3.layers) or c2.zero_cost != c3.zero_cost:
        return None

    def shapes(s2, s3):
        if len(s2) != len(s3):
            return None
        out = []
        for a2, a3 in zip(s2, s3, strict=True):
            if len(a2) != len(a3):
                return None
            dims = []
            for d2, d3 in zip(a2, a3, strict=True):
                k = d3 - d2
                d = d2 + k * (batch - 2)
                if d < 1 and d2 >= 1:
                    return None
                dims.append(int(d))
            out.append(tuple(dims))
        return tuple(out)

    layers = []
    for x2, x3 in zip(c2.layers, c3.layers, strict=True):
        f2, f3 = x2.config, x3.config
        if (f2.type, f2.hparams, f2.dtype, x2.count, x2.names) != \
                (f3.type, f3.hparams, f3.dtype, x3.count, x3.names):
            return None
        ins, outs = shapes(f2.input_shapes, f3.input_shapes), shapes(f2.output_shapes,
                                                                      f3.output_shapes)
        if ins is None or outs is None:
            return None
        layers.append(replace(x2, config=LayerConfig(f2.type, f2.hparams, ins, outs, f2.dtype)))
    return _LightCapture(tuple(layers), c2.total_calls, c2.zero_cost)


# ----------------------------------------------------------------------------- workload
def resolve_optimizer(mode: str, optimizer, notes: list):
    """``None`` for inference (a given one is noted and ignored), ``"sgd"`` by default."""
    if mode == "inference":
        if optimizer is not None:
            notes.append(f"optimizer {optimizer!r} ignored for mode='inference'")
        return None
    return DEFAULT_TRAIN_OPTIMIZER if optimizer is None else optimizer


def check_trainable(model: nn.Module, mode: str) -> None:
    """``train_step`` of a model without trainable parameters has no optimizer step."""
    if mode == "train_step" and not any(p.requires_grad for p in model.parameters()):
        raise ExanteError(
            f"mode='train_step' needs trainable parameters, and {type(model).__name__} has "
            "none (no backward to weights, no optimizer step to price); use mode='inference'")


def capture_workload(model: nn.Module, inputs, mode: str = "inference", dtype: str = "fp32",
                     optimizer: str | None = None, *, memory_format: str = "contiguous",
                     grad_scaler: bool = False, torch_version: str | None = None,
                     cache: bool = True, notes: list | None = None) -> Workload:
    """The :class:`~predictor.engine.workload.Workload` of one call of ``model`` on ``inputs``
    (captured on ``meta``; the user's model is not changed).  Arguments as :func:`predict`;
    ``dtype="fp16"`` is captured like bf16 (the CUDA autocast policy) with fp16 tensors."""
    if not isinstance(model, nn.Module):
        raise ExanteError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    check_args(mode, dtype, optimizer, memory_format, grad_scaler, torch_version)
    check_trainable(model, mode)
    notes = [] if notes is None else notes
    optimizer = resolve_optimizer(mode, optimizer, [])
    args, batch = meta_inputs(inputs, memory_format)
    args = autocast_inputs(args, dtype)
    cap = captured(model, args, dtype, mode == "train_step", notes, cache, memory_format)
    return workload_from_capture(model, cap.layers, mode=mode, dtype=dtype, batch=batch,
                                 optimizer=optimizer, zero_cost_ops=cap.zero_cost,
                                 notes=tuple(notes), memory_format=memory_format,
                                 grad_scaler=grad_scaler,
                                 torch_version=torch_version.strip() if torch_version else None)
