"""Whole-model rows of a dataset -> workloads and targets for :class:`~predictor.engine.physics.PhysicsModel`.

``load_whole_model_data(folder)`` reads ``models.csv`` and ``workloads.jsonl`` or
``workloads.jsonl.gz`` (the captured workload of each row's ``task_key``, written by the
importer or the profiler) and returns one record per measured condition: the mean over
sessions of time and energy (the value to predict), the per-session values (for the
re-measurement floor), the workload and its grouping labels.  Eager rows only.

A condition is (``task_key``, ``memory_format``, ``torch_version``): imported public rows
(``datasets/<gpu>/``, e.g. timm's benchmarks) share one workload between memory formats and
torch versions, and those are set on the returned workload from the row.  A record's ``key``
is the ``task_key`` when that is the only condition of it in the folder, else
``task_key|memory_format|torch<version>``.  ``models.csv`` may carry extra columns
(``memory_format``, ``source``, ``licence``, ``attribution`` ...).  Time-only rows (energy
empty) are kept with ``energy_j`` NaN; a zero or negative energy is not a measurement and is
dropped.
"""

from __future__ import annotations

import gzip
import json
import logging
import os
from dataclasses import dataclass, fields, replace
from pathlib import Path

import numpy as np
import pandas as pd

from predictor.engine.workload import Workload
from profiling.dataset import schema
from profiling.errors import ExanteError

__all__ = ["WholeModelData", "load_whole_model_data", "attach_workloads", "layer_row_workloads",
           "WORKLOAD_FILE", "workload_file", "read_workload_file"]

logger = logging.getLogger(__name__)

WORKLOAD_FILE = "workloads.jsonl"
WORKLOAD_FILE_GZ = WORKLOAD_FILE + ".gz"
_REQUIRED = ("task_key", "exec", "time_s", "energy_j", "spec", "family", "mode", "dtype", "batch",
             "optimizer", "power_w", "idle_power_w", "params", "flops", "session_id")


def workload_file(folder: str | os.PathLike) -> Path | None:
    """The workload file of ``folder`` (``workloads.jsonl``, else ``workloads.jsonl.gz``), or
    None when it has neither."""
    folder = Path(folder)
    for name in (WORKLOAD_FILE, WORKLOAD_FILE_GZ):
        if (folder / name).is_file():
            return folder / name
    return None


@dataclass
class WholeModelData:
    """Whole-model measurements of a dataset: ``frame`` (one row per workload: session-mean
    ``time_s`` (s) and ``energy_j`` (J), ``power_w``/``idle_power_w`` (W)), the aligned workloads
    and ``sessions`` (one row per workload and session)."""
    frame: pd.DataFrame          # one row per workload: key, family, kind, mode, dtype, batch,
    #                              optimizer, time_s, energy_j (session means), n_sessions,
    #                              power_w, idle_power_w
    workloads: list              # Workload, aligned with frame
    sessions: pd.DataFrame       # one row per (workload, session): key, session_id, time_s, energy_j

    @property
    def y(self) -> np.ndarray:
        return self.frame[["time_s", "energy_j"]].to_numpy(float)

    def subset(self, mask) -> "WholeModelData":
        mask = np.asarray(mask, bool)
        keys = set(self.frame.loc[mask, "key"])
        return WholeModelData(self.frame[mask].reset_index(drop=True),
                              [w for w, m in zip(self.workloads, mask, strict=True) if m],
                              self.sessions[self.sessions["key"].isin(keys)].reset_index(drop=True))


def read_workload_file(path: str | os.PathLike) -> dict:
    """``{key: Workload}`` of a ``.jsonl`` or ``.jsonl.gz`` workload file."""
    return _read_workloads(Path(path))


def _read_workloads(path: Path) -> dict:
    out = {}
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8") as fh:
        for i, line in enumerate(fh, 1):
            if line.strip():
                try:
                    d = json.loads(line)
                    out[d["key"]] = Workload.from_json(d["workload"])
                except (ValueError, KeyError) as exc:
                    raise ExanteError(f"{path}:{i}: not a workload record ({exc})") from None
    return out


def _spec_kind(spec) -> str | None:
    if isinstance(spec, str):
        try:
            spec = json.loads(spec)
        except ValueError:
            return None
    return spec.get("kind") if isinstance(spec, dict) else None


def _read_models(folder: Path):
    """``models.csv`` as a DataFrame; extra columns are kept, missing required ones refused."""
    path = folder / schema.MODEL_FILE
    rows = pd.read_csv(path, keep_default_na=True, low_memory=False)
    missing = [c for c in _REQUIRED if c not in rows.columns]
    if missing:
        raise ExanteError(f"{path} lacks column(s) {', '.join(missing)} (a models.csv has the "
                          "columns of profiling.dataset.schema.MODEL_COLUMNS, extra ones allowed)")
    return rows


def _condition(w, memory_format, torch_version):
    """The workload with the row's memory format and torch version (fields it lacks stay)."""
    have = {f.name for f in fields(w)}
    upd = {}
    if "memory_format" in have and isinstance(memory_format, str) and memory_format and \
            memory_format != w.memory_format:
        upd["memory_format"] = memory_format
    if "torch_version" in have and isinstance(torch_version, str) and torch_version and \
            w.torch_version is None:
        upd["torch_version"] = torch_version
    return replace(w, **upd) if upd else w


def load_whole_model_data(folder: str | os.PathLike) -> WholeModelData:
    """Eager whole-model rows of ``folder`` that have a captured workload (see module
    docstring for conditions, keys and time-only rows)."""
    folder = Path(folder)
    wpath = workload_file(folder)
    if not (folder / schema.MODEL_FILE).is_file() or wpath is None:
        raise ExanteError(f"{folder} has no whole-model rows with workloads ({schema.MODEL_FILE} "
                          f"and {WORKLOAD_FILE}[.gz]); import or measure some first")
    rows = _read_models(folder)
    wls = _read_workloads(wpath)
    rows = rows[(rows["exec"].astype(str) == "eager") & rows["task_key"].isin(list(wls))].copy()
    for c in ("time_s", "energy_j", "power_w", "idle_power_w", "batch", "params", "flops"):
        rows[c] = pd.to_numeric(rows[c], errors="coerce")
    rows = rows[(rows["time_s"] > 0) & ((rows["energy_j"] > 0) | rows["energy_j"].isna())]
    if rows.empty:
        raise ExanteError(f"{folder}: no eager whole-model row with a positive measurement and "
                          "a captured workload")
    for c, default in (("memory_format", "contiguous"), ("torch_version", ""),
                       ("hardware", folder.name), ("source", "")):
        rows[c] = [default if pd.isna(v) else str(v) for v in rows[c]] if c in rows else default
    rows["wkey"] = rows["task_key"]
    cond = rows[["task_key", "memory_format", "torch_version"]].drop_duplicates()
    multi = set(cond["task_key"][cond["task_key"].duplicated(keep=False)])
    rows["key"] = [t if t not in multi else f"{t}|{m}|torch{v}" for t, m, v in
                   zip(rows["task_key"], rows["memory_format"], rows["torch_version"],
                       strict=True)]
    sessions = rows[["key", "session_id", "time_s", "energy_j", "power_w",
                     "idle_power_w"]].reset_index(drop=True)
    kinds = rows["spec"].map(_spec_kind)
    rows = rows.assign(kind=kinds.fillna("model"))
    g = rows.groupby("key", sort=True)
    frame = g.agg(task_key=("wkey", "first"), family=("family", "first"), kind=("kind", "first"),
                  mode=("mode", "first"), dtype=("dtype", "first"), batch=("batch", "first"),
                  optimizer=("optimizer", "first"), time_s=("time_s", "mean"),
                  energy_j=("energy_j", "mean"), n_sessions=("time_s", "size"),
                  power_w=("power_w", "mean"), idle_power_w=("idle_power_w", "mean"),
                  params=("params", "first"), flops=("flops", "first"),
                  hardware=("hardware", "first"), memory_format=("memory_format", "first"),
                  torch_version=("torch_version", "first"),
                  source=("source", "first")).reset_index()
    workloads = [_condition(wls[t], m, v) for t, m, v in
                 zip(frame["task_key"], frame["memory_format"], frame["torch_version"],
                     strict=True)]
    return WholeModelData(frame, workloads, sessions)


def _spec(v) -> dict:
    if isinstance(v, str):
        try:
            v = json.loads(v)
        except ValueError:
            return {}
    return v if isinstance(v, dict) else {}


def _row_inputs(row, spec: dict):
    """Meta inputs of a model row: per-sample shape from the spec (``input``) or the
    ``input_shape`` column, batch first; token ids (int64) for ``kind == "transformer"`` or
    ``spec["input_dtype"]`` an integer type."""
    import torch

    shape = spec.get("input") or _spec_list(row.get("input_shape"))
    if not shape:
        raise ExanteError("no per-sample input shape (spec.input / input_shape)")
    integer = spec.get("kind") == "transformer" or str(spec.get("input_dtype", "")).startswith("int")
    dt = torch.long if integer else torch.float32
    return torch.zeros((int(row["batch"]), *[int(d) for d in shape]), dtype=dt, device="meta")


def _spec_list(v):
    if isinstance(v, str):
        try:
            v = json.loads(v)
        except ValueError:
            return None
    return v if isinstance(v, list) else None


def attach_workloads(folder: str | os.PathLike, *, rebuild: bool = False) -> dict:
    """Capture the workload of every eager model row of ``folder`` that has none yet (all of
    them with ``rebuild``) and merge them into the folder's workload file (``workloads.jsonl``,
    or the ``.jsonl.gz`` it already has), atomically, keyed by the row's ``task_key``.  The
    model is rebuilt on ``meta`` from ``model_ref`` (or ``spec["model_ref"]``); rows whose
    model cannot be built here (a missing optional package, a user file) are skipped and
    listed.  ``models.csv`` may carry extra columns.  Returns ``{"added": n, "skipped":
    {key: reason}}``."""

    from predictor.engine.predict import capture_workload
    from profiling.model_refs import resolve_model_on_meta
    from profiling.ref_policy import check_data_model_ref

    folder = Path(folder)
    if not (folder / schema.MODEL_FILE).is_file():
        raise ExanteError(f"{folder} has no {schema.MODEL_FILE}")
    wpath = workload_file(folder) or folder / WORKLOAD_FILE
    have = {} if rebuild or not wpath.is_file() else {
        k: json.loads(w.to_json()) for k, w in _read_workloads(wpath).items()}
    table = _read_models(folder).astype(object)
    table = table.where(table.notna(), None)
    added, skipped, models = 0, {}, {}
    for row in table.to_dict("records"):
        key = row.get("task_key")
        if not key or key in have or key in skipped or row.get("exec") not in (None, "eager"):
            continue
        spec = _spec(row.get("spec"))
        ref = spec.get("model_ref") or row.get("model_ref")
        try:
            if ref not in models:
                # a ref the table names may not run code (file.py:f, package.module:f)
                check_data_model_ref(ref, f"from {folder / schema.MODEL_FILE}",
                                     "a dataset names zoo or generator models only")
                models[ref] = resolve_model_on_meta(ref)
            w = capture_workload(models[ref], _row_inputs(row, spec), row["mode"], row["dtype"],
                                 row.get("optimizer") or None, cache=False)
        except Exception as exc:          # noqa: BLE001 -- reported per row, never silent
            skipped[key] = f"{type(exc).__name__}: {exc}"[:300]
            logger.info("no workload for %s (%s): %s", key, ref, skipped[key])
            continue
        have[key] = json.loads(w.to_json())
        added += 1
    if added or rebuild:
        text = "".join(json.dumps({"key": k, "workload": have[k]}, sort_keys=True) + "\n"
                       for k in sorted(have)).encode("utf-8")
        if wpath.suffix == ".gz":
            text = gzip.compress(text, 9, mtime=0)
        schema.write_bytes_atomic(wpath, text)
    return {"added": added, "skipped": skipped}


def layer_row_workloads(folder: str | os.PathLike) -> tuple[list, np.ndarray, pd.DataFrame]:
    """Per-layer rows of ``layers.csv`` as single-layer workloads (``isolated``; CUDA-graph rows
    ``graph``): (workloads, y (n, 2) of time_s and energy_j, the rows' identity columns).

    Rows that are not a measurement (reference rows, non-positive values, an estimated/replay
    meter) are left out.  Empty when the folder has no layer table."""
    from predictor.engine.workload import WLayer, _tuplify_hparams
    from profiling.capture.core import LayerConfig

    table = schema.layer_table(folder)
    if not table.exists():
        return [], np.zeros((0, 2)), pd.DataFrame()
    out, ys, ids = [], [], []
    for r in table.read():
        if r.get("layer_type") in (None, "reference") or r.get("mode") not in (
                "inference", "forward_backward", "train_step"):
            continue
        if str(r.get("meter", "")).lower() in ("estimated", "replay", "synthetic") or \
                r.get("meter_measured") is False:
            continue
        t, e = r.get("time_s"), r.get("energy_j")
        if not (isinstance(t, float) and isinstance(e, float) and t > 0 and e > 0):
            continue
        try:
            hp = json.loads(r["hparams"]) if isinstance(r["hparams"], str) else r["hparams"]
            ins = json.loads(r["input_shapes"]) if isinstance(r["input_shapes"], str) \
                else r["input_shapes"]
            outs = json.loads(r["output_shapes"]) if isinstance(r["output_shapes"], str) \
                else r["output_shapes"]
            cfg = LayerConfig(r["layer_type"], _tuplify_hparams(hp or {}),
                              tuple(tuple(s) for s in ins), tuple(tuple(s) for s in outs),
                              r["dtype"])
        except (KeyError, TypeError, ValueError):
            continue
        params = int(r.get("params") or 0)
        opt = r.get("optimizer") or ("sgd" if r["mode"] == "train_step" else None)
        out.append(Workload((WLayer(cfg, 1, (r["layer_type"],), True),), r["mode"], r["dtype"],
                            int(r.get("batch") or cfg.batch), opt,
                            (params,) if params and r["mode"] == "train_step" else (), 0,
                            isolated=True, graph=r.get("exec") == "graph"))
        ys.append((t, e))
        ids.append({"key": r.get("key"), "layer_type": r["layer_type"], "mode": r["mode"],
                    "exec": r.get("exec"), "dtype": r["dtype"]})
    return out, np.array(ys, float).reshape(-1, 2), pd.DataFrame(ids)
