"""An LLM training run planned ex ante: FLOPs -> device-hours at an MFU (given, the published-
runs default of :mod:`.mfu`, or the physics model of :mod:`.throughput`), and whether it fits
(:mod:`.memory`). Used by :func:`predictor.carbon.calc.calc`; all hours are device-hours.
"""

from __future__ import annotations

import csv
import io
import math
import statistics
from functools import lru_cache
from importlib import resources

from predictor.carbon.llm import memory, parallel, throughput
from predictor.carbon.llm import mfu as mfu_mod
from predictor.engine.interval import Interval
from profiling.errors import ExanteError

TRAIN_DTYPES = ("fp32", "tf32", "fp16", "bf16", "fp8")
FLOPS_SOURCE = ("6·N·D training FLOPs (forward 2·N + backward 4·N per token): Kaplan et al. "
                "2020, 'Scaling Laws for Neural Language Models', §2.1")
MFU_MODES = ("default", "physics")


def _num(value, what: str, *, integer=False) -> float:
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise ExanteError(f"{what} must be a {'positive integer' if integer else 'number > 0'}, "
                          f"got {value!r}") from None
    if not math.isfinite(v) or v <= 0 or (integer and v != int(v)):
        raise ExanteError(f"{what} must be a {'positive integer' if integer else 'finite number > 0'}"
                          f", got {value!r}")
    return int(v) if integer else v


def _int(value, what: str) -> int:
    """``value`` as a positive integer (ExanteError naming ``what`` otherwise)."""
    return int(_num(value, what, integer=True))


@lru_cache(maxsize=None)
def tpu_measured_power() -> dict:
    """``{device key: (median measured W per chip, source)}`` from ``tpu_power.csv``."""
    text = resources.files("predictor.data").joinpath("tpu_power.csv").read_text("utf-8")
    rows = list(csv.DictReader(io.StringIO(text)))
    out = {}
    for key in dict.fromkeys(r["device"] for r in rows):
        grp = [r for r in rows if r["device"] == key]
        w = statistics.median(float(r["measured_power_w"]) for r in grp)
        runs = ", ".join(f"{r['run']} {float(r['measured_power_w']):g} W" for r in grp)
        out[key] = (w, f"median of published per-chip measurements ({runs}): {grp[0]['source']}")
    return out


def training_plan(spec, count: int, *, params=None, tokens=None, flops=None, mfu=None,
                  dtype="bf16", dp=None, tp=1, pp=1, active_params=None, mfu_mode="default",
                  mfu_flavour="published", sharding="auto", checkpointing="auto",
                  optimizer_dtype="fp32", layers=None, hidden=None, heads=None, seq_len=None,
                  micro_batch=None, flash=True, fused_optimizer=True,
                  global_batch_tokens=None, interconnect=None) -> dict:
    """FLOPs → device-hours for a training run, an MFU interval, and the memory verdict.

    ``flops`` or (``params`` N and ``tokens`` D → 6·N·D, N = ``active_params`` for MoE);
    ``mfu`` in (0, 1] overrides; otherwise ``mfu_mode`` "default" (published runs) or
    "physics" (the transformer priced by the physics model). ``dp × tp × pp = count``.
    """
    if spec is None:
        raise ExanteError("FLOP-based training time needs --device (its peak TFLOP/s)")
    if dtype not in TRAIN_DTYPES:
        raise ExanteError(f"dtype must be one of {', '.join(TRAIN_DTYPES)}, got {dtype!r}")
    if mfu_mode not in MFU_MODES:
        raise ExanteError(f"mfu mode must be one of {', '.join(MFU_MODES)}, got {mfu_mode!r}")
    n_params = _num(params, "params") if params is not None else None
    if flops is not None:
        if params is not None and tokens is not None:
            raise ExanteError("give flops, or params and tokens, not both")
        total = _num(flops, "flops")
        flops_src = "user-supplied training FLOPs"
    else:
        if params is None or tokens is None:
            raise ExanteError("FLOP-based training needs params and tokens (or flops)")
        n_tokens = _num(tokens, "tokens")
        n_flops = (_num(active_params, "active_params") if active_params is not None
                   else _num(params, "params"))
        total = 6.0 * n_flops * n_tokens
        flops_src = FLOPS_SOURCE + (" with the activated parameters" if active_params else "")
    tp, pp = _int(tp, "tp"), _int(pp, "pp")
    if dp is None:
        if count % (tp * pp):
            raise ExanteError(f"count {count} is not a multiple of tp×pp = {tp * pp}")
        dp = count // (tp * pp)
    dp = _int(dp, "dp")
    if dp * tp * pp != count:
        raise ExanteError(f"dp×tp×pp = {dp}×{tp}×{pp} = {dp * tp * pp} must equal count {count}")
    run_dtype, dtype_note = spec.training_dtype(dtype)
    notes = [dtype_note] if dtype_note else []
    peak = spec.peak(run_dtype)
    n_for_mfu = _num(active_params, "active_params") if active_params else n_params

    # the transformer's shape: given, else inferred from params
    cfg = None
    seq_len = 2048 if seq_len is None else _int(seq_len, "seq_len")
    micro_batch = 1 if micro_batch is None else _int(micro_batch, "micro_batch")
    global_batch_tokens = (4e6 if global_batch_tokens is None
                           else _num(global_batch_tokens, "global_batch_tokens"))
    shape = [v for v in (layers, hidden, heads) if v is not None]
    if shape and len(shape) < 3:
        raise ExanteError("give all of layers, hidden and heads (or none: the shape is then "
                          "inferred from params)")
    if n_params is not None:
        if layers and hidden and heads:
            cfg = throughput.TransformerConfig(
                layers=_int(layers, "layers"), hidden=_int(hidden, "hidden"),
                heads=_int(heads, "heads"), seq_len=seq_len,
                micro_batch=micro_batch, flash=flash, fused_optimizer=fused_optimizer,
                tp=tp, pp=pp, global_batch_tokens=global_batch_tokens)
            if cfg.hidden % cfg.heads:
                raise ExanteError(f"hidden {cfg.hidden} must be a multiple of heads {cfg.heads}")
        else:
            cfg, how = throughput.infer_config(n_params, seq_len=seq_len, tp=tp, pp=pp)
            cfg = throughput.TransformerConfig(**{**cfg.__dict__, "micro_batch": micro_batch,
                                                  "flash": flash, "fused_optimizer": fused_optimizer,
                                                  "global_batch_tokens": global_batch_tokens})
            notes.append(how)

    physics = None
    if mfu is not None:
        m = _num(mfu, "mfu")
        if m > 1:
            raise ExanteError(f"mfu must be in (0, 1], got {mfu}")
        est = mfu_mod.MFUEstimate(Interval.exact(m), "given", "user-supplied --mfu")
    elif mfu_mode == "physics":
        if cfg is None:
            raise ExanteError("the physics MFU needs params (and ideally layers/hidden/heads)")
        link = None
        if interconnect:
            intra, _, inter = str(interconnect).partition(",")
            link = parallel.interconnect(spec.generation, intra or None, inter or None)
        physics = throughput.estimate(cfg, spec, count, dtype=dtype, flops_params=n_for_mfu,
                                      zero_stage=1, link=link)
        d = mfu_mod.default_mfu(spec, n_for_mfu, flavour="training")
        ratio_lo, ratio_hi = d.mfu_low / d.mfu, d.mfu_high / d.mfu
        est = mfu_mod.MFUEstimate(Interval(physics.mfu, min(1, physics.mfu * ratio_lo),
                                           min(1, physics.mfu * ratio_hi), d.utilisation.level),
                                  "training",
                                  "physics model of the transformer (predictor.carbon.llm.throughput) "
                                  "with parallel overheads; interval as the default's")
        notes += physics.notes
    else:
        est = mfu_mod.default_mfu(spec, n_for_mfu, flavour=mfu_flavour)
    device_seconds = total / (est.mfu * peak * 1e12)
    out = {"flops": total, "params": n_params, "mfu": est.mfu, "mfu_low": est.mfu_low,
           "mfu_high": est.mfu_high, "mfu_source": est.source, "mfu_flavour": est.flavour,
           "dtype": run_dtype, "dtype_requested": dtype, "peak_tflops": peak, "dp": dp, "tp": tp,
           "pp": pp, "device_hours": device_seconds / 3600.0,
           "device_hours_low": total / (est.mfu_high * peak * 1e12) / 3600.0,
           "device_hours_high": total / (est.mfu_low * peak * 1e12) / 3600.0,
           "flops_source": flops_src, "peak_source": spec.sources.get("peak_tflops", ""),
           "device_memory_gb": spec.memory_gb, "memory_per_device_gb": None,
           "memory_fits": None, "memory_verdict": None, "memory_source": memory.SOURCE,
           "physics": None if physics is None else {"step_time_s": physics.step_time_s,
                                                    "tokens_per_step": physics.tokens_per_step,
                                                    **physics.parts},
           "notes": notes}
    if cfg is not None and n_params is not None:
        mp = memory.plan(n_params, run_dtype, spec.memory_gb, dp=dp, tp=tp, pp=pp,
                         layers=cfg.layers, hidden=cfg.hidden, heads=cfg.heads,
                         seq_len=cfg.seq_len, micro_batch=cfg.micro_batch, sharding=sharding,
                         checkpointing=checkpointing, flash=flash, optimizer_dtype=optimizer_dtype)
        out.update(memory_per_device_gb=mp.total_gb, memory_fits=mp.fits,
                   memory_verdict=mp.verdict(), sharding=mp.sharding,
                   checkpointing=mp.checkpointing, model_states_gb=mp.model_states_gb,
                   activations_gb=mp.activations_gb)
        if mp.note:
            notes.append(f"memory: {mp.note}")
    return out
