"""LLM serving energy ex ante: per 1,000 prompt tokens, per 1,000 output tokens and per request,
for a model on ``gpus`` devices (tensor-parallel) at a concurrency (sequences in the batch).

A roofline of one decode step of the whole batch (s)::

    t_mem  = weight_bytes · min(P_total, P_active · B) / (gpus · mem_bw)   (weights streamed once
             per step; an MoE reads at most the experts B tokens activate)
    t_cmp  = 2 · P_active · B / (gpus · peak)
    t_step = max(t_mem, t_cmp)

Energy (J) = ``a`` × (gpus · TDP) × (roofline time + ``t_fix`` per decode step), so ``a`` folds together the achieved
fraction of the roofline and the fraction of TDP drawn; it is one coefficient fitted on
ML.ENERGY v3 (``predictor/bench/mlenergy.py``, leave-one-model-out in the README) and shipped in
``predictor/data/llm_serving.csv``. Decode: ``a·gpus·TDP·t_step / B`` per output token;
prefill (compute-bound): ``a·TDP·2·P_active / peak`` per prompt token.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources

from profiling.errors import ExanteError

WEIGHT_BYTES = {"bf16": 2.0, "bfloat16": 2.0, "fp16": 2.0, "float16": 2.0, "fp8": 1.0,
                "mxfp4": 4.25 / 8, "int4": 0.5, "fp32": 4.0}


def weight_bytes(precision: str) -> float:
    key = str(precision).strip().lower()
    if key not in WEIGHT_BYTES:
        raise ExanteError(f"unknown weight precision {precision!r}; accepted: "
                          f"{', '.join(WEIGHT_BYTES)}")
    return WEIGHT_BYTES[key]


def compute_peak_tflops(spec, precision: str) -> float:
    """Dense peak the matmuls run at: fp8 weights on an fp8 device, else the 16-bit rate."""
    p = str(precision).lower()
    if p == "fp8" and "fp8" in spec.peak_tflops:
        return spec.peak_tflops["fp8"]
    d, _ = spec.training_dtype("bf16")
    return spec.peak(d)


def roofline_step_s(spec, gpus: int, batch: float, params_total: float, params_active: float,
                    precision: str) -> float:
    """Roofline time (s) of one decode step of ``batch`` sequences."""
    if spec.mem_bw_gbs is None or spec.tdp_w is None:
        raise ExanteError(f"{spec.name} lacks memory bandwidth or TDP in the catalogue; the "
                          f"serving model needs both")
    wb = weight_bytes(precision)
    t_mem = wb * min(params_total, params_active * batch) / (gpus * spec.mem_bw_gbs * 1e9)
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
def shipped_coefficients() -> tuple[float, float, str]:
    """``(a, fixed power-seconds per decode step / TDP, source)`` fitted on ML.ENERGY v3."""
    text = resources.files("predictor.data").joinpath("llm_serving.csv").read_text("utf-8")
    row = next(csv.DictReader(io.StringIO(text)))
    return float(row["a"]), float(row["fixed_step_s"]), row["source"]


@dataclass(frozen=True)
class ServingEstimate:
    """Energies in J (GPU energy, before PUE)."""

    energy_per_1k_prompt_tokens_j: float
    energy_per_1k_output_tokens_j: float
    energy_per_request_j: float
    decode_step_s: float
    source: str

    def to_dict(self) -> dict:
        return dict(self.__dict__)


def serving_energy(params: float, device, gpus: int = 1, concurrency: int = 32, *,
                   prompt_tokens: float = 1000, output_tokens: float = 500,
                   active_params: float | None = None,
                   precision: str = "bf16") -> ServingEstimate:
    """Ex-ante serving energy of a ``params``-parameter model on ``gpus`` × ``device``."""
    from predictor.hardware import lookup

    spec = lookup(device)
    for v, what in ((params, "params"), (gpus, "gpus"), (concurrency, "concurrency")):
        if not isinstance(v, (int, float)) or v <= 0:
            raise ExanteError(f"{what} must be a number > 0, got {v!r}")
    pa = active_params or params
    a, t_fix, src = shipped_coefficients()
    step = roofline_step_s(spec, gpus, concurrency, params, pa, precision)
    out_j = (a * decode_feature(spec, gpus, concurrency, params, pa, precision)
             + t_fix * gpus * spec.tdp_w / concurrency)
    in_j = a * prefill_feature(spec, pa, precision)
    return ServingEstimate(1000 * in_j, 1000 * out_j, prompt_tokens * in_j + output_tokens * out_j,
                           step, src)
