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
from predictor.carbon.hardware import lookup
from predictor.carbon.llm.checks import check_llm_inputs
from predictor.carbon.llm.plan import FLOPS_SOURCE, TRAIN_DTYPES, tpu_measured_power, training_plan  # noqa: F401
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

    def to_dict(self) -> dict:
        t = self.training or {}
        return {"device": self.device, "count": self.count, "hours": self.hours,
                "device_hours": self.device_hours, "power_w": self.power_w, "pue": self.pue,
                "grid_intensity_g_per_kwh": self.grid_intensity_g_per_kwh,
                "grid": self.grid_label, "device_energy_kwh": self.device_energy_kwh,
                "energy_kwh": self.energy_kwh, "co2_kg": self.co2_kg,
                "offset_pct": self.offset_pct, "co2_kg_after_offset": self.co2_kg_after_offset,
                "equivalents": [{"label": l, "amount": a, "unit": u, "source": s}
                                for l, a, u, s in self.equivalents],
                "mfu": t.get("mfu"), "mfu_source": t.get("mfu_source"),
                "mfu_low": t.get("mfu_low"), "mfu_high": t.get("mfu_high"),
                "device_hours_low": t.get("device_hours_low"),
                "device_hours_high": t.get("device_hours_high"), "fits": t.get("memory_fits"),
                "memory_gb_per_device": t.get("memory_per_device_gb"),
                "training": self.training, "sources": dict(self.sources),
                "notes": list(self.notes)}

    def to_text(self) -> str:
        dev = f"{self.count} × {self.device}" if self.device else f"{self.count} device(s)"
        lines = [f"{dev}, {self.hours:,.4g} h wall-clock ({self.device_hours:,.4g} device-hours) "
                 f"at {self.power_w:,.4g} W each"]
        if self.training:
            t = self.training
            lines.append(f"  training: {t['flops']:.3g} FLOPs at MFU {t['mfu']:.3g} "
                         f"({t['mfu_low']:.3g}-{t['mfu_high']:.3g}) of {t['peak_tflops']:g} "
                         f"TFLOP/s ({t['dtype']}); {t['device_hours_low']:,.4g}-"
                         f"{t['device_hours_high']:,.4g} device-hours; parallel dp={t['dp']} "
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
                f"{a:,.3g} {l}" for l, a, _, _ in self.equivalents[:3]))
        lines.append("sources:")
        lines += [f"  {k}: {v}" for k, v in self.sources.items()]
        if self.notes:
            lines.append("notes:")
            lines += [f"  - {n}" for n in self.notes]
        return "\n".join(lines)


def calc(device=None, count=1, hours=None, gpu_hours=None, power_w=None, utilization=None,
         pue=None, region=None, intensity=None, offset_pct=None, *, params=None, tokens=None,
         flops=None, mfu=None, dtype="bf16", dp=None, tp=1, pp=1, tpu_power="measured",
         **llm_kw) -> CalcResult:
    """Energy and CO2 of ``count`` devices for ``hours`` (or ``gpu_hours`` device-hours, or a
    FLOP budget at ``mfu``). ``intensity`` is gCO2eq/kWh or an energy source (``"coal"``,
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
    measured = None
    if power_w is not None:
        p = _positive(power_w, "power_w")
        sources["power_w"] = "user-supplied average power per device"
    else:
        if spec is None:
            raise ExanteError("give a device (for its TDP) or power_w (average W per device)")
        if tpu_power not in TPU_POWER:
            raise ExanteError(f"tpu_power must be one of {', '.join(TPU_POWER)}, got {tpu_power!r}")
        measured = tpu_measured_power().get(spec.key) if spec.kind == "tpu" else None
    if power_w is None and measured is not None and tpu_power == "measured" and utilization is None:
        p = measured[0]
        sources["power_w"] = f"{p:g} W per chip, {measured[1]}"
        notes.append(f"TPU power = published per-chip measurement {p:g} W (chip TDP "
                     f"{spec.tdp_w if spec.tdp_w is not None else 'unknown'} W: --tpu-power tdp)")
    elif power_w is None:
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
    p.add_argument("--pue", default=None, help="data-centre PUE (default 1.58, the 2020 world "
                                                "average, as exante estimate; 1.0 = device only)")
    p.add_argument("--tpu-power", choices=TPU_POWER, default="measured",
                   help="TPU power without --power-w: published per-chip measurement "
                        "(default) or the chip TDP")
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
    llm.add_argument("--active-params", default=None,
                     help="activated parameters per token (MoE); FLOPs = 6·active·D")
    llm.add_argument("--mfu", default=None, help="model-FLOPs utilisation in (0, 1] (default: "
                                                 "derived from published runs, with an interval)")
    llm.add_argument("--physics", action="store_true",
                     help="MFU from the physics model of the transformer + parallel overheads")
    llm.add_argument("--mfu-flavour", choices=("published", "training"), default="published",
                     help="default MFU: 'published' hours (incl. restarts; default) or 'training'")
    llm.add_argument("--dtype", choices=TRAIN_DTYPES, default="bf16",
                     help="dtype of the peak used (default bf16; a device without it falls "
                          "back, e.g. fp16 on V100, said so)")
    llm.add_argument("--sharding", choices=("auto", "none", "zero1", "zero2", "zero3", "fsdp"),
                     default="auto", help="optimizer/gradient/weight sharding (default: the "
                                          "least that fits)")
    llm.add_argument("--checkpointing", choices=("auto", "none", "selective", "full"),
                     default="auto", help="activation checkpointing (default: the least that fits)")
    llm.add_argument("--optimizer-dtype", choices=("fp32", "bf16", "int8"), default="fp32",
                     help="Adam state dtype (default fp32: 12 bytes/param with the master copy)")
    llm.add_argument("--layers", default=None, help="transformer layers")
    llm.add_argument("--hidden", default=None, help="hidden size")
    llm.add_argument("--heads", default=None, help="attention heads")
    llm.add_argument("--seq-len", default=None, help="sequence length (default 2048)")
    llm.add_argument("--micro-batch", default=None, help="micro-batch per device (default 1)")
    llm.add_argument("--global-batch-tokens", default=None, help="tokens per step (default 4e6)")
    llm.add_argument("--no-flash", action="store_true", help="explicit attention (not FlashAttention)")
    llm.add_argument("--unfused-optimizer", action="store_true", help="for-loop Adam (not fused)")
    llm.add_argument("--interconnect", default=None, metavar="INTRA[,INTER]",
                     help="links, e.g. nvlink3,ib-hdr (default: the generation's DGX/HGX pair)")
    llm.add_argument("--dp", default=None, help="data-parallel degree (default count/(tp·pp))")
    llm.add_argument("--tp", default=1, help="tensor-parallel degree")
    llm.add_argument("--pp", default=1, help="pipeline-parallel degree")
    srv = p.add_argument_group("LLM serving (with --params and --device; --count = GPUs)")
    srv.add_argument("--concurrency", default=None,
                     help="sequences served at once (vLLM max_num_seqs); selects serving mode")
    srv.add_argument("--requests", default=1.0, help="requests served (default 1)")
    srv.add_argument("--prompt-tokens", default=1000.0, help="prompt tokens/request (default 1000)")
    srv.add_argument("--output-tokens", default=500.0, help="output tokens/request (default 500)")
    srv.add_argument("--weights", default="bf16", help="weight precision: bf16|fp8|mxfp4|int4")
    p.add_argument("--list-devices", "--list-hardware", dest="list_devices", action="store_true",
                   help="print the hardware catalogue")
    p.add_argument("--list-regions", action="store_true", help="print the grid regions")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=run_cli)


def _model_params(model_ref: str) -> int:
    from profiling.model_refs import resolve_model_on_meta

    model = resolve_model_on_meta(model_ref)
    return int(sum(p.numel() for p in model.parameters()))


def serving(params, device, count=1, concurrency=None, *, requests=1, prompt_tokens=1000,
            output_tokens=500, active_params=None, weights="bf16", pue=None, region=None,
            intensity=None) -> dict:
    """:func:`predictor.carbon.llm.serving.serving_report` on checked inputs (numbers as given on the
    command line or the page): energies in J per 1k tokens / per request (GPU), kWh
    (facility) and kg CO2eq for ``requests`` requests. A non-finite result is refused."""
    from predictor.carbon.llm.checks import positive
    from predictor.carbon.llm.serving import serving_report

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


def _run_serving(args, params) -> int:
    import json

    other = [f"--{k.replace('_', '-')}" for k in ("hours", "gpu_hours", "tokens", "flops", "mfu")
             if getattr(args, k) is not None]
    if other:
        raise ExanteError(f"serving mode (--concurrency) takes no {', '.join(other)}: give "
                          f"--params, --device, --count, --requests, --prompt-tokens, "
                          f"--output-tokens")
    r = serving(params, args.device, args.count, args.concurrency, requests=args.requests,
                prompt_tokens=args.prompt_tokens, output_tokens=args.output_tokens,
                active_params=args.active_params, weights=args.weights, pue=args.pue,
                region=args.region, intensity=args.intensity)
    if args.json:
        print(json.dumps(r, indent=2, default=str))
        return 0
    print(f"{r['gpus']} × {args.device} serving at concurrency {r['concurrency']:g}: "
          f"{r['energy_per_1k_prompt_tokens_j']:.4g} J per 1k prompt tokens, "
          f"{r['energy_per_1k_output_tokens_j']:.4g} J per 1k output tokens, "
          f"{r['energy_per_request_j']:.4g} J per request (GPU)")
    print(f"  {r['requests']:g} requests: {human_energy(r['energy_kwh'])} (PUE {r['pue']:g}), "
          f"{human_mass(r['co2_kg'])} CO2eq at {r['grid_intensity_g_per_kwh']:g} g/kWh "
          f"({r['grid']})")
    print(f"  source: {r['source']}")
    return 0


def run_cli(args) -> int:
    import json

    if args.list_devices:
        from predictor.carbon.hardware import catalogue_table
        print(catalogue_table())
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
    if args.concurrency is not None:
        return _run_serving(args, params)
    result = calc(args.device, count=args.count, hours=args.hours, gpu_hours=args.gpu_hours,
                  power_w=args.power_w, utilization=args.utilization, pue=args.pue,
                  region=args.region, intensity=args.intensity, offset_pct=args.offset_pct,
                  params=params, tokens=args.tokens, flops=args.flops, mfu=args.mfu,
                  dtype=args.dtype, dp=args.dp, tp=args.tp, pp=args.pp,
                  tpu_power=args.tpu_power, active_params=args.active_params,
                  mfu_mode="physics" if args.physics else "default",
                  mfu_flavour=args.mfu_flavour, sharding=args.sharding,
                  checkpointing=args.checkpointing, optimizer_dtype=args.optimizer_dtype,
                  layers=args.layers, hidden=args.hidden, heads=args.heads,
                  seq_len=args.seq_len, micro_batch=args.micro_batch,
                  flash=not args.no_flash, fused_optimizer=not args.unfused_optimizer,
                  global_batch_tokens=args.global_batch_tokens, interconnect=args.interconnect)
    if args.json:
        print(json.dumps(result.to_dict(), indent=2, default=str))
    else:
        print(result.to_text())
    return 0
