"""Measured runs for few-shot calibration, checked before anything heavy loads (torch-free):
the CSV layout (:data:`CSV_COLUMNS`), one run's plausible values (:func:`check_run_values`:
``time_s`` in s per call, ``energy_j`` in J per call) and a runs file's header and values
(:func:`check_runs_file`).  Used by :mod:`predictor.fit.calibrate` and ``exante calibrate``."""

from __future__ import annotations

import csv
import math
import os

from profiling.errors import ExanteError

__all__ = ["CSV_COLUMNS", "MIN_RUN_TIME_S", "POWER_RANGE_W", "check_run_values",
           "check_runs_file"]

#: the columns of a CSV of measured runs
CSV_COLUMNS = ("model", "input", "batch", "mode", "dtype", "optimizer", "time_s", "energy_j")
MIN_RUN_TIME_S = 1e-6               # no whole-model GPU call is shorter (a launch takes µs)
POWER_RANGE_W = (1.0, 5000.0)       # energy_j / time_s of one GPU board: plausible average power


def check_run_values(time_s: float, energy_j: float, label: str) -> None:
    """One run's ``time_s`` (s per call) and ``energy_j`` (J per call): positive, finite, at
    least :data:`MIN_RUN_TIME_S`, and an average power within :data:`POWER_RANGE_W`."""
    if not (time_s > 0 and energy_j > 0 and math.isfinite(time_s) and math.isfinite(energy_j)):
        raise ExanteError(f"run {label}: time_s and energy_j must be positive finite numbers, "
                          f"got {time_s!r}, {energy_j!r}")
    if time_s < MIN_RUN_TIME_S:
        raise ExanteError(f"run {label}: time_s {time_s:.3g} s is implausible (accepted: >= "
                          f"{MIN_RUN_TIME_S:g} s per call of the whole batch)")
    power_w = energy_j / time_s
    if not POWER_RANGE_W[0] <= power_w <= POWER_RANGE_W[1]:
        raise ExanteError(f"run {label}: energy_j / time_s = {power_w:.3g} W is not a GPU's "
                          f"average power (accepted: {POWER_RANGE_W[0]:g} to "
                          f"{POWER_RANGE_W[1]:g} W); check the units (J per call, s per call)")


def check_runs_file(path: str) -> None:
    """What the runs CSV alone decides, before torch and scipy load: it exists, is UTF-8 CSV
    text with the columns of :data:`CSV_COLUMNS` and at least one row (a folder is read later,
    as an ``exante profile`` folder)."""
    if os.path.isdir(path):
        return
    if not os.path.isfile(path):
        raise ExanteError(f"no such file: {path} (expected a CSV with columns "
                          f"{', '.join(CSV_COLUMNS)}, or an `exante profile --out` folder)")
    try:
        with open(path, newline="", encoding="utf-8") as fh:
            reader = csv.DictReader(fh)
            rows = list(reader)
            header, first = reader.fieldnames or [], (rows[0] if rows else None)
    except (UnicodeDecodeError, csv.Error) as exc:
        raise ExanteError(f"cannot read {path} as a CSV of measured runs ({type(exc).__name__}: "
                          f"{str(exc)[:80]}); expected UTF-8 text with columns "
                          f"{', '.join(CSV_COLUMNS)}") from None
    missing = [c for c in CSV_COLUMNS if c not in header]
    if first is None:
        raise ExanteError(f"{path} has no rows")
    if missing:
        raise ExanteError(f"{path} lacks column(s) {', '.join(missing)}; expected "
                          f"{', '.join(CSV_COLUMNS)}")
    for i, row in enumerate(rows, start=2):
        try:
            t, e = float(row["time_s"]), float(row["energy_j"])
        except (TypeError, ValueError):
            raise ExanteError(f"{os.path.basename(path)} line {i}: time_s and energy_j must be "
                              f"numbers, got {row['time_s']!r}, {row['energy_j']!r}") from None
        check_run_values(t, e, f"{os.path.basename(path)} line {i}")
