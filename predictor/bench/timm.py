"""``exante bench timm DIR``: step time of timm's published benchmarks, predicted ex ante.

DIR is laid out like ``extdata/timm_benchmarks``: ``benchmark-<infer|train>-<amp>-<nchw|nhwc>-
pt<NNN>-cu<NNN>-<gpu>.csv`` files (:mod:`predictor.bench.timm_results`: every condition comes
from the file name, the GPU is resolved in the hardware catalogue).  For every row the named
timm model is built on ``meta`` and captured at the row's image size and batch
(:mod:`predictor.bench.timm_workloads`, cached), with the file's dtype (``amp`` = fp16
autocast), memory format and torch version, and its step time predicted by the project's
model for that GPU (:func:`predictor.engine.predict._load_or_transfer`: the GPU's own artifact, else
the datasheet transfer of a measured one -- what ``predict(..., hardware=)`` uses).

Per file: ``n`` rows scored, ``mape_pct``, ``median_ape_pct``, ``within_25_pct`` (share of
rows within +-25 %), ``kendall_tau`` (scipy), two baselines fitted on the same file (so
optimistic: they see the answers) -- ``gmacs_linear_mape_pct`` (time = a x GMACs x batch + b,
least squares; GMACs per sample from the file's ``*_gmacs`` column, else the captured forward
MACs, ``gmacs_source`` says which) and ``one_constant_mape_pct`` (the prediction times the
median measured/predicted ratio) -- and ``failures`` (model -> error: models that could not
be built, captured or predicted here; never dropped silently; ``failed_pct`` of the rows).
Rows that timm left without a time (out of memory) are listed in ``untimed``.  ``per_gpu``
pools every file of a GPU (all modes, formats and torch versions) into the same metrics.
"""

from __future__ import annotations

import csv
import fnmatch
import io
import logging
import time
from pathlib import Path
from typing import Any

import numpy as np

from predictor.bench.timm_results import FILE_PATTERN, read_benchmark_file
from predictor.bench.timm_workloads import TimmBuildError, default_cache_dir, timm_workload
from profiling.dataset.schema import write_bytes_atomic
from profiling.errors import ExanteError

__all__ = ["run_timm_bench", "score", "gmacs_of"]

log = logging.getLogger(__name__)


def gmacs_of(w) -> float:
    """Forward multiply-accumulates per sample of a workload, in GMACs (supported layers)."""
    from profiling.features.api import layer_features

    macs = 0
    for x in w.layers:
        if not x.supported:
            continue
        try:
            macs += int(layer_features(x.config).get("macs", 0)) * x.count
        except (ExanteError, KeyError, ValueError, TypeError):
            continue
    return macs / max(w.batch, 1) / 1e9


def _ape(pred, true) -> np.ndarray:
    return np.abs(np.asarray(pred, float) - true) / true * 100.0


def score(pred, true, gmacs_x_batch=None) -> dict:
    """Metrics of predicted vs measured step times (seconds), see the module docstring."""
    from scipy.stats import kendalltau

    pred, true = np.asarray(pred, float), np.asarray(true, float)
    out: dict[str, Any] = {"n": int(len(true))}
    if len(true) == 0:
        return out
    ape = _ape(pred, true)
    out.update(mape_pct=float(ape.mean()), median_ape_pct=float(np.median(ape)),
               within_25_pct=float((ape <= 25.0).mean() * 100.0))
    out["kendall_tau"] = float(kendalltau(pred, true)[0]) if len(true) > 1 else None
    c = float(np.median(true / pred))
    out["one_constant"] = c
    out["one_constant_mape_pct"] = float(_ape(c * pred, true).mean())
    if gmacs_x_batch is not None and len(true) > 2:
        x = np.asarray(gmacs_x_batch, float)
        A = np.column_stack([x, np.ones_like(x)])
        (a, b), *_ = np.linalg.lstsq(A, true, rcond=None)
        out["gmacs_linear_mape_pct"] = float(_ape(a * x + b, true).mean())
        out["gmacs_linear_fit"] = {"s_per_gmac": float(a), "intercept_s": float(b)}
    return out


def _pick_rows(rows: list, limit, sample, seed) -> list:
    if sample is not None and sample < len(rows):
        idx = np.sort(np.random.default_rng(seed).choice(len(rows), int(sample), replace=False))
        rows = [rows[i] for i in idx]
    if limit is not None:
        rows = rows[:int(limit)]
    return rows


def _bench_file(bf, rows, predictor, cache_dir, progress) -> dict:
    preds: list[float] = []
    true: list[float] = []
    gx: list[float] = []
    ids: list = []
    failures: dict[str, str] = {}
    n_fail = 0
    g_src = "file" if all(r.gmacs for r in rows) else "workload"
    t0 = time.time()
    for i, r in enumerate(rows, 1):
        try:
            w = timm_workload(r.model, r.img_size, r.batch, bf.mode, bf.dtype, bf.memory_format,
                              torch_version=bf.torch_version, cache_dir=cache_dir)
            t = float(predictor.predict_workload(w).time_s.value)
            if not (t > 0 and np.isfinite(t)):
                raise ExanteError(f"predicted step time {t!r} s")
        except (TimmBuildError, ExanteError) as exc:
            failures.setdefault(r.model, str(exc)[:500])
            n_fail += 1
            continue
        except (RuntimeError, ValueError, KeyError, TypeError, ZeroDivisionError) as exc:
            # a model the engine cannot price is a failure to report, not to hide
            failures.setdefault(r.model, f"predict: {type(exc).__name__}: {exc}"[:500])
            n_fail += 1
            continue
        preds.append(t)
        ids.append((r.model, r.img_size, r.batch))
        true.append(r.step_time_s)
        gx.append((r.gmacs if g_src == "file" else gmacs_of(w)) * r.batch)
        if progress and (i % 100 == 0 or i == len(rows)):
            progress(f"{bf.path.name}: {i}/{len(rows)} rows ({n_fail} failed, "
                     f"{i / max(time.time() - t0, 1e-9):.1f} rows/s)")
    out = score(preds, true, gx)
    out["_pairs"] = (preds, true, ids)
    out.update(gmacs_source=("file column" if g_src == "file" else
                             "captured forward MACs (the file has no *_gmacs column)"),
               failures=failures, n_failed_rows=n_fail,
               failed_pct=100.0 * n_fail / max(len(rows), 1),
               n_failed_models=len(failures))
    return out


def run_timm_bench(folder, *, files: str | None = None, limit: int | None = None,
                   sample: int | None = None, seed: int = 0, cache_dir=None, artifact_dir=None,
                   progress=None, rows_out=None, jobs: int = 1) -> dict:
    """Score every timm benchmark file of ``folder`` (or those matching the glob ``files``);
    ``limit``: first N rows per file, ``sample``: N rows per file drawn with ``seed``;
    ``rows_out``: a CSV path for every scored row (file, hardware, model, img_size, batch,
    measured_s, predicted_s), e.g. for a predicted-vs-measured plot; ``jobs``: processes that
    capture the workloads missing from the cache first (1: captured as each row comes)."""
    from predictor.engine.predict import _load_or_transfer

    d = Path(folder)
    if not d.is_dir():
        raise ExanteError(f"{d} is not a folder (expected one holding {FILE_PATTERN} files, "
                          "laid out like extdata/timm_benchmarks)")
    if int(jobs) < 1:
        raise ExanteError(f"--jobs must be 1 or more processes, got {jobs}")
    for name, v in (("limit", limit), ("sample", sample)):
        if v is not None and int(v) < 1:
            raise ExanteError(f"--{name} must be a positive number of rows, got {v}")
    paths = sorted(p for p in d.glob("benchmark-*.csv")
                   if files is None or fnmatch.fnmatch(p.name, files))
    if not paths:
        raise ExanteError(f"no benchmark file in {d}" + (f" matching {files!r}" if files else "")
                          + f"; expected {FILE_PATTERN}")
    cache_dir = Path(cache_dir) if cache_dir else default_cache_dir()
    report: dict[str, Any] = {"dir": str(d), "cache": str(cache_dir), "files": {},
                              "skipped_files": {},
              "engine": {}, "rows": ("all" if sample is None and limit is None else
                                     {"sample": sample, "seed": seed, "limit": limit})}
    engines: dict = {}
    parsed: list = []
    for p in paths:
        try:
            parsed.append((p, read_benchmark_file(p)))
        except ExanteError as exc:
            report["skipped_files"][p.name] = str(exc)
    if jobs > 1:
        from predictor.bench.timm_workloads import warm_cache

        warm_cache([(r.model, r.img_size, r.batch, bf.mode, bf.dtype) for _, bf in parsed
                    for r in _pick_rows(bf.rows, limit, sample, seed)], cache_dir, jobs, progress)
    for p, bf in parsed:
        if bf.hardware not in engines:
            try:
                art = _load_or_transfer(bf.hardware, artifact_dir)
            except ExanteError as exc:      # this GPU has no model: say so, score the others
                engines[bf.hardware] = str(exc)
            else:
                engines[bf.hardware] = art.model
                fitted = art.manifest.get("joint_gpus") or ()
                report["engine"][bf.hardware] = {
                    "artifact": art.manifest.get("id"), "sha256": art.manifest.get("sha256"),
                    # the shipped model was fitted on this GPU's rows (the visible timm files):
                    # its numbers here are in-sample; held-out ones: experiments/multigpu
                    "in_sample": bool(art.manifest.get("measured")) and bf.hardware in fitted}
        if isinstance(engines[bf.hardware], str):
            report["skipped_files"][p.name] = (f"no predictor for {bf.hardware}: "
                                               f"{engines[bf.hardware]}")
            continue
        rows = _pick_rows(bf.rows, limit, sample, seed)
        if progress:
            progress(f"{p.name}: {len(rows)} of {len(bf.rows)} rows on {bf.hardware}")
        r = {"hardware": bf.hardware, "gpu_name": bf.gpu_name, "mode": bf.mode, "dtype": bf.dtype,
             "memory_format": bf.memory_format, "torch_version": bf.torch_version,
             "cuda_version": bf.cuda_version, "rows_in_file": len(bf.rows),
             "untimed": [m for _, m in (bf.untimed or [])]}
        r.update(_bench_file(bf, rows, engines[bf.hardware], cache_dir, progress))
        report["files"][p.name] = r
    pooled: dict = {}
    per_row: list = []
    for name, v in report["files"].items():
        p, t, ids = v.pop("_pairs")
        per_row += [(name, v["hardware"], *i, tt, pp) for i, tt, pp in zip(ids, t, p, strict=True)]
        acc = pooled.setdefault(v["hardware"], {"pred": [], "true": [], "files": []})
        acc["pred"] += p
        acc["true"] += t
        acc["files"].append(name)
    report["per_gpu"] = {hw: {**{k: v for k, v in score(a["pred"], a["true"]).items()
                                 if not k.startswith("one_constant")},
                              "files": a["files"]} for hw, a in pooled.items()}
    if not report["files"]:
        raise ExanteError(f"no readable benchmark file in {d}: " + "; ".join(
            f"{k}: {v}" for k, v in report["skipped_files"].items()))
    if rows_out:
        _write_rows(Path(rows_out), per_row)
        report["rows_out"] = str(rows_out)
    return report


def _write_rows(path: Path, rows: list) -> None:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["file", "hardware", "model", "img_size", "batch", "measured_s", "predicted_s"])
    w.writerows(rows)
    write_bytes_atomic(path, buf.getvalue().encode("utf-8"))
