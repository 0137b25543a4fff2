"""``fit_hardware``: datasets/<hw>/*.csv -> predictor/artifacts/<hw>.joblib + manifest.

Steps:

1. read ``layers.csv`` (required) and ``models.csv`` (optional but strongly recommended:
   without whole-model rows there are no launch-gap/fusion terms and the intervals come
   from layer-level residuals) with the :mod:`profiling.dataset.schema` layout;
2. compare regressor families per target (time, energy) by grouped cross-validation on the
   layer rows (groups: layer type + hyper-parameters, so shapes/batches of one config never
   straddle folds) and pick the family with the lowest MAPE for each target;
3. fit the chosen per-layer regressors, the optimizer-step model, the model-level composer
   and the conformal intervals (:func:`predictor.fit.regression.build_hardware_model`);
4. save the artifact and its manifest (sha256, versions, training-data digest, CV scores).

Safety: a dataset that is not a GPU measurement (synthetic rows or rows from the labelled
*estimated* meter) can only be fitted into an explicit ``out_dir``, never into the package's
artifact folder, so it cannot be shipped by accident.
"""

from __future__ import annotations

import os
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.model_selection import GroupKFold

from predictor.artifacts import (
    check_hardware_id,
    dataset_digest,
    package_artifact_dir,
    save_artifact,
)
from predictor.fit import regression as R
from predictor.fit.datasets import (
    WORKLOAD_FILE,
    attach_workloads,
    layer_row_workloads,
    load_whole_model_data,
)
from profiling.dataset import schema
from profiling.errors import ExanteError

__all__ = ["fit_hardware", "fit_whole_model_hardware", "read_dataset", "datasheet_for",
           "DEFAULT_FAMILIES"]

DEFAULT_FAMILIES = ("poly_lasso", "gbr", "rf")


def _no_data(hardware: str, folder: Path, what: str) -> ExanteError:
    return ExanteError(
        f"no usable dataset for hardware {hardware!r}: {what} in {folder}/; measure it on that "
        f"GPU first with `exante sweep <SWEEP> --out {folder} --hardware {hardware}` "
        f"(see `exante sweep --help`), then run `exante fit --hardware {hardware}`")


def read_dataset(hardware: str, datasets_dir: str | os.PathLike = "datasets"
                 ) -> tuple[pd.DataFrame, pd.DataFrame | None, list[Path]]:
    """(layers, models or None, files) of ``datasets_dir/hardware``; clear errors if absent."""
    folder = Path(datasets_dir) / hardware
    if not folder.is_dir():
        raise _no_data(hardware, folder, "the folder does not exist")
    lt, mt = schema.layer_table(folder), schema.model_table(folder)
    if not lt.exists():
        raise _no_data(hardware, folder, f"{schema.LAYER_FILE} is missing or empty")
    layers = lt.read_frame()
    if layers.empty:
        raise _no_data(hardware, folder, f"{schema.LAYER_FILE} has no rows")
    models = mt.read_frame() if mt.exists() else None
    if models is not None and models.empty:
        models = None
    files = [p for p in (folder / schema.LAYER_FILE, folder / schema.MODEL_FILE) if p.is_file()]
    return layers, models, files


def _measured(layers: pd.DataFrame) -> tuple[bool, str]:
    gpu = layers.get("gpu_name", pd.Series(dtype=object)).astype(str)
    if gpu.str.contains("SYNTHETIC", case=False).any():
        return False, "synthetic rows (test fixture)"
    mm = layers.get("meter_measured")
    if mm is not None:
        vals = mm.astype(str).str.lower()
        if vals.isin(["false", "0"]).any():
            return False, "rows from a non-measuring (estimated) meter"
    meter = layers.get("meter")
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
                 out_dir: str | os.PathLike | None = None, families=None, quick: bool = False,
                 *, coverage: float = 0.9, random_state: int = 0) -> dict:
    """Fit and save the predictor of ``hardware``; returns the manifest (plus ``path``).

    ``families``: candidate per-layer families (default ``("poly_lasso", "gbr", "rf")``;
    ``quick`` without explicit families compares only ``gbr``, with 3 folds and smaller
    ensembles).  ``out_dir`` defaults to the package's ``predictor/artifacts/``.
    """
    check_hardware_id(hardware)
    t0 = time.perf_counter()
    folder = Path(datasets_dir) / hardware
    if schema.model_table(folder).exists():
        rep = attach_workloads(folder)         # model rows measured without a workload yet
        if rep["skipped"]:
            warnings.warn(f"{len(rep['skipped'])} model rows of {folder} left out: their model "
                          "cannot be rebuilt here (" + "; ".join(
                              f"{k}: {v}" for k, v in list(rep["skipped"].items())[:3]) + ")",
                          UserWarning, stacklevel=2)
    if (folder / WORKLOAD_FILE).is_file():
        return fit_whole_model_hardware(hardware, datasets_dir, out_dir, coverage=coverage,
                                        cv=not quick)
    layers_raw, models_raw, files = read_dataset(hardware, datasets_dir)
    measured, why = _measured(layers_raw)
    target_dir = _target_dir(hardware, out_dir, measured, why)
    hw_col = layers_raw.get("hardware")
    if hw_col is not None:
        other = sorted(set(hw_col.dropna().astype(str)) - {hardware})
        if other:
            warnings.warn(f"datasets/{hardware} has rows labelled hardware {other}; fitting "
                          "them all as " + hardware, UserWarning, stacklevel=2)
    layers = R.clean_layers(layers_raw)
    if len(layers) < 10:
        raise _no_data(hardware, Path(datasets_dir) / hardware,
                       f"only {len(layers)} usable layer rows")
    models = R.clean_models(models_raw)

    fams = tuple(families) if families else (("gbr",) if quick else DEFAULT_FAMILIES)
    n_splits = 3 if quick else 5
    L = layers[R._cat(layers, "mode", "inference") != "train_step"].reset_index(drop=True)
    groups = R._config_groups(L)
    k = min(n_splits, len(np.unique(groups)))
    if k < 2:
        raise _no_data(hardware, Path(datasets_dir) / hardware,
                       "fewer than 2 distinct layer configurations")
    table = R.compare_families(L, groups, families=fams, cv=GroupKFold(n_splits=k),
                               quick=quick, random_state=random_state)
    chosen = {}
    for tgt in ("time", "energy"):
        sub = table[table["target"] == tgt].sort_values(["mape", "median_ape"])
        chosen[tgt] = str(sub.iloc[0]["family"])
    hm, report = R.build_hardware_model(
        layers, models, hardware=hardware, time_base=chosen["time"],
        energy_base=chosen["energy"], coverage=coverage, n_splits=n_splits, quick=quick,
        random_state=random_state)
    cv_scores = {
        "layer_families": table.to_dict(orient="records"),
        "chosen": chosen,
        "selection": "lowest layer-level MAPE per target (grouped CV by layer config)",
        "model": report.get("cv", {}),
    }
    extra = {
        "measured": measured,
        "not_measured_reason": why or None,
        "dataset": {
            "folder": str(Path(datasets_dir) / hardware),
            "n_layer_rows": int(len(layers)), "n_model_rows": int(0 if models is None else len(models)),
            "n_model_rows_excluded": int((0 if models_raw is None else len(models_raw))
                                         - (0 if models is None else len(models))),
            "model_rows_excluded_because": "not eager, missing/non-positive measurement, or "
                                           "containing layers without a feature function",
            "gpu_names": sorted(set(layers_raw.get("gpu_name", pd.Series(dtype=object))
                                    .dropna().astype(str))),
            "sessions": sorted(set(layers_raw.get("session_id", pd.Series(dtype=object))
                                   .dropna().astype(str)))[:50],
            "dates": _date_range(layers_raw),
        },
        "method": "per-layer regression + model-level terms",
        "physics": {"active_idle_power_w": report["active_idle_power_w"],
                    "active_idle_method": report["active_idle_method"],
                    "idle_power_w": report["idle_power_w"],
                    "host_floor_s": report["host_floor_s"]},
        "composer": report.get("composer"),
        "composer_note": report.get("composer_note"),
        "uncertainty": report.get("uncertainty"),
        "interval_source": report.get("interval_source"),
        "modes": report.get("modes"), "optimizers": report.get("optimizers"),
        "layer_types": report.get("layer_types"),
        "per_type_models": report.get("per_type_models"),
        "fit_seconds": round(time.perf_counter() - t0, 1),
        "quick": bool(quick),
    }
    manifest = save_artifact(hm, hardware, target_dir, cv_scores=cv_scores,
                             training_data_digest=dataset_digest(files), extra=extra)
    manifest["path"] = str(target_dir / manifest["artifact"])
    return manifest


def _date_range(df: pd.DataFrame) -> list | None:
    d = df.get("date")
    if d is None:
        return None
    d = d.dropna().astype(str)
    return [d.min(), d.max()] if len(d) else None


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
    from predictor.engine.calibrated import fit_calibrated, metrics

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
    files = [p for p in (folder / schema.MODEL_FILE, folder / WORKLOAD_FILE,
                         folder / schema.LAYER_FILE) if p.is_file()]
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
