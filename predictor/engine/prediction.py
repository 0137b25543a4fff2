"""``Prediction``: the result of :func:`predictor.engine.predict.predict` -- time (s), total board
energy (J) and their intervals for one call on the whole batch, the per-layer split, the
estimated peak GPU memory (``memory_gb``, GiB) and the conditions it was predicted for
(mode, dtype, memory format, gradient scaler, torch version) -- with text and JSON forms.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields

import numpy as np

from predictor.engine.interval import Interval

__all__ = ["Prediction", "METHOD", "METHOD_PHYSICS"]

METHOD = ("physics model of eager PyTorch (host events + roofline GPU time + power), "
                  "calibrated on whole-model measurements")
METHOD_PHYSICS = METHOD      # the only method (the per-layer regression engine was removed)


# ----------------------------------------------------------------------------- result
@dataclass
class Prediction:
    """Predicted time and total board energy of one call on the whole batch (eager PyTorch).

    ``energy`` (J) and ``time`` (s) are :class:`~predictor.engine.interval.Interval` s of
    nominal coverage ``coverage``; the DESIGN contract's flat attributes (``energy_j``,
    ``energy_j_low``, ``energy_j_high``, ``time_s``, ``time_s_low``, ``time_s_high``) read
    them.  ``to_dict`` gives the flat JSON form.
    """

    energy: Interval                 # J, total board energy per call
    time: Interval                   # s, per call
    energy_dynamic_j: float          # energy_j - idle power × time_s
    power_w: float                   # energy_j / time_s
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
    terms: dict = field(default_factory=dict)   # model-level terms (host/GPU time, regime)
    memory_gb: float | None = None   # estimated peak GPU memory, GiB (predictor.engine.memory)
    memory_format: str = "contiguous"   # "contiguous" | "channels_last"
    grad_scaler: bool = False        # fp16 train_step with a GradScaler
    torch_version: str | None = None    # the version asked for (predict(torch_version=...))
    torch_versions_modelled: list = field(default_factory=list)  # what the artifact measured

    @property
    def energy_j(self) -> float:
        """Predicted total board energy per call (J)."""
        return self.energy.value

    @property
    def energy_j_low(self) -> float:
        return self.energy.low

    @property
    def energy_j_high(self) -> float:
        return self.energy.high

    @property
    def time_s(self) -> float:
        """Predicted time per call (s)."""
        return self.time.value

    @property
    def time_s_low(self) -> float:
        return self.time.low

    @property
    def time_s_high(self) -> float:
        return self.time.high

    @property
    def coverage(self) -> float:
        """Nominal coverage of the intervals (0-1)."""
        return self.energy.level

    def to_dict(self) -> dict:
        """JSON-ready dict (plain floats, ints, strings, lists): the intervals flat
        (``energy_j``, ``energy_j_low`` ... ``coverage``), then every other field."""
        d = {"energy_j": self.energy_j, "energy_j_low": self.energy_j_low,
             "energy_j_high": self.energy_j_high, "time_s": self.time_s,
             "time_s_low": self.time_s_low, "time_s_high": self.time_s_high,
             "energy_dynamic_j": self.energy_dynamic_j, "power_w": self.power_w,
             "coverage": self.coverage}
        d.update((f.name, getattr(self, f.name)) for f in fields(self)
                 if f.name not in ("energy", "time", "energy_dynamic_j", "power_w"))
        return _jsonable(d)

    def to_text(self, max_rows: int = 40) -> str:
        """A readable summary and per-layer table."""
        pct = int(round(self.coverage * 100))
        opt = conditions_text(self.optimizer, self.memory_format, self.grad_scaler,
                              self.torch_version)
        out = [
            f"exante prediction — {self.hardware}, {self.mode}, {self.dtype}, batch {self.batch}{opt}",
            f"  energy  {_fmt_j(self.energy_j)}  ({pct} % interval {_fmt_j(self.energy_j_low)} – "
            f"{_fmt_j(self.energy_j_high)})  per call, total board energy",
            f"  time    {_fmt_s(self.time_s)}  ({pct} % interval {_fmt_s(self.time_s_low)} – "
            f"{_fmt_s(self.time_s_high)})",
            f"  power   {self.power_w:.0f} W average; dynamic energy (above idle) "
            f"{_fmt_j(self.energy_dynamic_j)}",
        ]
        if self.memory_gb is not None:
            out.append(f"  memory  {self.memory_gb:.3g} GB estimated peak (weights, gradients, "
                       "optimizer state, activations, inputs)")
        out.append("")
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
                         f"{100 * r['energy_j_total'] / total:.1f} %", r.get("family", "")))
        widths = [max(len(c) for c in col) for col in zip(header, *rows, strict=True)] if rows else \
            [len(h) for h in header]
        right = {2, 3, 4, 5, 6}

        def fmt(cells):
            return "  ".join(c.rjust(w) if i in right else c.ljust(w)
                             for i, (c, w) in enumerate(zip(cells, widths, strict=True))).rstrip()

        out += [fmt(header), fmt(tuple("-" * w for w in widths))] + [fmt(r) for r in rows]
        if len(order) > max_rows:
            out.append(f"... {len(order) - max_rows} more distinct layers")
        t = self.terms
        if t and "time_host_s" in t:
            out.append("")
            out.append(f"host (Python + launches) {_fmt_s(t['time_host_s'])}, GPU kernels "
                       f"{_fmt_s(t['time_gpu_s'])}: {t['regime']}-bound; per-layer rows split "
                       "the total by each layer's modelled host+GPU work")
        if self.unsupported:
            out.append("not priced by a lowering rule (memory fallback, interval widened): "
                       + ", ".join(f"{u['type']} x{u['count']}" for u in self.unsupported))
        for w in self.warnings:
            out.append(f"warning: {w}")
        out.append(f"method: {self.method}; artifact {self.artifact.get('id', '?')}; "
                   f"intervals: split-conformal, nominal {pct} %")
        return "\n".join(out)


def conditions_text(optimizer, memory_format, grad_scaler, torch_version) -> str:
    """The run conditions beyond mode/dtype/batch for a report's title line
    (", optimizer adam, channels_last, grad scaler, torch 2.4"; empty when all default)."""
    opt = f", optimizer {optimizer}" if optimizer else ""
    if memory_format != "contiguous":
        opt += f", {memory_format}"
    if grad_scaler:
        opt += ", grad scaler"
    if torch_version:
        opt += f", torch {torch_version}"
    return opt


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
