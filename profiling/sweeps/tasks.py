"""Sweep tasks and definitions: :class:`SweepTask` (one spec x mode x dtype x optimizer, keyed by
a hash of its identity) and :class:`SweepDefinition` (a named, deduplicated, shardable task list)."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Callable

from profiling.errors import ExanteError
from profiling.sweeps.builders import build_from_spec

REFERENCE_EVERY = 20
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
    """A :class:`SweepTask` for ``spec``; its key is ``family:label:mode:dtype:optimizer:b<batch>#``
    plus a sha1 of the spec and run settings. The optimizer is kept only for ``train_step``."""
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
