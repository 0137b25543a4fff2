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
import importlib
import logging
import os
import sys
import time
import traceback

from predictor.carbon.hardware import catalogue_table
from predictor.cli import help as cli_help
from predictor.cli import output as cli_output
from predictor.cli.checks import check_command_line, finite_float, positive_float, positive_int
from predictor.cli.measure import FIT_DEFAULT_OUT, add_parsers
from predictor.cli.model_args import (
    INPUT_DTYPES,
    MODES,
    OPTIMIZERS,
    PREDICT_DTYPES,
    add_condition_args,
    add_model_args,
    input_dtype,
    meta_model_and_inputs,
    print_result,
    shape_and_batch,
    token_hint,
)
from profiling.errors import ExanteError

__all__ = ["EXTERNAL_COMMANDS", "FIT_DEFAULT_OUT", "build_parser", "cmd_estimate",
           "cmd_features", "cmd_predict", "main"]

log = logging.getLogger(__name__)


def cmd_features(args) -> int:
    """Run ``exante features`` (prints the per-layer table; returns the exit code)."""
    from profiling.features.api import feature_table

    model, inputs = meta_model_and_inputs(args)
    with cli_output.held_warnings() as caught:
        try:
            table = feature_table(model, inputs, dtype=args.dtype)
        except ExanteError as exc:
            raise token_hint(exc, args) from exc
    print_result(table.to_json() if args.json else table.to_text(), args.json, caught)
    return 0


def cmd_predict(args) -> int:
    """Run ``exante predict`` (time in s and energy in J per call; returns the exit code)."""
    from predictor.engine.memory import check_input_fits

    shape, batch = shape_and_batch(args)
    check_input_fits(shape, batch, input_dtype(args), args.hardware)   # before torch loads
    from predictor.engine.predict import predict

    model, inputs = meta_model_and_inputs(args)
    with cli_output.held_warnings() as caught:
        try:
            p = predict(model, inputs, mode=args.mode, dtype=args.dtype, hardware=args.hardware,
                        optimizer=args.optimizer,
                        memory_format=args.memory_format or "contiguous",
                        grad_scaler=args.grad_scaler, torch_version=args.torch_version)
        except ExanteError as exc:
            raise token_hint(exc, args) from exc
    print_result(p.to_dict() if args.json else p.to_text(), args.json, caught)
    return 0


def cmd_estimate(args) -> int:
    """Run ``exante estimate`` (life-cycle kWh and kg CO2eq; returns the exit code)."""
    from predictor.carbon import lifecycle

    if args.input is not None:
        shape_and_batch(argparse.Namespace(input=args.input, batch=1))   # names --input
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
            raise token_hint(exc, args) from exc
    print_result(report.to_dict() if args.json else report.to_text(), args.json, caught)
    return 0


# Sub-commands defined in other modules: name -> (module, function(sub), help). Only the one
# named on the command line is imported (the others are listed with their help), so
# `exante --help` does not import torch. Register a new sub-command by adding a line here.
EXTERNAL_COMMANDS = {
    "calc": ("predictor.cli.calc", "add_parser",
             "calculator: energy and CO2 from device, count and hours (or params/tokens at an "
             "MFU) - no fitted model needed"),
    "serve": ("predictor.cli.serve", "add_parser",
              "local page on 127.0.0.1: calculator, LLM serving and estimate forms"),
    "bench": ("predictor.bench.cli", "add_bench_parser",
              "validate on public measurements (IrEne, EC-NAS)"),
    "calibrate": ("predictor.cli.calibrate", "add_parser",
                  "adapt a GPU's model to a few of your own measured runs"),
    "compare": ("predictor.cli.compare", "add_parser",
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
    add_model_args(p)
    p.set_defaults(func=cmd_features)

    add_parsers(sub)                        # profile, sweep, fit

    p = sub.add_parser("predict", help="predict time and energy per call of one batch")
    add_model_args(p, dtypes=PREDICT_DTYPES)
    add_condition_args(p)
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
    add_condition_args(p)
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
    """The ``exante`` entry point: run the command line ``argv``; returns the exit code (0, 1
    internal error, 2 user error)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv or os.environ.get("EXANTE_DEBUG", "") not in ("", "0")
    verbose, quiet = "-v" in argv or "--verbose" in argv, "--quiet" in argv
    argv = [a for a in argv if a not in GLOBAL_FLAGS]
    if argv[:1] and argv[0] in _LIST_HARDWARE_COMMANDS and "--list-hardware" in argv:
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
