"""The ``exante`` command line: features | profile | sweep | fit | predict | estimate | calc |
serve.

Every user error (bad MODEL_REF, malformed ``--input``, non-positive batch, missing optional
package, unknown hardware...) prints one line ``exante: error: ...`` and exits with code 2.
Heavy imports happen inside the sub-commands so ``exante --help`` is instant.
"""

from __future__ import annotations

import argparse
import json
import sys
import warnings

from profiling.errors import ExanteError

MODES = ("inference", "train_step")
PROFILE_MODES = ("inference", "forward_backward", "train_step")
DTYPES = ("fp32", "bf16")
OPTIMIZERS = ("sgd", "adam", "adamw")


def _shape_and_batch(args) -> tuple[tuple[int, ...], int]:
    from profiling.model_refs import check_batch, parse_input_shape

    return parse_input_shape(args.input), check_batch(args.batch)


def _meta_model_and_inputs(args):
    """The model and example inputs on ``meta`` (features, predict): nothing is allocated."""
    from profiling.model_refs import example_inputs, resolve_model_on_meta

    shape, batch = _shape_and_batch(args)
    return resolve_model_on_meta(args.model_ref), example_inputs(shape, batch, device="meta")


def _print_json(obj) -> None:
    print(json.dumps(obj, indent=2, default=str))


def cmd_features(args) -> int:
    from profiling.features import feature_table

    model, inputs = _meta_model_and_inputs(args)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        table = feature_table(model, inputs, dtype=args.dtype)
    if args.json:
        _print_json(table.to_json())
    else:
        print(table.to_text())
    for w in caught:
        print(f"exante: warning: {w.message}", file=sys.stderr)
    return 0


def cmd_profile(args) -> int:
    import torch

    from profiling.model_refs import resolve_model
    from profiling.profiler import profile_model

    shape, batch = _shape_and_batch(args)
    if args.meter in ("auto", "nvml", "nvml-power") and not torch.cuda.is_available():
        raise ExanteError(
            "exante profile measures on an NVIDIA GPU and none is visible here; "
            "use `exante predict` for an estimate, or --meter estimated --rated-power-w W --device cpu "
            "for a labelled dry run"
        )
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    model = resolve_model(args.model_ref)
    inputs = torch.randn((batch, *shape), device=device)
    result = profile_model(
        model, inputs, mode=args.mode, dtype=args.dtype, optimizer=args.optimizer,
        meter=args.meter, device=device, hardware=args.hardware,
        rated_power_w=args.rated_power_w, model_ref=args.model_ref,
    )
    if args.out:
        result.write(args.out)
    if args.json:
        _print_json({"layers": result.layer_rows, "model": result.model_row,
                     "unsupported": result.unsupported})
    else:
        print(result.to_text())
    return 0


def cmd_sweep(args) -> int:
    from profiling.sweeps import SWEEPS, run_sweep

    if args.list:
        for name, sweep in SWEEPS.items():
            print(f"{name:20s} {sweep.description}")
        return 0
    if not args.name:
        raise ExanteError(f"give a sweep NAME; accepted: {', '.join(SWEEPS)} (or --list)")
    if args.name not in SWEEPS:
        raise ExanteError(f"unknown sweep {args.name!r}; accepted: {', '.join(SWEEPS)}")
    if args.backend == "dask" and not args.scheduler:
        raise ExanteError("--backend dask needs --scheduler ADDRESS (e.g. tcp://127.0.0.1:8786)")
    summary = run_sweep(
        args.name, args.out, resume=args.resume, backend=args.backend, scheduler=args.scheduler,
        meter=args.meter, limit=args.limit, hardware=args.hardware,
        time_budget_s=args.time_budget_s, rated_power_w=args.rated_power_w,
    )
    print(summary)
    return 0


def cmd_fit(args) -> int:
    from predictor.fit import fit_hardware

    manifest = fit_hardware(args.hardware, datasets_dir=args.datasets, out_dir=args.out,
                            quick=args.quick)
    if args.json:
        _print_json(manifest)
    else:
        print(f"fitted {args.hardware}: {manifest.get('artifact', '')} "
              f"(CV scores: {json.dumps(manifest.get('cv_scores', {}), default=str)})")
    return 0


def cmd_predict(args) -> int:
    from predictor.predict import predict

    model, inputs = _meta_model_and_inputs(args)
    p = predict(model, inputs, mode=args.mode, dtype=args.dtype, hardware=args.hardware,
                optimizer=args.optimizer)
    if args.json:
        _print_json(p.to_dict())
    else:
        print(p.to_text())
    return 0


def cmd_estimate(args) -> int:
    from predictor import lifecycle

    if args.scenario:
        scenario = lifecycle.load_scenario(args.scenario)
    else:
        missing = [n for n in ("model_ref", "input") if not getattr(args, n)]
        if missing:
            raise ExanteError(
                "give MODEL_REF and --input (and --epochs/--dataset-size/--batch for training, "
                "--inferences for serving), or --scenario plan.toml")
        scenario = lifecycle.scenario_from_args(args)
    report = lifecycle.estimate(scenario)
    if args.json:
        _print_json(report.to_dict())
    else:
        print(report.to_text())
    return 0


def _add_model_args(p, *, batch_required=True):
    p.add_argument("model_ref", metavar="MODEL_REF",
                   help="torchvision:NAME | timm:NAME | mlp:in=100,depth=10,width=100,out=1 | "
                        "path/to/file.py:factory | package.module:factory")
    p.add_argument("--input", required=True, help="per-sample input shape, e.g. 3x224x224 or 100")
    p.add_argument("--batch", required=batch_required, default="1", help="batch size (positive int)")
    p.add_argument("--dtype", choices=DTYPES, default="fp32")
    p.add_argument("--json", action="store_true", help="print one JSON object")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="exante",
        description="Predict the GPU energy and CO2 of a neural network before training it.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("features", help="per-layer architecture features (FLOPs, bytes, params)")
    _add_model_args(p)
    p.set_defaults(func=cmd_features)

    p = sub.add_parser("profile", help="measure a model layer by layer on an NVIDIA GPU")
    _add_model_args(p)
    p.add_argument("--mode", choices=PROFILE_MODES, default="inference")
    p.add_argument("--optimizer", choices=OPTIMIZERS, default=None)
    p.add_argument("--meter", default="auto", help="auto | nvml | nvml-power | rapl | estimated")
    p.add_argument("--device", default=None, help="cuda (default when visible) or cpu")
    p.add_argument("--rated-power-w", type=float, default=None,
                   help="rated power for --meter estimated (labelled estimate: time x this power)")
    p.add_argument("--hardware", default=None, help="hardware id stored in the rows (e.g. h100)")
    p.add_argument("--out", default=None, help="dataset folder to append the rows to")
    p.set_defaults(func=cmd_profile)

    p = sub.add_parser("sweep", help="run a measurement sweep (resumable) into a dataset folder")
    p.add_argument("name", nargs="?", help="sweep name (see --list)")
    p.add_argument("--list", action="store_true", help="list the sweeps")
    p.add_argument("--out", default="datasets/h100")
    p.add_argument("--resume", action=argparse.BooleanOptionalAction, default=True)
    p.add_argument("--backend", choices=("local", "dask"), default="local")
    p.add_argument("--scheduler", default=None, help="dask scheduler address (with --backend dask)")
    p.add_argument("--meter", default="auto")
    p.add_argument("--limit", type=int, default=None, help="measure at most this many tasks")
    p.add_argument("--rated-power-w", type=float, default=None,
                   help="rated power for --meter estimated (labelled estimate: time x this power)")
    p.add_argument("--time-budget-s", type=float, default=None,
                   help="stop cleanly (resumable) after this many seconds")
    p.add_argument("--hardware", default="h100")
    p.set_defaults(func=cmd_sweep)

    p = sub.add_parser("fit", help="fit the predictor for a hardware id from datasets/<hw>/")
    p.add_argument("--hardware", default="h100")
    p.add_argument("--datasets", default="datasets")
    p.add_argument("--out", default=None, help="artifact folder (default: the package's)")
    p.add_argument("--quick", action="store_true", help="fewer CV folds and candidates")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_fit)

    p = sub.add_parser("predict", help="predict time and energy per call of one batch")
    _add_model_args(p)
    p.add_argument("--mode", choices=MODES, default="inference")
    p.add_argument("--optimizer", choices=OPTIMIZERS, default=None)
    p.add_argument("--hardware", default="h100")
    p.set_defaults(func=cmd_predict)

    p = sub.add_parser("estimate", help="life-cycle energy and CO2: search + training + inference")
    p.add_argument("model_ref", metavar="MODEL_REF", nargs="?")
    p.add_argument("--scenario", default=None, help="a TOML scenario file instead of flags")
    p.add_argument("--input", default=None, help="per-sample input shape, e.g. 100 or 3x224x224")
    p.add_argument("--epochs", type=float, default=None)
    p.add_argument("--dataset-size", type=float, default=None)
    p.add_argument("--tokens", type=float, default=None,
                   help="training tokens instead of --dataset-size (samples = tokens / the "
                        "per-sample input's element count, e.g. --input 512)")
    p.add_argument("--batch", type=int, default=None, help="training batch size")
    p.add_argument("--optimizer", default="adam")
    p.add_argument("--dtype", choices=DTYPES, default="fp32")
    p.add_argument("--trials", type=int, default=None,
                   help="architecture-search / tuning trials like the final run")
    p.add_argument("--inferences", type=float, default=None, help="number of requests served")
    p.add_argument("--inference-batch", type=int, default=1)
    p.add_argument("--pue", type=float, default=None, help="data-centre PUE (default 1.58)")
    grid = p.add_mutually_exclusive_group()
    grid.add_argument("--region", default=None, help="cloud region, e.g. aws:us-east-1")
    grid.add_argument("--intensity", type=float, default=None, help="grid gCO2eq/kWh")
    p.add_argument("--gpus", type=int, default=1)
    p.add_argument("--hardware", default="h100")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_estimate)

    from predictor.calc import add_parser as add_calc_parser  # calculator mode (issue 10)
    from predictor.serve import add_parser as add_serve_parser  # local page (issue 10)
    add_calc_parser(sub)
    add_serve_parser(sub)
    from predictor.bench.cli import add_bench_parser  # validation on public data (issue 9)
    add_bench_parser(sub)
    from predictor.calibrate import add_parser as add_calibrate_parser  # few-shot (issue 13)
    add_calibrate_parser(sub)
    from predictor.compare import add_parser as add_compare_parser  # designs (issue 12)
    add_compare_parser(sub)
    return parser


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except ExanteError as exc:
        print(f"exante: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("exante: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
