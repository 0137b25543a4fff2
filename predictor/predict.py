"""``predict(model, inputs, ...)``: GPU time and energy of one call, before training.

The DESIGN.md §4 Python contract::

    p = predict(model, inputs, mode="inference", dtype="fp32", hardware="h100", optimizer=None)
    p.energy_j, p.time_s, p.energy_j_low, p.energy_j_high, p.layers

How (see :mod:`predictor.regression` for the model itself):

1. The model is captured on the ``meta`` device, so no real computation runs and no weight
   is copied: when the model holds real tensors, its parameters and buffers are swapped for
   ``meta`` placeholders only for the duration of the capture
   (``torch.nn.utils.stateless._reparametrize_module``, what ``torch.func.functional_call``
   uses); the user's model is left untouched.  A forward that cannot run on ``meta``
   (data-dependent control flow) is retried on the model's own device with zero inputs when
   the model is small (<= 50 M parameters), with a warning; otherwise an ``ExanteError``.
   ``mode="train_step"`` captures in training mode (BatchNorm batch statistics, dropout).
2. Every distinct layer config gets its shape features (``profiling.features``) and a
   per-layer prediction; ``train_step`` = forward+backward per layer + the optimizer step
   (from the parameters).  Layers without a feature function are predicted by the
   shape-only fallback (input/output sizes, parameters) and named in a warning; layer types
   never seen in fitting by the type-agnostic global model ("closest family").  Both widen
   the interval in proportion to their share of the prediction.
3. Whole-model terms (launch gaps, fusion, optimizer-step fusion) and the conformal
   interval come from the fitted artifact of ``hardware`` (:mod:`predictor.artifacts`);
   without one, a clear ``ExanteError`` -- numbers are never guessed.

``optimizer=None`` with ``mode="train_step"`` means ``"sgd"`` (SGD with momentum 0.9, the
profiler's default); an optimizer given with ``mode="inference"`` is ignored (noted in
``Prediction.warnings``).  Per-layer predictions are cached per (artifact, layer config,
dtype, mode, optimizer), so repeated predictions of similar models (NAS, batch sweeps) only
pay for the capture and the layers not seen before.
"""

from __future__ import annotations

import math
import warnings
import weakref
from dataclasses import asdict, dataclass, field
from typing import Any, NamedTuple

import numpy as np
import pandas as pd
import torch
from torch import nn

from profiling.capture import capture
from profiling.model_refs import capture_with_cpu_fallback
from profiling.errors import ExanteError, UnsupportedLayerError
from profiling.features import DTYPE_BYTES, UnsupportedLayerWarning, layer_features

from .artifacts import load_artifact
from .calibrated import CalibratedHardware
from .workload import Workload, workload_from_capture

__all__ = ["predict", "Prediction", "MODES", "DTYPES", "OPTIMIZERS", "METHOD",
           "UnsupportedLayerWarning", "clear_cache"]

MODES = ("inference", "train_step")
DTYPES = ("fp32", "bf16")
OPTIMIZERS = ("sgd", "adam", "adamw")
DEFAULT_TRAIN_OPTIMIZER = "sgd"
METHOD = "per-layer regression + model-level terms"
METHOD_PHYSICS = ("physics model of eager PyTorch (host events + roofline GPU time + power), "
                  "calibrated on whole-model measurements")
FEATURE_KEYS = ("macs", "flops", "params", "bytes_read", "bytes_written", "input_numel",
                "output_numel", "batch", "dtype_bytes", "arith_intensity")
REAL_DEVICE_FALLBACK_MAX_PARAMS = 50_000_000
_CACHE_MAX = 200_000
_FEATURE_CACHE: dict = {}
_LAYER_CACHE: dict = {}
_SOURCE_LABEL = {"type": "per-type model", "global": "global model (closest family)",
                 "shape": "shape-only fallback (unsupported layer)"}


_CAPTURE_CACHE: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()
_CAPTURES_PER_MODEL = 32
_SIMPLE = (int, float, bool, str, type(None))


class _Layer(NamedTuple):
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


def clear_cache() -> None:
    """Drop the capture, per-layer feature and per-layer prediction caches."""
    _FEATURE_CACHE.clear()
    _LAYER_CACHE.clear()
    _CAPTURE_CACHE.clear()


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
            return ("T", tuple(v.shape), v.dtype)
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


def _captured(model, args, dtype, train, notes, use_cache: bool) -> _LightCapture:
    if not use_cache:
        return _light(_capture_meta(model, args, dtype, train, notes))
    key = (_input_signature(args), dtype, train)
    fp = _fingerprint(model)
    try:
        per_model = _CAPTURE_CACHE.setdefault(model, {})
    except TypeError:           # not weak-referenceable: no caching
        return _light(_capture_meta(model, args, dtype, train, notes))
    hit = per_model.get(key)
    if hit is not None and hit[0] == fp:
        return hit[1]
    light = _light(_capture_meta(model, args, dtype, train, notes))
    if len(per_model) >= _CAPTURES_PER_MODEL:
        per_model.pop(next(iter(per_model)))
    per_model[key] = (fp, light)
    return light


# ----------------------------------------------------------------------------- result
@dataclass
class Prediction:
    """Predicted time and total board energy of one call on the whole batch (eager PyTorch)."""

    energy_j: float
    energy_j_low: float
    energy_j_high: float
    time_s: float
    time_s_low: float
    time_s_high: float
    energy_dynamic_j: float          # energy_j - idle power × time_s
    power_w: float                   # energy_j / time_s
    coverage: float                  # nominal coverage of the intervals
    hardware: str
    mode: str
    dtype: str
    batch: int
    optimizer: str | None
    layers: list = field(default_factory=list)
    unsupported: list = field(default_factory=list)
    warnings: list = field(default_factory=list)
    method: str = METHOD
    artifact: dict = field(default_factory=dict)
    terms: dict = field(default_factory=dict)   # layer sums and model-level terms

    def to_dict(self) -> dict:
        """JSON-ready dict (plain floats, ints, strings, lists)."""
        return _jsonable(asdict(self))

    def to_text(self, max_rows: int = 40) -> str:
        """A readable summary and per-layer table."""
        pct = int(round(self.coverage * 100))
        opt = f", optimizer {self.optimizer}" if self.optimizer else ""
        out = [
            f"exante prediction — {self.hardware}, {self.mode}, {self.dtype}, batch {self.batch}{opt}",
            f"  energy  {_fmt_j(self.energy_j)}  ({pct} % interval {_fmt_j(self.energy_j_low)} – "
            f"{_fmt_j(self.energy_j_high)})  per call, total board energy",
            f"  time    {_fmt_s(self.time_s)}  ({pct} % interval {_fmt_s(self.time_s_low)} – "
            f"{_fmt_s(self.time_s_high)})",
            f"  power   {self.power_w:.0f} W average; dynamic energy (above idle) "
            f"{_fmt_j(self.energy_dynamic_j)}",
            "",
        ]
        header = ("layer", "type", "count", "time/call", "energy/call", "energy total", "share", "source")
        rows = []
        total = sum(r["energy_j_total"] for r in self.layers) or 1.0
        order = sorted(self.layers, key=lambda r: -r["energy_j_total"])
        for r in order[:max_rows]:
            name = r["name"] + (f" (+{len(r['names']) - 1})" if len(r["names"]) > 1 else "")
            if len(name) > 34:
                name = "…" + name[-33:]
            rows.append((name, r["type"], str(r["count"]), _fmt_s(r["time_s"]),
                         _fmt_j(r["energy_j"]), _fmt_j(r["energy_j_total"]),
                         f"{100 * r['energy_j_total'] / total:.1f} %",
                         {"type": "", "global": "global*", "shape": "fallback!",
                          "physics": r.get("family", "")}.get(r["source"], r["source"])))
        widths = [max(len(c) for c in col) for col in zip(header, *rows)] if rows else \
            [len(h) for h in header]
        right = {2, 3, 4, 5, 6}

        def fmt(cells):
            return "  ".join(c.rjust(w) if i in right else c.ljust(w)
                             for i, (c, w) in enumerate(zip(cells, widths))).rstrip()

        out += [fmt(header), fmt(tuple("-" * w for w in widths))] + [fmt(r) for r in rows]
        if len(order) > max_rows:
            out.append(f"... {len(order) - max_rows} more distinct layers")
        t = self.terms
        if t and "time_host_s" in t:
            out.append("")
            out.append(f"host (Python + launches) {_fmt_s(t['time_host_s'])}, GPU kernels "
                       f"{_fmt_s(t['time_gpu_s'])}: {t['regime']}-bound; per-layer rows split "
                       "the total by each layer's modelled host+GPU work")
        elif t:
            out.append("")
            out.append(f"sum of layers: {_fmt_s(t.get('sum_layer_time_s', 0))}, "
                       f"{_fmt_j(t.get('sum_layer_energy_j', 0))}; model-level terms (launch gaps, "
                       f"fusion, loss/optimizer overhead): {_fmt_s(self.time_s - t.get('sum_layer_time_s', 0))}, "
                       f"{_fmt_j(self.energy_j - t.get('sum_layer_energy_j', 0))}")
        if self.unsupported:
            out.append("unsupported (shape-only fallback, interval widened): " + ", ".join(
                f"{u['type']} x{u['count']}" for u in self.unsupported))
        for w in self.warnings:
            out.append(f"warning: {w}")
        out.append(f"method: {self.method}; artifact {self.artifact.get('id', '?')}; "
                   f"intervals: split-conformal, nominal {pct} %")
        return "\n".join(out)


def _fmt_j(v: float) -> str:
    v = float(v)
    for div, unit in ((1e3, "kJ"), (1.0, "J"), (1e-3, "mJ"), (1e-6, "µJ")):
        if abs(v) >= div:
            return f"{v / div:.3g} {unit}"
    return f"{v / 1e-9:.3g} nJ"


def _fmt_s(v: float) -> str:
    v = float(v)
    for div, unit in ((1.0, "s"), (1e-3, "ms"), (1e-6, "µs")):
        if abs(v) >= div:
            return f"{v / div:.3g} {unit}"
    return f"{v / 1e-9:.3g} ns"


def _jsonable(obj):
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, (bool, str)) or obj is None:
        return obj
    if isinstance(obj, (int, np.integer)):
        return int(obj)
    if isinstance(obj, (float, np.floating)):
        f = float(obj)
        return f if math.isfinite(f) else None
    return str(obj)


# ----------------------------------------------------------------------------- inputs
def _check_args(mode, dtype, optimizer):
    if mode not in MODES:
        raise ExanteError(f"unknown mode {mode!r}; accepted: {', '.join(MODES)}")
    if dtype not in DTYPES:
        raise ExanteError(f"unknown dtype {dtype!r}; accepted: {', '.join(DTYPES)}")
    if optimizer is not None and optimizer not in OPTIMIZERS:
        raise ExanteError(f"unknown optimizer {optimizer!r}; accepted: {', '.join(OPTIMIZERS)} "
                          "(or None)")


def _is_shape(x) -> bool:
    return isinstance(x, (tuple, list, torch.Size)) and len(x) > 0 and all(
        isinstance(d, (int, np.integer)) and not isinstance(d, bool) for d in x)


def _meta_inputs(inputs) -> tuple[Any, int]:
    """Inputs as meta tensors (same shapes and dtypes) and the batch size."""
    if _is_shape(inputs):
        shape = tuple(int(d) for d in inputs)
        if any(d < 1 for d in shape):
            raise ExanteError(f"input shape {shape} must have positive dimensions "
                              "(the first one is the batch)")
        return (torch.empty(shape, device="meta"),), shape[0]

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


def _on_meta(model: nn.Module) -> bool:
    return all(t.device.type == "meta" for t in model.parameters()) and all(
        t.device.type == "meta" for t in model.buffers())


def _capture_meta(model: nn.Module, args, dtype: str, train: bool, notes: list):
    """Capture on meta without touching the user's model (see module docstring)."""
    if _on_meta(model):
        cap, note = capture_with_cpu_fallback(model, args, dtype=dtype, train=train)
        if note:
            notes.append(note)
        return cap
    from torch.nn.utils.stateless import _reparametrize_module

    swap, placeholders = {}, {}
    for name, t in list(model.named_parameters(remove_duplicate=False)) + list(
            model.named_buffers(remove_duplicate=False)):
        # tied weights (e.g. an LM head sharing the embedding) share one placeholder
        swap[name] = placeholders.setdefault(
            id(t), torch.empty(t.shape, dtype=t.dtype, device="meta"))
    try:
        with _reparametrize_module(model, swap, tie_weights=True, strict=False):
            return capture(model, args, dtype=dtype, train=train)
    except ExanteError as exc:
        meta_error = exc
    n = sum(p.numel() for p in model.parameters())
    if n > REAL_DEVICE_FALLBACK_MAX_PARAMS:
        raise ExanteError(f"cannot trace the model on the meta device ({meta_error}); if its "
                          "forward reads tensor values, make it shape-only") from None
    dev = next((t.device for t in model.parameters()), torch.device("cpu"))
    real = tuple(torch.zeros(a.shape, dtype=a.dtype, device=dev) if isinstance(a, torch.Tensor)
                 else a for a in (args.values() if isinstance(args, dict) else args))
    if isinstance(args, dict):
        real = dict(zip(args.keys(), real))
    try:
        cap = capture(model, real, dtype=dtype, train=train)
    except ExanteError:
        raise meta_error from None          # the same failure on a real device: report it
    msg = (f"the forward could not run on the meta device ({meta_error}); traced once on "
           f"{dev} with zero inputs instead (slower)")
    notes.append(msg)
    warnings.warn(msg, RuntimeWarning, stacklevel=3)
    return cap


# ----------------------------------------------------------------------------- features
def _prod(s) -> int:
    return int(math.prod(int(d) for d in s))


def _features(layer) -> dict | None:
    cfg = layer.config
    if not layer.supported:
        return None
    hit = _FEATURE_CACHE.get(cfg)
    if hit is None:
        try:
            hit = layer_features(cfg)
        except Exception:
            hit = False
        if len(_FEATURE_CACHE) > _CACHE_MAX:
            _FEATURE_CACHE.clear()
        _FEATURE_CACHE[cfg] = hit
    return hit or None


def _shape_features(layer) -> dict:
    cfg = layer.config
    params = int(layer.module_params)
    db = DTYPE_BYTES.get(cfg.dtype, 4)
    f = {"params": params, "input_numel": sum(_prod(s) for s in cfg.input_shapes),
         "output_numel": sum(_prod(s) for s in cfg.output_shapes), "batch": cfg.batch,
         "dtype_bytes": db}
    if f["input_numel"] == 0 and f["output_numel"] == 0 and params == 0:
        raise UnsupportedLayerError(
            f"layer {layer.names[0]!r} of type {cfg.type!r} has no feature function and no "
            "tensor shapes or parameters to predict it from")
    f["shape_bytes"] = (f["input_numel"] + f["output_numel"] + params) * db
    return f


# ----------------------------------------------------------------------------- workload
def capture_workload(model: nn.Module, inputs, mode: str = "inference", dtype: str = "fp32",
                     optimizer: str | None = None, *, cache: bool = True,
                     notes: list | None = None) -> Workload:
    """The :class:`~predictor.workload.Workload` of one call of ``model`` on ``inputs``
    (captured on ``meta``; the user's model is not changed).  Arguments as :func:`predict`."""
    if not isinstance(model, nn.Module):
        raise ExanteError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    _check_args(mode, dtype, optimizer)
    notes = [] if notes is None else notes
    if mode == "inference":
        optimizer = None
    elif optimizer is None:
        optimizer = DEFAULT_TRAIN_OPTIMIZER
    args, batch = _meta_inputs(inputs)
    cap = _captured(model, args, dtype, mode == "train_step", notes, cache)
    return workload_from_capture(model, cap.layers, mode=mode, dtype=dtype, batch=batch,
                                 optimizer=optimizer, zero_cost_ops=cap.zero_cost,
                                 notes=tuple(notes))


# ----------------------------------------------------------------------------- predict
def _load_or_transfer(hardware: str, artifact_dir):
    """The artifact of ``hardware``; without one, a catalogue GPU's datasheet transfer from a
    measured GPU (:mod:`predictor.transfer`, labelled in every prediction's warnings)."""
    from .artifacts import available_hardware
    from .transfer import can_transfer, transferred_artifact

    if hardware not in available_hardware(artifact_dir) and can_transfer(hardware):
        return transferred_artifact(hardware, artifact_dir)
    return load_artifact(hardware, artifact_dir)


def predict(model: nn.Module, inputs, mode: str = "inference", dtype: str = "fp32",
            hardware: str = "h100", optimizer: str | None = None, *,
            artifact_dir=None, cache: bool = True) -> Prediction:
    """Predict time and total board energy of one eager call on the whole batch.

    ``inputs``: a tensor or tuple of tensors including the batch dimension (any device,
    ``meta`` included), or a shape tuple (batch first) for a single float input.
    ``mode``: "inference" | "train_step"; ``dtype``: "fp32" | "bf16" (autocast);
    ``optimizer``: None | "sgd" | "adam" | "adamw" (train_step; None means "sgd").
    ``artifact_dir``: a folder with ``<hardware>.joblib``/``.json`` searched before
    ``$EXANTE_ARTIFACT_DIR`` and the package's ``predictor/artifacts/``.
    ``cache``: reuse the capture of the same model object when its structural fingerprint
    and the input shapes are unchanged (see ``_fingerprint``), and per-layer predictions.
    """
    if not isinstance(model, nn.Module):
        raise ExanteError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    _check_args(mode, dtype, optimizer)
    notes: list[str] = []
    if mode == "inference" and optimizer is not None:
        notes.append(f"optimizer {optimizer!r} ignored for mode='inference'")
        optimizer = None
    if mode == "train_step" and optimizer is None:
        optimizer = DEFAULT_TRAIN_OPTIMIZER
    art = _load_or_transfer(hardware, artifact_dir)
    hm = art.model
    if isinstance(hm, CalibratedHardware):
        return _predict_calibrated(art, model, inputs, mode, dtype, optimizer, notes, cache)
    if mode not in hm.modes:
        raise ExanteError(f"the {hardware} artifact has no {mode} data (fitted modes: "
                          f"{', '.join(hm.modes)}); measure it with `exante sweep` and refit")
    if mode == "train_step" and optimizer not in hm.optimizers:
        raise ExanteError(f"the {hardware} artifact has no train_step data for optimizer "
                          f"{optimizer!r} (fitted: {', '.join(hm.optimizers) or 'none'})")
    dtypes = hm.info.get("dtypes")
    if dtypes and dtype not in dtypes:
        raise ExanteError(f"the {hardware} artifact has no {dtype} data (fitted dtypes: "
                          f"{', '.join(dtypes)})")
    args, batch = _meta_inputs(inputs)
    cap = _captured(model, args, dtype, mode == "train_step", notes, cache)
    if not cap.layers:
        raise ExanteError("the model executed no layer (nothing to predict)")

    # ---- features and per-layer predictions (cached per config)
    sha = art.manifest.get("sha256", "")
    n = len(cap.layers)
    feats: list[dict] = []
    supported = np.zeros(n, bool)
    unsupported = []
    for i, layer in enumerate(cap.layers):
        f = _features(layer)
        if f is None:
            f = _shape_features(layer)
            unsupported.append({"type": layer.config.type, "names": list(layer.names),
                                "count": layer.count})
        else:
            supported[i] = True
        feats.append(f)
    t = np.zeros(n)
    ea = np.zeros(n)
    t_opt = np.zeros(n)
    e_opt = np.zeros(n)
    src = np.empty(n, dtype=object)
    todo = []
    keys = []
    for i, layer in enumerate(cap.layers):
        k = (sha, layer.config, dtype, mode, optimizer, bool(supported[i]))
        keys.append(k)
        hit = _LAYER_CACHE.get(k) if cache else None
        if hit is None:
            todo.append(i)
        else:
            t[i], ea[i], t_opt[i], e_opt[i], src[i] = hit
    if todo:
        rows = []
        for i in todo:
            r = dict(feats[i])
            r["layer_type"] = cap.layers[i].config.type
            r["dtype"] = dtype
            rows.append(r)
        frame = pd.DataFrame(rows)
        lp = hm.layer_predictions(frame, mode, optimizer, supported=supported[todo])
        if len(_LAYER_CACHE) > _CACHE_MAX:
            _LAYER_CACHE.clear()
        for j, i in enumerate(todo):
            vals = (float(lp.time_s[j]), float(lp.energy_active_j[j]), float(lp.time_opt_s[j]),
                    float(lp.energy_opt_j[j]), str(lp.source[j]))
            t[i], ea[i], t_opt[i], e_opt[i], src[i] = vals
            _LAYER_CACHE[keys[i]] = vals

    counts = np.array([layer.count for layer in cap.layers], float)
    P = hm.active_idle_power_w
    sums = pd.DataFrame([{
        "mode": mode, "dtype": dtype,
        "sum_time_s": float(counts @ t), "sum_time_opt_s": float(counts @ t_opt),
        "n_layer_calls": float(counts.sum()),
        "sum_energy_active_j": float(counts @ ea), "sum_energy_opt_j": float(counts @ e_opt),
    }])
    T, E = (float(v) for v in hm.compose(sums)[0])
    T = max(T, 1e-12)
    E = max(E, 1e-12)

    # ---- intervals (widened by the share predicted by fallback models)
    lt = t + t_opt
    le = P * lt + ea + e_opt
    tot_t = float(counts @ lt) or 1.0
    tot_e = float(counts @ le) or 1.0
    share_t = {k: float(counts[src == k] @ lt[src == k]) / tot_t for k in ("global", "shape")}
    share_e = {k: float(counts[src == k] @ le[src == k]) / tot_e for k in ("global", "shape")}
    hb = bool(hm.host_bound(T, E))
    t_lo, t_hi = hm.interval("time", T, hb, mode, share_t)
    e_lo, e_hi = hm.interval("energy", E, hb, mode, share_e)

    # ---- warnings
    if art.manifest.get("measured") is False:
        notes.append("artifact NOT fitted on measurements ("
                     f"{art.manifest.get('not_measured_reason') or 'synthetic or estimated data'}): "
                     "these numbers say nothing about real hardware")
    if unsupported:
        msg = ("no feature function for " + ", ".join(
            f"{u['type']} x{u['count']} ({', '.join(u['names'][:3])}"
            f"{', ...' if len(u['names']) > 3 else ''})" for u in unsupported)
            + f"; predicted from shape-only features ({100 * share_e['shape']:.1f} % of the "
              "energy), interval widened")
        notes.append(msg)
        warnings.warn(msg, UnsupportedLayerWarning, stacklevel=2)
    unseen = sorted({cap.layers[i].config.type for i in range(n) if src[i] == "global"})
    if unseen:
        msg = (f"layer types with little or no training data: {', '.join(unseen)}; predicted "
               f"by the global model ({100 * share_e['global']:.1f} % of the energy), "
               "interval widened")
        notes.append(msg)
        warnings.warn(msg, UserWarning, stacklevel=2)
    br = hm.info.get("batch_range")
    if br and not (br[0] <= batch <= br[1]):
        notes.append(f"batch {batch} is outside the fitted range {br[0]}–{br[1]}; extrapolating")
    if hb:
        notes.append("host-bound (launch-limited) workload: its energy varies between host "
                     "machines; CUDA graphs or larger batches usually make it cheaper and stabler")
    comp_note = hm.info.get("report", {}).get("composer_note")
    if comp_note:
        notes.append(comp_note)

    # ---- per-layer rows
    layers_out = []
    for i, layer in enumerate(cap.layers):
        f = feats[i]
        layers_out.append({
            "name": layer.names[0], "names": list(layer.names), "type": layer.config.type,
            "count": int(layer.count), "dtype": layer.config.dtype,
            "time_s": float(lt[i]), "energy_j": float(le[i]),
            "time_s_total": float(counts[i] * lt[i]), "energy_j_total": float(counts[i] * le[i]),
            "source": str(src[i]), "supported": bool(supported[i]),
            "features": {k: f[k] for k in FEATURE_KEYS if k in f},
        })
    unc = hm.uncertainty
    return Prediction(
        energy_j=E, energy_j_low=e_lo, energy_j_high=e_hi,
        time_s=T, time_s_low=t_lo, time_s_high=t_hi,
        energy_dynamic_j=E - hm.idle_power_w * T, power_w=E / T,
        coverage=float(unc.coverage), hardware=hardware, mode=mode, dtype=dtype, batch=batch,
        optimizer=optimizer, layers=layers_out, unsupported=unsupported, warnings=notes,
        artifact={"id": art.manifest.get("id"), "sha256": sha,
                  "created": art.manifest.get("created"),
                  "training_data_digest": art.manifest.get("training_data_digest")},
        terms={"sum_layer_time_s": tot_t, "sum_layer_energy_j": tot_e,
               "n_layer_calls": int(counts.sum()), "host_bound": hb,
               "active_idle_power_w": float(P), "idle_power_w": float(hm.idle_power_w),
               "fallback_share_energy": share_e},
    )


def _predict_calibrated(art, model, inputs, mode, dtype, optimizer, notes, cache) -> Prediction:
    """``predict`` through a :class:`~predictor.calibrated.CalibratedHardware` artifact."""
    ch: CalibratedHardware = art.model
    if mode not in ch.modes:
        notes.append(f"mode {mode} was never measured on {ch.hardware} (fitted: "
                     f"{', '.join(ch.modes)}); predicted from the same physics, interval as fitted")
    if mode == "train_step" and optimizer not in ch.optimizers:
        notes.append(f"optimizer {optimizer} was never measured on {ch.hardware} (fitted: "
                     f"{', '.join(ch.optimizers) or 'none'}); its foreach kernels are counted "
                     "from torch.optim's algorithm")
    w = capture_workload(model, inputs, mode, dtype, optimizer, cache=cache, notes=notes)
    if not w.layers:
        raise ExanteError("the model executed no layer (nothing to predict)")
    r = ch.predict_workload(w)
    notes.extend(r["notes"])
    unsupported = [{"type": x.config.type, "names": list(x.names), "count": x.count}
                   for x in w.layers if not x.supported]
    if unsupported:
        msg = ("no feature function for " + ", ".join(
            f"{u['type']} x{u['count']} ({', '.join(u['names'][:3])})" for u in unsupported)
            + "; counted as memory-bound kernels over their tensors")
        notes.append(msg)
        warnings.warn(msg, UnsupportedLayerWarning, stacklevel=3)
    for msg in r["notes"]:
        warnings.warn(msg, UserWarning, stacklevel=3)
    if art.manifest.get("measured") is False:
        notes.append("artifact NOT fitted on measurements ("
                     f"{art.manifest.get('not_measured_reason') or 'synthetic or estimated data'}): "
                     "these numbers say nothing about real hardware")
    if r["regime"] == "host":
        notes.append("host-bound (launch-limited) workload: its time varies between host "
                     "machines; CUDA graphs or larger batches usually make it cheaper and stabler")
    layers = []
    for row in r["layers"]:
        x = next(y for y in w.layers if (y.names[0] if y.names else y.config.type) == row["name"])
        f = _features(_Layer(x.config, x.count, x.names, x.supported, x.module_params)) or {}
        layers.append({**row, "source": "physics", "supported": x.supported,
                       "features": {k: f[k] for k in FEATURE_KEYS if k in f}})
    T, E = r["time_s"], r["energy_j"]
    ds = ch.datasheet
    return Prediction(
        energy_j=E, energy_j_low=r["energy_low"], energy_j_high=r["energy_high"],
        time_s=T, time_s_low=r["time_low"], time_s_high=r["time_high"],
        energy_dynamic_j=E - ds.idle_w * T, power_w=r["power_w"], coverage=float(ch.coverage),
        hardware=ch.hardware, mode=mode, dtype=dtype, batch=w.batch, optimizer=optimizer,
        layers=layers, unsupported=unsupported, warnings=notes, method=METHOD_PHYSICS,
        artifact={"id": art.manifest.get("id"), "sha256": art.manifest.get("sha256"),
                  "created": art.manifest.get("created"),
                  "training_data_digest": art.manifest.get("training_data_digest")},
        terms={"time_host_s": r["time_host_s"], "time_gpu_s": r["time_gpu_s"],
               "regime": r["regime"], "host_bound": r["regime"] == "host",
               "idle_power_w": float(ds.idle_w)})
