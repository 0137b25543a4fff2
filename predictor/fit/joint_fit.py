"""Fit the joint multi-GPU model on every ``datasets/<gpu>/`` folder and write artifacts.

``fit_joint_artifacts`` (``exante fit --joint``):

1. the H100 reference set is fitted alone first (:func:`predictor.fit.calibrated_fit.fit_calibrated`,
   leave-one-family-out): its parameters start the joint fit and its out-of-family residuals
   give the H100 interval;
2. :class:`predictor.engine.joint.JointPhysicsModel` is fitted on the rows of every folder (each GPU x
   source the same total weight; the time of epoch-derived rows -- Zeus -- weighted
   :data:`EPOCH_TIME_SHARE`, their energy fully);
3. every GPU with rows but the H100 gets a ``<gpu>.joblib``
   :class:`~predictor.engine.calibrated.CalibratedHardware` with its own parameters (shared + its
   corrections); interval: the H100's half-widths combined in quadrature with the GPU's own
   in-sample residual quantile (labelled).  The H100 ships its single-GPU fit of step 1
   (held out, it is better on the H100 than the joint model's H100: :func:`_save_reference`);
4. ``joint.json`` keeps the shared model: any other catalogue GPU is predicted from it by
   :func:`predictor.engine.transfer.transferred_artifact` (datasheet-driven parameters; interval
   from the leave-one-GPU-out residuals of ``experiments/multigpu/run.py`` when given).

Every artifact records the digest of the dataset files it was fitted on (the H100: its own
folder's; the others and ``joint.json``: every folder's).
"""

from __future__ import annotations

import json
import logging
import math
import time
from pathlib import Path
from typing import Any

import numpy as np

from predictor.artifacts import _write_atomic, dataset_digest, package_artifact_dir, save_artifact
from predictor.engine.calibrated import CalibratedHardware, conformal_halfwidth, regime_of
from predictor.engine.joint import JointPhysicsModel, source_weights
from predictor.engine.joint_transfer import JOINT_FILE, load_joint
from predictor.engine.lowering import lower
from predictor.fit.calibrated_fit import fit_calibrated
from predictor.fit.datasets import WORKLOAD_FILE, load_whole_model_data
from profiling.dataset import schema
from profiling.errors import ExanteError

__all__ = ["fit_joint_artifacts", "JOINT_FILE", "EPOCH_TIME_SHARE", "load_joint"]

log = logging.getLogger(__name__)

REFERENCE = "h100"
#: time-residual weight of epoch-derived rows (per-step time of a whole training epoch with
#: data loading and evaluation: their energy/power is informative, their step time less so)
EPOCH_TIME_SHARE = {"zeus": 0.05}


def _folders(datasets_dir: Path) -> list[Path]:
    out = sorted(p for p in Path(datasets_dir).iterdir()
                 if p.is_dir() and (p / schema.MODEL_FILE).is_file()
                 and any(p.glob(WORKLOAD_FILE + "*")))
    if not any(p.name == REFERENCE for p in out):
        raise ExanteError(f"no {REFERENCE} rows in {datasets_dir}/{REFERENCE}/: the joint fit "
                          "starts from the H100 reference set")
    return out


def _files(folders) -> list[Path]:
    files = []
    for p in folders:
        files += [f for f in (p / schema.MODEL_FILE, *sorted(p.glob(WORKLOAD_FILE + "*")))
                  if f.is_file()]
    return files


def _halfwidth(base: dict, r: np.ndarray, gpu: np.ndarray, has_e: np.ndarray,
               coverage: float) -> dict:
    """Per (target, regime): hypot(base, in-sample quantile of |log residuals|)."""
    out = {}
    for j, target in enumerate(("time", "energy")):
        for regime, m in (("all", np.ones(len(r), bool)), ("gpu", gpu), ("host", ~gpu)):
            b = base.get((target, regime), base[(target, "all")])
            mm = m & (has_e if j == 1 else True)
            q = conformal_halfwidth(np.abs(r[mm, j]), coverage) if mm.sum() >= 10 else None
            if q is None or not math.isfinite(q):
                q = 0.3 if j == 1 else conformal_halfwidth(np.abs(r[m, 0]), coverage) \
                    if m.sum() >= 10 else 0.3
            out[(target, regime)] = float(math.hypot(b, q))
    return out


def fit_joint_artifacts(datasets_dir="datasets", out_dir=None, *, coverage: float = 0.9,
                        logo_residuals=None, max_nfev: int = 80) -> dict:
    """Fit and write ``<gpu>.joblib/.json`` for every GPU with rows and ``joint.json`` into
    ``out_dir`` (None: the package's folder -- the maintainer's refit).  ``logo_residuals``:
    a ``logo_residuals.json`` of ``experiments/multigpu/run.py`` (interval of GPUs with no
    rows).  Returns a summary."""
    from predictor.fit.hardware_fit import datasheet_for

    t0 = time.perf_counter()
    out = Path(out_dir) if out_dir is not None else package_artifact_dir()
    out.mkdir(parents=True, exist_ok=True)
    folders = _folders(Path(datasets_dir))
    files = _files(folders)
    digest = dataset_digest(files)
    datas = {p.name: load_whole_model_data(p) for p in folders}
    ref_data = datas[REFERENCE]
    idle = float(np.nanmean(ref_data.frame["idle_power_w"]))
    ref_ds = datasheet_for(REFERENCE, idle)
    ch_ref, report = fit_calibrated(REFERENCE, ref_data, ref_ds, coverage=coverage, cv=True)
    ws, ys, gpus, srcs = [], [], [], []
    for name, d in datas.items():
        f = d.frame
        ws += list(d.workloads)
        ys.append(np.column_stack([f["time_s"].to_numpy(float), f["energy_j"].to_numpy(float)]))
        hw = f["hardware"].astype(str).to_numpy(object) if "hardware" in f else \
            np.full(len(f), name, dtype=object)
        gpus.append(hw)
        srcs.append(f["source"].astype(str).to_numpy(object) if "source" in f
                    else np.full(len(f), name, dtype=object))
    y, gpu, src = np.concatenate(ys), np.concatenate(gpus), np.concatenate(srcs)
    sheets = {g: (ref_ds if g == REFERENCE else datasheet_for(g, None)) for g in set(gpu)}
    w = source_weights(gpu, src)
    wt = w * np.array([next((v for k, v in EPOCH_TIME_SHARE.items() if k in s.lower()), 1.0)
                       for s in src.astype(str)])
    lowered = [lower(x) for x in ws]
    jm = JointPhysicsModel(ref_ds, sheets, init=ch_ref.model.theta_, max_nfev=max_nfev)
    jm.fit(lowered, y, gpu=gpu, sample_weight=np.column_stack([wt, w]))
    logo = None
    if logo_residuals is not None:
        rr = np.asarray(json.loads(Path(logo_residuals).read_text())["abs_log_resid"], float)
        logo = conformal_halfwidth(rr, coverage)
    summary: dict[str, Any] = {"gpus": {}, "training_data_digest": digest,
                               "files": [str(f) for f in files]}
    for g in sorted(set(gpu)):
        idx = np.flatnonzero(gpu == g)
        if g == REFERENCE:
            summary["gpus"][g] = _save_reference(ch_ref, report, datas[g], folders, out)
            continue
        pm = jm.physics_model(g)
        t, e, parts = pm.predict_parts([lowered[i] for i in idx])
        r = np.log(np.column_stack([t, e]) / np.where(np.isfinite(y[idx]), y[idx], np.nan))
        has_e = np.isfinite(y[idx, 1])
        reg = regime_of(parts["time_host_s"], parts["time_gpu_s"]) == "gpu"
        half = dict(ch_ref.halfwidth) if g == REFERENCE else \
            _halfwidth(ch_ref.halfwidth, r, reg, has_e, coverage)
        dom = _domain(datas, gpu, g, ch_ref)
        energy = jm.energy_source(g)
        ch = CalibratedHardware(g, pm, coverage, half, dom, info={
            "cv": report["cv"] if g == REFERENCE else "in-sample on this GPU, in quadrature "
                  "with the H100 leave-one-family-out half-widths",
            "method": "joint multi-GPU physics model (predictor.engine.joint)",
            "energy_source": energy, "datasheet": pm.datasheet.__dict__})
        ape = np.abs(np.exp(r) - 1) * 100
        man = save_artifact(ch, g, out, training_data_digest=digest, extra={
            "measured": True, "method": "joint multi-GPU physics model (predictor.engine.joint): "
            "shared parameters on all GPUs' rows + this GPU's corrections",
            "energy_source": energy, "joint_gpus": jm.gpus_,
            "in_sample": {"time_mape_pct": float(np.nanmean(ape[:, 0])),
                          "energy_mape_pct": float(np.nanmean(ape[:, 1])) if has_e.any()
                          else None, "n": int(len(idx))},
            "interval": {"coverage": coverage,
                         "halfwidth_log": {f"{k[0]}/{k[1]}": v for k, v in half.items()}}})
        summary["gpus"][g] = {"artifact": man["artifact"], "n": int(len(idx)),
                              "time_mape_pct_in_sample": float(np.nanmean(ape[:, 0]))}
    joint = {"model": jm.to_dict(), "training_data_digest": digest,
             "reference_halfwidth": {f"{k[0]}/{k[1]}": v for k, v in ch_ref.halfwidth.items()},
             "reference_domain": _domain(datas, gpu, None, ch_ref), "coverage": coverage,
             "transfer_halfwidth": ({"gpu": logo, "host": max(logo, 0.55)} if logo else None),
             "transfer_halfwidth_source": ("leave-one-GPU-out residuals, "
                                           "experiments/multigpu/run.py" if logo else None),
             "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    _write_atomic(out / JOINT_FILE, (json.dumps(joint, indent=1, sort_keys=True, default=float)
                                     + "\n").encode("utf-8"))
    summary["seconds"] = round(time.perf_counter() - t0, 1)
    summary["joint"] = str(out / JOINT_FILE)
    return summary


def _save_reference(ch_ref, report, data, folders, out) -> dict:
    """The H100 ships as its own single-GPU fit: held out five folds of families, the joint
    model's H100 is 9.8 / 9.7 % (time / energy MAPE) against the single fit's 8.5 / 8.4 %
    (experiments/multigpu/h100_heldout.py), so the joint fit serves the other GPUs only."""
    folder = next(p for p in folders if p.name == REFERENCE)
    files = [f for f in (folder / schema.MODEL_FILE, *sorted(folder.glob(WORKLOAD_FILE + "*")),
                         folder / schema.LAYER_FILE) if f.is_file()]
    res = report["residuals"]
    ape_t = np.abs(res["time_pred_s"] / res["time_s"] - 1) * 100
    ape_e = np.abs(res["energy_pred_j"] / res["energy_j"] - 1) * 100
    ch_ref.info["method"] = "single-GPU physics model (predictor.engine.physics) on the H100 rows"
    man = save_artifact(ch_ref, REFERENCE, out, training_data_digest=dataset_digest(files),
                        cv_scores={"scheme": report["cv"],
                                   "all": {"time_mape_pct": float(ape_t.mean()),
                                           "energy_mape_pct": float(ape_e.mean())}},
                        extra={"measured": True, "method": ch_ref.info["method"],
                               "datasheet": ch_ref.datasheet.__dict__,
                               "params": ch_ref.model.params(), "domain": ch_ref.domain,
                               "interval": {"coverage": ch_ref.coverage, "halfwidth_log": {
                                   f"{k[0]}/{k[1]}": v for k, v in ch_ref.halfwidth.items()}},
                               "dataset": {"folder": str(folder),
                                           "n_workloads": int(len(data.frame))}})
    return {"artifact": man["artifact"], "n": int(len(data.frame)),
            "time_mape_pct_lofo": float(ape_t.mean()),
            "energy_mape_pct_lofo": float(ape_e.mean())}


def _domain(datas: dict, gpu, g: str | None, ch_ref) -> dict:
    """The fitted domain of GPU ``g``: its own rows' modes, dtypes, batches; families of all.
    ``g=None``: of every GPU's rows together -- the domain of the joint model, which serves
    the GPUs never measured (its fp16 and batches up to 1,024 come from the timm GPUs)."""
    import pandas as pd

    f = pd.concat([d.frame for d in datas.values()], ignore_index=True)
    hw = f["hardware"].astype(str) if "hardware" in f else pd.Series([""] * len(f))
    mine = f if g is None else f[hw.to_numpy() == g]
    if mine.empty:
        return dict(ch_ref.domain)
    return {**ch_ref.domain, "modes": sorted(set(mine["mode"])),
            "dtypes": sorted(set(mine["dtype"])),
            "batch_range": (int(mine["batch"].min()), int(mine["batch"].max())),
            "n_workloads": int(len(mine))}
