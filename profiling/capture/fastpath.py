"""The capture's meta fast path: closed-form output shape rules for exact torch leaf types
and a few functional ops, used instead of torch's Python meta decompositions.
``profiling.capture.core._FAST_PATH = False`` switches it off.
"""

from __future__ import annotations

import logging
from typing import Any

import torch
from torch import nn

logger = logging.getLogger(__name__)

# --------------------------------------------------------------------------------------
# meta fast path: shape rules instead of running a leaf's forward
#
# On ``meta`` many ops run Python decompositions (BatchNorm ~0.5-1 ms a call, LayerNorm,
# GroupNorm, GELU, Linear with bias, elementwise ops ~0.1-0.3 ms). For a few exact torch
# module types whose output is fully determined by the input shape and dtype, the capture
# replaces ``forward`` (for the duration of the capture only) by a shape rule that returns
# ``torch.empty(out_shape, dtype=..., device="meta")`` -- or the input itself where the
# real forward returns its input (in-place activations and dropout). A rule only applies
# under narrow conditions (a plain contiguous non-empty floating meta input, parameters and
# buffers on meta with the input's dtype and the expected shapes, no error case of the real
# forward); anything else runs the real forward. Outputs then have the same shape, dtype and
# (contiguous) strides as the real ones, so the recorded configs are identical
# (``tests/test_capture.py`` checks this with the fast path on and off).

_FAST_FLOATS = frozenset({torch.float32, torch.bfloat16, torch.float16, torch.float64})
_META_DEV = torch.device("meta")
_NoTorchFunction = torch._C.DisableTorchFunction
_PLAIN_TENSORS = frozenset({torch.Tensor, nn.Parameter})     # no own __torch_function__
_empty = torch.empty


def _all_plain(ts: list) -> bool:
    for t in ts:
        if type(t) not in _PLAIN_TENSORS:
            return False
    return True


def _fast_input(args: tuple, kwargs: dict):
    """The single plain tensor argument a rule can handle, else None (the caller holds
    ``DisableTorchFunction``)."""
    if kwargs or len(args) != 1:
        return None
    x = args[0]
    if type(x) is not torch.Tensor or not x.is_meta or x.dtype not in _FAST_FLOATS \
            or not x.is_contiguous() or x.numel() == 0:
        return None
    return x


def _state_ok(mod: nn.Module, dt, shape) -> bool:
    """Parameters and floating buffers on meta with dtype ``dt`` (and shape ``shape`` when
    given); other buffers on meta."""
    for p in mod._parameters.values():
        if p is not None and (type(p) not in _PLAIN_TENSORS or not p.is_meta
                              or p.dtype is not dt or (shape is not None and p.shape != shape)):
            return False
    for b in mod._buffers.values():
        if b is None:
            continue
        if type(b) is not torch.Tensor or not b.is_meta:
            return False
        if b.is_floating_point() and (b.dtype is not dt or (shape is not None
                                                             and b.shape != shape)):
            return False
    return True


def _same(x):
    return _empty(x.shape, dtype=x.dtype, device=_META_DEV)


_BN_DIMS = {nn.BatchNorm1d: (2, 3), nn.BatchNorm2d: (4,), nn.BatchNorm3d: (5,)}


def _rule_batchnorm(mod, x):
    if x.dim() not in _BN_DIMS[type(mod)]:
        return None
    c = x.shape[1]
    if c != mod.num_features or not _state_ok(mod, x.dtype, (c,)):
        return None
    if mod.training or (mod.running_mean is None and mod.running_var is None):
        if mod.training and mod.momentum is None and mod.track_running_stats:
            return None                 # float(num_batches_tracked): fails on meta
        s = x.shape
        n = s[0]
        for d in s[2:]:
            n *= d
        if n == 1:
            return None                 # "Expected more than 1 value per channel"
    return _same(x)


_IN_DIMS = {nn.InstanceNorm1d: 3, nn.InstanceNorm2d: 4, nn.InstanceNorm3d: 5}


def _rule_instancenorm(mod, x):
    if x.dim() != _IN_DIMS[type(mod)]:
        return None
    s = x.shape
    if s[1] != mod.num_features or not _state_ok(mod, x.dtype, (s[1],)):
        return None
    n = 1
    for d in s[2:]:
        n *= d
    return None if n == 1 else _same(x)


def _rule_layernorm(mod, x):
    ns = mod.normalized_shape
    k = len(ns)
    if k == 0 or x.dim() < k or tuple(x.shape[-k:]) != tuple(ns) \
            or not _state_ok(mod, x.dtype, tuple(ns)):
        return None
    return _same(x)


def _rule_groupnorm(mod, x):
    if x.dim() < 2:
        return None
    s = x.shape
    c, g = s[1], mod.num_groups
    if c != mod.num_channels or g <= 0 or c % g or not _state_ok(mod, x.dtype, (c,)):
        return None
    n = s[0] * c // g
    for d in s[2:]:
        n *= d
    return None if n == 1 else _same(x)


def _rule_activation(mod, x):
    if mod._parameters or mod._buffers:
        return None
    d = mod.__dict__
    if "approximate" in d and d["approximate"] not in ("none", "tanh"):      # GELU
        return None
    if "min_val" in d and not d["min_val"] <= d["max_val"]:                 # Hardtanh, ReLU6
        return None
    if mod.__dict__.get("inplace") is True:
        return x                        # the real in-place forward returns its input
    return _same(x)


def _rule_dropout(mod, x):
    p = mod.p
    if type(p) not in (float, int) or not 0.0 < p < 1.0 or not mod.training \
            or mod._parameters or mod._buffers:
        return None
    return x if mod.inplace is True else _same(x)


def _rule_linear(mod, x):
    w = mod._parameters.get("weight")
    if w is None or w.dim() != 2 or len(mod._parameters) != 2 or mod._buffers or x.dim() < 1:
        return None
    out_f, in_f = w.shape
    if x.shape[-1] != in_f or not _state_ok(mod, x.dtype, None):
        return None
    b = mod._parameters.get("bias")
    if b is not None and tuple(b.shape) != (out_f,):
        return None
    return _empty(x.shape[:-1] + (out_f,), dtype=x.dtype, device=_META_DEV)


_AAP_DIMS = {nn.AdaptiveAvgPool1d: 1, nn.AdaptiveAvgPool2d: 2, nn.AdaptiveAvgPool3d: 3}


def _rule_adaptive_avg_pool(mod, x):
    n = _AAP_DIMS[type(mod)]
    nd = x.dim()
    if nd != n + 1 and nd != n + 2:
        return None
    o = mod.output_size
    s = tuple(x.shape)
    if type(o) is int:
        out = (o,) * n
    elif type(o) is tuple and len(o) == n and (n > 1 or o[0] is not None):
        out = tuple(s[nd - n + i] if v is None else v for i, v in enumerate(o))
    else:
        return None
    if any(type(v) is not int or v < 1 for v in out):
        return None
    return _empty(s[:nd - n] + out, dtype=x.dtype, device=_META_DEV)


_CONV_N = {nn.Conv1d: 1, nn.Conv2d: 2, nn.Conv3d: 3}


def _int_tuple(v, n: int) -> bool:
    return type(v) is tuple and len(v) == n and all(type(e) is int for e in v)


def _rule_conv(mod, x):
    n = _CONV_N[type(mod)]
    w = mod._parameters.get("weight")
    if mod.padding_mode != "zeros" or w is None or w.dim() != n + 2 \
            or len(mod._parameters) != 2 or mod._buffers:
        return None
    nd = x.dim()
    if nd != n + 2 and nd != n + 1:
        return None
    s = tuple(x.shape)
    out_c, cin_g = w.shape[0], w.shape[1]
    g = mod.groups
    if type(g) is not int or g < 1 or s[nd - n - 1] != cin_g * g or out_c % g:
        return None
    stride, dil, pad = mod.stride, mod.dilation, mod.padding
    if not (_int_tuple(stride, n) and _int_tuple(dil, n)) or min(stride) < 1 or min(dil) < 1:
        return None
    if not _state_ok(mod, x.dtype, None):
        return None
    b = mod._parameters.get("bias")
    if b is not None and tuple(b.shape) != (out_c,):
        return None
    ks = tuple(w.shape[2:])
    if pad == "same":
        # symmetric "same" padding only (the asymmetric case pads a copy, with a warning)
        if max(stride) != 1 or any(dil[i] * (ks[i] - 1) % 2 for i in range(n)):
            return None
        pad = tuple(dil[i] * (ks[i] - 1) // 2 for i in range(n))
    elif pad == "valid":
        pad = (0,) * n
    elif not _int_tuple(pad, n) or min(pad) < 0:
        return None
    out = tuple((s[nd - n + i] + 2 * pad[i] - dil[i] * (ks[i] - 1) - 1) // stride[i] + 1
                for i in range(n))
    if min(out) < 1 or min(ks) < 1:
        return None
    return _empty(s[:nd - n - 1] + (out_c,) + out, dtype=x.dtype, device=_META_DEV)


# functional ops (seen by the TorchFunctionMode outside leaves) with a shape rule on meta:
# binary elementwise ops on two same-shape, same-dtype tensors or a tensor and a Python
# number, and a few unary activations
_T = torch.Tensor
_BINARY, _UNARY, _UNARY_INPLACE = 1, 2, 3
_FAST_FUNCS: dict = {}
_f: Any
for _f in (torch.add, _T.add, torch.sub, _T.sub, torch.mul, _T.mul, torch.div, _T.div,
           _T.__rsub__, _T.__rdiv__, _T.__rtruediv__):
    _FAST_FUNCS[_f] = _BINARY
for _f in (torch.relu, _T.relu, torch.sigmoid, _T.sigmoid, torch.tanh, _T.tanh,
           torch.nn.functional.gelu):
    _FAST_FUNCS[_f] = _UNARY
for _f in (torch.nn.functional.relu, torch.nn.functional.silu):
    _FAST_FUNCS[_f] = _UNARY_INPLACE
del _f, _T
_INT32 = 2 ** 31


def _fast_functional(func, args: tuple, kwargs: dict):
    """Output of a functional op from :data:`_FAST_FUNCS` by shape rule, or None (then the
    op runs)."""
    op = _FAST_FUNCS.get(func)
    if op is None or not args:
        return None
    with _NoTorchFunction():
        x = args[0]
        if type(x) is not torch.Tensor or not x.is_meta or x.dtype not in _FAST_FLOATS \
                or not x.is_contiguous() or x.numel() == 0:
            return None
        if op == _BINARY:
            if kwargs or len(args) != 2:
                return None
            y = args[1]
            ty = type(y)
            if ty is torch.Tensor:
                if not y.is_meta or y.dtype is not x.dtype or y.shape != x.shape \
                        or not y.is_contiguous():
                    return None
            elif ty is int:
                if not -_INT32 < y < _INT32:
                    return None
            elif ty is not float:
                return None
            return _empty(x.shape, dtype=x.dtype, device=_META_DEV)
        if len(args) != 1:
            return None
        inplace = False
        for k, v in kwargs.items():
            if k == "inplace" and op == _UNARY_INPLACE and type(v) is bool:
                inplace = v
            elif not (k == "approximate" and func is torch.nn.functional.gelu
                      and v in ("none", "tanh")):
                return None
        return x if inplace else _empty(x.shape, dtype=x.dtype, device=_META_DEV)


_FAST_RULES: dict = {}
_cls: type
for _cls in _BN_DIMS:
    _FAST_RULES[_cls] = _rule_batchnorm
for _cls in _IN_DIMS:
    _FAST_RULES[_cls] = _rule_instancenorm
for _cls in _AAP_DIMS:
    _FAST_RULES[_cls] = _rule_adaptive_avg_pool
for _cls in _CONV_N:
    _FAST_RULES[_cls] = _rule_conv
_FAST_RULES[nn.LayerNorm] = _rule_layernorm
_FAST_RULES[nn.GroupNorm] = _rule_groupnorm
_FAST_RULES[nn.Dropout] = _rule_dropout
_FAST_RULES[nn.Linear] = _rule_linear
_FAST_RULES[nn.modules.linear.NonDynamicallyQuantizableLinear] = _rule_linear
for _cls in (nn.ReLU, nn.ReLU6, nn.GELU, nn.SiLU, nn.Sigmoid, nn.Tanh, nn.Hardswish,
             nn.Hardsigmoid, nn.Mish, nn.LeakyReLU, nn.ELU, nn.Hardtanh):
    _FAST_RULES[_cls] = _rule_activation
del _cls


def _no_outer_modes() -> bool:
    """No dispatch mode and no torch-function mode other than a ``torch.device`` context is
    active: nothing outside the capture would miss the ops a shape rule skips."""
    if torch._C._len_torch_dispatch_stack():
        return False
    if not torch._C._len_torch_function_stack():
        return True
    try:
        from torch.overrides import _get_current_function_mode_stack
        from torch.utils._device import DeviceContext
    except ImportError:                 # pragma: no cover - other torch versions
        return False
    return all(type(m) is DeviceContext for m in _get_current_function_mode_stack())


def _fast_forward(mod: nn.Module, rule, orig):
    """A ``forward`` for ``mod`` that applies ``rule`` when it can, else calls ``orig``."""

    def forward(*args, **kwargs):
        out = None
        with _NoTorchFunction():
            x = _fast_input(args, kwargs)
            if x is not None:
                try:
                    out = rule(mod, x)
                except Exception as exc:   # an unforeseen module state: the real forward decides
                    logger.debug("fast rule for %s failed (%s: %s); running its forward",
                                 type(mod).__name__, type(exc).__name__, exc)
                    out = None
        if out is not None:
            return out
        return orig(*args, **kwargs)

    return forward


