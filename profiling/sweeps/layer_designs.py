"""Single-layer designs: the per-type shape spaces (LHS over log ranges, memory-guarded), the
layer-type weights, the feature-registry filter and the canonical anchor layers."""

from __future__ import annotations

import math
from typing import Any, Sequence

from profiling.errors import ExanteError
from profiling.features import FEATURE_REGISTRY
from profiling.sweeps.design_space import _choice, _logint, _round_to, _shrink_batch, lhs
from profiling.sweeps.tasks import SweepTask, make_task

# --------------------------------------------------------------------------- layer designs

_ACTS = ("ReLU", "GELU", "SiLU", "Sigmoid", "Tanh", "Hardswish", "LeakyReLU")
LIMIT_NUMEL = 1 << 27  # activation elements per tensor (512 MiB fp32): memory guard


def _act_shape(u, b):
    """2-D (B, F) or 4-D (B, C, H, W) activation shape."""
    if u[0] < 0.5:
        return [b, _logint(u[1], 16, 16384)]
    return [b, _logint(u[1], 8, 512), _logint(u[2], 4, 112), _logint(u[2], 4, 112)]


def _numel(shape) -> int:
    return int(math.prod(shape))


def _layer_spec(t: str, u, b: int) -> dict:
    """Map a point ``u`` of the unit cube to one layer spec of type ``t`` (batch ``b``)."""
    s: dict[str, Any] = {"family": "layer", "type": t, "batch": b}
    if t == "Linear":
        s.update({"in": _logint(u[0], 16, 8192), "out": _logint(u[1], 16, 8192),
                  "seq": None if u[2] < 0.5 else _logint((u[2] - 0.5) * 2, 8, 512)})
        return _shrink_batch(s, lambda x: x["batch"] * (x["seq"] or 1) * max(x["in"], x["out"]), LIMIT_NUMEL)
    if t == "Conv2d":
        g = _choice(u[5], ("1", "1", "dw", "g"))
        cin = _logint(u[0], 3, 512)
        cout = _logint(u[1], 8, 1024)
        groups = 1
        if g == "dw":
            cin = cout = max(8, cin)
            groups = cin
        elif g == "g":
            cin, cout = _round_to(max(cin, 16), 8), _round_to(cout, 8)
            groups = _choice(u[6] if len(u) > 6 else 0.5, (2, 4, 8))
        s.update({"cin": cin, "cout": cout, "k": _choice(u[2], (1, 3, 3, 5, 7)), "stride": _choice(u[3], (1, 1, 2)),
                  "res": _logint(u[4], 7, 224), "groups": groups})
        return _shrink_batch(s, lambda x: x["batch"] * max(x["cin"], x["cout"]) * x["res"] ** 2, LIMIT_NUMEL)
    if t == "Conv1d":
        s.update({"cin": _logint(u[0], 8, 512), "cout": _logint(u[1], 8, 512), "k": _choice(u[2], (1, 3, 5, 7)),
                  "stride": _choice(u[3], (1, 1, 2)), "length": _logint(u[4], 16, 4096), "groups": 1})
        return _shrink_batch(s, lambda x: x["batch"] * max(x["cin"], x["cout"]) * x["length"], LIMIT_NUMEL)
    if t == "ConvTranspose2d":
        s.update({"cin": _logint(u[0], 8, 512), "cout": _logint(u[1], 8, 512), "k": _choice(u[2], (2, 4)), "stride": 2,
                  "res": _logint(u[4], 4, 64)})
        return _shrink_batch(s, lambda x: x["batch"] * max(x["cin"], x["cout"]) * (2 * x["res"] + 2) ** 2, LIMIT_NUMEL)
    if t == "BatchNorm2d":
        s.update({"c": _logint(u[0], 8, 1024), "res": _logint(u[1], 4, 112)})
        return _shrink_batch(s, lambda x: x["batch"] * x["c"] * x["res"] ** 2, LIMIT_NUMEL)
    if t == "BatchNorm1d":
        s.update({"c": _logint(u[0], 16, 8192)})
        s["batch"] = max(2, b)
        return s
    if t == "LayerNorm":
        s.update({"d": _logint(u[0], 32, 8192), "seq": _logint(u[1], 1, 1024)})
        return _shrink_batch(s, lambda x: x["batch"] * x["seq"] * x["d"], LIMIT_NUMEL)
    if t == "GroupNorm":
        groups = _choice(u[2], (8, 16, 32))
        s.update({"groups": groups, "c": _round_to(_logint(u[0], 32, 1024), groups), "res": _logint(u[1], 4, 112)})
        return _shrink_batch(s, lambda x: x["batch"] * x["c"] * x["res"] ** 2, LIMIT_NUMEL)
    if t in _ACTS or t == "Dropout":
        s["shape"] = _act_shape(u, b)
        return _shrink_shape(s)
    if t == "Softmax":
        s["shape"] = [b, _logint(u[0], 1, 16), _logint(u[1], 16, 2048), _logint(u[2], 16, 4096)]
        return _shrink_shape(s)
    if t in ("MaxPool2d", "AvgPool2d"):
        s.update({"c": _logint(u[0], 8, 512), "res": _logint(u[1], 8, 224), "k": _choice(u[2], (2, 3)), "stride": 2})
        return _shrink_batch(s, lambda x: x["batch"] * x["c"] * x["res"] ** 2, LIMIT_NUMEL)
    if t == "AdaptiveAvgPool2d":
        s.update({"c": _logint(u[0], 32, 2048), "res": _logint(u[1], 1, 56)})
        return _shrink_batch(s, lambda x: x["batch"] * x["c"] * x["res"] ** 2, LIMIT_NUMEL)
    if t == "MultiheadAttention":
        heads = _choice(u[1], (1, 2, 4, 8, 16))
        s.update({"heads": heads, "d": _round_to(_logint(u[0], 64, 1024), 8 * heads), "seq": _logint(u[2], 32, 1024)})
        return _shrink_batch(s, lambda x: x["batch"] * max(x["seq"] * x["d"] * 3, x["heads"] * x["seq"] ** 2),
                             LIMIT_NUMEL)
    if t == "sdpa":
        s.update({"heads": _logint(u[0], 1, 16), "head_dim": _choice(u[1], (32, 64, 64, 128)),
                  "seq": _logint(u[2], 32, 1024), "causal": bool(u[3] < 0.3)})
        return _shrink_batch(s, lambda x: x["batch"] * x["heads"] * x["seq"] * max(x["head_dim"], x["seq"]),
                             LIMIT_NUMEL)
    if t == "Embedding":
        s.update({"vocab": _logint(u[0], 100, 100_000), "d": _logint(u[1], 32, 2048), "seq": _logint(u[2], 1, 512)})
        return _shrink_batch(s, lambda x: x["batch"] * x["seq"] * x["d"], LIMIT_NUMEL)
    if t == "add":
        if u[0] < 0.5:
            s["shape"] = [b, _logint(u[1], 1, 1024), _logint(u[2], 32, 4096)]
        else:
            s["shape"] = [b, _logint(u[1], 8, 512), _logint(u[2], 4, 112), _logint(u[2], 4, 112)]
        return _shrink_shape(s)
    if t == "matmul":
        s.update({"m": _logint(u[0], 16, 2048), "k": _logint(u[1], 16, 2048), "n": _logint(u[2], 16, 2048)})
        return _shrink_batch(s, lambda x: x["batch"] * max(x["m"] * x["k"], x["k"] * x["n"], x["m"] * x["n"]),
                             LIMIT_NUMEL)
    if t == "mean":
        s.update({"seq": _logint(u[0], 1, 1024), "d": _logint(u[1], 32, 4096)})
        return _shrink_batch(s, lambda x: x["batch"] * x["seq"] * x["d"], LIMIT_NUMEL)
    raise ExanteError(f"no layer design for type {t!r}")


def _shrink_shape(s: dict) -> dict:
    while s["shape"][0] > 1 and _numel(s["shape"]) > LIMIT_NUMEL:
        s["shape"][0] //= 2
    s["batch"] = s["shape"][0]
    return s


# layer type -> relative number of design points (the heavy hitters get more)
LAYER_TYPE_WEIGHTS = {
    "Linear": 5, "Conv2d": 6, "Conv1d": 1.5, "ConvTranspose2d": 1, "BatchNorm2d": 2, "BatchNorm1d": 1,
    "LayerNorm": 2.5, "GroupNorm": 1, "ReLU": 1.5, "GELU": 1.5, "SiLU": 1, "Sigmoid": 0.5, "Tanh": 0.5,
    "Hardswish": 0.5, "LeakyReLU": 0.5, "Dropout": 1, "Softmax": 1, "MaxPool2d": 1, "AvgPool2d": 1,
    "AdaptiveAvgPool2d": 1, "MultiheadAttention": 2.5, "sdpa": 3, "Embedding": 1.5, "add": 2, "matmul": 2,
    "mean": 1,
}

# the LayerConfig.type each layer spec type produces (for the feature-registry filter)
_CAPTURED_TYPE = {"sdpa": "sdpa", "add": "add", "matmul": "matmul", "mean": "mean"}


def _registry_types() -> set[str]:
    return set(FEATURE_REGISTRY)


def supported_layer_types() -> list[str]:
    """Layer spec types whose captured type has a feature function (``FEATURE_REGISTRY``)."""
    reg = _registry_types()
    return [t for t in LAYER_TYPE_WEIGHTS if _CAPTURED_TYPE.get(t, t) in reg]


def _batch(u) -> int:
    return _logint(u, 1, 512)


def layer_design(n_total: int, modes: Sequence[tuple], dtypes: Sequence[str], seed: int,
                 types: Sequence[str] | None = None, execs=("eager", "graph")) -> list[SweepTask]:
    """Space-filling single-layer tasks: per type, an LHS over its shape space x batch x mode x dtype."""
    types = list(types or supported_layer_types())
    wsum = sum(LAYER_TYPE_WEIGHTS[t] for t in types)
    tasks: list[SweepTask] = []
    for ti, t in enumerate(types):
        n = max(2, int(round(n_total * LAYER_TYPE_WEIGHTS[t] / wsum)))
        pts = lhs(n, 10, seed + 101 * ti)
        for u in pts:
            b = _batch(u[7])
            spec = _layer_spec(t, u, b)
            mode, opt = _choice(u[8], modes)
            dtype = _choice(u[9], dtypes)
            tasks.append(make_task("layer", spec, mode, dtype, opt, execs=execs))
    return _interleave(tasks)


def _interleave(tasks: list[SweepTask]) -> list[SweepTask]:
    """Round-robin over families/types so any prefix (limit, time budget) covers the design."""
    groups: dict[str, list] = {}
    for t in tasks:
        groups.setdefault(t.family, []).append(t)
    queues = list(groups.values())
    out: list[SweepTask] = []
    for i in range(max((len(q) for q in queues), default=0)):
        for q in queues:
            if i < len(q):
                out.append(q[i])
    return out


def _anchor_layers(modes: Sequence[tuple], dtypes: Sequence[str]) -> list[SweepTask]:
    """A few canonical layers (ResNet/BERT/ViT shapes) at common batch sizes."""
    specs = [
        {"family": "layer", "type": "Conv2d", "batch": 32, "cin": 64, "cout": 64, "k": 3, "stride": 1, "res": 56,
         "groups": 1},
        {"family": "layer", "type": "Conv2d", "batch": 32, "cin": 256, "cout": 256, "k": 3, "stride": 1, "res": 14,
         "groups": 1},
        {"family": "layer", "type": "Linear", "batch": 32, "in": 768, "out": 3072, "seq": 128},
        {"family": "layer", "type": "Linear", "batch": 256, "in": 1024, "out": 1024, "seq": None},
        {"family": "layer", "type": "LayerNorm", "batch": 32, "d": 768, "seq": 128},
        {"family": "layer", "type": "sdpa", "batch": 32, "heads": 12, "head_dim": 64, "seq": 128, "causal": False},
        {"family": "layer", "type": "BatchNorm2d", "batch": 32, "c": 64, "res": 56},
        {"family": "layer", "type": "ReLU", "batch": 32, "shape": [32, 64, 56, 56]},
    ]
    reg = set(supported_layer_types())
    out = []
    for i, s in enumerate(specs):
        if s["type"] not in reg:
            continue
        mode, opt = modes[i % len(modes)]
        out.append(make_task("layer", s, mode, dtypes[i % len(dtypes)], opt))
    return out
