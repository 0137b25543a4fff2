"""``exante calibrate``: argument parsing and the command, kept light: ``--help`` imports
nothing heavy (the fitting code, :func:`predictor.fit.calibrate.calibrate_to_folder`, pulls in
scipy, torch and the physics model, and is imported only when the command runs)."""

from __future__ import annotations

import json

from predictor.cli.checks import check_out_dir
from predictor.fit.run_checks import CSV_COLUMNS, check_runs_file

__all__ = ["add_parser", "print_report"]


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


def print_report(report: dict, as_json: bool) -> None:
    """Print a calibration report (:func:`predictor.fit.calibrate.calibrate_to_folder`)."""
    if as_json:
        print(json.dumps(report, indent=2))
        return
    b, a = report["in_sample_mape_pct_before"], report["in_sample_mape_pct_after"]
    print(f"calibrated {report['hardware']} on {report['n_runs']} run(s) (from "
          f"{report['source']}): scales "
          + ", ".join(f"{k} x{v:.3g}" for k, v in report["scales"].items()))
    print(f"  in-sample MAPE time {b['time']:.1f} % -> {a['time']:.1f} %, energy "
          f"{b['energy']:.1f} % -> {a['energy']:.1f} %")
    print(f"  interval: {report['interval']}")
    for line in report["advice"]:
        print(f"  note: {line}")
    for line in report["warnings"]:
        print(f"  warning: {line}")
    print(f"  wrote {report['artifact']}; use: {report['use']}")


def _cmd(args) -> int:
    check_out_dir(args.out)                 # before anything heavy is imported or read
    check_runs_file(args.runs)
    from predictor.fit.calibrate import calibrate_to_folder  # scipy, torch: only when run

    print_report(calibrate_to_folder(args.hardware, args.runs, args.out), args.json)
    return 0
