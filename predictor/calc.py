"""Calculator mode: energy and CO2 of a run from its hardware, count and duration — no fitted
model needed (what the seed 001 ML Emissions Calculator does, with every factor's source).

    device_energy_kwh = power_w × device_hours / 1000          (before PUE)
    energy_kwh        = device_energy_kwh × PUE                 (facility)
    co2_kg            = energy_kwh × grid_intensity_g_per_kwh / 1000
    co2_kg_after_offset = co2_kg × (1 − offset_pct / 100)

Duration: ``hours`` (wall-clock, × ``count`` devices) or ``gpu_hours`` (device-hours), or —
for LLM-scale training planned ex ante — training FLOPs (``flops``, or 6·N·D from ``params``
and ``tokens``) at ``mfu`` × the device's dense peak for ``dtype``:
``device_hours = FLOPs / (mfu × peak_tflops × 1e12) / 3600``.

Power per device: ``power_w`` (a measured average) or ``utilization`` × catalogue TDP, else
the TDP (said so in the notes). PUE defaults to 1.0 with a note, as the calculator does.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from predictor import carbon
from predictor.hardware import HardwareSpec, lookup
from profiling.errors import ExanteError

DEFAULT_PUE = 1.0
TRAIN_FLOPS_PER_PARAM_TOKEN = 6.0
FLOPS_SOURCE = ("6·N·D training FLOPs (forward 2·N + backward 4·N per token): Kaplan et al. "
                "2020, 'Scaling Laws for Neural Language Models', §2.1")
BYTES_PER_PARAM_TRAINING = 16
MEMORY_SOURCE = ("model states of mixed-precision Adam training = 16 bytes/parameter (fp16 "
                 "weights 2 + grads 2 + fp32 master weights, momentum, variance 12): "
                 "Rajbhandari et al. 2020 (ZeRO) §3.1; activations not counted")
TRAIN_DTYPES = ("fp32", "tf32", "fp16", "bf16", "fp8")


def _positive(value, what: str, *, allow_zero=False) -> float:
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise ExanteError(f"{what} must be a number, got {value!r}") from None
    if not math.isfinite(v) or v < 0 or (v == 0 and not allow_zero):
        raise ExanteError(f"{what} must be a finite number {'>=' if allow_zero else '>'} 0, "
                          f"got {value!r}")
    return v


def _count(value, what: str) -> int:
    try:
        f = float(value)
    except (TypeError, ValueError):
        raise ExanteError(f"{what} must be a positive integer, got {value!r}") from None
    if not math.isfinite(f) or f < 1 or f != int(f):
        raise ExanteError(f"{what} must be a positive integer, got {value!r}")
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

    def to_dict(self) -> dict:
        return {"device": self.device, "count": self.count, "hours": self.hours,
                "device_hours": self.device_hours, "power_w": self.power_w, "pue": self.pue,
                "grid_intensity_g_per_kwh": self.grid_intensity_g_per_kwh,
                "grid": self.grid_label, "device_energy_kwh": self.device_energy_kwh,
                "energy_kwh": self.energy_kwh, "co2_kg": self.co2_kg,
                "offset_pct": self.offset_pct, "co2_kg_after_offset": self.co2_kg_after_offset,
                "equivalents": [{"label": l, "amount": a, "unit": u, "source": s}
                                for l, a, u, s in self.equivalents],
                "training": self.training, "sources": dict(self.sources),
                "notes": list(self.notes)}

    def to_text(self) -> str:
        dev = f"{self.count} × {self.device}" if self.device else f"{self.count} device(s)"
        lines = [f"{dev}, {self.hours:,.4g} h wall-clock ({self.device_hours:,.4g} device-hours) "
                 f"at {self.power_w:,.4g} W each"]
        if self.training:
            t = self.training
            lines.append(f"  training: {t['flops']:.3g} FLOPs at MFU {t['mfu']:.3g} of "
                         f"{t['peak_tflops']:g} TFLOP/s ({t['dtype']}); parallel dp={t['dp']} "
                         f"tp={t['tp']} pp={t['pp']}; model states {t['memory_per_device_gb']:.3g}"
                         f" GB/device of {t['device_memory_gb']} GB: "
                         f"{'fits' if t['memory_fits'] else 'DOES NOT FIT'}")
        lines += [f"  device energy: {human_energy(self.device_energy_kwh)} (before PUE)",
                  f"  facility energy: {human_energy(self.energy_kwh)} (PUE {self.pue:g})",
                  f"  CO2eq: {human_mass(self.co2_kg)} at {self.grid_intensity_g_per_kwh:g} "
                  f"gCO2eq/kWh ({self.grid_label})"]
        if self.offset_pct:
            lines.append(f"  after {self.offset_pct:g} % offsets: "
                         f"{human_mass(self.co2_kg_after_offset)}")
        if self.equivalents:
            lines.append("  equivalent to: " + "; ".join(
                f"{a:,.3g} {l}" for l, a, _, _ in self.equivalents[:3]))
        lines.append("sources:")
        lines += [f"  {k}: {v}" for k, v in self.sources.items()]
        if self.notes:
            lines.append("notes:")
            lines += [f"  - {n}" for n in self.notes]
        return "\n".join(lines)


def training_plan(spec: HardwareSpec | None, count: int, *, params=None, tokens=None, flops=None,
                  mfu=None, dtype="bf16", dp=None, tp=1, pp=1) -> dict:
    """FLOPs → device-hours for a training run, with a memory-fits check of model states.

    ``flops`` or (``params`` N and ``tokens`` D → 6·N·D); ``mfu`` in (0, 1];
    ``dp × tp × pp`` must equal ``count`` (``dp`` defaults to ``count / (tp·pp)``).
    """
    if spec is None:
        raise ExanteError("FLOP-based training time needs --device (its peak TFLOP/s)")
    if dtype not in TRAIN_DTYPES:
        raise ExanteError(f"dtype must be one of {', '.join(TRAIN_DTYPES)}, got {dtype!r}")
    if flops is not None:
        if params is not None and tokens is not None:
            raise ExanteError("give flops, or params and tokens, not both")
        total = _positive(flops, "flops")
        n_params = _positive(params, "params") if params is not None else None
        flops_src = "user-supplied training FLOPs"
    else:
        if params is None or tokens is None:
            raise ExanteError("FLOP-based training needs params and tokens (or flops)")
        n_params, n_tokens = _positive(params, "params"), _positive(tokens, "tokens")
        total = TRAIN_FLOPS_PER_PARAM_TOKEN * n_params * n_tokens
        flops_src = FLOPS_SOURCE
    if mfu is None:
        raise ExanteError(
            "give --mfu, the model-FLOPs utilisation in (0, 1]: published large runs reached "
            "about 0.2 (GPT-3 on V100: 24.6 of 125 TFLOP/s, Patterson et al. 2021 Table 4) to "
            "0.46 (PaLM on TPU v4, Chowdhery et al. 2022)")
    mfu = _positive(mfu, "mfu")
    if mfu > 1:
        raise ExanteError(f"mfu must be in (0, 1], got {mfu}")
    tp, pp = _count(tp, "tp"), _count(pp, "pp")
    if dp is None:
        if count % (tp * pp):
            raise ExanteError(f"count {count} is not a multiple of tp×pp = {tp * pp}")
        dp = count // (tp * pp)
    dp = _count(dp, "dp")
    if dp * tp * pp != count:
        raise ExanteError(f"dp×tp×pp = {dp}×{tp}×{pp} = {dp * tp * pp} must equal count {count}")
    peak = spec.peak(dtype)
    device_seconds = total / (mfu * peak * 1e12)
    out = {"flops": total, "params": n_params, "mfu": mfu, "dtype": dtype, "peak_tflops": peak,
           "dp": dp, "tp": tp, "pp": pp, "device_hours": device_seconds / 3600.0,
           "flops_source": flops_src, "peak_source": spec.sources.get("peak_tflops", ""),
           "device_memory_gb": spec.memory_gb, "memory_per_device_gb": None,
           "memory_fits": None, "memory_source": MEMORY_SOURCE}
    if n_params is not None and spec.memory_gb is not None:
        need = BYTES_PER_PARAM_TRAINING * n_params / (tp * pp) / 1e9
        out["memory_per_device_gb"] = need
        out["memory_fits"] = need <= spec.memory_gb
    return out


def calc(device=None, count=1, hours=None, gpu_hours=None, power_w=None, utilization=None,
         pue=None, region=None, intensity=None, offset_pct=None, *, params=None, tokens=None,
         flops=None, mfu=None, dtype="bf16", dp=None, tp=1, pp=1) -> CalcResult:
    """Energy and CO2 of ``count`` devices for ``hours`` (or ``gpu_hours`` device-hours, or a
    FLOP budget at ``mfu``). ``intensity`` is gCO2eq/kWh or an energy source (``"coal"``,
    ``"gas"``, ``"hydro"``, …); ``region`` a grid key (``"aws:us-east-1"``, ``"france"``, …)."""
    count = _count(count, "count")
    spec = lookup(device) if device is not None else None
    notes, sources = [], {}
    given = [n for n, v in (("hours", hours), ("gpu_hours", gpu_hours)) if v is not None]
    llm = any(v is not None for v in (params, tokens, flops))
    if len(given) + llm != 1:
        raise ExanteError("give exactly one duration: hours (wall-clock), gpu_hours "
                          "(device-hours), or params+tokens / flops with mfu")
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
                                 mfu=mfu, dtype=dtype, dp=dp, tp=tp, pp=pp)
        device_hours = training["device_hours"]
        wall = device_hours / count
        sources["hours"] = (f"training FLOPs / (mfu {training['mfu']:g} × {spec.name} "
                            f"{dtype} dense peak {training['peak_tflops']:g} TFLOP/s)")
        sources["flops"] = training["flops_source"]
        sources["peak_tflops"] = training["peak_source"]
        if training["memory_fits"] is False:
            notes.append(f"model states need {training['memory_per_device_gb']:.3g} GB per "
                         f"device but {spec.name} has {spec.memory_gb:g} GB: raise tp×pp or "
                         f"shard optimizer states (ZeRO)")
    if power_w is not None and utilization is not None:
        raise ExanteError("give power_w or utilization, not both")
    if power_w is not None:
        p = _positive(power_w, "power_w")
        sources["power_w"] = "user-supplied average power per device"
    else:
        if spec is None:
            raise ExanteError("give a device (for its TDP) or power_w (average W per device)")
        if spec.tdp_w is None:
            raise ExanteError(f"{spec.name} has no published TDP; pass --power-w "
                              f"(measured average W per device)")
        u = 1.0 if utilization is None else _positive(utilization, "utilization")
        if u > 1:
            raise ExanteError(f"utilization must be in (0, 1], got {utilization}")
        p = u * spec.tdp_w
        sources["power_w"] = (f"{u:g} × TDP {spec.tdp_w:g} W ({spec.sources['tdp_w']})")
        if utilization is None:
            notes.append(f"power = the TDP of {spec.name} ({spec.tdp_w:g} W), an upper bound "
                         f"for most runs; pass --power-w (measured) or --utilization")
    if pue is None:
        pue_v = DEFAULT_PUE
        sources["pue"] = "default 1.0 (device energy only, as the seed 001 calculator)"
        notes.append(f"PUE 1.0 assumed (no data-centre overhead); typical values: "
                     f"{carbon.DEFAULT_PUE} world average 2020 (seed 004 §3.4), 1.1 Google "
                     f"(seed 001) — pass --pue")
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


# --- CLI (registered by predictor/cli.py) ---------------------------------------------------

def add_parser(sub) -> None:
    """Register ``exante calc`` on an argparse sub-parsers object."""
    p = sub.add_parser("calc", help="calculator: energy and CO2 from device, count and hours "
                                    "(or params/tokens at an MFU) - no fitted model needed")
    p.add_argument("--device", default=None, help="device name or alias, e.g. v100, a100-80gb, "
                                                   "h100 (see --list-devices)")
    p.add_argument("--count", default=1, help="number of devices (default 1)")
    dur = p.add_mutually_exclusive_group()
    dur.add_argument("--hours", default=None, help="wall-clock hours of the run")
    dur.add_argument("--gpu-hours", default=None, help="device-hours (count × hours)")
    pw = p.add_mutually_exclusive_group()
    pw.add_argument("--power-w", default=None, help="measured average power per device (W)")
    pw.add_argument("--utilization", default=None, help="fraction of TDP drawn, in (0, 1]")
    p.add_argument("--pue", default=None, help="data-centre PUE (default 1.0, said so)")
    grid = p.add_mutually_exclusive_group()
    grid.add_argument("--region", default=None,
                      help="grid: aws:us-east-1, gcp:.., azure:.., france, us:average, "
                           "us-state:oklahoma, ... (see --list-regions)")
    grid.add_argument("--intensity", default=None,
                      help="grid gCO2eq/kWh, or an energy source: coal|gas|hydro|oil|nuclear")
    p.add_argument("--offset-pct", default=None, help="share of emissions offset (0-100)")
    llm = p.add_argument_group("LLM-scale training (instead of --hours)")
    llm.add_argument("--params", default=None, help="parameters N (e.g. 175e9)")
    llm.add_argument("--model", default=None, metavar="MODEL_REF",
                     help="count N from a model (built on the meta device) instead of --params")
    llm.add_argument("--tokens", default=None, help="training tokens D (FLOPs = 6·N·D)")
    llm.add_argument("--flops", default=None, help="training FLOPs, instead of 6·N·D")
    llm.add_argument("--mfu", default=None, help="model-FLOPs utilisation in (0, 1]")
    llm.add_argument("--dtype", choices=TRAIN_DTYPES, default="bf16",
                     help="dtype of the peak used (default bf16)")
    llm.add_argument("--dp", default=None, help="data-parallel degree (default count/(tp·pp))")
    llm.add_argument("--tp", default=1, help="tensor-parallel degree")
    llm.add_argument("--pp", default=1, help="pipeline-parallel degree")
    p.add_argument("--list-devices", action="store_true", help="print the hardware catalogue")
    p.add_argument("--list-regions", action="store_true", help="print the grid regions")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=run_cli)


def _model_params(model_ref: str) -> int:
    from profiling.model_refs import resolve_model_on_meta

    model = resolve_model_on_meta(model_ref)
    return int(sum(p.numel() for p in model.parameters()))


def run_cli(args) -> int:
    import json

    if args.list_devices:
        from predictor.hardware import catalogue
        for s in catalogue():
            peaks = ", ".join(f"{k} {v:g}" for k, v in s.peak_tflops.items())
            print(f"{s.key:16s} {s.name:24s} TDP {s.tdp_w if s.tdp_w is not None else '-'} W"
                  f"  {peaks}")
        return 0
    if args.list_regions:
        for k, row in carbon.grid_regions().items():
            print(f"{k:36s} {row['g_co2eq_per_kwh']:>9g}  {row['location']}")
        return 0
    params = args.params
    if args.model is not None:
        if params is not None:
            raise ExanteError("give --params or --model, not both")
        params = _model_params(args.model)
    result = calc(args.device, count=args.count, hours=args.hours, gpu_hours=args.gpu_hours,
                  power_w=args.power_w, utilization=args.utilization, pue=args.pue,
                  region=args.region, intensity=args.intensity, offset_pct=args.offset_pct,
                  params=params, tokens=args.tokens, flops=args.flops, mfu=args.mfu,
                  dtype=args.dtype, dp=args.dp, tp=args.tp, pp=args.pp)
    if args.json:
        print(json.dumps(result.to_dict(), indent=2, default=str))
    else:
        print(result.to_text())
    return 0
