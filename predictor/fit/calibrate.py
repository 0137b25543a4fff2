"""Few-shot calibration of a (transferred) physics model to a handful of runs on the user's GPU.

``exante calibrate --hardware NAME --runs FILE --out DIR`` (or :func:`calibrate`): the model of
``NAME`` -- its own artifact, or the datasheet transfer of a measured GPU's model
(:mod:`predictor.engine.transfer`) -- is adapted to a few whole-model measurements by fitting only
:data:`SCALES`, five multiplicative factors in log space, each with a Gaussian prior centred
on 1 (the transferred value) with log-sigma :data:`PRIOR_SIGMA` (0.3), against each run's
log error of time and energy with log-sigma :data:`DATA_SIGMA` (0.08, the model's typical error
on a measured GPU: leave-one-family-out median ~7 % on the H100):

* ``matmul`` -- the matmul and attention efficiencies (``eff_mm_fp32``, ``eff_mm_bf16``,
  ``eff_attn``): what cuBLAS attains on this GPU relative to the datasheet peak;
* ``gpu``   -- the other GPU efficiencies (convolutions, grouped convolutions, bandwidth);
* ``host``  -- every host cost ``h_*_s`` (the user's CPU, Python and driver);
* ``power`` -- the busy powers ``p_*_w`` and the energy per byte ``e_byte_j``;
* ``idle``  -- the active-idle power ``p0_w``.

Runs (time and energy of a number of steps) are a list of :class:`Run`: one or more
``(Workload, steps)`` parts with the measured total ``time_s`` and ``energy_j`` (total board
energy).  :func:`runs_from_csv` reads a CSV of measured workloads with columns ``model``
(a MODEL_REF), ``input`` (per-sample shape, e.g. ``3x224x224``), ``batch``, ``mode``,
``dtype``, ``optimizer``, ``time_s``, ``energy_j`` (per call) and optionally ``steps``; an
``exante profile`` model table (``models.csv`` with ``workloads.jsonl`` beside it) is read by
:func:`runs_from_profile`.

Interval of the calibrated model: the source model's conformal half-width combined in
quadrature with the largest leave-one-run-out |log error| of the calibration (refit without
that run, predict it; the split-conformal quantile once there are >= 10 runs); with one run,
the transfer term is kept.  The artifact is written to a user folder (never the package's):
point ``EXANTE_ARTIFACT_DIR`` at it to predict with it.
"""

from __future__ import annotations

import csv
import json
import logging
import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from scipy.optimize import least_squares

from predictor.artifacts import package_artifact_dir, save_artifact
from predictor.engine.calibrated import CalibratedHardware, conformal_halfwidth
from predictor.engine.lowering import lower
from predictor.engine.physics import PARAMS, PhysicsModel, evaluate, stack
from predictor.engine.predict import DTYPES, MODES, OPTIMIZERS, capture_workload
from predictor.engine.transfer import TransferredHardware, transferred_artifact
from predictor.fit.datasets import WORKLOAD_FILE, load_whole_model_data
from predictor.fit.run_checks import CSV_COLUMNS, check_run_values
from profiling.dataset import schema
from profiling.errors import ExanteError
from profiling.model_refs import check_batch, parse_input_shape, resolve_model_on_meta
from profiling.ref_policy import check_data_model_ref

__all__ = ["Run", "SCALES", "PRIOR_SIGMA", "calibrate", "fit_scales", "runs_from_csv",
           "runs_from_profile", "predict_runs", "CSV_COLUMNS", "run_regimes",
           "calibration_advice", "calibrate_to_folder", "worse_warnings"]

log = logging.getLogger(__name__)

SCALES = ("matmul", "gpu", "host", "power", "idle")
PRIOR_SIGMA = {"matmul": 0.3, "gpu": 0.3, "host": 0.3, "power": 0.3, "idle": 0.3}
#: log-sigma of one run's residual (the physics model's own error on a measured GPU, ~8 %)
DATA_SIGMA = 0.08

_MATMUL = ("eff_mm_fp32", "eff_mm_bf16", "eff_attn")
_GROUP = {"matmul": list(_MATMUL),
          "gpu": [p for p in PARAMS if p.startswith("eff_") and p not in _MATMUL],
          "host": [p for p in PARAMS if p.startswith("h_")],
          "power": ["p_fp32_w", "p_tf32_w", "p_bf16_w", "p_mem_w", "e_byte_j"],
          "idle": ["p0_w"]}


@dataclass
class Run:
    """One measurement: ``parts`` = [(Workload or LoweredWorkload, calls)], totals measured."""

    parts: list
    time_s: float
    energy_j: float
    label: str = ""


def _apply(theta: np.ndarray, z: np.ndarray) -> np.ndarray:
    out = theta.copy()
    idx = {p: i for i, p in enumerate(PARAMS)}
    for s, v in zip(SCALES, z, strict=True):
        for p in _GROUP[s]:
            out[idx[p]] *= math.exp(v)
    return out


class _Stacked:
    def __init__(self, runs):
        lowered, owner, mult = [], [], []
        for i, r in enumerate(runs):
            for w, n in r.parts:
                lowered.append(w if not hasattr(w, "layers") else lower(w))
                owner.append(i)
                mult.append(float(n))
        self.s = stack(lowered)
        self.owner = np.array(owner, int)
        self.mult = np.array(mult, float)
        self.n = len(runs)

    def totals(self, theta, ds):
        t, e = evaluate(theta, self.s, ds)
        return (np.bincount(self.owner, t * self.mult, minlength=self.n),
                np.bincount(self.owner, e * self.mult, minlength=self.n))

    def host_gpu(self, theta, ds):
        """(host seconds, GPU seconds) of each run."""
        _, _, parts = evaluate(theta, self.s, ds, parts=True)
        return (np.bincount(self.owner, parts["time_host_s"] * self.mult, minlength=self.n),
                np.bincount(self.owner, parts["time_gpu_s"] * self.mult, minlength=self.n))


def run_regimes(ch: CalibratedHardware, runs) -> list[float]:
    """Host time / GPU time of each run under ``ch`` (> 1: host-bound, < 1: GPU-bound)."""
    h, g = _Stacked(runs).host_gpu(ch.model.theta_, ch.datasheet)
    return (h / np.maximum(g, 1e-15)).tolist()


def calibration_advice(ratios) -> list[str]:
    """What the runs leave undetermined: the host and active-idle scales need a host-bound
    run (small batch), the GPU efficiencies and busy power a GPU-bound one (large batch)."""
    out = []
    if not any(r >= 1.0 for r in ratios):
        out.append("no host-bound run (host time >= GPU time): the host and active-idle "
                   "scales rest on the prior; add a small-batch run (e.g. batch 1-8)")
    if not any(r <= 0.5 for r in ratios):
        out.append("no GPU-bound run (GPU time >= 2x host time): the GPU efficiency and "
                   "busy-power scales rest on the prior; add a large-batch run")
    return out


def predict_runs(ch: CalibratedHardware, runs, scales: dict | None = None) -> np.ndarray:
    """(n, 2) predicted total (time_s, energy_j) of ``runs`` (optionally with ``scales``)."""
    z = np.array([(scales or {}).get(s, 0.0) for s in SCALES], float)
    st = _Stacked(runs)
    t, e = st.totals(_apply(ch.model.theta_, z), ch.datasheet)
    return np.column_stack([t, e])


def _check_runs(runs) -> None:
    if not runs:
        raise ExanteError("calibration needs at least one measured run")
    for r in runs:
        check_run_values(r.time_s, r.energy_j, r.label or "?")


def fit_scales(ch: CalibratedHardware, runs, *, sigma: dict | None = None,
               energy_weight: float = 1.0) -> dict:
    """Log scale factors (``SCALES``) that bring ``ch`` closest to ``runs`` (log error of time
    and energy, least squares) under the Gaussian prior ``N(0, sigma)``."""
    _check_runs(runs)
    sig = np.array([(sigma or PRIOR_SIGMA)[s] for s in SCALES], float)
    st = _Stacked(runs)
    y = np.log(np.array([[r.time_s, r.energy_j] for r in runs], float))
    theta, ds = ch.model.theta_, ch.datasheet
    ew = math.sqrt(energy_weight)

    def resid(z):
        t, e = st.totals(_apply(theta, z), ds)
        return np.concatenate([(np.log(np.maximum(t, 1e-15)) - y[:, 0]) / DATA_SIGMA,
                               ew * (np.log(np.maximum(e, 1e-15)) - y[:, 1]) / DATA_SIGMA,
                               z / sig])

    sol = least_squares(resid, np.zeros(len(SCALES)), method="trf", max_nfev=200)
    return {s: float(v) for s, v in zip(SCALES, sol.x, strict=True)}


def calibrate(ch: CalibratedHardware, runs, *, sigma: dict | None = None) -> TransferredHardware:
    """``ch`` with :data:`SCALES` fitted to ``runs`` (each a measured total ``time_s`` in s
    and board ``energy_j`` in J) and its interval re-derived (module doc)."""
    z = fit_scales(ch, runs, sigma=sigma)
    pred = predict_runs(ch, runs, z)
    y = np.array([[r.time_s, r.energy_j] for r in runs], float)
    resid_in = np.abs(np.log(pred / y))
    loo_rows = []
    if len(runs) >= 2:
        for i in range(len(runs)):
            rest = [r for j, r in enumerate(runs) if j != i]
            zi = fit_scales(ch, rest, sigma=sigma)
            loo_rows.append(np.abs(np.log(predict_runs(ch, [runs[i]], zi)[0] / y[i])))
    loo = np.array(loo_rows).reshape(-1, 2)
    model = PhysicsModel(ch.datasheet, **{k: v for k, v in ch.model.get_params().items()
                                          if k != "datasheet"})
    model.theta_ = _apply(ch.model.theta_, np.array([z[s] for s in SCALES]))
    model.n_fit_, model.cost_, model.converged_ = len(runs), float("nan"), True
    source = getattr(ch, "source", "") or ch.hardware
    if len(loo):
        q = conformal_halfwidth if len(loo) >= 10 else (lambda r, c: float(np.max(r)))
        extra = max(q(loo[:, 0], ch.coverage), q(loo[:, 1], ch.coverage))
        widen = {"gpu": extra, "host": extra}
        how = (f"leave-one-run-out |log error| {'quantile' if len(loo) >= 10 else 'maximum'} "
               f"{extra:.3f} over {len(runs)} runs")
    else:
        widen = dict(getattr(ch, "widen", {"gpu": 0.5, "host": 0.55}))
        how = "one run: the transfer's half-width is kept"
    label = (f"calibrated on {len(runs)} measured run(s) of {ch.hardware} (few-shot scales "
             + ", ".join(f"{s} x{math.exp(v):.3g}" for s, v in z.items())
             + f") from {'a datasheet transfer of ' + source if isinstance(ch, TransferredHardware) else source}"
             f"; interval: {how}, in quadrature")
    ratios = run_regimes(ch, runs)
    info = {**ch.info, "calibration": {"scales_log": z, "n_runs": len(runs),
                                       "host_over_gpu": ratios,
                                       "advice": calibration_advice(ratios),
                                       "in_sample_abs_log_error": resid_in.tolist(),
                                       "loo_abs_log_error": loo.tolist(), "interval": how}}
    return TransferredHardware(ch.hardware, model, ch.coverage, dict(ch.halfwidth),
                               dict(ch.domain), info, source=source, widen=widen, label=label,
                               dtype_notes=dict(getattr(ch, "dtype_notes", {})))


# ------------------------------------------------------------------ reading runs
def _float(row: dict, key: str, where: str) -> float:
    try:
        v = float(row[key])
    except (KeyError, TypeError, ValueError):
        raise ExanteError(f"{where}: column {key!r} must be a number, got "
                          f"{row.get(key)!r}") from None
    return v


def _run_from_fields(ref, shape, batch, mode, dtype, opt, t, e, where, models) -> Run:
    mode, dtype, opt = mode or "train_step", dtype or "fp32", opt or None
    if mode not in MODES or dtype not in DTYPES or (opt and opt not in OPTIMIZERS):
        raise ExanteError(f"{where}: mode/dtype/optimizer {mode!r}/{dtype!r}/{opt!r}; accepted: "
                          f"{'|'.join(MODES)}, {'|'.join(DTYPES)}, {'|'.join(OPTIMIZERS)} or empty")
    batch = check_batch(batch)
    if ref not in models:
        try:
            models[ref] = resolve_model_on_meta(ref)
        except ExanteError as exc:
            raise ExanteError(f"{where}: {exc}") from None
    w = capture_workload(models[ref], torch.empty((batch, *shape), device="meta"), mode, dtype,
                         opt if mode == "train_step" else None)
    return Run([(w, 1.0)], t, e, label=f"{ref} b{batch} {mode} {dtype}")


def runs_from_csv(path: str | os.PathLike) -> list[Run]:
    """Runs from a CSV of measured workloads (columns :data:`CSV_COLUMNS`; ``time_s`` and
    ``energy_j`` per call of the whole batch, ``input`` the per-sample shape)."""
    p = Path(path)
    if not p.is_file():
        raise ExanteError(f"no such file: {p} (expected a CSV with columns "
                          f"{', '.join(CSV_COLUMNS)})")
    try:
        with p.open(newline="", encoding="utf-8") as f:
            rows = list(csv.DictReader(f))
    except (UnicodeDecodeError, csv.Error) as exc:
        raise ExanteError(f"cannot read {p} as a CSV of measured runs ({type(exc).__name__}: "
                          f"{str(exc)[:80]}); expected UTF-8 text with columns "
                          f"{', '.join(CSV_COLUMNS)}") from None
    if not rows:
        raise ExanteError(f"{p} has no rows")
    missing = [c for c in CSV_COLUMNS if c not in rows[0]]
    if missing:
        raise ExanteError(f"{p} lacks column(s) {', '.join(missing)}; expected "
                          f"{', '.join(CSV_COLUMNS)}")
    runs: list[Run] = []
    models: dict = {}
    for i, r in enumerate(rows, start=2):
        where = f"{p.name} line {i}"
        # a model the file names may not run code (file.py:f, package.module:f)
        check_data_model_ref(r["model"].strip(), f"from a runs file ({where})",
                             "a runs file names zoo or generator models only; for your own "
                             "model, measure it with `exante profile` and pass that folder")
        runs.append(_run_from_fields(
            r["model"].strip(), parse_input_shape(r["input"]), int(_float(r, "batch", where)),
            r["mode"].strip(), r["dtype"].strip(), r["optimizer"].strip(),
            _float(r, "time_s", where), _float(r, "energy_j", where), where, models))
    _check_runs(runs)
    return runs


def runs_from_profile(folder: str | os.PathLike) -> list[Run]:
    """Runs from an ``exante profile --out``/``sweep`` folder: ``workloads.jsonl`` beside
    ``models.csv`` when present, otherwise each eager row rebuilt from its ``model_ref``."""
    folder = Path(folder)
    if (folder / WORKLOAD_FILE).is_file():
        data = load_whole_model_data(folder)
        return [Run([(w, 1.0)], float(t), float(e), label=str(k))
                for w, (t, e), k in zip(data.workloads, data.y, data.frame["key"], strict=True)]
    table = schema.model_table(folder)
    if not table.exists():
        raise ExanteError(f"{folder} has no {schema.MODEL_FILE}; give a folder written by "
                          "`exante profile --out` or a CSV of measured workloads")
    frame = table.read_frame()
    runs: list[Run] = []
    models: dict = {}
    for i, r in frame.iterrows():
        if str(r.get("exec", "eager")) not in ("eager", "nan", ""):
            continue
        where = f"{schema.MODEL_FILE} row {i + 1}"
        shapes = r["input_shape"]
        shapes = json.loads(shapes) if isinstance(shapes, str) else shapes
        if not shapes or len(shapes) != 1:
            raise ExanteError(f"{where}: only single-input models can be rebuilt (input_shape "
                              f"{shapes!r})")
        opt = r.get("optimizer")
        runs.append(_run_from_fields(
            str(r["model_ref"]), tuple(int(d) for d in shapes[0][1:]), int(shapes[0][0]),
            str(r["mode"]), str(r["dtype"]), "" if opt is None or opt != opt else str(opt),
            float(r["time_s"]), float(r["energy_j"]), where, models))
    if not runs:
        raise ExanteError(f"{folder}/{schema.MODEL_FILE} has no eager whole-model rows")
    _check_runs(runs)
    return runs


# ------------------------------------------------------------------ calibrate to a folder
WORSE_BY_PCT = 0.5       # in-sample MAPE points: a smaller rise is rounding, not a warning


def worse_warnings(before: dict, after: dict) -> list[str]:
    """A line when calibration raised the in-sample MAPE (%) of time or energy by more than
    :data:`WORSE_BY_PCT` points; else ``[]``."""
    worse = [f"{k} {before[k]:.1f} % -> {after[k]:.1f} %" for k in ("time", "energy")
             if after[k] > before[k] + WORSE_BY_PCT]
    if not worse:
        return []
    return [f"calibration made the in-sample error worse ({', '.join(worse)}): the runs "
            "disagree with each other or with the model's form; measure more runs (one "
            "host-bound, one GPU-bound) or use the uncalibrated model"]


def calibrate_to_folder(hardware: str, runs_path: str | os.PathLike,
                        out: str | os.PathLike) -> dict:
    """Calibrate the model of ``hardware`` to the runs in ``runs_path`` (a CSV of measured
    workloads, or an ``exante profile`` folder) and write the artifact to the user folder
    ``out``; returns the report (scales, in-sample MAPE in % of time and energy before and
    after, leave-one-run-out |log error|, advice, warnings, the artifact path)."""
    out = Path(out)
    if os.path.abspath(out) == os.path.abspath(package_artifact_dir()):
        raise ExanteError("--out must be a folder of your own, not the package's artifact folder")
    src = Path(runs_path)
    runs = runs_from_profile(src) if src.is_dir() else runs_from_csv(src)
    log.info("calibrating %s on %d run(s) from %s", hardware, len(runs), src)
    art = transferred_artifact(hardware)
    base = art.model
    if not isinstance(base, CalibratedHardware):
        raise ExanteError(f"the {hardware} model is not a physics model; cannot calibrate it")
    before = predict_runs(base, runs)
    ch = calibrate(base, runs)
    after = predict_runs(ch, runs)
    y = np.array([[r.time_s, r.energy_j] for r in runs], float)

    def err(p: np.ndarray) -> list[float]:
        return (np.abs(p / y - 1) * 100).mean(axis=0).tolist()

    cal = ch.info["calibration"]
    report = {"hardware": ch.hardware, "n_runs": len(runs), "source": ch.source,
              "scales": {k: math.exp(v) for k, v in cal["scales_log"].items()},
              "in_sample_mape_pct_before": dict(zip(("time", "energy"), err(before),
                                                    strict=True)),
              "in_sample_mape_pct_after": dict(zip(("time", "energy"), err(after),
                                                   strict=True)),
              "loo_abs_log_error": cal["loo_abs_log_error"],
              "interval": cal["interval"],
              "host_over_gpu": cal["host_over_gpu"],
              "advice": cal["advice"]}
    report["warnings"] = worse_warnings(report["in_sample_mape_pct_before"],
                                        report["in_sample_mape_pct_after"])
    man = save_artifact(ch, ch.hardware, out, training_data_digest=None, extra={
        "measured": True, "method": "few-shot calibration (predictor.fit.calibrate) of "
        + art.manifest.get("id", "?"), "calibrated_from": art.manifest.get("id"),
        "calibration": report, "transferred_from": ch.source if ch.source != ch.hardware else None})
    report["artifact"] = str(out / man["artifact"])
    report["use"] = f"EXANTE_ARTIFACT_DIR={out} exante predict ... --hardware {ch.hardware}"
    return report
