"""The result of a life-cycle estimate: per-stage :class:`StageReport` (GPU kWh, facility kWh,
hours, kg CO2e) and :class:`LifecycleReport` (totals, notes, text and JSON renderings)."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from typing import Any

from predictor.carbon import regions as carbon
from predictor.carbon.lifecycle.scenario import STAGES

# --------------------------------------------------------------------------- report

@dataclass
class StageReport:
    """One life-cycle stage. ``energy_j``: GPU board energy; ``energy_kwh``: facility energy
    (÷ gpu_share_of_server × PUE); ``co2_kg``: operational only; ``time_s``: wall clock."""

    stage: str
    energy_j: float
    energy_j_low: float
    energy_j_high: float
    time_s: float
    time_s_low: float
    time_s_high: float
    gpu_hours: float
    gpu_hours_low: float
    gpu_hours_high: float
    energy_kwh: float
    energy_kwh_low: float
    energy_kwh_high: float
    co2_kg: float
    co2_kg_low: float
    co2_kg_high: float
    calls: int                      # steps (per GPU) or forward calls
    items: list[dict] = field(default_factory=list)   # per run / per batch size

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


@dataclass
class LifecycleReport:
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
    total_energy_j: float
    total_energy_j_low: float
    total_energy_j_high: float
    total_energy_kwh: float
    total_energy_kwh_low: float
    total_energy_kwh_high: float
    operational_co2_kg: float
    operational_co2_kg_low: float
    operational_co2_kg_high: float
    embodied: dict | None
    co2_kg: float
    co2_kg_low: float
    co2_kg_high: float
    equivalents: list[tuple[str, float, str, str]]
    notes: list[str]
    predict_calls: int

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
                             for i, (c, w) in enumerate(zip(r, widths))).rstrip()

        rule = "-" * (sum(widths) + 2 * (len(widths) - 1))
        lines += [fmt(rows[0]), rule] + [fmt(r) for r in rows[1:-1]] + [rule, fmt(rows[-1])]
        lines.append("")
        if self.embodied:
            em = self.embodied
            lines.append(f"embodied carbon: {e(em['co2_kg'])} kg [{e(em['co2_kg_low'])}, "
                         f"{e(em['co2_kg_high'])}] ({em['share_of_total']:.1%} of the total)")
        lines.append(f"total CO2eq: {e(self.co2_kg)} kg  [{e(self.co2_kg_low)}, {e(self.co2_kg_high)}]")
        if self.theta is not None:
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
            for label, amount, unit, _ in self.equivalents:
                lines.append(f"  {amount:>12.4g}  {label}")
        lines += ["", "notes:"] + [f"  - {n}" for n in self.notes]
        return "\n".join(lines)
