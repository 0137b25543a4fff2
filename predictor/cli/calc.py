"""``exante calc``: the calculator's arguments and command (the computation is
:func:`predictor.carbon.calc.calc`, serving mode :func:`predictor.carbon.calc.serving`)."""

from __future__ import annotations

import json

from predictor.carbon import regions as carbon
from predictor.carbon.calc import TPU_POWER, calc, human_energy, human_mass, serving
from predictor.carbon.hardware import catalogue_table
from predictor.carbon.llm.plan import TRAIN_DTYPES
from profiling.errors import ExanteError

__all__ = ["add_parser", "run_cli"]


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
    """Parameter count of a MODEL_REF built on the meta device (torch loads here)."""
    from profiling.model_refs import resolve_model_on_meta

    model = resolve_model_on_meta(model_ref)
    return int(sum(p.numel() for p in model.parameters()))


def _run_serving(args, params) -> int:
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
    """Run ``exante calc`` (prints the result as text or JSON; returns the exit code)."""
    if args.list_devices:
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
