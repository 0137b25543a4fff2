"""``fit_hardware``: datasets/<hw>/ -> the physics-model artifact ``<hw>.joblib`` + manifest.

``exante fit`` needs, in ``datasets/<hw>/`` (the :mod:`profiling.dataset.schema` layout):

* ``models.csv`` -- whole-model rows (eager, measured time and energy per call), written by
  ``exante sweep`` / ``exante profile``;
* ``workloads.jsonl`` (or ``.jsonl.gz``) -- the captured workload of each row; rows without
  one are captured now from their ``model_ref`` (:func:`~predictor.fit.datasets.attach_workloads`);
* optionally ``layers.csv`` -- per-layer rows, fitted beside the model rows.

It fits :class:`~predictor.engine.calibrated.CalibratedHardware` (the physics model with
datasheet priors from the catalogue, intervals from leave-one-family-out residuals) and saves
the artifact with its manifest (sha256, versions, training-data digest, CV scores).  A folder
of per-layer rows alone is refused with an :class:`ExanteError` saying what is missing (the
per-layer regression engine that fitted such folders was removed in issue 19).

Safety: a dataset that is not a GPU measurement (synthetic rows or rows from the labelled
*estimated* meter) can only be fitted into an explicit ``out_dir``, never into the package's
artifact folder, so it cannot be shipped by accident.
"""

from __future__ import annotations

import logging
import os
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

from predictor.artifacts import (
    check_hardware_id,
    dataset_digest,
    package_artifact_dir,
    save_artifact,
)
from predictor.fit.calibrated_fit import fit_calibrated, metrics
from predictor.fit.datasets import (
    attach_workloads,
    layer_row_workloads,
    load_whole_model_data,
    workload_file,
)
from profiling.dataset import schema
from profiling.errors import ExanteError

__all__ = ["fit_hardware", "fit_whole_model_hardware", "datasheet_for"]

logger = logging.getLogger(__name__)


def _no_data(hardware: str, folder: Path, what: str) -> ExanteError:
    return ExanteError(
        f"no usable dataset for hardware {hardware!r}: {what} in {folder}/; `exante fit` needs "
        f"whole-model rows ({schema.MODEL_FILE}, with their workloads in workloads.jsonl) "
        f"measured on that GPU: `exante sweep <SWEEP> --out {folder} --hardware {hardware}` "
        f"(see `exante sweep --help`), then `exante fit --hardware {hardware}`")


def _measured(rows: pd.DataFrame) -> tuple[bool, str]:
    """(is a GPU measurement, why not): synthetic rows or an estimated/replay meter are not."""
    gpu = rows.get("gpu_name", pd.Series(dtype=object)).astype(str)
    if gpu.str.contains("SYNTHETIC", case=False).any():
        return False, "synthetic rows (test fixture)"
    mm = rows.get("meter_measured")
    if mm is not None:
        vals = mm.astype(str).str.lower()
        if vals.isin(["false", "0"]).any():
            return False, "rows from a non-measuring (estimated) meter"
    meter = rows.get("meter")
    if meter is not None and meter.astype(str).str.lower().isin(["estimated", "replay",
                                                                 "synthetic"]).any():
        return False, "rows from an estimated/replay meter"
    return True, ""


def _target_dir(hardware: str, out_dir, measured: bool, why: str) -> Path:
    """Where the artifact goes: ``out_dir`` or the package -- never the package for data that
    is not a GPU measurement."""
    pkg = package_artifact_dir()
    target_dir = Path(out_dir) if out_dir is not None else pkg
    if not measured and os.path.abspath(target_dir) == os.path.abspath(pkg):
        raise ExanteError(
            f"datasets/{hardware} contains {why}: not a GPU measurement, so it will not be "
            "fitted into the package's artifact folder; pass --out DIR to fit it elsewhere")
    return target_dir


def fit_hardware(hardware: str, datasets_dir: str | os.PathLike = "datasets",
                 out_dir: str | os.PathLike | None = None, quick: bool = False,
                 *, coverage: float = 0.9) -> dict:
    """Fit and save the physics model of ``hardware`` from ``datasets_dir/hardware``; returns
    the manifest (plus ``path``).

    ``quick``: in-sample intervals instead of leave-one-family-out ones (seconds instead of
    minutes).  ``out_dir`` defaults to the package's ``predictor/artifacts/``.  Raises
    :class:`ExanteError` when the folder lacks whole-model rows or their workloads.
    """
    check_hardware_id(hardware)
    folder = Path(datasets_dir) / hardware
    if not folder.is_dir():
        raise _no_data(hardware, folder, "the folder does not exist")
    if not schema.model_table(folder).exists():
        what = (f"{schema.MODEL_FILE} is missing (only per-layer rows, {schema.LAYER_FILE}: "
                "those are fitted beside whole-model rows, never alone)"
                if schema.layer_table(folder).exists() else f"{schema.MODEL_FILE} is missing")
        raise _no_data(hardware, folder, what)
    rep = attach_workloads(folder)         # model rows measured without a workload yet
    if rep["skipped"]:
        warnings.warn(f"{len(rep['skipped'])} model rows of {folder} left out: their model "
                      "cannot be rebuilt here (" + "; ".join(
                          f"{k}: {v}" for k, v in list(rep["skipped"].items())[:3]) + ")",
                      UserWarning, stacklevel=2)
    if workload_file(folder) is None:
        raise _no_data(hardware, folder, "no model row has a workload (workloads.jsonl)")
    return fit_whole_model_hardware(hardware, datasets_dir, out_dir, coverage=coverage,
                                    cv=not quick)


def datasheet_for(hardware: str, idle_w: float | None = None):
    """The :class:`~predictor.engine.physics.Datasheet` of ``hardware`` from the catalogue."""
    from predictor.carbon.hardware import lookup
    from predictor.engine.physics import Datasheet

    spec = lookup(hardware)
    try:
        return Datasheet.from_spec(spec, idle_w=idle_w or getattr(spec, "measured_idle_w", None))
    except ValueError as exc:
        raise ExanteError(f"cannot fit {hardware!r}: {exc}") from None


def fit_whole_model_hardware(hardware: str, datasets_dir: str | os.PathLike = "datasets",
                             out_dir: str | os.PathLike | None = None, *,
                             coverage: float = 0.9, cv: bool = True) -> dict:
    """Fit the physics model (:mod:`predictor.engine.physics`) on the whole-model rows of
    ``datasets_dir/hardware`` (``models.csv`` + ``workloads.jsonl``), with datasheet priors
    from the catalogue; intervals from leave-one-family-out residuals (``cv=False``: in-sample,
    for quick checks).  Saves the artifact and returns its manifest (plus ``path``)."""
    t0 = time.perf_counter()
    folder = Path(datasets_dir) / hardware
    data = load_whole_model_data(folder)
    models_raw = schema.model_table(folder).read_frame()
    measured, why = _measured(models_raw)
    target_dir = _target_dir(hardware, out_dir, measured, why)
    idle = float(np.nanmean(data.frame["idle_power_w"])) if data.frame["idle_power_w"].notna().any() \
        else None
    ds = datasheet_for(hardware, idle)
    lws, ly, lids = layer_row_workloads(folder)
    logger.info("fitting %s: %d workloads, %d layer rows from %s (%s)", hardware,
                len(data.frame), len(lws), folder, "leave-one-family-out" if cv else "in-sample")
    layer_rows = None
    if lws:     # per-layer rows: always in training, together weighing at most the model rows
        layer_rows = (lws, ly, min(1.0, len(data.frame) / len(lws)))
    ch, report = fit_calibrated(hardware, data, ds, coverage=coverage, cv=cv, extra=layer_rows)
    res = report["residuals"]
    cvm = {}
    for name, sub in [("all", res)] + [(m, res[res["mode"] == m]) for m in sorted(set(res["mode"]))]:
        cvm[name] = {"time": metrics(sub["time_s"], sub["time_pred_s"]),
                     "energy": metrics(sub["energy_j"], sub["energy_pred_j"])}
    inside = {}
    for target, col, pred in (("time", "time_s", "time_pred_s"), ("energy", "energy_j", "energy_pred_j")):
        hw = np.where(res["power_w"] > 250, ch.halfwidth.get((target, "gpu"), ch.halfwidth[(target, "all")]),
                      ch.halfwidth.get((target, "host"), ch.halfwidth[(target, "all")]))
        r = np.abs(np.log(res[pred] / res[col]))
        inside[target] = float(np.mean(r <= hw) * 100)
    files = [p for p in (folder / schema.MODEL_FILE, workload_file(folder),
                         folder / schema.LAYER_FILE) if p is not None and p.is_file()]
    extra = {
        "measured": measured, "not_measured_reason": why or None,
        "method": "physics model of eager PyTorch (host events + roofline GPU time + power), "
                  "fitted on whole-model rows with datasheet priors",
        "dataset": {"folder": str(folder), "n_workloads": int(len(data.frame)),
                    "n_layer_rows": int(len(lws)),
                    "n_session_rows": int(len(data.sessions)),
                    "sweeps": sorted(set(models_raw.get("sweep_id", pd.Series(dtype=object))
                                         .dropna().astype(str))),
                    "gpu_names": sorted(set(models_raw.get("gpu_name", pd.Series(dtype=object))
                                            .dropna().astype(str)))},
        "datasheet": ds.__dict__, "params": ch.model.params(), "domain": ch.domain,
        "interval": {"coverage": coverage, "halfwidth_log": report["halfwidth"],
                     "source": report["cv"] + " residuals (split-conformal) combined with the "
                               "cross-session spread",
                     "oof_inside_pct": inside},
        "fit_seconds": round(time.perf_counter() - t0, 1),
    }
    manifest = save_artifact(ch, hardware, target_dir, cv_scores={"scheme": report["cv"], **cvm},
                             training_data_digest=dataset_digest(files), extra=extra)
    manifest["path"] = str(target_dir / manifest["artifact"])
    return manifest
