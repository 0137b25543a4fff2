"""Measurement sweeps: what to measure (space-filling designs) and a resumable runner.

A :class:`SweepDefinition` yields :class:`SweepTask` s. A task is one small network to build
from a JSON spec (so it can travel to a dask worker): a single layer (``kind="layer"``; its
distinct layer config(s) are replayed alone) or a whole model (``kind="model"``: every
distinct layer config alone *and* the whole model, giving the additivity ratio rho).

Designs are space-filling: a Latin hypercube (``scipy.stats.qmc.LatinHypercube``, optimised
for centred discrepancy, fixed seed) over log-scaled ranges, plus grid anchor points
(e.g. seed 004's wide-vs-deep MLPs). Model families group configurations that share their
layers (e.g. one MLP width/batch at several depths), so the per-session layer deduplication
(key = LayerConfig.key + mode + exec + dtype + optimizer) keeps a sweep affordable.

Expected H100 durations assume ~4 s per measured configuration (warm-up + calibration + 2
windows x 1.5 s + jitter; see ``SECONDS_PER_CONFIG``) plus a reference re-measurement every
20 configurations; :func:`estimate_sweep` counts the distinct configurations exactly by
capturing every task on the ``meta`` device. ``python -m profiling.sweeps`` prints the table.

Runner: :func:`run_sweep` appends rows atomically as each task finishes (a crash loses at
most the task in flight), skips finished tasks on resume (``tasks.csv``), writes
``meta.json`` (sweeps, sessions, environments), shows a tqdm bar with ETA, stops cleanly at a
time budget, and can fan tasks out to a dask.distributed cluster through joblib (one worker
per GPU; each task runs entirely on one worker, which opens its own meter and measures its
idle power; results stream back and the driver writes them).
"""

from __future__ import annotations

import contextlib
import gc
import hashlib
import json
import math
import os
import statistics
import threading
import time
import traceback
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Callable, Sequence

import torch
from torch import nn
from torch.nn import functional as F

from profiling import schema
from profiling.errors import ExanteError, MeterUnavailable
from profiling.model_refs import build_mlp

__all__ = [
    "SweepTask", "SweepDefinition", "SweepSummary", "SWEEPS", "run_sweep", "estimate_sweep",
    "build_from_spec", "make_meter", "dataset_card_stats", "write_dataset_card", "SECONDS_PER_CONFIG",
]

SECONDS_PER_CONFIG = 4.0  # one measured configuration on an H100 (protocol defaults)
GRAPH_EXTRA_S = 0.5  # CUDA-graph capture on top of that
REFERENCE_EVERY = 20

SEED = 20240611

# --------------------------------------------------------------------------- space filling


def lhs(n: int, d: int, seed: int):
    """``n`` points in [0, 1)^d: an optimised Latin hypercube (deterministic for a seed)."""
    import numpy as np

    if n <= 0:
        return np.zeros((0, d))
    try:
        from scipy.stats import qmc
    except ImportError:  # pragma: no cover - scipy comes with scikit-learn
        rng = np.random.default_rng(seed)
        cut = (np.arange(n)[:, None] + rng.random((n, d))) / n
        for j in range(d):
            cut[:, j] = cut[rng.permutation(n), j]
        return cut
    opt = "random-cd" if n * d <= 6000 and n > 1 else None
    try:
        sampler = qmc.LatinHypercube(d=d, scramble=True, optimization=opt, rng=seed)
    except TypeError:  # older scipy
        sampler = qmc.LatinHypercube(d=d, scramble=True, optimization=opt, seed=seed)
    return sampler.random(n)


def _logint(u: float, lo: float, hi: float) -> int:
    return int(round(math.exp(math.log(lo) + float(u) * (math.log(hi) - math.log(lo)))))


def _choice(u: float, options: Sequence):
    return options[min(int(float(u) * len(options)), len(options) - 1)]


def _pow2(u: float, lo: int, hi: int) -> int:
    a, b = math.log2(lo), math.log2(hi)
    return int(2 ** round(a + float(u) * (b - a)))


def _round_to(x: int, m: int) -> int:
    return max(m, int(round(x / m)) * m)


def _shrink_batch(spec: dict, numel_of: Callable[[dict], int], limit: int) -> dict:
    """Halve ``batch`` until ``numel_of(spec) <= limit`` (memory guard; deterministic)."""
    while spec["batch"] > 1 and numel_of(spec) > limit:
        spec["batch"] = max(1, spec["batch"] // 2)
    return spec


# modes of a task: (mode, optimizer)
INFER = ("inference", None)
FWD_BWD = ("forward_backward", None)
TRAIN_SGD = ("train_step", "sgd")
TRAIN_ADAM = ("train_step", "adam")
TRAIN_MODES = (FWD_BWD, TRAIN_SGD, TRAIN_ADAM)
MODEL_MODES = (INFER, TRAIN_SGD, TRAIN_ADAM)
DTYPE_CHOICES = ("fp32", "bf16")

# --------------------------------------------------------------------------- tasks


def _canon(obj) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"))


@dataclass
class SweepTask:
    """One unit of a sweep: build ``spec`` and measure it in ``mode``/``dtype``/``optimizer``."""

    key: str
    kind: str  # "layer" | "model" | "whole" (the whole model only, no layer replays)
    family: str
    spec: dict
    mode: str
    dtype: str
    optimizer: str | None
    batch: int
    execs: tuple = ("eager", "graph")
    model_ref: str | None = None

    def build(self, device="meta"):
        """``(model, inputs)`` on ``device`` (``meta`` allocates nothing)."""
        return build_from_spec(self.spec, device=device)

    @property
    def description(self) -> str:
        return self.key.split("#")[0]


def make_task(kind: str, spec: dict, mode: str, dtype: str, optimizer: str | None, *, execs=("eager", "graph"),
              model_ref: str | None = None) -> SweepTask:
    optimizer = optimizer if mode == "train_step" else None
    ident = _canon({"spec": spec, "mode": mode, "dtype": dtype, "optimizer": optimizer, "execs": list(execs)})
    h = hashlib.sha1(ident.encode()).hexdigest()[:10]
    label = _spec_label(spec)
    key = f"{spec['family']}:{label}:{mode}:{dtype}:{optimizer or '-'}:b{spec['batch']}#{h}"
    family = f"layer/{spec['type']}" if kind == "layer" else (
        f"refset/{spec['kind']}" if spec["family"] == "refset" else spec["family"])
    return SweepTask(key=key, kind=kind, family=family,
                     spec=spec, mode=mode, dtype=dtype, optimizer=optimizer, batch=int(spec["batch"]),
                     execs=tuple(execs), model_ref=model_ref or _model_ref(spec))


def _spec_label(spec: dict) -> str:
    f = spec["family"]
    if f == "layer":
        return spec["type"]
    if f == "mlp":
        return f"in{spec['in']}-d{spec['depth']}-w{spec['width']}-o{spec['out']}"
    if f == "cnn":
        return (f"{'res' if spec['residual'] else 'plain'}-r{spec['res']}-c{spec['base']}-s{spec['stages']}"
                f"x{spec['blocks']}-k{spec['kernel']}")
    if f == "transformer":
        return f"d{spec['d_model']}-h{spec['heads']}-l{spec['layers']}-s{spec['seq']}"
    if f == "mixed":
        return f"{spec['kind']}-{len(spec['blocks'])}blk"
    if f == "refset":
        return spec["name"]
    return f


def _model_ref(spec: dict) -> str:
    if spec["family"] == "refset":
        return spec["model_ref"]
    if spec["family"] == "mlp":
        return f"mlp:in={spec['in']},depth={spec['depth']},width={spec['width']},out={spec['out']}"
    return "spec:" + _canon({k: v for k, v in spec.items() if k != "batch"})


@dataclass
class SweepDefinition:
    """A named sweep: ``tasks(limit=None, shard=None)`` yields its tasks (deterministic order)."""

    name: str
    description: str
    generate: Callable[[], list] = field(repr=False)
    expected_duration_s: float | None = None  # on an H100 (see estimate_sweep)
    smoke: bool = False
    protocol: dict | None = None  # protocol.measure kwargs for this sweep (callers' protocol_kwargs override)
    torch_flags: dict | None = None  # precision flags set while the sweep runs (TORCH_FLAGS names), then restored
    reference_every: int | None = None  # drift reference every n configs (default REFERENCE_EVERY)
    _cache: list | None = field(default=None, repr=False, compare=False)

    def tasks(self, limit: int | None = None, shard: tuple[int, int] | None = None) -> list[SweepTask]:
        """The sweep's tasks, deduplicated by key, in a fixed order; ``shard=(i, n)`` keeps
        every n-th task starting at i (each shard is itself spread over the design)."""
        if self._cache is None:  # generation is deterministic: compute once per process
            seen: set = set()
            full: list[SweepTask] = []
            for t in self.generate():
                if t.key in seen:
                    continue
                seen.add(t.key)
                full.append(t)
            self._cache = full
        out = list(self._cache)
        if shard is not None:
            i, n = shard
            if not (isinstance(n, int) and n >= 1 and 0 <= i < n):
                raise ExanteError(f"shard must be (i, n) with 0 <= i < n, got {shard!r}")
            out = out[i::n]
        if limit is not None:
            if limit < 0:
                raise ExanteError(f"limit must be >= 0, got {limit}")
            out = out[:limit]
        return out


# --------------------------------------------------------------------------- builders


class _LayerHost(nn.Module):
    """Holds one layer; ``forward`` calls it (MultiheadAttention as self-attention)."""

    def __init__(self, layer: nn.Module, self_attention: bool = False):
        super().__init__()
        self.layer = layer
        self.self_attention = self_attention

    def forward(self, *xs):
        if self.self_attention:
            x = xs[0]
            return self.layer(x, x, x, need_weights=False)[0]
        return self.layer(*xs)


class _FunctionalHost(nn.Module):
    """Calls one functional op (captured as such, attributed to this module)."""

    def __init__(self, op: str, kwargs: dict | None = None):
        super().__init__()
        self.op = op
        self.kwargs = dict(kwargs or {})

    def forward(self, *xs):
        if self.op == "sdpa":
            return F.scaled_dot_product_attention(*xs, **self.kwargs)
        if self.op == "add":
            return xs[0] + xs[1]
        if self.op == "mul":
            return xs[0] * xs[1]
        if self.op == "matmul":
            return torch.matmul(xs[0], xs[1])
        if self.op == "mean":
            return xs[0].mean(**self.kwargs)
        if self.op == "softmax":
            return torch.softmax(xs[0], **self.kwargs)
        if self.op == "cat":
            return torch.cat(list(xs), **self.kwargs)
        raise ExanteError(f"unknown functional op {self.op!r}")


def _randn(shape, device):
    return torch.randn(shape, device=device) if torch.device(device).type != "meta" else torch.empty(shape, device="meta")


def _randint(high, shape, device):
    if torch.device(device).type == "meta":
        return torch.empty(shape, dtype=torch.long, device="meta")
    return torch.randint(0, int(high), shape, device=device)


def _act(name: str) -> nn.Module:
    return {"relu": nn.ReLU, "gelu": nn.GELU, "silu": nn.SiLU, "hardswish": nn.Hardswish, "tanh": nn.Tanh,
            "sigmoid": nn.Sigmoid, "leaky_relu": nn.LeakyReLU}[name]()


def _build_layer(spec: dict, device):
    t, b = spec["type"], spec["batch"]
    if t == "Linear":
        m = nn.Linear(spec["in"], spec["out"], bias=spec.get("bias", True))
        shape = (b, spec["seq"], spec["in"]) if spec.get("seq") else (b, spec["in"])
        return _LayerHost(m), (_randn(shape, device),)
    if t in ("Conv2d", "Conv1d"):
        cls = nn.Conv2d if t == "Conv2d" else nn.Conv1d
        m = cls(spec["cin"], spec["cout"], spec["k"], stride=spec["stride"], padding=spec["k"] // 2,
                groups=spec["groups"], bias=spec.get("bias", False))
        sp = (spec["res"], spec["res"]) if t == "Conv2d" else (spec["length"],)
        return _LayerHost(m), (_randn((b, spec["cin"], *sp), device),)
    if t == "ConvTranspose2d":
        m = nn.ConvTranspose2d(spec["cin"], spec["cout"], spec["k"], stride=spec["stride"])
        return _LayerHost(m), (_randn((b, spec["cin"], spec["res"], spec["res"]), device),)
    if t == "BatchNorm2d":
        return _LayerHost(nn.BatchNorm2d(spec["c"])), (_randn((b, spec["c"], spec["res"], spec["res"]), device),)
    if t == "BatchNorm1d":
        return _LayerHost(nn.BatchNorm1d(spec["c"])), (_randn((b, spec["c"]), device),)
    if t == "LayerNorm":
        return _LayerHost(nn.LayerNorm(spec["d"])), (_randn((b, spec["seq"], spec["d"]), device),)
    if t == "GroupNorm":
        return (_LayerHost(nn.GroupNorm(spec["groups"], spec["c"])),
                (_randn((b, spec["c"], spec["res"], spec["res"]), device),))
    if t in ("ReLU", "GELU", "SiLU", "Sigmoid", "Tanh", "Hardswish", "LeakyReLU", "Dropout"):
        m = nn.Dropout(0.1) if t == "Dropout" else getattr(nn, t)()
        return _LayerHost(m), (_randn(tuple(spec["shape"]), device),)
    if t == "Softmax":
        return _LayerHost(nn.Softmax(dim=-1)), (_randn(tuple(spec["shape"]), device),)
    if t in ("MaxPool2d", "AvgPool2d"):
        m = getattr(nn, t)(spec["k"], stride=spec["stride"])
        return _LayerHost(m), (_randn((b, spec["c"], spec["res"], spec["res"]), device),)
    if t == "AdaptiveAvgPool2d":
        return _LayerHost(nn.AdaptiveAvgPool2d(1)), (_randn((b, spec["c"], spec["res"], spec["res"]), device),)
    if t == "MultiheadAttention":
        m = nn.MultiheadAttention(spec["d"], spec["heads"], batch_first=True)
        return _LayerHost(m, self_attention=True), (_randn((b, spec["seq"], spec["d"]), device),)
    if t == "sdpa":
        shape = (b, spec["heads"], spec["seq"], spec["head_dim"])
        return (_FunctionalHost("sdpa", {"is_causal": bool(spec.get("causal", False))}),
                tuple(_randn(shape, device) for _ in range(3)))
    if t == "Embedding":
        return _LayerHost(nn.Embedding(spec["vocab"], spec["d"])), (_randint(spec["vocab"], (b, spec["seq"]), device),)
    if t == "add":
        shape = tuple(spec["shape"])
        return _FunctionalHost("add"), (_randn(shape, device), _randn(shape, device))
    if t == "matmul":
        return (_FunctionalHost("matmul"),
                (_randn((b, spec["m"], spec["k"]), device), _randn((b, spec["k"], spec["n"]), device)))
    if t == "mean":
        return _FunctionalHost("mean", {"dim": 1}), (_randn((b, spec["seq"], spec["d"]), device),)
    raise ExanteError(f"unknown layer type {t!r} in sweep spec")


class EncoderBlock(nn.Module):
    """Pre-norm transformer encoder block from primitives (Linear, LayerNorm, sdpa, GELU), the
    way ViT/BERT-style code writes it (no fused nn.TransformerEncoderLayer fast path)."""

    def __init__(self, d: int, heads: int, ff_mult: int = 4, act: str = "gelu", causal: bool = False):
        super().__init__()
        self.heads, self.causal = heads, causal
        self.ln1 = nn.LayerNorm(d)
        self.qkv = nn.Linear(d, 3 * d)
        self.proj = nn.Linear(d, d)
        self.ln2 = nn.LayerNorm(d)
        self.fc1 = nn.Linear(d, ff_mult * d)
        self.act = _act(act)
        self.fc2 = nn.Linear(ff_mult * d, d)

    def forward(self, x):
        b, s, d = x.shape
        q, k, v = self.qkv(self.ln1(x)).view(b, s, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4).unbind(0)
        a = F.scaled_dot_product_attention(q, k, v, is_causal=self.causal)
        x = x + self.proj(a.transpose(1, 2).reshape(b, s, d))
        return x + self.fc2(self.act(self.fc1(self.ln2(x))))


class TokenClassifier(nn.Module):
    """Embedding + learned positions -> encoder blocks -> LayerNorm -> mean pool -> Linear."""

    def __init__(self, vocab: int, seq: int, d: int, blocks: list[nn.Module], classes: int):
        super().__init__()
        self.emb = nn.Embedding(vocab, d)
        self.pos = nn.Parameter(torch.zeros(1, seq, d))
        self.blocks = nn.Sequential(*blocks)
        self.ln_f = nn.LayerNorm(d)
        self.head = nn.Linear(d, classes)

    def forward(self, ids):
        x = self.emb(ids) + self.pos
        x = self.ln_f(self.blocks(x))
        return self.head(x.mean(dim=1))


class BasicBlock(nn.Module):
    """ResNet basic block (residual) or the same convs without the skip (plain)."""

    def __init__(self, cin: int, cout: int, stride: int, k: int = 3, residual: bool = True, act: str = "relu",
                 norm: str = "bn"):
        super().__init__()
        self.residual = residual
        self.conv1 = nn.Conv2d(cin, cout, k, stride=stride, padding=k // 2, bias=False)
        self.n1 = _norm2d(norm, cout)
        self.a1 = _act(act)
        self.conv2 = nn.Conv2d(cout, cout, k, padding=k // 2, bias=False)
        self.n2 = _norm2d(norm, cout)
        self.a2 = _act(act)
        self.short = None
        if residual and (stride != 1 or cin != cout):
            self.short = nn.Sequential(nn.Conv2d(cin, cout, 1, stride=stride, bias=False), _norm2d(norm, cout))

    def forward(self, x):
        y = self.n2(self.conv2(self.a1(self.n1(self.conv1(x)))))
        if self.residual:
            y = y + (x if self.short is None else self.short(x))
        return self.a2(y)


def _norm2d(norm: str, c: int) -> nn.Module:
    if norm == "bn":
        return nn.BatchNorm2d(c)
    if norm == "gn":
        return nn.GroupNorm(min(32, c), c) if c % min(32, c) == 0 else nn.GroupNorm(1, c)
    return nn.Identity()


def _build_cnn(spec: dict, device):
    c, res, k = spec["base"], spec["res"], spec["kernel"]
    layers: list[nn.Module] = [nn.Conv2d(spec.get("in_ch", 3), c, 3, stride=2 if res >= 128 else 1, padding=1, bias=False),
                               nn.BatchNorm2d(c), nn.ReLU()]
    if res >= 128:
        layers.append(nn.MaxPool2d(3, stride=2, padding=1))
    cin = c
    for s in range(spec["stages"]):
        cout = min(c * 2 ** s, 1024)
        for j in range(spec["blocks"]):
            layers.append(BasicBlock(cin, cout, 2 if (j == 0 and s > 0) else 1, k, spec["residual"]))
            cin = cout
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(cin, spec["classes"])]
    return nn.Sequential(*layers), (_randn((spec["batch"], spec.get("in_ch", 3), res, res), device),)


def _build_transformer(spec: dict, device):
    d, h = spec["d_model"], spec["heads"]
    blocks = [EncoderBlock(d, h, spec.get("ff_mult", 4), spec.get("act", "gelu"), spec.get("causal", False))
              for _ in range(spec["layers"])]
    model = TokenClassifier(spec["vocab"], spec["seq"], d, blocks, spec["classes"])
    return model, (_randint(spec["vocab"], (spec["batch"], spec["seq"]), device),)


class _Residual(nn.Module):
    def __init__(self, body: nn.Module):
        super().__init__()
        self.body = body

    def forward(self, x):
        return x + self.body(x)


class _SeqMLP(nn.Module):
    def __init__(self, d, mult, act):
        super().__init__()
        self.ln = nn.LayerNorm(d)
        self.fc1 = nn.Linear(d, mult * d)
        self.act = _act(act)
        self.fc2 = nn.Linear(mult * d, d)

    def forward(self, x):
        return x + self.fc2(self.act(self.fc1(self.ln(x))))


class _SeqConv(nn.Module):
    def __init__(self, d, k, act):
        super().__init__()
        self.ln = nn.LayerNorm(d)
        self.conv = nn.Conv1d(d, d, k, padding=k // 2, groups=d)
        self.act = _act(act)

    def forward(self, x):
        y = self.conv(self.ln(x).transpose(1, 2)).transpose(1, 2)
        return x + self.act(y)


def _build_mixed(spec: dict, device):
    kind, b = spec["kind"], spec["batch"]
    if kind == "vector":
        layers: list[nn.Module] = []
        prev = spec["in"]
        for blk in spec["blocks"]:
            layers.append(nn.Linear(prev, blk["out"]))
            if blk.get("norm") == "ln":
                layers.append(nn.LayerNorm(blk["out"]))
            elif blk.get("norm") == "bn":
                layers.append(nn.BatchNorm1d(blk["out"]))
            layers.append(_act(blk["act"]))
            if blk.get("dropout"):
                layers.append(nn.Dropout(blk["dropout"]))
            prev = blk["out"]
        layers.append(nn.Linear(prev, spec["out"]))
        return nn.Sequential(*layers), (_randn((b, spec["in"]), device),)
    if kind == "image":
        c = spec["stem"]
        layers = [nn.Conv2d(spec.get("in_ch", 3), c, 3, stride=spec.get("stem_stride", 1), padding=1, bias=False),
                  nn.BatchNorm2d(c), _act(spec.get("stem_act", "relu"))]
        for blk in spec["blocks"]:
            op = blk["op"]
            if op == "conv":
                groups = c if blk.get("groups") == "dw" else 1
                cout = c if groups > 1 else blk["cout"]
                layers += [nn.Conv2d(c, cout, blk["k"], stride=blk["stride"], padding=blk["k"] // 2, groups=groups,
                                     bias=blk.get("norm") == "none"), _norm2d(blk.get("norm", "bn"), cout),
                           _act(blk["act"])]
                c = cout
            elif op == "dwsep":
                layers += [nn.Conv2d(c, c, blk["k"], stride=blk["stride"], padding=blk["k"] // 2, groups=c, bias=False),
                           nn.BatchNorm2d(c), _act(blk["act"]), nn.Conv2d(c, blk["cout"], 1, bias=False),
                           nn.BatchNorm2d(blk["cout"]), _act(blk["act"])]
                c = blk["cout"]
            elif op == "res":
                layers.append(BasicBlock(c, c, 1, blk["k"], True, blk["act"], blk.get("norm", "bn")))
            elif op == "pool":
                layers.append(nn.MaxPool2d(2) if blk["pool"] == "max" else nn.AvgPool2d(2))
            else:
                raise ExanteError(f"unknown mixed image block {op!r}")
        layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten()]
        if spec.get("dropout"):
            layers.append(nn.Dropout(spec["dropout"]))
        layers.append(nn.Linear(c, spec["classes"]))
        return nn.Sequential(*layers), (_randn((b, spec.get("in_ch", 3), spec["res"], spec["res"]), device),)
    if kind == "sequence":
        d = spec["d_model"]
        blocks: list[nn.Module] = []
        for blk in spec["blocks"]:
            if blk["op"] == "attn":
                blocks.append(_AttnOnly(d, blk["heads"]))
            elif blk["op"] == "mlp":
                blocks.append(_SeqMLP(d, blk["mult"], blk["act"]))
            elif blk["op"] == "conv":
                blocks.append(_SeqConv(d, blk["k"], blk["act"]))
            else:
                raise ExanteError(f"unknown mixed sequence block {blk['op']!r}")
        model = TokenClassifier(spec["vocab"], spec["seq"], d, blocks, spec["classes"])
        return model, (_randint(spec["vocab"], (b, spec["seq"]), device),)
    raise ExanteError(f"unknown mixed kind {kind!r}")


class _AttnOnly(nn.Module):
    def __init__(self, d, heads):
        super().__init__()
        self.ln = nn.LayerNorm(d)
        self.attn = nn.MultiheadAttention(d, heads, batch_first=True)

    def forward(self, x):
        h = self.ln(x)
        return x + self.attn(h, h, h, need_weights=False)[0]


def build_from_spec(spec: dict, device="meta"):
    """``(model, inputs)`` for a sweep spec, built directly on ``device``."""
    fam = spec.get("family")
    dev = torch.device(device)
    with dev:
        if fam == "layer":
            return _build_layer(spec, dev)
        if fam == "mlp":
            return build_mlp(spec["in"], spec["depth"], spec["width"], spec["out"]), (_randn((spec["batch"], spec["in"]), dev),)
        if fam == "cnn":
            return _build_cnn(spec, dev)
        if fam == "transformer":
            return _build_transformer(spec, dev)
        if fam == "mixed":
            return _build_mixed(spec, dev)
        if fam == "refset":
            return _build_refset(spec, dev)
    raise ExanteError(f"unknown sweep family {fam!r}")


def _build_refset(spec: dict, device):
    """One workload of the H100 reference set (profiling.reference_set), built on ``device``."""
    from profiling.model_refs import resolve_model
    from profiling.reference_set import build_encoder

    b, kind = int(spec["batch"]), spec["kind"]
    if kind == "vision":
        return resolve_model(spec["model_ref"]), (_randn((b, *spec["input"]), device),)
    if kind == "transformer":
        arch = spec["arch"]
        return build_encoder(arch), (_randint(arch["vocab"], (b, arch["seq"]), device),)
    if kind == "mlp":
        a = spec["arch"]
        return build_mlp(a["inp"], a["depth"], a["width"], a["out"]), (_randn((b, a["inp"]), device),)
    raise ExanteError(f"unknown reference-set kind {kind!r}; accepted: vision, transformer, mlp")


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


def _registry_types() -> set | None:
    try:
        from profiling.features import FEATURE_REGISTRY
    except Exception:
        return None
    return set(FEATURE_REGISTRY)


def supported_layer_types() -> list[str]:
    """Layer spec types whose captured type has a feature function (all, if features is missing)."""
    reg = _registry_types()
    return [t for t in LAYER_TYPE_WEIGHTS if reg is None or _CAPTURED_TYPE.get(t, t) in reg]


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


# --------------------------------------------------------------------------- model designs

# seed 004, Table 6 (wide vs deep, input 100, one output): (hidden layers, layer size)
SEED004_TABLE6 = [(100, 10), (10, 100), (200, 10), (100, 20), (20, 100), (10, 200), (300, 10), (100, 30), (30, 100),
                  (10, 300), (200, 20), (20, 200), (300, 20), (200, 30), (30, 200), (20, 300), (300, 30), (30, 300)]
# seed 004, Table 4 (training overhead): depths 10..170 x layer sizes 25..100
SEED004_TABLE4_DEPTHS = list(range(10, 171, 10))
SEED004_TABLE4_WIDTHS = [25, 50, 75, 100]
SEED004_BATCH = 32  # Keras' default batch size (the seed's experiments do not state one)


def _mlp_spec(i, d, w, o, b):
    return {"family": "mlp", "in": int(i), "depth": int(d), "width": int(w), "out": int(o), "batch": int(b)}


def mlp_design(n_groups: int = 32, depths_per_group: int = 4, seed: int = SEED, anchors: bool = True) -> list[SweepTask]:
    """MLPs depth 1..300 x width 10..1024 x batch 1..512 (LHS over groups that share their
    layers: each group = one (in, width, out, batch, mode, dtype) at several depths), plus
    seed 004 Table 6's wide-vs-deep grid (inference and SGD train step at batch 32)."""
    tasks: list[SweepTask] = []
    if anchors:
        for mode, opt in (TRAIN_SGD, INFER):
            for depth, width in SEED004_TABLE6:
                tasks.append(make_task("model", _mlp_spec(100, depth, width, 1, SEED004_BATCH), mode, "fp32", opt,
                                       execs=("eager",)))
    pts = lhs(n_groups, 7, seed)
    for g, u in enumerate(pts):
        width = _logint(u[0], 10, 1024)
        b = _batch(u[1])
        inp = _logint(u[2], 10, 1024)
        out = _choice(u[3], (1, 10, 100))
        mode, opt = _choice(u[4], MODEL_MODES)
        dtype = _choice(u[5], DTYPE_CHOICES)
        # depths spread log-uniformly over 1..300 with a per-group offset (u[6])
        for j in range(depths_per_group):
            v = (j + u[6]) / depths_per_group
            depth = _logint(v, 1, 300)
            tasks.append(make_task("model", _mlp_spec(inp, depth, width, out, b), mode, dtype, opt, execs=("eager",)))
    return tasks


def mlp_seed004_design() -> list[SweepTask]:
    """Seed 004 Table 4 (depth 10..170 x width 25..100, input 100, one output, batch 32):
    SGD train step and inference, fp32 — the training-overhead experiment, on our hardware."""
    tasks = []
    for mode, opt in (TRAIN_SGD, INFER):
        for w in SEED004_TABLE4_WIDTHS:
            for d in SEED004_TABLE4_DEPTHS:
                tasks.append(make_task("model", _mlp_spec(100, d, w, 1, SEED004_BATCH), mode, "fp32", opt,
                                       execs=("eager",)))
    return tasks


def cnn_design(n_groups: int = 14, seed: int = SEED + 1) -> list[SweepTask]:
    """Plain and residual CNN stacks: per group (resolution, base width, stages, kernel, batch,
    mode, dtype), plain and residual variants at 1, 2 and 3 blocks per stage."""
    tasks = []
    for u in lhs(n_groups, 7, seed):
        res = _choice(u[0], (32, 32, 64, 128, 224))
        base = _logint(u[1], 8, 128)
        stages = _choice(u[2], (1, 2, 3, 4))
        k = _choice(u[3], (3, 3, 3, 5))
        b = _batch(u[4])
        # memory guard: activations of the widest layer
        while b > 1 and b * base * (res if res < 128 else res // 2) ** 2 > LIMIT_NUMEL // 4:
            b //= 2
        mode, opt = _choice(u[5], MODEL_MODES)
        dtype = _choice(u[6], DTYPE_CHOICES)
        classes = 10 if res <= 64 else 1000
        for residual in (False, True):
            for blocks in (1, 2, 3):
                spec = {"family": "cnn", "residual": residual, "res": res, "in_ch": 3, "base": base, "stages": stages,
                        "blocks": blocks, "kernel": k, "classes": classes, "batch": b}
                tasks.append(make_task("model", spec, mode, dtype, opt, execs=("eager",)))
    return tasks


def transformer_design(n_groups: int = 17, seed: int = SEED + 2) -> list[SweepTask]:
    """Transformer encoders (token classifier): d_model 64..1024, heads, seq 32..1024, batch;
    per group, depths spread over 1..24 layers."""
    tasks = []
    for u in lhs(n_groups, 8, seed):
        heads = _choice(u[1], (1, 2, 4, 8, 16))
        d = _round_to(_logint(u[0], 64, 1024), 8 * heads)
        seq = _logint(u[2], 32, 1024)
        b = _batch(u[3])
        mode, opt = _choice(u[4], MODEL_MODES)
        dtype = _choice(u[5], DTYPE_CHOICES)
        depths = sorted({max(1, _logint((j + u[6]) / 3, 1, 24)) for j in range(3)})
        for depth in depths:
            bb = b
            # memory guard: tokens x width x layers (train keeps ~20 activations per block)
            while bb > 1 and bb * seq * d * depth * (20 if mode != "inference" else 1) > 4 * LIMIT_NUMEL:
                bb //= 2
            while bb > 1 and bb * heads * seq * seq > LIMIT_NUMEL:
                bb //= 2
            spec = {"family": "transformer", "vocab": 1000, "seq": seq, "d_model": d, "heads": heads, "layers": depth,
                    "ff_mult": 4, "classes": 10, "act": "gelu", "causal": bool(u[7] < 0.25), "batch": bb}
            tasks.append(make_task("model", spec, mode, dtype, opt, execs=("eager",)))
    return tasks


def mixed_design(n: int = 16, seed: int = SEED + 3) -> list[SweepTask]:
    """Randomly sampled mixed architectures (vector / image / sequence), fixed seed."""
    import numpy as np

    tasks = []
    kinds = ("vector", "image", "sequence")
    for i, u in enumerate(lhs(n, 4, seed)):
        rng = np.random.default_rng(seed * 1000 + i)
        kind = _choice(u[0], kinds)
        b = _batch(u[1])
        mode, opt = _choice(u[2], MODEL_MODES)
        dtype = _choice(u[3], DTYPE_CHOICES)
        acts = ["relu", "gelu", "silu", "hardswish", "tanh"]
        if kind == "vector":
            blocks = []
            width = int(np.exp(rng.uniform(np.log(16), np.log(1024))))
            for _ in range(int(rng.integers(2, 12))):
                width = int(np.clip(width * np.exp(rng.normal(0, 0.5)), 8, 2048))
                blocks.append({"out": width, "act": str(rng.choice(acts)), "norm": str(rng.choice(["none", "ln", "bn"])),
                               "dropout": float(rng.choice([0.0, 0.0, 0.1]))})
            spec = {"family": "mixed", "kind": kind, "in": int(np.exp(rng.uniform(np.log(8), np.log(2048)))),
                    "blocks": blocks, "out": int(rng.choice([1, 10, 100])), "batch": max(2, b)}
        elif kind == "image":
            res = int(rng.choice([32, 64, 96, 128]))
            c = int(rng.choice([16, 24, 32, 48, 64]))
            blocks = []
            cur, r = c, res
            for _ in range(int(rng.integers(3, 10))):
                op = str(rng.choice(["conv", "conv", "dwsep", "res", "pool"]))
                act = str(rng.choice(acts))
                if op == "pool" and r >= 8:
                    blocks.append({"op": "pool", "pool": str(rng.choice(["max", "avg"]))})
                    r //= 2
                elif op in ("conv", "dwsep"):
                    stride = 2 if (r >= 16 and rng.random() < 0.3) else 1
                    cout = int(np.clip(cur * rng.choice([1, 1, 2]), 8, 512))
                    blk = {"op": op, "k": int(rng.choice([1, 3, 3, 5])) if op == "conv" else int(rng.choice([3, 5])),
                           "stride": stride, "cout": cout, "act": act}
                    if op == "conv":
                        blk["groups"] = str(rng.choice(["1", "1", "dw"]))
                        blk["norm"] = str(rng.choice(["bn", "bn", "gn", "none"]))
                        if blk["groups"] == "dw":
                            cout = cur
                    blocks.append(blk)
                    cur, r = cout, (r + stride - 1) // stride
                else:
                    blocks.append({"op": "res", "k": 3, "act": act, "norm": str(rng.choice(["bn", "gn"]))})
            bb = b
            while bb > 1 and bb * max(c, cur) * res * res > LIMIT_NUMEL // 4:
                bb //= 2
            spec = {"family": "mixed", "kind": kind, "res": res, "in_ch": 3, "stem": c, "stem_act": "relu",
                    "blocks": blocks, "dropout": float(rng.choice([0.0, 0.2])), "classes": 10, "batch": bb}
        else:
            heads = int(rng.choice([1, 2, 4, 8]))
            d = _round_to(int(np.exp(rng.uniform(np.log(64), np.log(768)))), 8 * heads)
            seq = int(np.exp(rng.uniform(np.log(16), np.log(512))))
            blocks = []
            for _ in range(int(rng.integers(2, 9))):
                op = str(rng.choice(["attn", "mlp", "conv"]))
                if op == "attn":
                    blocks.append({"op": "attn", "heads": heads})
                elif op == "mlp":
                    blocks.append({"op": "mlp", "mult": int(rng.choice([2, 4])), "act": str(rng.choice(acts))})
                else:
                    blocks.append({"op": "conv", "k": int(rng.choice([3, 5, 7])), "act": str(rng.choice(acts))})
            bb = b
            while bb > 1 and bb * seq * d * len(blocks) * 16 > 4 * LIMIT_NUMEL:
                bb //= 2
            spec = {"family": "mixed", "kind": kind, "vocab": 1000, "seq": seq, "d_model": d, "blocks": blocks,
                    "classes": 10, "batch": bb}
        tasks.append(make_task("model", spec, mode, dtype, opt, execs=("eager",)))
    return tasks


# --------------------------------------------------------------------------- smoke / reference


def layers_smoke_design() -> list[SweepTask]:
    specs = [
        ({"family": "layer", "type": "Linear", "batch": 8, "in": 64, "out": 32, "seq": None}, INFER, "fp32"),
        ({"family": "layer", "type": "Conv2d", "batch": 2, "cin": 3, "cout": 8, "k": 3, "stride": 1, "res": 16,
          "groups": 1}, INFER, "fp32"),
        ({"family": "layer", "type": "ReLU", "batch": 4, "shape": [4, 128]}, INFER, "fp32"),
        ({"family": "layer", "type": "LayerNorm", "batch": 2, "d": 32, "seq": 8}, FWD_BWD, "fp32"),
        ({"family": "layer", "type": "Linear", "batch": 8, "in": 32, "out": 16, "seq": None}, TRAIN_SGD, "fp32"),
        ({"family": "layer", "type": "sdpa", "batch": 2, "heads": 2, "head_dim": 16, "seq": 32, "causal": False},
         INFER, "bf16"),
        ({"family": "layer", "type": "Embedding", "batch": 2, "vocab": 100, "d": 16, "seq": 8}, TRAIN_ADAM, "fp32"),
        ({"family": "layer", "type": "BatchNorm2d", "batch": 2, "c": 8, "res": 8}, INFER, "fp32"),
    ]
    reg = set(supported_layer_types())
    return [make_task("layer", s, m, dt, o) for s, (m, o), dt in specs if s["type"] in reg]


def models_smoke_design() -> list[SweepTask]:
    mk = lambda spec, m, dt="fp32": make_task("model", spec, m[0], dt, m[1], execs=("eager",))  # noqa: E731
    return [
        mk(_mlp_spec(16, 2, 32, 1, 8), INFER),
        mk(_mlp_spec(16, 3, 32, 1, 8), INFER),  # shares its layers with the previous task
        mk(_mlp_spec(16, 2, 32, 10, 8), TRAIN_SGD),
        mk({"family": "cnn", "residual": True, "res": 16, "in_ch": 3, "base": 8, "stages": 2, "blocks": 1, "kernel": 3,
            "classes": 10, "batch": 2}, INFER),
        mk({"family": "transformer", "vocab": 50, "seq": 16, "d_model": 32, "heads": 2, "layers": 1, "ff_mult": 2,
            "classes": 4, "act": "gelu", "causal": False, "batch": 2}, TRAIN_ADAM),
    ]


def reference_design() -> list[SweepTask]:
    """A fixed set re-run in every session (with a ``tag``) to compare sessions and machines:
    host-bound and GPU-bound layers and models (DESIGN §2: host-bound eager energy varies
    across sessions by ~12 %, GPU-bound by ~3 %)."""
    L = lambda s, m=INFER, dt="fp32": make_task("layer", s, m[0], dt, m[1])  # noqa: E731
    M = lambda s, m=INFER, dt="fp32": make_task("model", s, m[0], dt, m[1], execs=("eager",))  # noqa: E731
    return [
        L({"family": "layer", "type": "Linear", "batch": 1, "in": 64, "out": 64, "seq": None}),
        L({"family": "layer", "type": "Linear", "batch": 4096, "in": 4096, "out": 4096, "seq": None}),
        L({"family": "layer", "type": "Conv2d", "batch": 64, "cin": 128, "cout": 128, "k": 3, "stride": 1, "res": 28,
           "groups": 1}),
        L({"family": "layer", "type": "Conv2d", "batch": 64, "cin": 128, "cout": 128, "k": 3, "stride": 1, "res": 28,
           "groups": 1}, TRAIN_SGD),
        L({"family": "layer", "type": "sdpa", "batch": 16, "heads": 16, "head_dim": 64, "seq": 1024, "causal": False},
          INFER, "bf16"),
        L({"family": "layer", "type": "ReLU", "batch": 1, "shape": [1, 256]}),
        M(_mlp_spec(100, 20, 300, 1, 256)),
        M(_mlp_spec(100, 20, 300, 1, 256), TRAIN_SGD),  # DESIGN §2: train ≈ 4.4-4.7 x forward
        M(_mlp_spec(100, 100, 10, 1, 32), TRAIN_SGD),  # seed 004's deep-narrow case: host-bound
        M({"family": "transformer", "vocab": 1000, "seq": 256, "d_model": 512, "heads": 8, "layers": 6, "ff_mult": 4,
           "classes": 10, "act": "gelu", "causal": False, "batch": 32}, INFER, "bf16"),
    ]


# --------------------------------------------------------------------------- lent-GPU designs (issue 13)

# protocol settings per sweep (protocol.measure kwargs; protocol v2 takes window energy from the
# counter's changes when the meter is a *-changes meter, so short windows stay accurate)
REFSET_PROTOCOL = {  # the H100 reference set's README: 0.3 s warm-up, two windows >= 1.2 s, sync every 8 calls
    "warmup_s": 0.3, "warmup_calls": 1, "min_window_s": 1.2, "n_windows": 2, "max_rounds": 1, "sync_every": 8,
    "jitter_s": (0.0, 0.0), "max_total_s": 30.0}
HOST_PROTOCOL = {  # tiny host-bound layers: power ~ flat active idle; time per call is what matters
    "warmup_s": 0.1, "min_window_s": 0.5, "n_windows": 2, "max_rounds": 2, "calibrate_s": 0.02,
    "jitter_s": (0.0, 0.0), "max_total_s": 15.0}
GPU_EFF_PROTOCOL = {  # heavy kernels: 0.3 s warm-up for the power ramp, 1 s windows (DESIGN §2: ~1 % repeat)
    "warmup_s": 0.3, "min_window_s": 1.0, "n_windows": 2, "max_rounds": 2, "jitter_s": (0.0, 0.0),
    "max_total_s": 20.0}
# torch's default precision settings (what the reference set and exante's "fp32" mean)
TORCH_DEFAULT_FLAGS = {"allow_tf32_matmul": False, "allow_tf32_cudnn": True, "cudnn_benchmark": False}


def refset_design() -> list[SweepTask]:
    """The 95 workloads of the H100 reference set (profiling.reference_set), whole model only,
    in its own order per model; models interleaved vision / transformer / mlp."""
    from profiling.reference_set import reference_workloads

    tasks = []
    for w in reference_workloads():
        spec = {"family": "refset", "name": w["name"], "kind": w["kind"], "model_ref": w["model_ref"],
                "arch": w["arch"], "input": list(w["input"]), "batch": int(w["batch"])}
        tasks.append(make_task("whole", spec, w["mode"], w["dtype"], w["optimizer"], execs=("eager",)))
    return tasks


# tiny configs (batch 1-2): the host's per-call cost dominates; (spec, has parameters)
_HOST_TINY = [
    ({"type": "Linear", "batch": 1, "in": 64, "out": 64, "seq": None}, True),
    ({"type": "Conv2d", "batch": 1, "cin": 8, "cout": 8, "k": 3, "stride": 1, "res": 8, "groups": 1}, True),
    ({"type": "Conv1d", "batch": 1, "cin": 8, "cout": 8, "k": 3, "stride": 1, "length": 16, "groups": 1}, True),
    ({"type": "ConvTranspose2d", "batch": 1, "cin": 8, "cout": 8, "k": 2, "stride": 2, "res": 4}, True),
    ({"type": "BatchNorm2d", "batch": 2, "c": 8, "res": 8}, True),
    ({"type": "BatchNorm1d", "batch": 2, "c": 64}, True),
    ({"type": "LayerNorm", "batch": 1, "d": 64, "seq": 8}, True),
    ({"type": "GroupNorm", "batch": 1, "groups": 8, "c": 32, "res": 8}, True),
    ({"type": "MultiheadAttention", "batch": 1, "d": 64, "heads": 4, "seq": 8}, True),
    ({"type": "Embedding", "batch": 1, "vocab": 1000, "d": 64, "seq": 8}, True),
    ({"type": "ReLU", "batch": 1, "shape": [1, 256]}, False),
    ({"type": "GELU", "batch": 1, "shape": [1, 256]}, False),
    ({"type": "SiLU", "batch": 1, "shape": [1, 256]}, False),
    ({"type": "Hardswish", "batch": 1, "shape": [1, 256]}, False),
    ({"type": "Sigmoid", "batch": 1, "shape": [1, 256]}, False),
    ({"type": "Tanh", "batch": 1, "shape": [1, 256]}, False),
    ({"type": "LeakyReLU", "batch": 1, "shape": [1, 256]}, False),
    ({"type": "Dropout", "batch": 1, "shape": [1, 256]}, False),
    ({"type": "Softmax", "batch": 1, "shape": [1, 1, 8, 8]}, False),
    ({"type": "MaxPool2d", "batch": 1, "c": 8, "res": 8, "k": 2, "stride": 2}, False),
    ({"type": "AvgPool2d", "batch": 1, "c": 8, "res": 8, "k": 2, "stride": 2}, False),
    ({"type": "AdaptiveAvgPool2d", "batch": 1, "c": 64, "res": 4}, False),
    ({"type": "sdpa", "batch": 1, "heads": 2, "head_dim": 32, "seq": 8, "causal": False}, False),
    ({"type": "add", "batch": 1, "shape": [1, 8, 64]}, False),
    ({"type": "matmul", "batch": 1, "m": 16, "k": 16, "n": 16}, False),
    ({"type": "mean", "batch": 1, "seq": 8, "d": 64}, False),
]
# autocast adds casts and dispatch per op: the bf16 host cost of the common compute layers
_HOST_BF16 = ("Linear", "Conv2d", "LayerNorm", "MultiheadAttention", "sdpa")
# "small" configs (batch 32): still mostly host-bound on an H100/H200, the slope above the floor
_HOST_SMALL = [
    {"type": "Linear", "batch": 32, "in": 256, "out": 256, "seq": None},
    {"type": "Conv2d", "batch": 32, "cin": 16, "cout": 16, "k": 3, "stride": 1, "res": 16, "groups": 1},
    {"type": "BatchNorm2d", "batch": 32, "c": 16, "res": 16},
    {"type": "LayerNorm", "batch": 32, "d": 256, "seq": 16},
    {"type": "ReLU", "batch": 32, "shape": [32, 16, 16, 16]},
    {"type": "MultiheadAttention", "batch": 32, "d": 128, "heads": 4, "seq": 16},
    {"type": "sdpa", "batch": 32, "heads": 4, "head_dim": 32, "seq": 16, "causal": False},
    {"type": "add", "batch": 32, "shape": [32, 16, 128]},
]


def host_launch_design() -> list[SweepTask]:
    """Per-op host cost: tiny configs of every layer family in inference, forward_backward and
    train_step (sgd, adam: the optimizer step's own cost), fp32 (+ bf16 autocast for the common
    compute layers); first eager, then the same in CUDA graphs (the GPU-side floor: eager minus
    graph is the host's share), then small batch-32 configs eager (the slope above the floor)."""
    reg = set(supported_layer_types())
    tiny = [({"family": "layer", **s}, p) for s, p in _HOST_TINY if s["type"] in reg]
    out: list[SweepTask] = []
    for ex in ("eager", "graph"):
        tier = []
        for spec, has_params in tiny:
            modes = (INFER, FWD_BWD, TRAIN_SGD, TRAIN_ADAM) if has_params else (INFER, FWD_BWD)
            for mode, opt in modes:
                tier.append(make_task("layer", spec, mode, "fp32", opt, execs=(ex,)))
            if spec["type"] in _HOST_BF16:
                for mode, opt in (INFER, FWD_BWD):
                    tier.append(make_task("layer", spec, mode, "bf16", opt, execs=(ex,)))
        out += _interleave(tier)
    small = []
    for s in _HOST_SMALL:
        if s["type"] in reg:
            for mode, opt in (INFER, FWD_BWD, TRAIN_ADAM):
                small.append(make_task("layer", {"family": "layer", **s}, mode, "fp32", opt, execs=("eager",)))
    return out + _interleave(small)


# GPU-bound shapes (BERT/ResNet/ViT-like and larger): efficiency by precision
_EFF_SHAPES = [
    {"type": "Linear", "batch": 32, "in": 768, "out": 3072, "seq": 128},
    {"type": "Linear", "batch": 8, "in": 4096, "out": 4096, "seq": 512},
    {"type": "Linear", "batch": 64, "in": 1024, "out": 1024, "seq": None},
    {"type": "Linear", "batch": 16, "in": 1024, "out": 4096, "seq": 1024},
    {"type": "Conv2d", "batch": 32, "cin": 64, "cout": 64, "k": 3, "stride": 1, "res": 56, "groups": 1},
    {"type": "Conv2d", "batch": 32, "cin": 256, "cout": 256, "k": 3, "stride": 1, "res": 14, "groups": 1},
    {"type": "Conv2d", "batch": 32, "cin": 3, "cout": 64, "k": 7, "stride": 2, "res": 224, "groups": 1},
    {"type": "Conv2d", "batch": 32, "cin": 384, "cout": 384, "k": 3, "stride": 1, "res": 28, "groups": 384},
    {"type": "Conv2d", "batch": 32, "cin": 1024, "cout": 256, "k": 1, "stride": 1, "res": 14, "groups": 1},
    {"type": "sdpa", "batch": 32, "heads": 12, "head_dim": 64, "seq": 128, "causal": False},
    {"type": "sdpa", "batch": 8, "heads": 16, "head_dim": 64, "seq": 1024, "causal": False},
    {"type": "sdpa", "batch": 8, "heads": 16, "head_dim": 64, "seq": 1024, "causal": True},
    {"type": "LayerNorm", "batch": 32, "d": 768, "seq": 128},
    {"type": "LayerNorm", "batch": 8, "d": 4096, "seq": 1024},
    {"type": "BatchNorm2d", "batch": 32, "c": 64, "res": 56},
    {"type": "BatchNorm2d", "batch": 32, "c": 256, "res": 14},
]
_TF32_TYPES = ("Linear", "Conv2d", "sdpa")  # the precision flags change only these kernels


def gpu_eff_design(tf32: bool = False) -> list[SweepTask]:
    """GPU efficiency of matmul (Linear), conv, attention and norm shapes, inference and
    forward_backward, eager. ``tf32=False``: strict fp32 (the sweep turns TF32 off for matmuls
    and cuDNN) and bf16 autocast; ``tf32=True``: fp32 with TF32 on (its own sweep, so the rows'
    allow_tf32_* columns say which)."""
    reg = set(supported_layer_types())
    dtypes = ("fp32",) if tf32 else ("fp32", "bf16")
    tasks = []
    for mode, opt in (INFER, FWD_BWD):
        for s in _EFF_SHAPES:
            if s["type"] not in reg or (tf32 and s["type"] not in _TF32_TYPES):
                continue
            for dt in dtypes:
                tasks.append(make_task("layer", {"family": "layer", **s}, mode, dt, opt, execs=("eager",)))
    return _interleave(tasks)


# --------------------------------------------------------------------------- registry

SWEEPS: dict[str, SweepDefinition] = {}


def register(sweep: SweepDefinition) -> SweepDefinition:
    SWEEPS[sweep.name] = sweep
    return sweep


# expected H100 durations below come from estimate_sweep() (exact distinct-config counts)
register(SweepDefinition(
    "layers-smoke", "8 tiny single layers, all modes, eager+graph: a first GPU check (~1 min)",
    layers_smoke_design, smoke=True))
register(SweepDefinition(
    "models-smoke", "5 tiny models (MLP, CNN, transformer), inference and train step (~3 min)",
    models_smoke_design, smoke=True))
register(SweepDefinition(
    "layers", "single layers of every supported type over wide shape/batch ranges (1..512), inference, fp32+bf16, "
    "eager+graph (LHS design)",
    lambda: _anchor_layers((INFER,), DTYPE_CHOICES) + layer_design(170, (INFER,), DTYPE_CHOICES, SEED + 10)))
register(SweepDefinition(
    "layers-train", "single layers of every supported type, forward_backward and train_step (sgd, adam), fp32+bf16, "
    "eager+graph (LHS design)",
    lambda: _anchor_layers(TRAIN_MODES, DTYPE_CHOICES) + layer_design(170, TRAIN_MODES, DTYPE_CHOICES, SEED + 20)))
register(SweepDefinition(
    "attention", "attention at sequence lengths 32..1024 (sdpa, MultiheadAttention) with LayerNorm/Softmax/matmul, "
    "all modes, fp32+bf16, eager+graph",
    lambda: layer_design(170, (INFER,) + TRAIN_MODES, DTYPE_CHOICES, SEED + 30,
                         types=[t for t in ("sdpa", "MultiheadAttention", "LayerNorm", "Softmax", "matmul")
                                if t in supported_layer_types()])))
register(SweepDefinition(
    "mlp", "MLPs depth 1..300 x width 10..1024 x batch 1..512 (LHS groups sharing layers) + seed 004 Table 6 "
    "wide-vs-deep grid; inference and train_step (sgd, adam)", mlp_design))
register(SweepDefinition(
    "mlp-seed004", "seed 004 Table 4 grid: depth 10..170 x width 25..100, batch 32, SGD train step and inference",
    mlp_seed004_design))
register(SweepDefinition(
    "cnn", "plain and residual CNN stacks (resolution 32..224, base width 8..128, 1..4 stages, 1..3 blocks), "
    "inference and train_step", cnn_design))
register(SweepDefinition(
    "transformer", "transformer encoders d_model 64..1024, 1..24 layers, 1..16 heads, seq 32..1024; "
    "inference and train_step", transformer_design))
register(SweepDefinition(
    "mixed", "randomly sampled mixed architectures (vector, image, sequence), fixed seed; inference and train_step",
    mixed_design))
register(SweepDefinition(
    "reference", "fixed host-bound and GPU-bound layers and models: re-run every session with tag=... to compare "
    "sessions and machines", reference_design))

register(SweepDefinition(
    "refset", "the 95 workloads of the H100 reference set (shared/reference/h100), whole model only, with its "
    "protocol (0.3 s warm-up, two windows >= 1.2 s, sync every 8 calls): H100 vs this GPU row by row",
    refset_design, protocol=REFSET_PROTOCOL, torch_flags=TORCH_DEFAULT_FLAGS, reference_every=40))
register(SweepDefinition(
    "host-launch", "per-op host cost: tiny configs of every layer family, inference / forward_backward / "
    "train_step (sgd, adam), fp32 (+ bf16), eager then CUDA graph; then batch-32 small configs",
    host_launch_design, protocol=HOST_PROTOCOL, torch_flags=TORCH_DEFAULT_FLAGS, reference_every=60))
register(SweepDefinition(
    "gpu-eff", "GPU efficiency: matmul/conv/attention/norm shapes, inference and forward_backward, strict fp32 "
    "(TF32 off) and bf16 autocast", lambda: gpu_eff_design(tf32=False), protocol=GPU_EFF_PROTOCOL,
    torch_flags={"allow_tf32_matmul": False, "allow_tf32_cudnn": False, "cudnn_benchmark": False}, reference_every=40))
register(SweepDefinition(
    "gpu-eff-tf32", "GPU efficiency of the matmul/conv/attention shapes of gpu-eff in fp32 with TF32 on "
    "(matmuls and cuDNN)", lambda: gpu_eff_design(tf32=True), protocol=GPU_EFF_PROTOCOL,
    torch_flags={"allow_tf32_matmul": True, "allow_tf32_cudnn": True, "cudnn_benchmark": False}, reference_every=40))

# Filled in from estimate_sweep() on this design (configs x SECONDS_PER_CONFIG, H100):
EXPECTED_DURATION_S = {
    "layers-smoke": 72, "models-smoke": 164, "layers": 1602, "layers-train": 1602, "attention": 1513,
    "mlp": 1420, "mlp-seed004": 700, "cnn": 1404, "transformer": 1416, "mixed": 1440, "reference": 171,
}
# the lent-GPU sweeps use their own protocols: ~3.1 s per refset workload (0.3 s warm-up + 2 x 1.2 s
# windows + build/sync tails), ~1.3 s per host-launch eager config (~1.7 s in a graph), ~2.5 s per
# gpu-eff config -- planning figures until a session's tasks.csv gives measured elapsed_s
EXPECTED_DURATION_S.update({"refset": 300, "host-launch": 280, "gpu-eff": 160, "gpu-eff-tf32": 60})
for _name, _s in EXPECTED_DURATION_S.items():
    if _name in SWEEPS:
        SWEEPS[_name].expected_duration_s = float(_s)


def get_sweep(name: str) -> SweepDefinition:
    if isinstance(name, SweepDefinition):
        return name
    if name not in SWEEPS:
        raise ExanteError(f"unknown sweep {name!r}; accepted: {', '.join(SWEEPS)}")
    return SWEEPS[name]


# --------------------------------------------------------------------------- estimates


def estimate_sweep(name: str, *, graph: bool = True, limit: int | None = None) -> dict:
    """Distinct measured configurations of a sweep (capturing every task on ``meta``) and the
    expected H100 duration: configs x ``SECONDS_PER_CONFIG`` (+ graph capture, + references)."""
    from profiling.capture import capture

    sweep = get_sweep(name)
    seen: set = set()
    n_layer = n_graph = n_model = 0
    tasks = sweep.tasks(limit=limit)
    for t in tasks:
        if t.kind == "whole":  # the whole model only: one configuration, no layer replays
            n_model += 1
            continue
        model, inputs = t.build("meta")
        cap = capture(model, inputs, dtype=t.dtype, train=t.mode != "inference")
        for layer in cap.layers:
            if not layer.supported:
                continue
            for ex in t.execs:
                if ex == "graph" and not graph:
                    continue
                k = schema.row_key(layer.config.key(), t.mode, ex, t.dtype, t.optimizer)
                if k in seen:
                    continue
                seen.add(k)
                n_layer += 1
                n_graph += ex == "graph"
        if t.kind == "model":
            n_model += 1
    configs = n_layer + n_model
    refs = math.ceil(configs / REFERENCE_EVERY)
    seconds = (configs + refs) * SECONDS_PER_CONFIG + n_graph * GRAPH_EXTRA_S
    return {"sweep": sweep.name, "tasks": len(tasks), "layer_configs": n_layer, "graph_configs": n_graph,
            "model_configs": n_model, "reference_measurements": refs, "expected_h100_s": seconds}


# --------------------------------------------------------------------------- meters


def make_meter(name="auto", *, device=None, hardware: str | None = None, rated_power_w: float | None = None):
    """See :func:`profiling.profiler.open_meter` (``auto | nvml | nvml-power | rapl | estimated | replay``)."""
    from profiling.profiler import open_meter

    return open_meter(name, device=device, hardware=hardware, rated_power_w=rated_power_w)


# --------------------------------------------------------------------------- task execution


def _free_memory():
    """Give the task's device memory back before the next task (a full gc costs ~0.1 s: GPU only)."""
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        gc.collect()
        with contextlib.suppress(Exception):  # a broken context is reported by _cuda_context_error
            torch.cuda.empty_cache()


def _cuda_context_error(device) -> str | None:
    """None if CUDA still works on ``device``; else the error. A sticky CUDA error (illegal
    memory access, device-side assert) makes every later CUDA call in this process fail, so
    the sweep must stop rather than record every following task as failed."""
    dev = torch.device(device) if device is not None else None
    if dev is None or dev.type != "cuda" or not torch.cuda.is_initialized():
        return None
    try:
        torch.cuda.synchronize(dev)
        if float(torch.ones(1, device=dev).add_(1).sum()) != 2.0:
            return "a tiny CUDA computation returned a wrong result"
    except Exception as exc:
        text = str(exc).strip()
        return f"{type(exc).__name__}: {text.splitlines()[0] if text else ''}"
    return None


TORCH_FLAGS = {  # name -> (getter, setter) of a torch precision flag
    "allow_tf32_matmul": (lambda: torch.backends.cuda.matmul.allow_tf32,
                          lambda v: setattr(torch.backends.cuda.matmul, "allow_tf32", bool(v))),
    "allow_tf32_cudnn": (lambda: torch.backends.cudnn.allow_tf32,
                         lambda v: setattr(torch.backends.cudnn, "allow_tf32", bool(v))),
    "cudnn_benchmark": (lambda: torch.backends.cudnn.benchmark,
                        lambda v: setattr(torch.backends.cudnn, "benchmark", bool(v))),
}


@contextlib.contextmanager
def torch_flags(flags: dict | None):
    """Set torch precision flags (``TORCH_FLAGS`` names) for the duration, then restore them."""
    flags = dict(flags or {})
    bad = sorted(set(flags) - set(TORCH_FLAGS))
    if bad:
        raise ExanteError(f"unknown torch flag(s) {bad}; accepted: {', '.join(TORCH_FLAGS)}")
    old = {k: TORCH_FLAGS[k][0]() for k in flags}
    try:
        for k, v in flags.items():
            TORCH_FLAGS[k][1](v)
        yield
    finally:
        for k, v in old.items():
            with contextlib.suppress(Exception):
                TORCH_FLAGS[k][1](v)


# the last whole model built (a reference-set model serves its consecutive rows; dropped after a
# train_step, which changes its weights, and before any other model)
_WHOLE_CACHE: dict = {}


def _whole_model(task: SweepTask, device):
    ident = _canon({k: v for k, v in task.spec.items() if k != "batch"}) + f"|{device}"
    if _WHOLE_CACHE.get("ident") != ident:
        _WHOLE_CACHE.clear()
        model, _ = build_from_spec({**task.spec, "batch": 1}, device=device)
        _WHOLE_CACHE.update(ident=ident, model=model)
    _, inputs = build_from_spec({**task.spec, "batch": task.batch}, device="meta")
    return _WHOLE_CACHE["model"], inputs


def _execute_whole(task: SweepTask, session, out: dict) -> None:
    from profiling.profiler import measure_whole_model

    try:
        model, inputs = _whole_model(task, session.device)
        row, refs, notes = measure_whole_model(
            model, inputs, session=session, mode=task.mode, dtype=task.dtype, optimizer=task.optimizer,
            model_ref=task.model_ref, family=task.family, spec=task.spec, task_key=task.key)
    finally:
        if task.mode != "inference":
            _WHOLE_CACHE.clear()
    out["model_rows"] = [row]
    out["reference_rows"] = refs
    if notes:
        out["error"] = "; ".join(notes)[:500]


def execute_task(task: SweepTask, session, *, deadline: float | None = None) -> dict:
    """Run one task in ``session`` (a profiler.ProfileSession); never raises for a task's own
    failure (status ``error`` with the message), only for a broken meter or an interrupt."""
    from profiling.profiler import profile_model

    if deadline is not None and time.time() > deadline:
        return {"task_key": task.key, "status": "skipped", "session": session.describe()}
    t0 = time.perf_counter()
    out = {"task_key": task.key, "kind": task.kind, "family": task.family, "status": "ok", "error": None,
           "layer_rows": [], "model_rows": [], "reference_rows": [], "skipped": []}
    model = inputs = None
    try:
        if task.kind == "whole":
            _execute_whole(task, session, out)
        else:
            model, inputs = task.build(device=session.device)
            res = profile_model(
                model, inputs, mode=task.mode, dtype=task.dtype, optimizer=task.optimizer, session=session,
                execs=task.execs, measure_model=task.kind == "model", task_key=task.key, family=task.family,
                model_ref=task.model_ref, spec=task.spec, progress=False,
            )
            out["layer_rows"] = res.layer_rows
            out["reused_keys"] = res.reused_keys
            out["model_rows"] = [res.model_row] if res.model_row is not None else []
            out["reference_rows"] = res.reference_rows
            out["skipped"] = res.skipped
            if task.kind == "layer" and not res.layer_rows and not res.reused_keys:
                out["status"] = "error"
                out["error"] = ("; ".join(s.get("reason", "") for s in res.skipped)
                                or "; ".join(res.notes) or "no supported layer captured")[:500]
    except (MeterUnavailable, KeyboardInterrupt):
        raise
    except Exception as exc:  # the task's own failure (OOM, unsupported op...): record and go on
        out["status"] = "error"
        msg = str(exc).splitlines()[0] if str(exc) else ""
        out["error"] = f"{type(exc).__name__}: {msg}"[:500]
        out["traceback"] = traceback.format_exc(limit=4)[-2000:]
        # rows measured before the failure (e.g. the whole model ran out of memory after its
        # layers were measured) are written too: the session already counts them as known
        partial = getattr(exc, "exante_partial", None)
        if isinstance(partial, dict):
            for k in ("layer_rows", "reference_rows", "skipped", "reused_keys"):
                out[k] = list(partial.get(k) or [])
    finally:
        del model, inputs
        _free_memory()
    return _finish_task(task, session, out, t0)


def _finish_task(task: SweepTask, session, out: dict, t0: float) -> dict:
    if out["status"] != "ok" or out["skipped"]:
        broken = _cuda_context_error(session.device)
        if broken:
            _WHOLE_CACHE.clear()
            out["fatal"] = f"CUDA context unusable after task {task.key} ({broken})"
    out["elapsed_s"] = time.perf_counter() - t0
    out["session"] = session.describe()
    return out


_WORKER = threading.local()


def _worker_execute(task: SweepTask, cfg: dict, known: dict, deadline: float | None) -> dict:
    """Runs on a dask worker: one cached ProfileSession per worker thread and configuration."""
    from profiling.profiler import ProfileSession

    cache = getattr(_WORKER, "sessions", None)
    if cache is None:
        cache = _WORKER.sessions = {}
    ck = _canon(cfg)
    session = cache.get(ck)
    if session is None:
        device = os.environ.get("EXANTE_DEVICE") or cfg.get("device")
        session = ProfileSession(meter=cfg["meter"], device=device, rated_power_w=cfg.get("rated_power_w"), hardware=cfg["hardware"], sweep_id=cfg["sweep_id"],
                                 protocol_kwargs=cfg.get("protocol_kwargs"), idle_kwargs=cfg.get("idle_kwargs"),
                                 idle_power_w=cfg.get("idle_power_w"), reference=cfg.get("reference"),
                                 reference_every=cfg.get("reference_every", REFERENCE_EVERY))
        try:
            from distributed import get_worker

            session.worker = get_worker().address
        except Exception:
            session.worker = None
        cache[ck] = session
    session.known.update({k: v for k, v in known.items() if k not in session.known})
    return execute_task(task, session, deadline=deadline)


# --------------------------------------------------------------------------- runner


@dataclass
class SweepSummary:
    name: str
    sweep_id: str
    out_dir: str
    n_tasks: int  # tasks in the (limited/sharded) sweep
    n_already_done: int  # skipped on resume
    n_run: int = 0
    n_ok: int = 0
    n_errors: int = 0
    n_layer_rows: int = 0
    n_model_rows: int = 0
    n_reference_rows: int = 0
    n_duplicate_rows_dropped: int = 0
    elapsed_s: float = 0.0
    stopped: str | None = None  # None (finished), "time_budget"
    sessions: list = field(default_factory=list)
    errors: list = field(default_factory=list)  # (task key, message), first 20

    @property
    def n_remaining(self) -> int:
        return self.n_tasks - self.n_already_done - self.n_run

    @property
    def complete(self) -> bool:
        return self.n_remaining == 0

    def __str__(self) -> str:
        state = "complete" if self.complete else f"{self.n_remaining} task(s) left (resumable)"
        if self.stopped:
            state += f"; stopped by {self.stopped}"
        lines = [
            f"sweep {self.sweep_id} -> {self.out_dir}: {state}",
            f"  tasks: {self.n_tasks} in sweep, {self.n_already_done} done before, {self.n_run} run now "
            f"({self.n_ok} ok, {self.n_errors} errors) in {self.elapsed_s:.1f} s",
            f"  rows written: {self.n_layer_rows} layer, {self.n_model_rows} model, {self.n_reference_rows} reference"
            + (f" ({self.n_duplicate_rows_dropped} duplicate layer rows dropped)" if self.n_duplicate_rows_dropped else ""),
            f"  sessions: {', '.join(self.sessions) or '-'}",
        ]
        for key, msg in self.errors[:5]:
            lines.append(f"  error: {key}: {msg}")
        return "\n".join(lines)


def _now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


class _Writer:
    """Driver side: dedups, appends rows atomically, keeps meta.json current."""

    def __init__(self, out_dir: str, sweep: SweepDefinition, sweep_id: str, hardware: str, summary: SweepSummary,
                 backend: str, meter_name: str):
        self.out_dir = out_dir
        self.layers = schema.layer_table(out_dir)
        self.models = schema.model_table(out_dir)
        self.tasks = schema.task_table(out_dir)
        self.sweep, self.sweep_id, self.hardware = sweep, sweep_id, hardware
        self.summary = summary
        self.backend, self.meter_name = backend, meter_name
        self.meta_path = os.path.join(out_dir, schema.META_FILE)
        self.layer_keys = {k for sid, k in self.layers.keys() if sid == sweep_id}
        self.model_keys = {k for sid, k in self.models.keys() if sid == sweep_id}

    def known_measurements(self) -> dict:
        """key -> {energy_j, time_s} of this sweep's layer rows (dedup + additivity sums on resume)."""
        out = {}
        for r in self.layers.read():
            if r["sweep_id"] == self.sweep_id and r["layer_type"] != "reference" and r["key"]:
                out[r["key"]] = {"energy_j": r["energy_j"], "time_s": r["time_s"]}
        return out

    def write(self, res: dict) -> None:
        layer_rows = []
        for r in res.get("layer_rows", []):
            if r["key"] in self.layer_keys:
                self.summary.n_duplicate_rows_dropped += 1
                continue
            self.layer_keys.add(r["key"])
            layer_rows.append(r)
        ref_rows = list(res.get("reference_rows", []))
        model_rows = [r for r in res.get("model_rows", []) if r["key"] not in self.model_keys]
        self.layers.append(layer_rows + ref_rows)
        self.models.append(model_rows)
        self.model_keys.update(r["key"] for r in model_rows)
        sess = res.get("session") or {}
        error = res.get("error")
        if not error and res.get("skipped"):  # an ok task whose layers were not all measured (e.g. graph capture)
            error = ("not measured: " + "; ".join(f"{s.get('type')} [{s.get('exec')}]: {s.get('reason')}"
                                                  for s in res["skipped"]))[:500]
        self.tasks.append([schema.task_row(
            sweep_id=self.sweep_id, key=res["task_key"], kind=res.get("kind"), family=res.get("family"),
            status=res["status"], error=error, n_layer_rows=len(layer_rows), n_model_rows=len(model_rows),
            elapsed_s=res.get("elapsed_s"), session_id=sess.get("session_id"), date=_now_iso())])
        s = self.summary
        s.n_run += 1
        s.n_ok += res["status"] == "ok"
        if res["status"] != "ok":
            s.n_errors += 1
            if len(s.errors) < 20:
                s.errors.append((res["task_key"], res.get("error")))
        s.n_layer_rows += len(layer_rows)
        s.n_model_rows += len(model_rows)
        s.n_reference_rows += len(ref_rows)
        if sess.get("session_id") and sess["session_id"] not in s.sessions:
            s.sessions.append(sess["session_id"])
        self.update_meta(sess, task_done=True)

    def update_meta(self, sess: dict | None = None, *, task_done: bool = False, finished: bool = False) -> None:
        schema.update_meta(self.out_dir, lambda meta: self._update(meta, sess, task_done, finished))

    def _update(self, meta: dict, sess: dict | None, task_done: bool, finished: bool) -> None:
        meta.setdefault("hardware", self.hardware)
        meta["schema_version"] = schema.SCHEMA_VERSION
        meta["updated"] = _now_iso()
        sw = meta.setdefault("sweeps", {}).setdefault(self.sweep_id, {})
        sw.update({"name": self.sweep.name, "description": self.sweep.description,
                   "expected_h100_s": self.sweep.expected_duration_s})
        sw.setdefault("started", _now_iso())
        sw["n_tasks"] = self.summary.n_tasks  # of the task list of the last run (limit/shard applied)
        sw["n_tasks_done"] = self.summary.n_already_done + self.summary.n_run
        if finished:
            sw["last_run"] = {"ended": _now_iso(), "elapsed_s": round(self.summary.elapsed_s, 1),
                              "stopped": self.summary.stopped, "backend": self.backend, "meter": self.meter_name,
                              "tasks_run": self.summary.n_run, "errors": self.summary.n_errors}
            if self.summary.complete:
                sw["completed"] = _now_iso()
        if sess and sess.get("session_id"):
            sid = sess["session_id"]
            sessions = meta.setdefault("sessions", {})
            entry = sessions.setdefault(sid, {"started": sess.get("started"), "sweep_ids": []})
            if self.sweep_id not in entry.setdefault("sweep_ids", []):
                entry["sweep_ids"].append(self.sweep_id)
            for k in ("env", "idle_power_w", "device", "worker", "meter", "hardware", "n_measured", "n_reference"):
                if sess.get(k) is not None:
                    entry[k] = sess[k]
            entry["updated"] = _now_iso()
            if task_done:
                entry["n_tasks"] = entry.get("n_tasks", 0) + 1
            ids = sw.setdefault("sessions", [])
            if sid not in ids:
                ids.append(sid)


def run_sweep(name, out_dir, *, resume: bool = True, backend: str = "local", scheduler=None, meter="auto",
              n_jobs: int | None = 1, limit: int | None = None, shard: tuple[int, int] | None = None,
              progress: bool = True, hardware: str = "h100", time_budget_s: float | None = None,
              device=None, tag: str | None = None, protocol_kwargs: dict | None = None,
              idle_kwargs: dict | None = None, idle_power_w: float | None = None, rated_power_w: float | None = None,
              reference: bool = True, reference_every: int | None = None, retry_errors: bool = False,
              max_consecutive_errors: int = 25, on_task: Callable[[dict], None] | None = None,
              session_id: str | None = None) -> SweepSummary:
    """Run sweep ``name`` into the dataset folder ``out_dir`` (``datasets/<hardware>``).

    - ``resume``: skip tasks already recorded in ``tasks.csv`` for this sweep id (errored ones
      too, unless ``retry_errors``) and reuse this sweep's layer measurements already in
      ``layers.csv`` (dedup, additivity sums); ``resume=False`` re-measures everything.
    - ``tag``: sweep id = ``name@tag``, a separate measurement of the same design (e.g. one per
      session or machine, for the cross-session spread of host-bound workloads).
    - ``backend="local"``: tasks run one after another in this process on ``device``.
      ``backend="dask"``: ``scheduler`` is a ``dask.distributed.Client``, a cluster or an
      address; tasks go through ``joblib.Parallel(return_as="generator_unordered")`` under
      ``joblib.parallel_config(backend="dask")``; every worker (one per GPU; set
      ``CUDA_VISIBLE_DEVICES`` or ``EXANTE_DEVICE`` per worker) opens its own meter by name and
      measures its idle power; the driver writes the results as they arrive. ``n_jobs``
      defaults to the number of workers.
    - ``meter``: a name (``auto``, ``nvml``, ``nvml-power``, ``rapl``, ``estimated``, ``replay``).
    - ``time_budget_s``: no task is started once the elapsed time plus the mean task time would
      exceed it; the sweep stays resumable. ``limit``/``shard`` restrict the task list.
    - The sweep's own ``protocol`` settings apply (``protocol_kwargs`` override them), its
      ``torch_flags`` are set while it runs and restored after, and ``reference_every``
      defaults to the sweep's (else ``REFERENCE_EVERY``).
    - ``on_task(result)`` is called after each task's rows are written (e.g. to copy the dataset
      files somewhere safe as the sweep goes). ``session_id`` names the (local) session in the
      rows, e.g. one id for every sweep of one lent-GPU call (default: a fresh id per run).
    """
    sweep = get_sweep(name)
    protocol_kwargs = {**(sweep.protocol or {}), **(protocol_kwargs or {})} or None
    if reference_every is None:
        reference_every = sweep.reference_every or REFERENCE_EVERY
    with torch_flags(sweep.torch_flags):
        return _run_sweep(sweep, out_dir, resume=resume, backend=backend, scheduler=scheduler, meter=meter,
                          n_jobs=n_jobs, limit=limit, shard=shard, progress=progress, hardware=hardware,
                          time_budget_s=time_budget_s, device=device, tag=tag, protocol_kwargs=protocol_kwargs,
                          idle_kwargs=idle_kwargs, idle_power_w=idle_power_w, rated_power_w=rated_power_w,
                          reference=reference, reference_every=reference_every, retry_errors=retry_errors,
                          max_consecutive_errors=max_consecutive_errors, on_task=on_task, session_id=session_id)


def _run_sweep(sweep, out_dir, *, resume, backend, scheduler, meter, n_jobs, limit, shard, progress, hardware,
               time_budget_s, device, tag, protocol_kwargs, idle_kwargs, idle_power_w, rated_power_w, reference,
               reference_every, retry_errors, max_consecutive_errors, on_task, session_id) -> SweepSummary:
    if backend not in ("local", "dask"):
        raise ExanteError(f"unknown backend {backend!r}; accepted: local, dask")
    if tag is not None and not str(tag).replace("-", "").replace("_", "").isalnum():
        raise ExanteError(f"tag must be letters, digits, '-' or '_', got {tag!r}")
    sweep_id = sweep.name if not tag else f"{sweep.name}@{tag}"
    out_dir = os.fspath(out_dir)
    os.makedirs(out_dir, exist_ok=True)
    tasks = sweep.tasks(limit=limit, shard=shard)
    summary = SweepSummary(name=sweep.name, sweep_id=sweep_id, out_dir=out_dir, n_tasks=len(tasks), n_already_done=0)
    meter_name = meter if isinstance(meter, str) else getattr(meter, "name", type(meter).__name__)
    writer = _Writer(out_dir, sweep, sweep_id, hardware, summary, backend, meter_name)

    done: set = set()
    known: dict = {}
    if resume:
        for r in writer.tasks.read():
            if r["sweep_id"] == sweep_id and (r["status"] == "ok" or not retry_errors):
                done.add(r["key"])
        known = writer.known_measurements()
    else:
        writer.layer_keys.clear()
        writer.model_keys.clear()
    remaining = [t for t in tasks if t.key not in done]
    summary.n_already_done = len(tasks) - len(remaining)

    t_start = time.perf_counter()
    deadline = None if time_budget_s is None else time.time() + float(time_budget_s)
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(tasks), initial=summary.n_already_done, desc=sweep_id, unit="task", dynamic_ncols=True)

    def over_budget() -> bool:
        if time_budget_s is None:
            return False
        elapsed = time.perf_counter() - t_start
        mean = elapsed / summary.n_run if summary.n_run else 0.0
        return elapsed + mean > time_budget_s

    consecutive_errors = 0

    def handle(res: dict) -> bool:
        nonlocal consecutive_errors
        if res.get("status") == "skipped":
            return True
        writer.write(res)
        if on_task is not None:
            on_task(res)
        consecutive_errors = consecutive_errors + 1 if res["status"] != "ok" else 0
        if bar is not None:
            bar.update(1)
            bar.set_postfix_str(res["task_key"][:40], refresh=False)
        if res.get("fatal"):
            raise ExanteError(f"sweep {sweep_id}: {res['fatal']}; stopping (resumable: run the sweep again in a "
                              "new process)")
        if consecutive_errors >= max_consecutive_errors:
            raise ExanteError(f"sweep {sweep_id}: {consecutive_errors} tasks failed in a row (last: {res.get('error')}); "
                              "stopping (resumable)")
        return True

    try:
        if backend == "local":
            from profiling.profiler import ProfileSession

            session = None
            try:
                for task in remaining:
                    if over_budget():
                        summary.stopped = "time_budget"
                        break
                    if session is None:
                        session = ProfileSession(meter=meter, device=device, rated_power_w=rated_power_w,
                                                 hardware=hardware, sweep_id=sweep_id,
                                                 protocol_kwargs=protocol_kwargs, idle_kwargs=idle_kwargs,
                                                 idle_power_w=idle_power_w, reference=reference,
                                                 reference_every=reference_every, known=known,
                                                 session_id=session_id)
                    handle(_execute(task, session))
            finally:
                if session is not None:
                    session.close()
        else:
            _run_dask(remaining, writer, handle, scheduler=scheduler, n_jobs=n_jobs, deadline=deadline,
                      cfg={"meter": meter_name, "hardware": hardware, "sweep_id": sweep_id,
                           "device": None if device is None else str(device), "rated_power_w": rated_power_w,
                           "protocol_kwargs": protocol_kwargs, "idle_kwargs": idle_kwargs,
                           "idle_power_w": idle_power_w, "reference": reference, "reference_every": reference_every},
                      known=known, summary=summary, over_budget=over_budget)
    finally:
        summary.elapsed_s = time.perf_counter() - t_start
        if bar is not None:
            bar.close()
        with contextlib.suppress(Exception):
            writer.update_meta(finished=True)
    return summary


def _execute(task: SweepTask, session) -> dict:
    """Indirection so tests can interrupt a sweep in the middle."""
    return execute_task(task, session)


def _make_client(scheduler):
    from dask.distributed import Client

    if scheduler is None:
        raise ExanteError("backend 'dask' needs scheduler= (a dask.distributed Client, cluster or address)")
    if isinstance(scheduler, Client):
        return scheduler, False
    return Client(scheduler, set_as_default=False), True


def _run_dask(remaining, writer, handle, *, scheduler, n_jobs, deadline, cfg, known, summary, over_budget):
    import joblib

    client, owned = _make_client(scheduler)
    try:
        n_workers = len(client.scheduler_info().get("workers", {})) or 1
        jobs = n_jobs if (n_jobs and n_jobs > 1) else n_workers
        with client.as_current():
            with joblib.parallel_config(backend="dask", n_jobs=jobs):
                gen = joblib.Parallel(return_as="generator_unordered", pre_dispatch="n_jobs")(
                    joblib.delayed(_worker_execute)(t, cfg, known, deadline) for t in remaining)
                try:
                    for res in gen:
                        handle(res)
                        if over_budget():
                            summary.stopped = "time_budget"
                            break
                finally:
                    with contextlib.suppress(Exception):
                        gen.close()
        if deadline is not None and summary.stopped is None and summary.n_remaining > 0:
            summary.stopped = "time_budget"
    finally:
        if owned:
            client.close()


# --------------------------------------------------------------------------- dataset card


def _quantiles(values: list[float]) -> dict | None:
    vals = sorted(v for v in values if v is not None and isinstance(v, (int, float)) and math.isfinite(v))
    if not vals:
        return None

    def q(p):
        if len(vals) == 1:
            return vals[0]
        x = p * (len(vals) - 1)
        lo = int(math.floor(x))
        hi = min(lo + 1, len(vals) - 1)
        return vals[lo] + (vals[hi] - vals[lo]) * (x - lo)

    return {"n": len(vals), "median": q(0.5), "p10": q(0.1), "p90": q(0.9), "min": vals[0], "max": vals[-1]}


def dataset_card_stats(directory) -> dict:
    """Counts and spreads of a dataset folder (what the dataset card's counts section shows)."""
    directory = os.fspath(directory)
    layers = schema.layer_table(directory).read()
    models = schema.model_table(directory).read()
    tasks = schema.task_table(directory).read()
    meta = schema.read_json(os.path.join(directory, schema.META_FILE), default={}) or {}
    ref = [r for r in layers if r["layer_type"] == "reference"]
    lay = [r for r in layers if r["layer_type"] != "reference"]
    c = lambda rows, col: dict(sorted(Counter(str(r[col]) for r in rows).items()))  # noqa: E731

    drift = {}
    by_sess: dict[str, list] = {}
    for r in ref:
        by_sess.setdefault(r["session_id"] or "?", []).append(r["energy_j"])
    for sid, vals in by_sess.items():
        q = _quantiles(vals)
        if q:
            drift[sid] = {"n": q["n"], "median_energy_j": q["median"],
                          "drift": (q["max"] - q["min"]) / q["median"] if q["median"] else None}
    sessions = sorted({r["session_id"] for r in layers + models if r["session_id"]})
    dates = sorted(r["date"] for r in layers + models if r["date"])
    stats = {
        "directory": directory,
        "hardware": meta.get("hardware") or next((r["hardware"] for r in layers + models if r["hardware"]), None),
        "n_layer_rows": len(lay),
        "n_model_rows": len(models),
        "n_reference_rows": len(ref),
        "n_distinct_layer_configs": len({r["config_key"] for r in lay}),
        "layers_by_mode": c(lay, "mode"),
        "layers_by_exec": c(lay, "exec"),
        "layers_by_dtype": c(lay, "dtype"),
        "layers_by_type": c(lay, "layer_type"),
        "layers_by_sweep": c(lay, "sweep_id"),
        "models_by_family": c(models, "family"),
        "models_by_mode": c(models, "mode"),
        "models_by_dtype": c(models, "dtype"),
        "models_by_sweep": c(models, "sweep_id"),
        "spread_layers": _quantiles([r["spread"] for r in lay]),
        "spread_models": _quantiles([r["spread"] for r in models]),
        "additivity_ratio": _quantiles([r["additivity_ratio"] for r in models]),
        "time_additivity_ratio": _quantiles([r["time_additivity_ratio"] for r in models]),
        "reference_drift": drift,
        "n_sessions": len(sessions),
        "sessions": sessions,
        "gpus": sorted({f"{r['gpu_name']} (driver {r['driver']})" for r in layers + models if r["gpu_name"]}),
        "meters": c(layers + models, "meter"),
        "estimated_rows": sum(1 for r in layers + models if r["meter_measured"] is False),
        "dates": [dates[0], dates[-1]] if dates else [],
        "tasks_ok": sum(1 for r in tasks if r["status"] == "ok"),
        "tasks_error": sum(1 for r in tasks if r["status"] == "error"),
        "sweeps": {k: {kk: v.get(kk) for kk in ("n_tasks", "n_tasks_done", "completed")}
                   for k, v in (meta.get("sweeps") or {}).items()},
    }
    return stats


COUNTS_BEGIN = "<!-- counts:begin (generated by profiling.sweeps.write_dataset_card; do not edit) -->"
COUNTS_END = "<!-- counts:end -->"


def _fmt_q(q: dict | None, pct: bool = False) -> str:
    if not q:
        return "-"
    f = (lambda v: f"{100 * v:.1f} %") if pct else (lambda v: f"{v:.3f}")
    return f"median {f(q['median'])}, p10 {f(q['p10'])}, p90 {f(q['p90'])} (n = {q['n']})"


def counts_markdown(stats: dict) -> str:
    def table(title, d):
        if not d:
            return f"- {title}: none\n"
        return f"- {title}: " + ", ".join(f"{k} {v}" for k, v in d.items()) + "\n"

    out = [COUNTS_BEGIN, "", "## Counts", ""]
    out.append(f"- rows: {stats['n_layer_rows']} layer rows ({stats['n_distinct_layer_configs']} distinct layer configs), "
               f"{stats['n_model_rows']} model rows, {stats['n_reference_rows']} reference rows\n")
    out.append(table("layers by mode", stats["layers_by_mode"]))
    out.append(table("layers by exec", stats["layers_by_exec"]))
    out.append(table("layers by dtype", stats["layers_by_dtype"]))
    out.append(table("layers by type", stats["layers_by_type"]))
    out.append(table("models by family", stats["models_by_family"]))
    out.append(table("models by mode", stats["models_by_mode"]))
    out.append(table("rows by sweep", {k: stats["layers_by_sweep"].get(k, 0) + stats["models_by_sweep"].get(k, 0)
                                      for k in sorted(set(stats["layers_by_sweep"]) | set(stats["models_by_sweep"]))}))
    out.append(f"- window spread (max-min)/median, layers: {_fmt_q(stats['spread_layers'], True)}\n")
    out.append(f"- window spread, models: {_fmt_q(stats['spread_models'], True)}\n")
    out.append(f"- additivity ratio rho = sum(count x E_layer) / E_model: {_fmt_q(stats['additivity_ratio'])}\n")
    out.append(f"- time additivity ratio: {_fmt_q(stats['time_additivity_ratio'])}\n")
    drift = stats["reference_drift"]
    if drift:
        vals = [v["drift"] for v in drift.values() if v.get("drift") is not None]
        meds = [v["median_energy_j"] for v in drift.values()]
        across = (max(meds) - min(meds)) / statistics.median(meds) if len(meds) > 1 and statistics.median(meds) else 0.0
        out.append(f"- reference drift within sessions: max {100 * max(vals or [0]):.1f} %; "
                   f"across {len(meds)} session(s): {100 * across:.1f} %\n")
    out.append(f"- sessions: {stats['n_sessions']}; GPUs: {', '.join(stats['gpus']) or '-'}; "
               f"meters: {', '.join(f'{k} ({v})' for k, v in stats['meters'].items()) or '-'}"
               + (f"; **{stats['estimated_rows']} rows are estimates, not measurements**" if stats["estimated_rows"] else "")
               + "\n")
    if stats["dates"]:
        out.append(f"- measured from {stats['dates'][0]} to {stats['dates'][1]}\n")
    out.append(f"- sweep tasks: {stats['tasks_ok']} ok, {stats['tasks_error']} failed (see tasks.csv)\n")
    out += ["", COUNTS_END]
    return "\n".join(line.rstrip("\n") for line in out) + "\n"


def _template_text() -> str:
    path = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "datasets", "README.md")
    try:
        with open(path, encoding="utf-8") as f:
            return f.read()
    except OSError:
        return (f"# exante dataset: {{hardware}}\n\nSee the exante repository's datasets/README.md for how it was "
                f"measured and what the columns mean.\n\n{COUNTS_BEGIN}\n{COUNTS_END}\n")


def write_dataset_card(directory, template: str | None = None) -> str:
    """Write ``<directory>/README.md``: the template (``datasets/README.md``) with its counts
    section regenerated; an existing card keeps its text outside the counts markers."""
    directory = os.fspath(directory)
    stats = dataset_card_stats(directory)
    path = os.path.join(directory, "README.md")
    if os.path.isfile(path):
        with open(path, encoding="utf-8") as f:
            text = f.read()
    else:
        text = template if template is not None else _template_text()
        text = text.replace("{hardware}", str(stats["hardware"] or os.path.basename(directory.rstrip("/"))))
    block = counts_markdown(stats)
    if COUNTS_BEGIN in text and COUNTS_END in text:
        pre = text.split(COUNTS_BEGIN, 1)[0]
        post = text.split(COUNTS_END, 1)[1]
        text = pre + block.rstrip("\n") + post
    else:
        text = text.rstrip("\n") + "\n\n" + block
    schema._write_atomic_bytes(path, [text.encode("utf-8")])
    return path


def _main() -> None:  # pragma: no cover - documentation helper
    print(f"{'sweep':14s} {'tasks':>6s} {'configs':>8s} {'graph':>6s} {'models':>7s} {'H100 min':>9s}")
    for name in SWEEPS:
        e = estimate_sweep(name)
        print(f"{name:14s} {e['tasks']:6d} {e['layer_configs'] + e['model_configs']:8d} {e['graph_configs']:6d} "
              f"{e['model_configs']:7d} {e['expected_h100_s'] / 60:9.1f}")


if __name__ == "__main__":  # pragma: no cover
    _main()
