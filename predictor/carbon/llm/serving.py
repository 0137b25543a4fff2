"""LLM serving energy ex ante: per 1,000 prompt tokens, per 1,000 output tokens and per request,
for a model on ``gpus`` devices (tensor-parallel) at a concurrency (sequences in the batch).

A roofline of one decode step of the whole batch (s)::

    t_mem  = weight_bytes · P_read / (gpus · mem_bw)   (weights streamed once per step)
    P_read = P_total · (1 - (1 - P_active/P_total)^B)   (an MoE reads only the experts its B
             tokens route to: with independent routing each expert weight is touched with
             probability 1 - (1 - f)^B, f = P_active/P_total; P_active at B = 1, P_total for a
             dense model or a large batch)
    t_cmp  = 2 · P_active · B / (gpus · peak16)   (16-bit dense peak, also for fp8 weights)
    t_step = max(t_mem, t_cmp)

Energy (J) = ``a`` × (gpus · TDP) × (roofline time + ``t_fix`` per decode step), so ``a`` folds together the achieved
fraction of the roofline and the fraction of TDP drawn; it is one coefficient fitted on
ML.ENERGY v3 (``predictor/bench/mlenergy.py``, leave-one-model-out in the README) and shipped in
``predictor/data/llm_serving.csv``. Decode: ``a·gpus·TDP·t_step / B`` per output token, plus
``gpus·TDP·t_tok`` and, across ``gpus`` > 1 devices, ``(gpus - 1)·TDP·t_ar``: each token's
activations are all-reduced between the devices every layer (ring: time ∝ 2(gpus-1)/gpus, paid
by all gpus), ``t_ar`` fitted; prefill (compute-bound): ``a·TDP·2·P_active / peak16`` per prompt
token.
"""

from __future__ import annotations

import csv
import io
import math
import statistics
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources

from predictor.carbon import regions as carbon
from predictor.carbon.hardware import lookup
from profiling.errors import ExanteError

WEIGHT_BYTES = {"bf16": 2.0, "bfloat16": 2.0, "fp16": 2.0, "float16": 2.0, "fp8": 1.0,
                "mxfp4": 4.25 / 8, "int4": 0.5, "fp32": 4.0}


def weight_bytes(precision: str) -> float:
    """Bytes per weight of a serving precision (bf16, fp8, mxfp4, int4)."""
    key = str(precision).strip().lower()
    if key not in WEIGHT_BYTES:
        raise ExanteError(f"unknown weight precision {precision!r}; accepted: "
                          f"{', '.join(WEIGHT_BYTES)}")
    return WEIGHT_BYTES[key]


def compute_peak_tflops(spec, precision: str) -> float:
    """Dense peak (TFLOP/s) the serving matmuls are costed at: the 16-bit rate, for every weight
    precision. fp8 checkpoints keep it too: on ML.ENERGY v3 the fp8 peak under-predicted them on
    both H100 and B200 (leave-one-model-out 25.2 % vs 24.7 % with the 16-bit rate), and an fp8
    model there costs about what its bf16 twin does on the same GPU count."""
    del precision
    d, _ = spec.training_dtype("bf16")
    return spec.peak(d)


def params_read(batch: float, params_total: float, params_active: float) -> float:
    """Expected parameters read in one decode step of ``batch`` tokens: every weight of a dense
    model; for an MoE the expected union of the experts the tokens route to (independent routing,
    activated fraction f = active/total): ``P_total · (1 - (1 - f)^batch)``."""
    if params_active >= params_total:
        return float(params_total)
    f = params_active / params_total
    return params_total * -math.expm1(batch * math.log1p(-f))


def roofline_step_s(spec, gpus: int, batch: float, params_total: float, params_active: float,
                    precision: str) -> float:
    """Roofline time (s) of one decode step of ``batch`` sequences."""
    if spec.mem_bw_gbs is None or spec.tdp_w is None:
        raise ExanteError(f"{spec.name} lacks memory bandwidth or TDP in the catalogue; the "
                          f"serving model needs both")
    wb = weight_bytes(precision)
    t_mem = wb * params_read(batch, params_total, params_active) / (gpus * spec.mem_bw_gbs * 1e9)
    t_cmp = 2.0 * params_active * batch / (gpus * compute_peak_tflops(spec, precision) * 1e12)
    return max(t_mem, t_cmp)


def decode_feature(spec, gpus, batch, params_total, params_active, precision) -> float:
    """gpus · TDP · t_step / batch: roofline joules per output token at a = 1."""
    return gpus * spec.tdp_w * roofline_step_s(spec, gpus, batch, params_total, params_active,
                                               precision) / batch


def prefill_feature(spec, params_active, precision) -> float:
    """TDP · 2·P_active / peak: roofline joules per prompt token at a = 1."""
    return spec.tdp_w * 2.0 * params_active / (compute_peak_tflops(spec, precision) * 1e12)


@lru_cache(maxsize=None)
def _shipped() -> dict:
    text = resources.files("predictor.data").joinpath("llm_serving.csv").read_text("utf-8")
    return {row["gpu"]: row for row in csv.DictReader(io.StringIO(text))}


COEFFICIENTS = ("a", "fixed_step_s", "per_token_s", "allreduce_per_token_s")


def shipped_coefficients(gpu_key: str) -> tuple[float, float, float, float, str]:
    """``(a, t_fix_s, t_tok_s, t_ar_s, source)`` for a catalogue GPU key (fitted on ML.ENERGY
    v3; ``t_ar_s``: all-reduce time per output token between tensor-parallel devices)."""
    rows = _shipped()
    if gpu_key in rows:
        r = rows[gpu_key]
        a, t_fix, t_tok, t_ar = (float(r[k]) for k in COEFFICIENTS)
        return a, t_fix, t_tok, t_ar, f"coefficients fitted on {gpu_key}: {r['source']}"
    vals = [[float(r[k]) for k in COEFFICIENTS] for r in rows.values()]
    gm = [math.exp(statistics.fmean(math.log(max(v[i], 1e-12)) for v in vals))
          for i in range(len(COEFFICIENTS))]
    src = next(iter(rows.values()))["source"]
    return (gm[0], gm[1], gm[2], gm[3],
            f"no ML.ENERGY rows on {gpu_key}: geometric mean of the {', '.join(rows)} "
            f"coefficients ({src})")


@dataclass(frozen=True)
class ServingEstimate:
    """Energies in J (GPU energy, before PUE)."""

    energy_per_1k_prompt_tokens_j: float
    energy_per_1k_output_tokens_j: float
    energy_per_request_j: float
    decode_step_s: float
    source: str

    def to_dict(self) -> dict:
        """JSON-ready dict (J per 1k tokens, J per request, s per step)."""
        return dict(self.__dict__)


def serving_energy(params: float, device, gpus: int = 1, concurrency: int = 32, *,
                   prompt_tokens: float = 1000, output_tokens: float = 500,
                   active_params: float | None = None,
                   precision: str = "bf16") -> ServingEstimate:
    """Ex-ante serving energy of a ``params``-parameter model on ``gpus`` × ``device``."""
    spec = lookup(device)
    for v, what in ((params, "params"), (gpus, "gpus"), (concurrency, "concurrency")):
        if not isinstance(v, (int, float)) or v <= 0:
            raise ExanteError(f"{what} must be a number > 0, got {v!r}")
    pa = active_params or params
    a, t_fix, t_tok, t_ar, src = shipped_coefficients(spec.key)
    tdp_w = spec.tdp_w
    if tdp_w is None:
        raise ExanteError(f"{spec.name} has no published TDP; serving energy needs one")
    step = roofline_step_s(spec, gpus, concurrency, params, pa, precision)
    out_j = (a * decode_feature(spec, gpus, concurrency, params, pa, precision)
             + gpus * tdp_w * (t_fix / concurrency + t_tok) + (gpus - 1) * tdp_w * t_ar)
    in_j = a * prefill_feature(spec, pa, precision)
    return ServingEstimate(1000 * in_j, 1000 * out_j, prompt_tokens * in_j + output_tokens * out_j,
                           step, src)


def serving_report(params, device, gpus, concurrency, *, requests=1.0, prompt_tokens=1000,
                   output_tokens=500, active_params=None, precision="bf16", pue=None,
                   region=None, intensity=None) -> dict:
    """Serving energy of ``requests`` requests (kWh, facility = × PUE) and CO2 (kg), with the
    per-1k-token and per-request figures (J, GPU only) -- what ``exante calc --concurrency``
    prints."""
    est = serving_energy(params, device, gpus, concurrency, prompt_tokens=prompt_tokens,
                         output_tokens=output_tokens, active_params=active_params,
                         precision=precision)
    pue_v = carbon.DEFAULT_PUE if pue is None else float(pue)
    if not math.isfinite(pue_v) or pue_v < 1:
        raise ExanteError(f"pue must be >= 1, got {pue!r}")
    if not (isinstance(requests, (int, float)) and requests > 0):
        raise ExanteError(f"requests must be a number > 0, got {requests!r}")
    grid = carbon.resolve_intensity(region, intensity)
    device_kwh = est.energy_per_request_j * requests / 3.6e6
    return {**est.to_dict(), "requests": requests, "gpus": gpus, "concurrency": concurrency,
            "prompt_tokens": prompt_tokens, "output_tokens": output_tokens,
            "device_energy_kwh": device_kwh, "pue": pue_v, "energy_kwh": device_kwh * pue_v,
            "grid_intensity_g_per_kwh": grid.value_g_per_kwh, "grid": grid.label,
            "co2_kg": carbon.co2_kg(device_kwh * pue_v, grid),
            "notes": ["GPU energy only (as ML.ENERGY measures it), then × PUE; host CPU and "
                      "network not counted"]}
