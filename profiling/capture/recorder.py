"""The capture's recording state (:class:`_State`: dedup index, compute dtype under
emulated autocast) and the :class:`~torch.overrides.TorchFunctionMode` that records
functional ops outside leaf/atomic modules.
"""

from __future__ import annotations

import weakref
from collections import Counter

import torch
from torch import nn
from torch.overrides import TorchFunctionMode

import profiling.capture.fastpath as fastpath  # looked up per call (tests wrap its rules)
from profiling.capture.dtypes import _TAG, FP32_TYPES, LOWP_TYPES, _promote, _vdtype, dtype_name
from profiling.capture.meta_reads import _meta_grouped_mm, _meta_read, _meta_tag, _untag
from profiling.capture.ops import (
    _CAST,
    _META,
    _OP,
    _VIEW,
    _classify,
    _has_tensor,
    _op_hparams,
    _tensors,
)
from profiling.capture.records import ROOT_NAME, CapturedLayer, LayerConfig

# --------------------------------------------------------------------------------------
# the recorder


class _State:
    __slots__ = ("depth", "stack", "lowp", "records", "index", "zero_cost", "calls",
                 "supported", "tagged", "hp_cache", "fast", "seen", "marks", "meta")

    def __init__(self, lowp: str | None, supported: dict):
        self.depth = 0
        self.stack = [ROOT_NAME]
        self.lowp = lowp                 # "bf16" / "fp16" when emulating autocast
        self.records: list = []          # CapturedLayer, first-seen order
        self.index: dict = {}            # LayerConfig field tuple -> CapturedLayer
        self.zero_cost: Counter = Counter()
        self.calls = 0
        self.supported = supported
        self.tagged: list = []           # weakrefs of tagged tensors (cleanup)
        self.hp_cache: dict = {}
        self.fast = False                # meta fast path (shape rules) for functional ops
        self.seen = 0                    # functional calls seen outside recorded modules
        self.marks: list = []            # ``seen`` at the entry of each descended module
        self.meta = False                # inputs on meta: value reads answered (see above)

    # -- dtype --------------------------------------------------------------------------
    def compute_dtype(self, tname: str, ins: list, outs: list, inplace: bool = False) -> str:
        lowp = self.lowp
        if lowp is None:
            for t in ins:
                if t.is_floating_point():
                    return dtype_name(t.dtype)
            for t in outs:
                if t.is_floating_point():
                    return dtype_name(t.dtype)
            t0 = outs[0] if outs else (ins[0] if ins else None)
            return dtype_name(t0.dtype) if t0 is not None else "fp32"
        if inplace and ins and ins[0].is_floating_point():
            return _vdtype(ins[0])          # an in-place op keeps its target's dtype
        if tname in LOWP_TYPES:
            dt = lowp
        elif tname in FP32_TYPES:
            dt = "fp32"
        else:
            odt = _promote(_vdtype(t) for t in ins if t.is_floating_point())
            if odt is None:
                odt = _promote(dtype_name(t.dtype) for t in outs if t.is_floating_point())
            if odt is None:
                t0 = outs[0] if outs else (ins[0] if ins else None)
                return dtype_name(t0.dtype) if t0 is not None else "fp32"
            dt = odt
        for t in outs:
            if t.is_floating_point():
                self.tag(t, dt)
        return dt

    def tag(self, t: torch.Tensor, dt: str) -> None:
        try:
            t.__dict__[_TAG] = dt
        except (AttributeError, TypeError):   # tensor without __dict__ (exotic subclass): skip
            return
        self.tagged.append(weakref.ref(t))

    def propagate(self, src, out) -> None:
        """View ops keep the (virtual) dtype of their input."""
        tag = src.__dict__.get(_TAG) if isinstance(src, torch.Tensor) else None
        if tag is None:
            return
        outs: list = []
        _tensors(out, outs)
        for t in outs:
            if t.is_floating_point():
                self.tag(t, tag)

    def cleanup(self) -> None:
        _untag(self.tagged)

    # -- recording ----------------------------------------------------------------------
    def record(self, tname: str, hparams: tuple, ins: list, outs: list, name: str,
               module: nn.Module | None, inplace: bool = False) -> None:
        dt = self.compute_dtype(tname, ins, outs, inplace)
        # the plain field tuple: equal and hashes like the LayerConfig built from it
        key = (tname, hparams, tuple([tuple(t.shape) for t in ins]),
               tuple([tuple(t.shape) for t in outs]), dt)
        self.calls += 1
        layer = self.index.get(key)
        if layer is None:
            layer = CapturedLayer(LayerConfig(*key), 1, [name], module, tname in self.supported)
            self.index[key] = layer
            self.records.append(layer)
        else:
            layer.count += 1
            if name not in layer.names:
                layer.names.append(name)


class _FunctionalRecorder(TorchFunctionMode):
    """Records functional ops that run while no leaf/atomic module is executing."""

    def __init__(self, state: _State):
        super().__init__()
        self.state = state

    def __torch_function__(self, func, types, args=(), kwargs=None):
        if kwargs is None:
            kwargs = {}
        s = self.state
        if s.depth:
            return func(*args, **kwargs)
        s.seen += 1
        kind, name, inplace = _classify(func)
        if kind == _META and s.meta:
            v = _meta_read(func, args)
            if v is not None:
                s.zero_cost[name] += 1
                return v
        out = fastpath._fast_functional(func, args, kwargs) if s.fast else None
        if out is None and s.meta and name == "grouped_mm":
            out = _meta_grouped_mm(args, kwargs)
        if out is None:
            out = func(*args, **kwargs)
        if kind == _META:
            s.zero_cost[name] += 1
            return out
        if s.meta and kind == _OP:
            _meta_tag(name, args, out, s.tagged)
        src = args[0] if args else None
        if kind == _VIEW and name == "getitem" and len(args) > 1 and _has_tensor(args[1]):
            kind, name = _OP, "index"           # advanced indexing: a gather kernel
        if kind == _VIEW:
            s.zero_cost[name] += 1
            if s.lowp is not None:
                s.propagate(src, out)
            return out
        ins: list = []
        _tensors(args, ins)
        _tensors(kwargs, ins)
        if kind == _CAST and any(out is t for t in ins):
            s.zero_cost[name] += 1          # returned its input: no kernel
            if s.lowp is not None:
                s.propagate(src, out)
            return out
        outs: list = []
        _tensors(out, outs)
        if not outs:
            s.zero_cost[name] += 1          # no tensor produced (e.g. .tolist(), bool())
            return out
        s.depth += 1                        # no re-entry while recording
        try:
            hp = _op_hparams(name, args, kwargs)
            if inplace:
                hp = tuple(sorted(hp + (("inplace", True),)))
            s.record(name, hp, ins, outs, f"{s.stack[-1]}:{name}", None,
                     inplace or kwargs.get("inplace") is True)
        finally:
            s.depth -= 1
        return out


