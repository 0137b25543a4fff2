"""Rows for the multi-GPU experiment: timm benchmark files (time only, workloads from the
capture cache of ``predictor.bench.timm_workloads``) and ``datasets/<gpu>`` folders.

A :class:`Rows` set holds workloads, ``y`` = (time_s, energy_j; NaN energy for time-only
rows) and per-row labels (gpu, source, file, torch version, model)."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)


@dataclass
class Rows:
    workloads: list
    y: np.ndarray                                   # (n, 2): time_s, energy_j (NaN: none)
    gpu: np.ndarray
    source: np.ndarray
    file: np.ndarray
    torch: np.ndarray
    model: np.ndarray
    failures: dict = field(default_factory=dict)    # file -> {model: error}

    def __len__(self):
        return len(self.workloads)

    def take(self, mask) -> "Rows":
        m = np.asarray(mask)
        idx = np.flatnonzero(m) if m.dtype == bool else m
        return Rows([self.workloads[i] for i in idx], self.y[idx], self.gpu[idx],
                    self.source[idx], self.file[idx], self.torch[idx], self.model[idx])

    @staticmethod
    def concat(parts) -> "Rows":
        parts = [p for p in parts if len(p)]
        fail = {}
        for p in parts:
            fail.update(p.failures)
        return Rows(sum((p.workloads for p in parts), []), np.concatenate([p.y for p in parts]),
                    *(np.concatenate([getattr(p, k) for p in parts]) for k in
                      ("gpu", "source", "file", "torch", "model")), failures=fail)


def timm_rows(path, cache_dir, per_file: int | None = None, seed: int = 0) -> Rows:
    """Rows of one timm benchmark file whose workloads are in the cache (a seeded sample of
    ``per_file`` models when given); models that failed to build are in ``failures``."""
    from predictor.bench.timm_results import read_benchmark_file
    from predictor.bench.timm_workloads import TimmBuildError, cache_path, timm_workload

    bf = read_benchmark_file(path)
    rows = list(bf.rows)
    if per_file and len(rows) > per_file:
        rng = np.random.default_rng(seed)
        rows = [rows[i] for i in sorted(rng.choice(len(rows), per_file, replace=False))]
    ws, t, names, fail, missing = [], [], [], {}, 0
    for r in rows:
        p = cache_path(cache_dir, r.model, r.img_size, r.batch, bf.mode, bf.dtype)
        if not p.is_file() and not p.with_name(p.name[:-8] + ".err.json").is_file():
            missing += 1
            continue
        try:
            w = timm_workload(r.model, r.img_size, r.batch, bf.mode, bf.dtype, bf.memory_format,
                              torch_version=bf.torch_version, cache_dir=cache_dir)
        except TimmBuildError as exc:
            fail[r.model] = str(exc)
            continue
        ws.append(w)
        t.append(r.step_time_s)
        names.append(r.model)
    if missing:
        log.info("%s: %d rows not in the cache yet (skipped)", Path(path).name, missing)
    n = len(ws)
    name = Path(path).name
    return Rows(ws, np.column_stack([np.asarray(t, float), np.full(n, np.nan)]),
                np.full(n, bf.hardware, dtype=object), np.full(n, "timm", dtype=object),
                np.full(n, name, dtype=object), np.full(n, bf.torch_version, dtype=object),
                np.asarray(names, dtype=object), failures={name: fail})


def dataset_rows(folder) -> Rows:
    """Whole-model rows of ``datasets/<gpu>`` (their ``hardware`` column names the GPU)."""
    from predictor.fit.datasets import load_whole_model_data

    d = load_whole_model_data(folder)
    f = d.frame
    n = len(f)
    gpu = f["hardware"].astype(str).to_numpy(object) if "hardware" in f else \
        np.full(n, Path(folder).name, dtype=object)
    src = f["source"].astype(str).to_numpy(object) if "source" in f else \
        np.full(n, Path(folder).name, dtype=object)
    tv = f["torch_version"].astype(str).to_numpy(object) if "torch_version" in f else \
        np.full(n, "", dtype=object)
    y = np.column_stack([f["time_s"].to_numpy(float), f["energy_j"].to_numpy(float)])
    return Rows(list(d.workloads), y, gpu, src, np.full(n, Path(folder).name, dtype=object),
                tv, f["family"].astype(str).to_numpy(object))
