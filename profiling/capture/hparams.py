"""``LayerConfig.type`` and hyper-parameters of a module (:func:`module_type_name`,
:func:`module_hparams`): the cost-relevant, JSON-canonical part of a module's state.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from profiling.capture.dtypes import dtype_name

# --------------------------------------------------------------------------------------
# module types and hyper-parameters

_TYPE_CACHE: dict = {}


def _registry() -> dict:
    from profiling.features.families import (
        FEATURE_REGISTRY,  # lazy: loads fvcore on first capture only
    )

    return FEATURE_REGISTRY


def _builtin_type_name(name: str) -> bool:
    """``name`` is one of exante's built-in layer/op types (a user's own registrations aside)."""
    from profiling.features.families import BUILTIN_FEATURE_TYPES  # lazy, like _registry()

    return name in BUILTIN_FEATURE_TYPES


def module_type_name(module_or_cls) -> str:
    """``LayerConfig.type`` of a module.

    Torch classes: the class name. A user subclass that keeps a torch layer's ``forward``
    gets that layer's name (``class MyConv(nn.Conv2d)`` -> ``"Conv2d"``); a user class with
    its own ``forward`` keeps its class name, qualified by its module when the bare name
    would collide with a built-in layer or op type (``class Linear(nn.Module)``); a name the user
    registered features for (``@register("MyScan")``) is kept as it is.
    """
    cls = module_or_cls if isinstance(module_or_cls, type) else type(module_or_cls)
    name = _TYPE_CACHE.get(cls)
    if name is not None:
        return name
    if cls.__module__.startswith("torch."):
        name = cls.__name__
    else:
        name = None
        fwd = getattr(cls, "forward", None)
        for base in cls.__mro__[1:]:
            if base is nn.Module or not base.__module__.startswith("torch."):
                continue
            if getattr(base, "forward", None) is fwd:
                name = base.__name__
                break
        if name is None:
            name = cls.__name__
            if _builtin_type_name(name):
                name = f"{cls.__module__}.{cls.__qualname__}"
    _TYPE_CACHE[cls] = name
    return name


# fields that do not change the cost of a layer (kept out of the dedup key)
_SKIP_FIELDS = frozenset({"training", "inplace", "eps", "momentum", "dump_patches",
                          "call_super_init", "_version"})
_MODE_DEPENDENT = ("BatchNorm", "SyncBatchNorm", "InstanceNorm", "Dropout", "AlphaDropout",
                   "FeatureAlphaDropout", "MultiheadAttention", "LSTM", "GRU", "RNN")


def _canon_value(v: Any, depth: int = 0):
    """A JSON-serialisable, hashable version of a simple hyper-parameter value, or a
    sentinel ``_NOPE`` when the value is not simple (tensor, module, callable ...)."""
    if v is None or isinstance(v, (bool, str)):
        return v
    if isinstance(v, int):
        return int(v)
    if isinstance(v, float):
        return v if math.isfinite(v) else str(v)
    if isinstance(v, torch.dtype):
        return dtype_name(v)
    if isinstance(v, (tuple, list, torch.Size)) and depth < 3:
        out = tuple(_canon_value(x, depth + 1) for x in v)
        return _NOPE if any(x is _NOPE for x in out) else out
    return _NOPE


_NOPE = object()


def module_hparams(module: nn.Module) -> tuple:
    """Sorted ``(name, value)`` pairs describing a module's cost-relevant hyper-parameters.

    Torch layers keep their constructor arguments as public attributes (``in_features``,
    ``kernel_size``, ``stride``, ``groups``, ``num_heads`` ...): every public attribute with
    a simple value (number, bool, str, None, tuple of those) is taken, minus fields that do
    not change the cost (``eps``, ``momentum``, ``inplace``). Presence of optional
    parameters is added as booleans (``bias``; for MultiheadAttention ``bias`` and
    ``add_bias_kv``), and ``training`` for layers whose cost depends on the mode
    (BatchNorm, InstanceNorm, Dropout, MultiheadAttention, RNNs). Types without a feature
    function also get ``param_shapes`` (their direct parameters and buffers).
    """
    tname = module_type_name(module)
    hp: dict = {}
    for k, v in vars(module).items():
        if k[:1] == "_" or k in _SKIP_FIELDS:
            continue
        tv = type(v)
        if tv is int or tv is bool or tv is str or v is None \
                or (tv is tuple and all(type(e) is int for e in v)):
            hp[k] = v                   # already canonical (what _canon_value returns)
            continue
        cv = _canon_value(v)
        if cv is not _NOPE:
            hp[k] = cv
    params = module._parameters
    if "bias" in params:
        hp["bias"] = params["bias"] is not None
    if "in_proj_bias" in params:                        # MultiheadAttention
        hp["bias"] = params["in_proj_bias"] is not None
        hp["add_bias_kv"] = params.get("bias_k") is not None
    if tname.startswith(_MODE_DEPENDENT):
        hp["training"] = bool(module.training)
    if tname not in _registry():
        shapes = [(n, tuple(int(d) for d in p.shape)) for n, p in params.items() if p is not None]
        shapes += [(n, tuple(int(d) for d in b.shape)) for n, b in module._buffers.items()
                   if b is not None]
        if shapes:
            hp["param_shapes"] = tuple(shapes)
    return tuple(sorted(hp.items()))


