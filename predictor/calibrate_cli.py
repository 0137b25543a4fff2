"""``exante calibrate`` argument parsing, kept light: ``--help`` imports nothing heavy (the
fitting code in :mod:`predictor.calibrate` pulls in scipy, torch and the physics model)."""

from __future__ import annotations

# the CSV layout of measured runs (imported by predictor.calibrate)
CSV_COLUMNS = ("model", "input", "batch", "mode", "dtype", "optimizer", "time_s", "energy_j")


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


def _cmd(args) -> int:
    from .calibrate import cmd_calibrate

    return cmd_calibrate(args)
