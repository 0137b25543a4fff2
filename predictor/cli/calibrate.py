"""``exante calibrate`` argument parsing, kept light: ``--help`` imports nothing heavy (the
fitting code in :mod:`predictor.fit.calibrate` pulls in scipy, torch and the physics model)."""

from __future__ import annotations

# the CSV layout of measured runs (imported by predictor.fit.calibrate)
CSV_COLUMNS = ("model", "input", "batch", "mode", "dtype", "optimizer", "time_s", "energy_j")
MIN_RUN_TIME_S = 1e-6               # no whole-model GPU call is shorter (a launch takes µs)
POWER_RANGE_W = (1.0, 5000.0)       # energy_j / time_s of one GPU board: plausible average power


def check_run_values(time_s: float, energy_j: float, label: str) -> None:
    """One run's ``time_s`` (s per call) and ``energy_j`` (J per call): positive, finite, at
    least :data:`MIN_RUN_TIME_S`, and an average power within :data:`POWER_RANGE_W`."""
    import math

    from profiling.errors import ExanteError

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


def add_parser(sub) -> None:
    """Register ``exante calibrate``."""
    p = sub.add_parser(
        "calibrate", help="adapt a GPU's model to a few of your own measured runs",
        description="Fit five scale factors (matmul, gpu, host, power, idle) of the GPU's model "
        "(its own or the datasheet transfer) to a few measured whole-model runs.  Measure runs "
        "that span the regimes: one small batch (host-bound), one large batch of a conv or "
        "matmul network (GPU-bound), and one of the other kind; the report says when a regime "
        "is missing.")
    p.add_argument("--hardware", required=True, help="catalogue GPU (e.g. a100, l4, v100)")
    p.add_argument("--runs", required=True, metavar="FILE|DIR",
                   help="CSV of measured workloads (" + ", ".join(CSV_COLUMNS)
                        + "[, steps]) or an `exante profile` folder (models.csv + workloads.jsonl)")
    p.add_argument("--out", required=True, metavar="DIR", help="folder for the calibrated artifact")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_cmd)


def check_runs_file(path: str) -> None:
    """What the runs CSV alone decides, before torch and scipy load: it exists, is UTF-8 CSV
    text with the columns of :data:`CSV_COLUMNS` and at least one row (a folder is read later,
    as an ``exante profile`` folder)."""
    import csv
    import os

    from profiling.errors import ExanteError

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


def _cmd(args) -> int:
    from predictor.cli.checks import check_out_dir

    check_out_dir(args.out)                 # before anything heavy is imported or read
    check_runs_file(args.runs)
    from predictor.fit.calibrate import cmd_calibrate

    return cmd_calibrate(args)
