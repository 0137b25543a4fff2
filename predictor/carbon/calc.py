"""Calculator mode: energy and CO2 of a run from its hardware, count and duration — no fitted
model needed (what the seed 001 ML Emissions Calculator does, with every factor's source).

    device_energy_kwh = power_w × device_hours / 1000          (before PUE)
    energy_kwh        = device_energy_kwh × PUE                 (facility)
    co2_kg            = energy_kwh × grid_intensity_g_per_kwh / 1000
    co2_kg_after_offset = co2_kg × (1 − offset_pct / 100)

Duration: ``hours`` (wall-clock, × ``count`` devices) or ``gpu_hours`` (device-hours), or —
for LLM-scale training planned ex ante — training FLOPs (``flops``, or 6·N·D from ``params``
and ``tokens``) at an MFU × the device's dense peak for ``dtype``:
``device_hours = FLOPs / (mfu × peak_tflops × 1e12) / 3600``; the MFU is ``mfu`` if given,
else the published-runs default of :mod:`predictor.carbon.llm.mfu` (or the physics model, see
:mod:`predictor.carbon.llm.plan`), with an interval. Memory per device with ZeRO/FSDP and
checkpointing: :mod:`predictor.carbon.llm.memory`. Range checks of the LLM keywords (run whichever
duration is given): :mod:`predictor.carbon.llm.checks`. Serving (``--concurrency``): :func:`serving`.

Power per device: ``power_w`` (a measured average) or ``utilization`` × catalogue TDP, else
the published per-chip measurement for TPUs (``tpu_power="measured"``) or the TDP (said so in
the notes). PUE defaults to 1.58 (the 2020 world average, seed 004 §3.4), as ``exante estimate``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from predictor.carbon import regions as carbon
from predictor.carbon.hardware import HardwareSpec, lookup
from predictor.carbon.llm.checks import check_llm_inputs, positive
from predictor.carbon.llm.mfu import INTERVAL_LEVEL as MFU_INTERVAL_LEVEL
from predictor.carbon.llm.plan import tpu_measured_power, training_plan
from predictor.carbon.llm.serving import serving_report
from predictor.engine.interval import Interval
from profiling.errors import ExanteError

DEFAULT_PUE = carbon.DEFAULT_PUE
TPU_POWER = ("measured", "tdp")


#: upper bounds of what a real plan can hold (beyond them a result is nonsense or inf)
_MAX = {"count": 1e7,            # devices: the largest clusters hold ~1e5-1e6
        "hours": 1e6,            # ~114 years of wall-clock
        "gpu_hours": 1e12,
        "power_w": 1e5}          # per device


def _positive(value, what: str, *, allow_zero=False) -> float:
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise ExanteError(f"{what} must be a number, got {value!r}") from None
    hi = _MAX.get(what)
    if not math.isfinite(v) or v < 0 or (v == 0 and not allow_zero) or (hi and v > hi):
        rng = f" and <= {hi:g}" if hi else ""
        raise ExanteError(f"{what} must be a finite number {'>=' if allow_zero else '>'} 0"
                          f"{rng}, got {value!r}")
    return v


def _count(value, what: str) -> int:
    try:
        f = float(value)
    except (TypeError, ValueError):
        raise ExanteError(f"{what} must be a positive integer, got {value!r}") from None
    hi = _MAX.get(what)
    if not math.isfinite(f) or f < 1 or f != int(f) or (hi and f > hi):
        rng = f" <= {hi:g}" if hi else ""
        raise ExanteError(f"{what} must be a positive integer{rng}, got {value!r}")
    return int(f)


def _sig(x: float, digits: int = 4) -> str:
    """``x`` with about ``digits`` significant digits, thousands separated, no exponent."""
    if x == 0 or not math.isfinite(x):
        return f"{x:g}"
    decimals = max(0, digits - 1 - int(math.floor(math.log10(abs(x)))))
    return f"{x:,.{decimals}f}"


def human_energy(kwh: float) -> str:
    """kWh below 1 MWh, MWh from there on (the calculator's 'large results read in MWh')."""
    return f"{_sig(kwh / 1000)} MWh" if abs(kwh) >= 1000 else f"{_sig(kwh)} kWh"


def human_mass(kg: float) -> str:
    """kg below 1 t, metric tonnes from there on."""
    return f"{_sig(kg / 1000)} t" if abs(kg) >= 1000 else f"{_sig(kg)} kg"


@dataclass
class CalcResult:
    """All energies in kWh, masses in kg CO2eq, power in W per device."""

    device: str | None
    count: int
    hours: float
    device_hours: float
    power_w: float
    pue: float
    grid_intensity_g_per_kwh: float
    grid_label: str
    device_energy_kwh: float
    energy_kwh: float
    co2_kg: float
    offset_pct: float
    co2_kg_after_offset: float
    equivalents: list = field(default_factory=list)
    training: dict | None = None
    sources: dict = field(default_factory=dict)
    notes: list = field(default_factory=list)

    @property
    def mfu(self) -> Interval | None:
        """The training run's model-FLOPs utilisation (0-1) with its interval (5-95 % of the
        published runs' residuals; exact for a given --mfu); None without a FLOP budget."""
        t = self.training
        if not t:
            return None
        level = 1.0 if t.get("mfu_flavour") == "given" else MFU_INTERVAL_LEVEL
        return Interval(t["mfu"], t["mfu_low"], t["mfu_high"], level)

    @property
    def training_device_hours(self) -> Interval | None:
        """Device-hours of the training run (h × devices) with the MFU's interval; None
        without a FLOP budget."""
        t, m = self.training, self.mfu
        if not t or m is None:
            return None
        return Interval(t["device_hours"], t["device_hours_low"], t["device_hours_high"],
                        m.level)

    def to_dict(self) -> dict:
        """JSON-ready dict (energies kWh, masses kg CO2eq, power W per device)."""
        t = self.training or {}
        m, h = self.mfu, self.training_device_hours
        return {"device": self.device, "count": self.count, "hours": self.hours,
                "device_hours": self.device_hours, "power_w": self.power_w, "pue": self.pue,
                "grid_intensity_g_per_kwh": self.grid_intensity_g_per_kwh,
                "grid": self.grid_label, "device_energy_kwh": self.device_energy_kwh,
                "energy_kwh": self.energy_kwh, "co2_kg": self.co2_kg,
                "offset_pct": self.offset_pct, "co2_kg_after_offset": self.co2_kg_after_offset,
                "equivalents": [{"label": lab, "amount": a, "unit": u, "source": s}
                                for lab, a, u, s in self.equivalents],
                "mfu": m.value if m else None, "mfu_source": t.get("mfu_source"),
                "mfu_low": m.low if m else None, "mfu_high": m.high if m else None,
                "device_hours_low": h.low if h else None,
                "device_hours_high": h.high if h else None, "fits": t.get("memory_fits"),
                "memory_gb_per_device": t.get("memory_per_device_gb"),
                "training": self.training, "sources": dict(self.sources),
                "notes": list(self.notes)}

    def to_text(self) -> str:
        """The result as text (``exante calc``)."""
        dev = f"{self.count} × {self.device}" if self.device else f"{self.count} device(s)"
        lines = [f"{dev}, {self.hours:,.4g} h wall-clock ({self.device_hours:,.4g} device-hours) "
                 f"at {self.power_w:,.4g} W each"]
        m, h = self.mfu, self.training_device_hours
        if self.training and m is not None and h is not None:
            t = self.training
            lines.append(f"  training: {t['flops']:.3g} FLOPs at MFU {m.value:.3g} "
                         f"({m.low:.3g}-{m.high:.3g}) of {t['peak_tflops']:g} "
                         f"TFLOP/s ({t['dtype']}); {h.low:,.4g}-"
                         f"{h.high:,.4g} device-hours; parallel dp={t['dp']} "
                         f"tp={t['tp']} pp={t['pp']}")
            if t.get("memory_verdict"):
                lines.append(f"  memory per device: {t['memory_verdict']}")
        lines += [f"  device energy: {human_energy(self.device_energy_kwh)} (before PUE)",
                  f"  facility energy: {human_energy(self.energy_kwh)} (PUE {self.pue:g})",
                  f"  CO2eq: {human_mass(self.co2_kg)} at {self.grid_intensity_g_per_kwh:g} "
                  f"gCO2eq/kWh ({self.grid_label})"]
        if self.offset_pct:
            lines.append(f"  after {self.offset_pct:g} % offsets: "
                         f"{human_mass(self.co2_kg_after_offset)}")
        if self.equivalents:
            lines.append("  equivalent to: " + "; ".join(
                f"{a:,.3g} {lab}" for lab, a, _, _ in self.equivalents[:3]))
        lines.append("sources:")
        lines += [f"  {k}: {v}" for k, v in self.sources.items()]
        if self.notes:
            lines.append("notes:")
            lines += [f"  - {n}" for n in self.notes]
        return "\n".join(lines)


def _device_power(spec: HardwareSpec, utilization, tpu_power: str, sources: dict,
                  notes: list) -> float:
    """Average W per device without a measured power: a TPU's published per-chip measurement
    (``tpu_power="measured"``), else ``utilization`` (default 1) × the catalogue TDP."""
    if tpu_power not in TPU_POWER:
        raise ExanteError(f"tpu_power must be one of {', '.join(TPU_POWER)}, got {tpu_power!r}")
    measured = tpu_measured_power().get(spec.key) if spec.kind == "tpu" else None
    if measured is not None and tpu_power == "measured" and utilization is None:
        p = measured[0]
        sources["power_w"] = f"{p:g} W per chip, {measured[1]}"
        notes.append(f"TPU power = published per-chip measurement {p:g} W (chip TDP "
                     f"{spec.tdp_w if spec.tdp_w is not None else 'unknown'} W: --tpu-power tdp)")
        return p
    if spec.tdp_w is None:
        raise ExanteError(f"{spec.name} has no published TDP; pass --power-w "
                          f"(measured average W per device)")
    u = 1.0 if utilization is None else _positive(utilization, "utilization")
    if u > 1:
        raise ExanteError(f"utilization must be in (0, 1], got {utilization}")
    sources["power_w"] = (f"{u:g} × TDP {spec.tdp_w:g} W ({spec.sources['tdp_w']})")
    if utilization is None:
        notes.append(f"power = the TDP of {spec.name} ({spec.tdp_w:g} W), an upper bound "
                     f"for most runs; pass --power-w (measured) or --utilization")
    return u * spec.tdp_w


def calc(device=None, count=1, hours=None, gpu_hours=None, power_w=None, utilization=None,
         pue=None, region=None, intensity=None, offset_pct=None, *, params=None, tokens=None,
         flops=None, mfu=None, dtype="bf16", dp=None, tp=1, pp=1, tpu_power="measured",
         **llm_kw) -> CalcResult:
    """Energy (kWh, device and facility) and CO2 (kg CO2eq) of ``count`` devices for ``hours``
    (wall-clock h; or ``gpu_hours`` device-hours, or a FLOP budget at ``mfu`` in (0, 1]) at
    ``power_w`` (W per device; default the TDP) and ``pue``. ``intensity`` is gCO2eq/kWh or an energy source (``"coal"``,
    ``"gas"``, ``"hydro"``, …); ``region`` a grid key (``"aws:us-east-1"``, ``"france"``, …).
    ``llm_kw``: further keywords of :func:`predictor.carbon.llm.plan.training_plan` (``active_params``,
    ``mfu_mode``, ``mfu_flavour``, ``sharding``, ``checkpointing``, ``layers``, ...)."""
    count = _count(count, "count")
    spec = lookup(device) if device is not None else None
    notes, sources = [], {}
    given = [n for n, v in (("hours", hours), ("gpu_hours", gpu_hours)) if v is not None]
    llm = any(v is not None for v in (params, tokens, flops))
    if len(given) + llm != 1:
        raise ExanteError("give exactly one duration: hours (wall-clock), gpu_hours "
                          "(device-hours), or params+tokens / flops with mfu")
    flop_only = check_llm_inputs(count, mfu=mfu, dp=dp, tp=tp, pp=pp, dtype=dtype, **llm_kw)
    if given and flop_only:
        notes.append(f"{', '.join(flop_only)} unused: they set a FLOP-based duration "
                     f"(params+tokens or flops), and {given[0]} was given")
    training = None
    if hours is not None:
        wall = _positive(hours, "hours")
        device_hours = wall * count
        sources["hours"] = "user-supplied wall-clock hours × count"
    elif gpu_hours is not None:
        device_hours = _positive(gpu_hours, "gpu_hours")
        wall = device_hours / count
        sources["hours"] = "user-supplied device-hours"
    else:
        training = training_plan(spec, count, params=params, tokens=tokens, flops=flops,
                                 mfu=mfu, dtype=dtype, dp=dp, tp=tp, pp=pp, **llm_kw)
        assert spec is not None             # training_plan refuses a missing device
        device_hours = training["device_hours"]
        wall = device_hours / count
        sources["hours"] = (f"training FLOPs / (mfu {training['mfu']:.3g} × {spec.name} "
                            f"{training['dtype']} dense peak {training['peak_tflops']:g} TFLOP/s)")
        sources["mfu"] = training["mfu_source"]
        sources["flops"] = training["flops_source"]
        sources["peak_tflops"] = training["peak_source"]
        notes += training.pop("notes")
        if training["memory_fits"] is False:
            notes.append(f"memory: {training['memory_verdict']}: raise tp×pp, count or use "
                         f"a larger-memory device")
    if power_w is not None and utilization is not None:
        raise ExanteError("give power_w or utilization, not both")
    if power_w is not None:
        p = _positive(power_w, "power_w")
        sources["power_w"] = "user-supplied average power per device"
    else:
        if spec is None:
            raise ExanteError("give a device (for its TDP) or power_w (average W per device)")
        p = _device_power(spec, utilization, tpu_power, sources, notes)
    if pue is None:
        pue_v = DEFAULT_PUE
        sources["pue"] = (f"default {DEFAULT_PUE} (2020 world-average data-centre PUE, Uptime "
                          f"Institute via seed 004 §3.4), as exante estimate")
        notes.append(f"PUE {DEFAULT_PUE} assumed (world average 2020, seed 004 §3.4); hyperscale "
                     f"clouds report about 1.1 (seed 001) — pass --pue (1.0: device energy only)")
    else:
        pue_v = _positive(pue, "pue")
        if pue_v < 1:
            raise ExanteError(f"pue must be >= 1 (facility energy / IT energy), got {pue}")
        sources["pue"] = "user-supplied PUE"
    grid = carbon.resolve_intensity(region, intensity)
    sources["grid_intensity"] = grid.source
    if region is None and intensity is None:
        notes.append("no region given: world-average grid intensity used; pass --region or "
                     "--intensity")
    off = 0.0 if offset_pct is None else _positive(offset_pct, "offset_pct", allow_zero=True)
    if off > 100:
        raise ExanteError(f"offset_pct must be in [0, 100], got {offset_pct}")
    device_kwh = p * device_hours / 1000.0
    energy = device_kwh * pue_v
    co2 = carbon.co2_kg(energy, grid)
    return CalcResult(
        device=spec.name if spec else None, count=count, hours=wall, device_hours=device_hours,
        power_w=p, pue=pue_v, grid_intensity_g_per_kwh=grid.value_g_per_kwh,
        grid_label=grid.label, device_energy_kwh=device_kwh, energy_kwh=energy, co2_kg=co2,
        offset_pct=off, co2_kg_after_offset=co2 * (1 - off / 100.0),
        equivalents=carbon.everyday_equivalents(co2), training=training, sources=sources,
        notes=notes)


def serving(params, device, count=1, concurrency=None, *, requests=1, prompt_tokens=1000,
            output_tokens=500, active_params=None, weights="bf16", pue=None, region=None,
            intensity=None) -> dict:
    """:func:`predictor.carbon.llm.serving.serving_report` on checked inputs (numbers as given on the
    command line or the page): energies in J per 1k tokens / per request (GPU), kWh
    (facility) and kg CO2eq for ``requests`` requests. A non-finite result is refused."""
    if params is None or device is None or concurrency is None:
        raise ExanteError("serving mode needs params, device and concurrency (sequences "
                          "served at once)")
    n = positive(params, "params")
    active = None if active_params is None else positive(active_params, "active_params")
    if active is not None and active > n:
        raise ExanteError(f"active_params ({active:g}) must be at most params ({n:g})")
    prompt = positive(prompt_tokens, "prompt_tokens", allow_zero=True)
    output = positive(output_tokens, "output_tokens", allow_zero=True)
    if prompt + output == 0:
        raise ExanteError("prompt_tokens and output_tokens are both 0: a request needs tokens")
    r = serving_report(n, device, _count(count, "count"),
                       positive(concurrency, "concurrency"),
                       requests=positive(requests, "requests"), prompt_tokens=prompt,
                       output_tokens=output, active_params=active, precision=weights,
                       pue=None if pue is None else _positive(pue, "pue"), region=region,
                       intensity=intensity)
    bad = [k for k, v in r.items() if isinstance(v, float) and not math.isfinite(v)]
    if bad:
        raise ExanteError(f"the inputs give a non-finite {bad[0]}; give realistic values")
    return r
