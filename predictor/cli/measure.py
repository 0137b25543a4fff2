"""The measuring and fitting sub-commands of ``exante``: ``profile`` (measure a model on an
NVIDIA GPU), ``sweep`` (a resumable measurement sweep) and ``fit`` (fit a GPU's model from its
dataset folder).  Torch and the fitting code are imported only when a command runs."""

from __future__ import annotations

import argparse
import json
import os

from predictor.cli.checks import (
    check_dataset_tables,
    check_device,
    check_meter,
    check_out_dir,
    check_scheduler,
    positive_float,
    positive_int,
)
from predictor.cli.model_args import (
    OPTIMIZERS,
    PROFILE_MODES,
    add_model_args,
    print_json,
    shape_and_batch,
)
from predictor.cli.progress import enabled as progress_enabled
from predictor.cli.progress import message
from profiling.errors import ExanteError

__all__ = ["FIT_DEFAULT_OUT", "add_parsers", "cmd_fit", "cmd_profile", "cmd_sweep"]

FIT_DEFAULT_OUT = "exante-artifacts"      # never the shipped artifact unless --write-package


def cmd_profile(args) -> int:
    """Run ``exante profile`` (measured s and J per call; returns the exit code)."""
    import torch

    from profiling.measure.profiler import profile_model
    from profiling.model_refs import example_inputs, resolve_model

    shape, batch = shape_and_batch(args)
    if args.meter in ("auto", "nvml", "nvml-power") and not torch.cuda.is_available():
        raise ExanteError(
            "exante profile measures on an NVIDIA GPU and none is visible here; "
            "use `exante predict` for an estimate, or --meter estimated --rated-power-w W --device cpu "
            "for a labelled dry run"
        )
    device = check_device(args.device)
    if args.out:
        check_out_dir(args.out)
        check_dataset_tables(args.out)      # a foreign header is found before measuring
    check_meter(args.meter, device=device, hardware=args.hardware,
                rated_power_w=args.rated_power_w)
    model = resolve_model(args.model_ref)
    inputs = example_inputs(shape, batch, device=device, dtype=args.input_dtype or "float32",
                            vocab=args.vocab)
    if inputs.is_floating_point():
        inputs.normal_()                    # measured on random data, like torch.randn
    result = profile_model(
        model, inputs, mode=args.mode, dtype=args.dtype, optimizer=args.optimizer,
        meter=args.meter, device=device, hardware=args.hardware,
        rated_power_w=args.rated_power_w, model_ref=args.model_ref,
        progress=progress_enabled(),
    )
    if args.out:
        result.write(args.out)
    if args.json:
        print_json({"layers": result.layer_rows, "model": result.model_row,
                     "unsupported": result.unsupported})
    else:
        print(result.to_text())
    return 0


def cmd_sweep(args) -> int:
    """Run ``exante sweep`` (list or run a sweep; returns the exit code)."""
    from profiling.sweeps import SWEEPS, run_sweep

    if args.list:
        for name, sweep in SWEEPS.items():
            print(f"{name:20s} {sweep.description}")
        return 0
    if not args.name:
        raise ExanteError(f"give a sweep NAME; accepted: {', '.join(SWEEPS)} (or --list)")
    if args.name not in SWEEPS:
        raise ExanteError(f"unknown sweep {args.name!r}; accepted: {', '.join(SWEEPS)}")
    check_out_dir(args.out)
    if args.backend == "dask":
        check_scheduler(args.scheduler)
    else:
        check_meter(args.meter, device=None, hardware=args.hardware,
                    rated_power_w=args.rated_power_w)
    summary = run_sweep(
        args.name, args.out, resume=args.resume, backend=args.backend, scheduler=args.scheduler,
        meter=args.meter, limit=args.limit, hardware=args.hardware,
        time_budget_s=args.time_budget_s, rated_power_w=args.rated_power_w,
    )
    print(summary)
    return 0


def cmd_fit(args) -> int:
    """Run ``exante fit`` (fit a GPU's model; returns the exit code)."""
    from predictor.fit.hardware_fit import fit_hardware

    if args.write_package and args.out:
        raise ExanteError("give --out DIR or --write-package (the shipped artifact), not both")
    out = None if args.write_package else (args.out or FIT_DEFAULT_OUT)   # None: the package's
    if out:
        check_out_dir(out)
    if args.joint:
        from predictor.fit.joint_fit import fit_joint_artifacts

        message(f"fitting one model across every GPU folder of {args.datasets} into "
                f"{out or 'the package artifacts'} (minutes)")
        summary = fit_joint_artifacts(args.datasets, out, logo_residuals=args.logo_residuals)
        if args.json:
            print_json(summary)
        else:
            print(f"fitted the joint model on {', '.join(summary['gpus'])} "
                  f"({summary['seconds']} s)")
        return 0
    message(f"fitting {args.hardware} from {os.path.join(args.datasets, args.hardware)} "
            f"into {out or 'the package artifacts'} (minutes; --quick is faster)")
    manifest = fit_hardware(args.hardware, datasets_dir=args.datasets, out_dir=out,
                            quick=args.quick)
    if args.json:
        print_json(manifest)
    else:
        print(f"fitted {args.hardware}: {manifest.get('artifact', '')} "
              f"(CV scores: {json.dumps(manifest.get('cv_scores', {}), default=str)})")
        if out:
            print(f"use it with: EXANTE_ARTIFACT_DIR={out} exante predict ... "
                  f"--hardware {args.hardware}")
    return 0


def add_parsers(sub) -> None:
    """Register ``exante profile``, ``sweep`` and ``fit`` (in this order) on ``sub``."""
    p = sub.add_parser("profile", help="measure a model layer by layer on an NVIDIA GPU")
    add_model_args(p)
    p.add_argument("--mode", choices=PROFILE_MODES, default="inference")
    p.add_argument("--optimizer", choices=OPTIMIZERS, default=None)
    p.add_argument("--meter", default="auto", help="auto | nvml | nvml-power | rapl | estimated")
    p.add_argument("--device", default=None, help="cuda (default when visible) or cpu")
    p.add_argument("--rated-power-w", type=positive_float, default=None,
                   help="rated power for --meter estimated (labelled estimate: time x this power)")
    p.add_argument("--hardware", default=None, help="hardware id stored in the rows (e.g. h100)")
    p.add_argument("--out", default=None,
                   help="dataset folder to append the rows to (created if missing)")
    p.set_defaults(func=cmd_profile)

    p = sub.add_parser("sweep", help="run a measurement sweep (resumable) into a dataset folder")
    p.add_argument("name", nargs="?", help="sweep name (see --list)")
    p.add_argument("--list", action="store_true", help="list the sweeps")
    p.add_argument("--out", default="datasets/h100")
    p.add_argument("--resume", action=argparse.BooleanOptionalAction, default=True)
    p.add_argument("--backend", choices=("local", "dask"), default="local")
    p.add_argument("--scheduler", default=None, help="dask scheduler address (with --backend dask)")
    p.add_argument("--meter", default="auto")
    p.add_argument("--limit", type=positive_int, default=None,
                   help="measure at most this many tasks")
    p.add_argument("--rated-power-w", type=positive_float, default=None,
                   help="rated power for --meter estimated (labelled estimate: time x this power)")
    p.add_argument("--time-budget-s", type=positive_float, default=None,
                   help="stop cleanly (resumable) after this many seconds")
    p.add_argument("--hardware", default="h100")
    p.set_defaults(func=cmd_sweep)

    p = sub.add_parser("fit", help="fit the predictor for a hardware id from datasets/<hw>/")
    p.add_argument("--hardware", default="h100")
    p.add_argument("--datasets", default="datasets")
    p.add_argument("--out", default=None,
                   help=f"artifact folder (default ./{FIT_DEFAULT_OUT}; use it with "
                        "EXANTE_ARTIFACT_DIR)")
    p.add_argument("--write-package", action="store_true",
                   help="replace the shipped artifact in predictor/artifacts/ (a refit of the "
                        "project's model)")
    p.add_argument("--joint", action="store_true",
                   help="fit one model across every datasets/<gpu>/ folder (predictor.engine.joint): "
                        "an artifact per GPU with rows + joint.json for every other GPU")
    p.add_argument("--logo-residuals", default=None,
                   help="with --joint: logo_residuals.json of experiments/multigpu/run.py "
                        "(the interval of GPUs with no rows)")
    p.add_argument("--quick", action="store_true",
                   help="in-sample intervals instead of leave-one-family-out ones (faster)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_fit)
