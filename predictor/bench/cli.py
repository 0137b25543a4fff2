"""``exante bench irene|ecnas|zeus``: validation against published measurements (sub-commands).

Registered in :mod:`predictor.cli.main` by :func:`add_bench_parser`; heavy imports happen when a
benchmark runs, so ``exante --help`` stays instant.
"""

from __future__ import annotations

import json
import os

from predictor.cli.progress import message, set_enabled
from profiling.errors import ExanteError


def _progress(quiet: bool):
    """Progress messages and bars on stderr (off with --quiet and with --json)."""
    set_enabled(not quiet)
    if quiet:
        return None
    return lambda msg: message(msg, prefix="exante bench")


def _need(path: str, kind: str, what: str) -> None:
    """A missing input is one line before pandas, torch or a model zoo is imported."""
    ok = os.path.isdir(path) if kind == "folder" else os.path.isfile(path)
    if not ok:
        raise ExanteError(f"{path!r} is not a {kind}; give {what}")


def _emit(report: dict, as_json: bool, lines: list[str]) -> int:
    if as_json:
        print(json.dumps(report, indent=2, default=str))
    else:
        print("\n".join(lines))
    return 0


def cmd_bench_irene(args) -> int:
    """Run ``exante bench irene`` (prints the report; returns the exit code)."""
    _need(args.dir, "folder", "the IrEne folder holding model/module/ml1/ml2_level_features.csv "
          "(e.g. extdata/irene/device_1)")
    from predictor.bench.irene import run_irene_bench

    r = run_irene_bench(args.dir, quick=args.quick, progress=_progress(args.quiet or args.json))
    a = r["anchors"]
    lines = [f"IrEne leave-one-model-out on {r['dir']} ({', '.join(r['models'])})",
             f"  model level : exante {r['model_lomo_mape_pct']:.2f} % MAPE   "
             f"(IrEne, device_1: {a['irene_model_lomo_mape_pct']} %)",
             f"  module level: exante {r['module_lomo_mape_pct']:.2f} % MAPE   "
             f"(IrEne, device_1: {a['irene_module_lomo_mape_pct']} %)",
             f"  FLOPs-linear baseline, same folds: {r['flops_linear_model_lomo_mape_pct']:.2f} %"]
    lines += [f"    {m:26s} model {v['model_mape_pct']:6.2f} %  module {v['module_mape_pct']:6.2f} %"
              f"  FLOPs-linear {v['flops_linear_mape_pct']:6.2f} %" for m, v in r["per_model"].items()]
    if r.get("shape_only_types"):
        lines.append("  ops without a feature function (sized from their shapes): " + ", ".join(
            f"{t} ({', '.join(ms)})" for t, ms in r["shape_only_types"].items()))
    if r.get("models_ignored"):
        lines.append(f"  models outside the paper's six, not used: {', '.join(r['models_ignored'])}")
    return _emit(r, args.json, lines)


def cmd_bench_ecnas(args) -> int:
    """Run ``exante bench ecnas`` (prints the report; returns the exit code)."""
    for flag, path in (("--train", args.train), ("--test", args.test)):
        _need(path, "file", f"{flag} CSV of NAS-Bench-101 cells (see experiments/external/run.py "
              "--ecnas-split)")
    from predictor.bench.ecnas import run_ecnas_bench

    r = run_ecnas_bench(args.train, args.test, correction=not args.no_correction,
                        progress=_progress(args.quiet or args.json))
    a = r["anchors"]
    lines = [f"EC-NAS training energy: train {r['n_train']} rows, test {r['n_test']} rows, "
             f"{r['build_failures']} build failures",
             f"  exante: MAE {r['mae_wh']:.3f} Wh = {r['mae_pct_of_mean']:.2f} % of mean, "
             f"MAPE {r['mape_pct']:.2f} %, Kendall tau {r['kendall_tau']:.3f}",
             f"  EC-NAS surrogate (paper repo): MAE {a['ecnas_surrogate_mae_wh']} Wh = "
             f"{a['ecnas_surrogate_mae_pct_of_mean']} % of mean",
             f"  params-linear baseline, same split: MAPE {r['params_linear_mape_pct']:.2f} %",
             f"  capture speed: {r['archs_per_s']} architectures/s"]
    return _emit(r, args.json, lines)


def cmd_bench_zeus(args) -> int:
    """Run ``exante bench zeus`` (prints the report; returns the exit code)."""
    _need(args.dir, "folder", "the folder holding summary_power_<gpu>.csv files (e.g. "
          "extdata/zeus_nsdi23)")
    from predictor.bench.zeus import run_zeus_bench

    r = run_zeus_bench(args.dir, n_calib=args.calibrate_on, optimizer_impl=args.optimizer_impl,
                       progress=_progress(args.quiet or args.json))
    lines = [f"Zeus epoch energy at the maximum power limit, {r['dir']} (MAPE %, rows not used "
             f"for calibration)",
             f"  {'gpu':10s} {'catalogue':15s} {'datasheet':>9s} {'calib.':>7s} "
             f"{'TDPxtime':>9s} {'FLOPsxc':>8s} {'n':>4s}"]
    for g, v in r["per_gpu"].items():
        lines.append(f"  {g:10s} {v['hardware']:15s} {v['datasheet_mape_pct']:9.1f} "
                     f"{v['calibrated_mape_pct']:7.1f} {v['tdp_proxy_mape_pct']:9.1f} "
                     f"{v['flops_proxy_mape_pct']:8.1f} {v['n']:4d}")
    lines += [f"  skipped {k}: {v['reason']}" for k, v in r["skipped_networks"].items()]
    lines += [f"  skipped GPU {g}: {why}" for g, why in r["skipped_gpus"].items()]
    return _emit(r, args.json, lines)


def add_bench_parser(sub) -> None:
    """Add ``bench`` with its ``irene`` and ``ecnas`` sub-commands to ``exante``'s parser."""
    p = sub.add_parser("bench", help="validate on public measurements (IrEne, EC-NAS)")
    bsub = p.add_subparsers(dest="bench", required=True, metavar="BENCH")

    q = bsub.add_parser("irene", help="IrEne transformer inference energy, leave-one-model-out")
    q.add_argument("dir", metavar="DIR", help="folder with model/module/ml1/ml2_level_features.csv")
    q.add_argument("--quick", action="store_true", help="smaller regressors (faster, rougher)")
    q.add_argument("--json", action="store_true", help="print one JSON object")
    q.add_argument("--quiet", action="store_true", help="no progress on stderr")
    q.set_defaults(func=cmd_bench_irene)

    q = bsub.add_parser("ecnas", help="EC-NAS NAS-Bench-101 training energy, fit on --train")
    q.add_argument("--train", required=True, metavar="CSV", help="architectures with energies to fit on")
    q.add_argument("--test", required=True, metavar="CSV", help="architectures to predict and score")
    q.add_argument("--no-correction", action="store_true",
                   help="linear work-term composition only (no boosted log-ratio correction)")
    q.add_argument("--json", action="store_true", help="print one JSON object")
    q.add_argument("--quiet", action="store_true", help="no progress on stderr")
    q.set_defaults(func=cmd_bench_ecnas)

    q = bsub.add_parser("zeus", help="Zeus training-epoch energy on GPUs never measured (datasheet "
                                     "transfer, 3-row calibration, TDP and FLOPs proxies)")
    q.add_argument("dir", metavar="DIR", help="folder with summary_power_<gpu>.csv files")
    q.add_argument("--calibrate-on", type=int, default=3, metavar="N",
                   help="rows per GPU used for the few-shot calibration (default 3)")
    q.add_argument("--optimizer-impl", choices=("for-loop", "foreach"), default="for-loop",
                   help="optimizer implementation of the traces' PyTorch (1.x: for-loop)")
    q.add_argument("--json", action="store_true", help="print one JSON object")
    q.add_argument("--quiet", action="store_true", help="no progress on stderr")
    q.set_defaults(func=cmd_bench_zeus)
    __import__("predictor.bench.mlenergy", fromlist=["add_parser"]).add_parser(bsub)

    from predictor.bench.timm_cli import (
        add_timm_parser,  # exante bench timm (predictor/bench/timm.py)
    )
    add_timm_parser(bsub)
