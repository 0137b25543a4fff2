"""The result of a life-cycle estimate: per-stage :class:`StageReport` (GPU kWh, facility kWh,
hours, kg CO2e) and :class:`LifecycleReport` (totals, notes, text and JSON renderings)."""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass, field
from typing import Any

from predictor.carbon import regions as carbon
from predictor.carbon.interval_fields import flat, interval_ends
from predictor.carbon.lifecycle.scenario import STAGES
from predictor.engine.interval import Interval

# --------------------------------------------------------------------------- report

@dataclass
class StageReport:
    """One life-cycle stage, each quantity an :class:`Interval` of the predictor's coverage:
    ``energy`` (J, GPU board energy), ``time`` (s, wall clock), ``gpu_time`` (GPU-hours),
    ``facility_energy`` (kWh: J ÷ gpu_share_of_server × PUE) and ``co2`` (kg CO2eq,
    operational only).  The flat attributes (``energy_j``, ``energy_j_low``, ...,
    ``co2_kg_high``) read them; ``to_dict`` gives the flat JSON form."""

    stage: str
    energy: Interval                # J, GPU board energy
    time: Interval                  # s, wall clock
    gpu_time: Interval              # GPU-hours
    facility_energy: Interval       # kWh, facility (÷ gpu_share_of_server × PUE)
    co2: Interval                   # kg CO2eq, operational
    calls: int                      # steps (per GPU) or forward calls
    items: list[dict] = field(default_factory=list)   # per run / per batch size

    energy_j, energy_j_low, energy_j_high = interval_ends("energy")
    time_s, time_s_low, time_s_high = interval_ends("time")
    gpu_hours, gpu_hours_low, gpu_hours_high = interval_ends("gpu_time")
    energy_kwh, energy_kwh_low, energy_kwh_high = interval_ends("facility_energy")
    co2_kg, co2_kg_low, co2_kg_high = interval_ends("co2")

    def to_dict(self) -> dict:
        """JSON-ready dict: ``stage``, the intervals flat (``energy_j``, ``energy_j_low`` ...
        ``co2_kg_high``), ``calls``, ``items``."""
        return {"stage": self.stage, **flat("energy_j", self.energy),
                **flat("time_s", self.time), **flat("gpu_hours", self.gpu_time),
                **flat("energy_kwh", self.facility_energy), **flat("co2_kg", self.co2),
                "calls": self.calls, "items": copy.deepcopy(self.items)}


@dataclass
class LifecycleReport:
    """A life-cycle estimate: the stages (search, training, inference), their totals as
    :class:`Interval` s (``total_energy`` J, ``total_facility_energy`` kWh,
    ``operational_co2`` and ``co2`` kg CO2eq), PUE, grid, notes; flat attributes
    (``total_energy_kwh_low`` ...) read the intervals."""

    model: str
    input_shape: tuple[int, ...]
    hardware: str
    stages: dict[str, StageReport]
    theta: float | None
    theta_detail: dict | None
    pue: float
    pue_source: str
    grid: carbon.GridIntensity
    gpu_share_of_server: float | None
    total_energy: Interval          # J, GPU board energy of every stage
    total_facility_energy: Interval   # kWh, facility
    operational_co2: Interval       # kg CO2eq, from the facility energy
    embodied: dict | None
    co2: Interval                   # kg CO2eq, operational + embodied
    equivalents: list[tuple[str, float, str, str]]
    notes: list[str]
    predict_calls: int

    total_energy_j, total_energy_j_low, total_energy_j_high = interval_ends("total_energy")
    total_energy_kwh, total_energy_kwh_low, total_energy_kwh_high = interval_ends(
        "total_facility_energy")
    operational_co2_kg, operational_co2_kg_low, operational_co2_kg_high = interval_ends(
        "operational_co2")
    co2_kg, co2_kg_low, co2_kg_high = interval_ends("co2")

    def _stage_value(self, stage: str, key: str) -> float:
        s = self.stages.get(stage)
        return getattr(s, key) if s is not None else 0.0

    def to_dict(self) -> dict:
        """JSON-ready dict; the ``exante estimate --json`` contract keys are at top level."""
        d: dict[str, Any] = {"model": self.model, "input_shape": list(self.input_shape),
                             "hardware": self.hardware}
        for stage in ("training", "search", "inference"):
            for suffix in ("", "_low", "_high"):
                d[f"{stage}_energy_j{suffix}"] = self._stage_value(stage, f"energy_j{suffix}")
        for suffix in ("", "_low", "_high"):
            d[f"total_energy_kwh{suffix}"] = getattr(self, f"total_energy_kwh{suffix}")
        for suffix in ("", "_low", "_high"):
            d[f"co2_kg{suffix}"] = getattr(self, f"co2_kg{suffix}")
        for suffix in ("", "_low", "_high"):
            d[f"operational_co2_kg{suffix}"] = getattr(self, f"operational_co2_kg{suffix}")
            d[f"total_energy_j{suffix}"] = getattr(self, f"total_energy_j{suffix}")
        d.update({
            "theta": self.theta,
            "theta_detail": self.theta_detail,
            "pue": self.pue,
            "pue_source": self.pue_source,
            "grid_intensity_g_per_kwh": self.grid.value_g_per_kwh,
            "grid_label": self.grid.label,
            "grid_source": self.grid.source,
            "gpu_share_of_server": self.gpu_share_of_server,
            "embodied": self.embodied,
            "stages": {k: v.to_dict() for k, v in self.stages.items()},
            "equivalents": [{"label": lab, "amount": amt, "unit": unit, "source": src}
                            for lab, amt, unit, src in self.equivalents],
            "notes": list(self.notes),
            "predict_calls": self.predict_calls,
        })
        return json.loads(json.dumps(d))     # plain JSON types (tuples → lists)

    def to_text(self) -> str:
        """The report as text (``exante estimate``)."""
        def e(x):
            return f"{x:.4g}"

        lines = [f"exante life-cycle estimate: {self.model}, input "
                 f"{'x'.join(map(str, self.input_shape))}, hardware {self.hardware}", ""]
        rows = [("stage", "steps/calls", "GPU-h", "GPU energy J [low, high]", "kWh (facility)",
                 "kg CO2eq [low, high]")]
        for name in STAGES:
            s = self.stages.get(name)
            if s is not None:
                rows.append((name, f"{s.calls:,d}", f"{s.gpu_hours:.4g}",
                             f"{e(s.energy_j)} [{e(s.energy_j_low)}, {e(s.energy_j_high)}]",
                             f"{s.energy_kwh:.4g}",
                             f"{e(s.co2_kg)} [{e(s.co2_kg_low)}, {e(s.co2_kg_high)}]"))
        rows.append(("total", "", "",
                     f"{e(self.total_energy_j)} [{e(self.total_energy_j_low)}, "
                     f"{e(self.total_energy_j_high)}]", f"{self.total_energy_kwh:.4g}",
                     f"{e(self.operational_co2_kg)} [{e(self.operational_co2_kg_low)}, "
                     f"{e(self.operational_co2_kg_high)}]"))
        widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]

        def fmt(r):
            return "  ".join(c.ljust(w) if i == 0 else c.rjust(w)
                             for i, (c, w) in enumerate(zip(r, widths, strict=True))).rstrip()

        rule = "-" * (sum(widths) + 2 * (len(widths) - 1))
        lines += [fmt(rows[0]), rule] + [fmt(r) for r in rows[1:-1]] + [rule, fmt(rows[-1])]
        lines.append("")
        if self.embodied:
            em = self.embodied
            lines.append(f"embodied carbon: {e(em['co2_kg'])} kg [{e(em['co2_kg_low'])}, "
                         f"{e(em['co2_kg_high'])}] ({em['share_of_total']:.1%} of the total)")
        lines.append(f"total CO2eq: {e(self.co2_kg)} kg  [{e(self.co2_kg_low)}, {e(self.co2_kg_high)}]")
        if self.theta is not None and self.theta_detail is not None:
            t = self.theta_detail
            lines.append(f"training/inference energy ratio theta (one train step / one forward, "
                         f"{t['run']} at per-GPU batch {t['batch']}, {t['optimizer']}, "
                         f"{t['dtype']}): {self.theta:.3g}  (Gitzel et al. 2023, seed 004, "
                         f"measured ~5 on its setup)")
        lines.append(f"PUE {self.pue:g} — {self.pue_source if self.pue == carbon.DEFAULT_PUE else 'user-supplied'}")
        lines.append(f"grid {self.grid.value_g_per_kwh:g} gCO2eq/kWh — {self.grid.label}; "
                     f"source: {self.grid.source}")
        if self.gpu_share_of_server:
            lines.append(f"GPU share of server draw: {self.gpu_share_of_server:g} "
                         f"(GPU energy divided by it)")
        if self.equivalents:
            lines += ["", f"{self.co2_kg:.4g} kg CO2eq is about (US EPA via Dodge et al. 2022, seed 002 §5.1):"]
            for label, amount, _unit, _ in self.equivalents:
                lines.append(f"  {amount:>12.4g}  {label}")
        lines += ["", "notes:"] + [f"  - {n}" for n in self.notes]
        return "\n".join(lines)
