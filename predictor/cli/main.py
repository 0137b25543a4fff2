"""The ``exante`` command line: features | profile | sweep | fit | predict | estimate | calc |
serve.

Every user error (bad MODEL_REF, malformed ``--input``, non-positive batch, missing optional
package, unknown hardware, an output folder that cannot be written...) prints one line
``exante: error: ...`` and exits with code 2, and is found before anything is measured,
fitted or written; ``--debug`` (anywhere on the line) adds the traceback. An unexpected
failure prints one line ``exante: internal error: ...`` and exits with code 1.

Heavy imports happen inside the sub-commands, and sub-commands defined in other modules
(:data:`EXTERNAL_COMMANDS`) are imported only when named, so ``exante --help`` and
``exante COMMAND --help`` do not import torch.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
import traceback

from predictor.cli import help as cli_help
from predictor.cli import output as cli_output
from predictor.cli.checks import (
    check_command_line,
    check_dataset_tables,
    check_device,
    check_meter,
    check_out_dir,
    check_scheduler,
    finite_float,
    positive_float,
    positive_int,
)
from predictor.cli.progress import enabled as progress_enabled
from profiling.errors import ExanteError

log = logging.getLogger("exante")
MODES = ("inference", "train_step")
PROFILE_MODES = ("inference", "forward_backward", "train_step")
DTYPES = ("fp32", "bf16")
PREDICT_DTYPES = ("fp32", "bf16", "fp16")        # predict / estimate (autocast fp16 too)
OPTIMIZERS = ("sgd", "adam", "adamw")


def _shape_and_batch(args) -> tuple[tuple[int, ...], int]:
    """``--input`` and ``--batch`` checked (positive, and a tensor torch can hold); torch-free."""
    from profiling.input_spec import check_batch, check_input_bytes, parse_input_shape

    shape, batch = parse_input_shape(args.input), check_batch(args.batch)
    check_input_bytes(shape, batch, _input_dtype(args))
    return shape, batch


def _input_dtype(args) -> str:
    if getattr(args, "vocab", None) is not None:
        if args.input_dtype not in (None, "int64"):
            raise ExanteError(f"--vocab gives int64 token ids; it cannot be combined with "
                              f"--input-dtype {args.input_dtype}")
        return "int64"
    return getattr(args, "input_dtype", None) or "float32"


def _token_hint(exc: ExanteError, args) -> ExanteError:
    """A float input fed to an embedding: say how to give token ids."""
    text = str(exc)
    if (getattr(args, "input_dtype", None) is None and getattr(args, "vocab", None) is None
            and ("Long, Int" in text or "'indices'" in text)):
        return ExanteError(f"{text.splitlines()[0]} -- the model takes token ids: add "
                           "--input-dtype int64 (or --vocab N)")
    return exc


def _meta_model_and_inputs(args):
    """The model and example inputs on ``meta`` (features, predict): nothing is allocated."""
    from profiling.model_refs import example_inputs, resolve_model_on_meta

    shape, batch = _shape_and_batch(args)
    log.info("building %s on the meta device", args.model_ref)
    model = resolve_model_on_meta(args.model_ref)
    if (args.model_ref.startswith("hf:") and len(shape) == 1 and args.input_dtype is None
            and args.vocab is None):         # a Hugging Face model: --input is the sequence length
        from profiling.model_refs import hf_example_inputs

        return model, hf_example_inputs(model, batch, seq_len=shape[0])
    inputs = example_inputs(shape, batch, device="meta", dtype=args.input_dtype or "float32",
                            vocab=args.vocab)
    return model, inputs


def _print_json(obj) -> None:
    print(json.dumps(obj, indent=2, default=str))


def _print_result(result, as_json: bool, caught=()) -> None:
    """Print the result (a JSON object or text), then the held warnings it does not state."""
    text = json.dumps(result, indent=2, default=str) if as_json else str(result)
    print(text)
    sys.stdout.flush()
    said = json.dumps(result, default=str, ensure_ascii=False) if as_json else text
    cli_output.emit(caught, already_said=said)


def cmd_features(args) -> int:
    from profiling.features.api import feature_table

    model, inputs = _meta_model_and_inputs(args)
    with cli_output.held_warnings() as caught:
        try:
            table = feature_table(model, inputs, dtype=args.dtype)
        except ExanteError as exc:
            raise _token_hint(exc, args) from exc
    _print_result(table.to_json() if args.json else table.to_text(), args.json, caught)
    return 0


def cmd_profile(args) -> int:
    import torch

    from profiling.measure.profiler import profile_model
    from profiling.model_refs import example_inputs, resolve_model

    shape, batch = _shape_and_batch(args)
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
    from predictor.cli.progress import message
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
            _print_json(summary)
        else:
            print(f"fitted the joint model on {', '.join(summary['gpus'])} "
                  f"({summary['seconds']} s)")
        return 0
    message(f"fitting {args.hardware} from {os.path.join(args.datasets, args.hardware)} "
            f"into {out or 'the package artifacts'} (minutes; --quick is faster)")
    manifest = fit_hardware(args.hardware, datasets_dir=args.datasets, out_dir=out,
                            quick=args.quick)
    if args.json:
        _print_json(manifest)
    else:
        print(f"fitted {args.hardware}: {manifest.get('artifact', '')} "
              f"(CV scores: {json.dumps(manifest.get('cv_scores', {}), default=str)})")
        if out:
            print(f"use it with: EXANTE_ARTIFACT_DIR={out} exante predict ... "
                  f"--hardware {args.hardware}")
    return 0


FIT_DEFAULT_OUT = "exante-artifacts"      # never the shipped artifact unless --write-package


def cmd_predict(args) -> int:
    from predictor.engine.memory import check_input_fits

    shape, batch = _shape_and_batch(args)
    check_input_fits(shape, batch, _input_dtype(args), args.hardware)   # before torch loads
    from predictor.engine.predict import predict

    model, inputs = _meta_model_and_inputs(args)
    with cli_output.held_warnings() as caught:
        try:
            p = predict(model, inputs, mode=args.mode, dtype=args.dtype, hardware=args.hardware,
                        optimizer=args.optimizer,
                        memory_format=args.memory_format or "contiguous",
                        grad_scaler=args.grad_scaler, torch_version=args.torch_version)
        except ExanteError as exc:
            raise _token_hint(exc, args) from exc
    _print_result(p.to_dict() if args.json else p.to_text(), args.json, caught)
    return 0


def cmd_estimate(args) -> int:
    from predictor.carbon import lifecycle

    if args.input is not None:
        _shape_and_batch(argparse.Namespace(input=args.input, batch=1))   # names --input
    if args.scenario:
        scenario = lifecycle.load_scenario(
            args.scenario, lifecycle.scenario_overrides(args, args.scenario))
    else:
        missing = [n for n in ("model_ref", "input") if not getattr(args, n)]
        if missing:
            raise ExanteError(
                "give MODEL_REF and --input (and --epochs/--dataset-size/--batch for training, "
                "--inferences for serving), or --scenario plan.toml")
        scenario = lifecycle.scenario_from_args(args)
    with cli_output.held_warnings() as caught:
        try:
            report = lifecycle.estimate(scenario)
        except ExanteError as exc:
            raise _token_hint(exc, args) from exc
    _print_result(report.to_dict() if args.json else report.to_text(), args.json, caught)
    return 0


def _add_model_args(p, *, batch_required=True, dtypes=DTYPES):
    p.add_argument("model_ref", metavar="MODEL_REF", help=cli_help.MODEL_REF_HELP)
    p.add_argument("--input", required=True, help="per-sample input shape, e.g. 3x224x224 or 100")
    p.add_argument("--batch", required=batch_required, default="1", help="batch size (positive int)")
    p.add_argument("--dtype", choices=dtypes, default="fp32",
                   help="fp32, or autocast mixed precision: " + " | ".join(dtypes[1:]))
    p.add_argument("--input-dtype", choices=INPUT_DTYPES, default=None,
                   help="dtype of the input tensor (default float32; int64 for models that take "
                        "token ids, e.g. --input 128 --input-dtype int64)")
    p.add_argument("--vocab", type=positive_int, default=None, metavar="N",
                   help="token-id inputs: int64 ids drawn from [0, N) "
                        "(implies --input-dtype int64)")
    p.add_argument("--json", action="store_true", help="print one JSON object")


INPUT_DTYPES = ("float32", "float16", "bfloat16", "int64", "int32")


def _add_condition_args(p):
    """--memory-format, --grad-scaler, --torch-version (predict, estimate)."""
    p.add_argument("--memory-format", choices=("contiguous", "channels_last"), default=None,
                   help="channels_last: model and 4-D input in NHWC (default contiguous)")
    p.add_argument("--grad-scaler", action="store_true",
                   help="training with torch.amp.GradScaler (fp16 mixed precision)")
    p.add_argument("--torch-version", default=None, metavar="X.Y.Z",
                   help="the torch version the model runs on (recorded with the result)")

# Sub-commands defined in other modules: name -> (module, function(sub), help). Only the one
# named on the command line is imported (the others are listed with their help), so
# `exante --help` does not import torch. Register a new sub-command by adding a line here.
EXTERNAL_COMMANDS = {
    "calc": ("predictor.carbon.calc", "add_parser",
             "calculator: energy and CO2 from device, count and hours (or params/tokens at an "
             "MFU) - no fitted model needed"),
    "serve": ("predictor.cli.serve", "add_parser",
              "local page on 127.0.0.1: calculator, LLM serving and estimate forms"),
    "bench": ("predictor.bench.cli", "add_bench_parser",
              "validate on public measurements (IrEne, EC-NAS)"),
    "calibrate": ("predictor.cli.calibrate", "add_parser",
                  "adapt a GPU's model to a few of your own measured runs"),
    "compare": ("predictor.search.compare", "add_parser",
                "rank designs by predicted energy (wide vs deep, ...)"),
}


class _Parser(argparse.ArgumentParser):
    """argparse with one-line usage errors (exit code 2), like every other exante error."""

    def error(self, message):
        self.exit(2, f"exante: error: {message} (see `{self.prog} --help`)\n")


def _command_named(argv) -> str | None:
    """The sub-command on the command line (the first word that is not an option)."""
    for word in argv or ():
        if not word.startswith("-"):
            return word
    return None


def build_parser(argv=None) -> argparse.ArgumentParser:
    """The ``exante`` parser. With ``argv``, only the sub-command it names is imported from
    :data:`EXTERNAL_COMMANDS` (the others are listed); without, all of them are."""
    parser = _Parser(
        prog="exante",
        description="Predict the GPU energy and CO2 of a neural network before training it.")
    parser.add_argument("--debug", action="store_true",
                        help="show the traceback of an error (also accepted after the command)")
    parser.add_argument("-v", "--verbose", action="store_true",
                        help="log what is done (logging INFO; accepted anywhere on the line)")
    parser.add_argument("--quiet", action="store_true",
                        help="no progress bars or messages (also off with --json)")
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
    p.add_argument("--quick", action="store_true", help="fewer CV folds and candidates")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_fit)

    p = sub.add_parser("predict", help="predict time and energy per call of one batch")
    _add_model_args(p, dtypes=PREDICT_DTYPES)
    _add_condition_args(p)
    p.add_argument("--mode", choices=MODES, default="inference", help=cli_help.MODE_HELP)
    p.add_argument("--optimizer", choices=OPTIMIZERS, default=None, help=cli_help.OPTIMIZER_HELP)
    p.add_argument("--hardware", default="h100", help=cli_help.HARDWARE_HELP)
    p.set_defaults(func=cmd_predict)

    p = sub.add_parser(
        "estimate", help="life-cycle energy and CO2: search + training + inference",
        description="Life-cycle energy and CO2 from flags, or from a TOML scenario file. With "
                    "--scenario, MODEL_REF, --input, --hardware, --pue, --region/--intensity and "
                    "--gpus override the file's top-level values; the run flags (--epochs, "
                    "--batch, --inferences, ...) are refused: edit the file. --input-dtype "
                    "too overrides.",
        epilog=cli_help.SCENARIO_EXAMPLE, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("model_ref", metavar="MODEL_REF", nargs="?", help=cli_help.MODEL_REF_HELP)
    p.add_argument("--scenario", default=None, help="a TOML scenario file instead of flags")
    p.add_argument("--input", default=None, help="per-sample input shape, e.g. 100 or 3x224x224")
    p.add_argument("--input-dtype", choices=INPUT_DTYPES, default=None,
                   help="dtype of the input (default float32; int64 for token ids)")
    p.add_argument("--epochs", type=positive_float, default=None)
    p.add_argument("--dataset-size", type=positive_float, default=None)
    p.add_argument("--tokens", type=positive_float, default=None,
                   help="training tokens instead of --dataset-size (samples = tokens / the "
                        "per-sample input's element count, e.g. --input 512)")
    p.add_argument("--batch", type=positive_int, default=None, help="training batch size")
    p.add_argument("--optimizer", default=None, help="sgd | adam | adamw (default adam)")
    p.add_argument("--dtype", choices=PREDICT_DTYPES, default=None,
                   help="fp32 | bf16 | fp16 (default fp32)")
    _add_condition_args(p)
    p.add_argument("--trials", type=positive_int, default=None,
                   help="architecture-search / tuning trials like the final run")
    p.add_argument("--inferences", type=positive_float, default=None,
                   help="number of requests served")
    p.add_argument("--inference-batch", type=positive_int, default=None,
                   help="serving batch size (default 1)")
    p.add_argument("--pue", type=finite_float, default=None,
                   help="data-centre PUE, >= 1 (default 1.58)")
    grid = p.add_mutually_exclusive_group()
    grid.add_argument("--region", default=None, help="cloud region, e.g. aws:us-east-1")
    grid.add_argument("--intensity", default=None,
                      help="grid gCO2eq/kWh, or an energy source: coal|gas|hydro|oil|nuclear")
    p.add_argument("--gpus", type=positive_int, default=None, help="data-parallel GPUs (default 1)")
    p.add_argument("--hardware", default=None, help="predictor hardware id (default h100)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_estimate)

    named = _command_named(argv) if argv is not None else None
    for name, (module, function, help_text) in EXTERNAL_COMMANDS.items():
        if argv is None or name == named:
            import importlib

            getattr(importlib.import_module(module), function)(sub)
        else:
            sub.add_parser(name, help=help_text, add_help=False)   # listed, not imported
    return parser


def _one_line(exc: BaseException) -> str:
    lines = [ln.strip() for ln in str(exc).strip().splitlines() if ln.strip()]
    if not lines:
        return type(exc).__name__
    return lines[0] + (" (more with --debug)" if len(lines) > 1 else "")


GLOBAL_FLAGS = ("--debug", "-v", "--verbose", "--quiet")   # accepted anywhere on the line


#: commands whose ``--hardware`` takes a catalogue GPU: ``--list-hardware`` prints the catalogue
_LIST_HARDWARE_COMMANDS = ("predict", "estimate", "compare", "calibrate")


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv or os.environ.get("EXANTE_DEBUG", "") not in ("", "0")
    verbose, quiet = "-v" in argv or "--verbose" in argv, "--quiet" in argv
    argv = [a for a in argv if a not in GLOBAL_FLAGS]
    if argv[:1] and argv[0] in _LIST_HARDWARE_COMMANDS and "--list-hardware" in argv:
        from predictor.carbon.hardware import catalogue_table  # torch-free, like the catalogue

        print(catalogue_table())
        return 0
    try:
        args = build_parser(argv).parse_args(argv)
    except SystemExit as exc:               # --help (0) or a usage error, already printed (2)
        return exc.code if isinstance(exc.code, int) else 2
    args.quiet = quiet
    cli_output.setup(verbose=verbose, quiet=quiet, json_mode=bool(getattr(args, "json", False)))
    try:
        check_command_line(args)            # what the arguments alone decide, before torch
        log.info("arguments checked; running %s", args.command)
        t0 = time.perf_counter()
        code = args.func(args)
        log.info("%s done in %.2f s", args.command, time.perf_counter() - t0)
        sys.stdout.flush()
        return code
    except BrokenPipeError:                 # `exante ... | head`: the reader left; say nothing
        try:
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        except (OSError, ValueError, AttributeError):
            pass
        return 141                          # 128 + SIGPIPE, as a killed writer would
    except ExanteError as exc:
        if debug:
            traceback.print_exc()
        print(f"exante: error: {_one_line(exc)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("exante: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:                # a bug, not a user error: one line, traceback on ask
        if debug:
            traceback.print_exc()
        print(f"exante: internal error: {type(exc).__name__}: {_one_line(exc)} (rerun with "
              "--debug for the traceback and report it)", file=sys.stderr)
        return 1
    finally:
        cli_output.teardown()               # main() called in-process: library use stays quiet


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
