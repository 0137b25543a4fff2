"""timm's published benchmark files (``results/benchmark-*.csv``): names and rows.

A file name carries the conditions of every row in it::

    benchmark-<infer|train>-<amp|fp16|bf16|fp32>-<nchw|nhwc>-pt<NNN>-cu<NNN>-<gpu>.csv

``amp`` is timm's default mixed precision, ``torch.autocast(dtype=float16)`` (dtype ``fp16``);
``nhwc`` is ``channels_last`` for model and input; ``pt240`` is torch 2.4.0, ``pt113`` torch
1.13; ``cu124`` CUDA 12.4; ``<gpu>`` is resolved in the hardware catalogue
(:func:`predictor.carbon.hardware.lookup`: ``rtx3090``, ``rtx4090``, ``a100``, ``t4`` ...).  Files with
more tokens (``-dynamo``, ``-compile``) are not eager step times and are refused.

Rows: ``model``, ``<m>_img_size``, ``<m>_batch_size``, ``<m>_step_time`` (ms per batch),
optionally ``<m>_gmacs`` (fvcore count at batch 1) and ``param_count`` (millions).
"""

from __future__ import annotations

import csv
import re
from dataclasses import dataclass
from pathlib import Path

from predictor.carbon.hardware import lookup
from profiling.errors import ExanteError

__all__ = ["BenchmarkFile", "BenchmarkRow", "parse_file_name", "read_benchmark_file",
           "torch_version_of", "FILE_PATTERN"]

FILE_PATTERN = ("benchmark-<infer|train>-<amp|fp16|bf16|fp32>-<nchw|nhwc>-pt<NNN>-cu<NNN>-"
                "<gpu>.csv")
_NAME_RE = re.compile(r"^benchmark-(infer|train)-(amp|fp16|half|bf16|amp_bf16|fp32|float32)-"
                      r"(nchw|nhwc)-pt(\d{3,4})-cu(\d{3,4})-([A-Za-z0-9_]+(?:-[A-Za-z0-9_]+)*)"
                      r"\.csv$", re.IGNORECASE)
_MODES = {"infer": "inference", "train": "train_step"}
_DTYPES = {"amp": "fp16", "fp16": "fp16", "half": "fp16", "bf16": "bf16", "amp_bf16": "bf16",
           "fp32": "fp32", "float32": "fp32"}
_FORMATS = {"nchw": "contiguous", "nhwc": "channels_last"}
_NOT_EAGER = ("dynamo", "compile", "inductor", "aot", "torchscript", "cpu")


@dataclass(frozen=True)
class BenchmarkRow:
    """One timed row of a timm benchmark file (step time in s)."""
    model: str
    img_size: int
    batch: int
    step_time_s: float          # seconds per step of the whole batch
    gmacs: float | None         # per sample (timm's fvcore count at batch 1)
    param_count_m: float | None


@dataclass
class BenchmarkFile:
    """A timm benchmark CSV with the conditions named by its file name and its rows."""
    path: Path
    mode: str                   # "inference" | "train_step"
    dtype: str                  # "fp16" | "bf16" | "fp32"
    memory_format: str          # "contiguous" | "channels_last"
    torch_version: str          # e.g. "2.4.0", "1.13"
    cuda_version: str           # e.g. "12.4"
    gpu_name: str               # as in the file name, e.g. "rtx3090"
    hardware: str               # catalogue id
    rows: list                  # BenchmarkRow
    untimed: list | None = None  # (line, model) of rows without a step time (e.g. out of memory)


def torch_version_of(tag: str) -> str:
    """``"240"`` -> ``"2.4.0"``, ``"2100"`` -> ``"2.10.0"``, ``"113"`` -> ``"1.13"``,
    ``"112"`` -> ``"1.12"`` (torch 1.x has two-digit minors, 2.x a patch digit)."""
    if tag[0] == "1":
        return f"1.{int(tag[1:])}"
    return f"{tag[0]}.{int(tag[1:-1])}.{tag[-1]}"


def _cuda_version_of(tag: str) -> str:
    return f"{int(tag[:-1])}.{tag[-1]}"


def parse_file_name(path) -> dict:
    """Conditions of a benchmark file from its name (see module docstring); ExanteError when
    the name does not follow the pattern or names no catalogue GPU."""
    name = Path(path).name
    m = _NAME_RE.match(name)
    if not m and re.match(r"^benchmark-.*-pt\d{3,4}-cpu-", name, re.IGNORECASE):
        raise ExanteError(f"{name}: a CPU run; only GPU files are scored ({FILE_PATTERN})")
    if not m:
        raise ExanteError(f"{name}: not a timm benchmark file name; expected {FILE_PATTERN}")
    mode, prec, layout, pt, cu, gpu = m.groups()
    extra = [t for t in gpu.lower().split("-") if t in _NOT_EAGER]
    if extra:
        raise ExanteError(f"{name}: a {'/'.join(extra)} run, not eager step time; only eager "
                          f"files are scored ({FILE_PATTERN})")
    spec = lookup(gpu)     # also a bare RTX model number: "4090", "5090", "pro6000maxq"
    return {"mode": _MODES[mode.lower()], "dtype": _DTYPES[prec.lower()],
            "memory_format": _FORMATS[layout.lower()], "torch_version": torch_version_of(pt),
            "cuda_version": _cuda_version_of(cu), "gpu_name": gpu, "hardware": spec.key}


def _num(v) -> float | None:
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return f if f == f else None


def read_benchmark_file(path) -> BenchmarkFile:
    """Parse one file (name and rows).  Rows whose step time and batch are empty (timm writes
    those when a model did not run, e.g. out of memory) are listed in ``untimed``; any other
    non-positive or unreadable value is refused with the line number."""
    path = Path(path)
    cond = parse_file_name(path)
    p = "infer" if cond["mode"] == "inference" else "train"
    need = ("model", f"{p}_img_size", f"{p}_batch_size", f"{p}_step_time")
    rows, untimed = [], []
    with open(path, newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        missing = [c for c in need if c not in (reader.fieldnames or ())]
        if missing:
            raise ExanteError(f"{path.name} lacks column(s) {', '.join(missing)}; expected "
                              f"{', '.join(need)} (optional {p}_gmacs, param_count)")
        for i, r in enumerate(reader, 2):
            img, b, t = (_num(r[c]) for c in need[1:])
            if r["model"] and not (r[need[2]] or "").strip() and not (r[need[3]] or "").strip():
                untimed.append((i, r["model"].strip()))
                continue
            if not (img and b and t and img > 0 and b > 0 and t > 0) or not r["model"]:
                raise ExanteError(f"{path.name}:{i}: model, {p}_img_size, {p}_batch_size and "
                                  f"{p}_step_time (ms) must be given and positive")
            rows.append(BenchmarkRow(r["model"].strip(), int(img), int(b), t / 1000.0,
                                     _num(r.get(f"{p}_gmacs")), _num(r.get("param_count"))))
    if not rows:
        raise ExanteError(f"{path.name} has no rows")
    return BenchmarkFile(path, rows=rows, untimed=untimed, **cond)
