"""What the model-taking sub-commands of ``exante`` share (features, profile, predict, estimate):
the choices (modes, dtypes, optimizers), the model arguments (MODEL_REF, ``--input``,
``--batch``, ``--dtype``, ``--input-dtype``, ``--vocab``), the input checks (torch-free), the
model on the ``meta`` device, and printing a result with its held warnings."""

from __future__ import annotations

import json
import logging
import sys

from predictor.cli import help as cli_help
from predictor.cli import output as cli_output
from predictor.cli.checks import positive_int
from profiling.errors import ExanteError
from profiling.input_spec import check_batch, check_input_bytes, parse_input_shape

log = logging.getLogger(__name__)
MODES = ("inference", "train_step")
PROFILE_MODES = ("inference", "forward_backward", "train_step")
DTYPES = ("fp32", "bf16")
PREDICT_DTYPES = ("fp32", "bf16", "fp16")        # predict / estimate (autocast fp16 too)
OPTIMIZERS = ("sgd", "adam", "adamw")
INPUT_DTYPES = ("float32", "float16", "bfloat16", "int64", "int32")


def shape_and_batch(args) -> tuple[tuple[int, ...], int]:
    """``--input`` and ``--batch`` checked (positive, and a tensor torch can hold); torch-free."""
    shape, batch = parse_input_shape(args.input), check_batch(args.batch)
    check_input_bytes(shape, batch, input_dtype(args))
    return shape, batch


def input_dtype(args) -> str:
    """The input tensor's dtype name (``int64`` with ``--vocab``; default ``float32``)."""
    if getattr(args, "vocab", None) is not None:
        if args.input_dtype not in (None, "int64"):
            raise ExanteError(f"--vocab gives int64 token ids; it cannot be combined with "
                              f"--input-dtype {args.input_dtype}")
        return "int64"
    return getattr(args, "input_dtype", None) or "float32"


def token_hint(exc: ExanteError, args) -> ExanteError:
    """A float input fed to an embedding: say how to give token ids."""
    text = str(exc)
    if (getattr(args, "input_dtype", None) is None and getattr(args, "vocab", None) is None
            and ("Long, Int" in text or "'indices'" in text)):
        return ExanteError(f"{text.splitlines()[0]} -- the model takes token ids: add "
                           "--input-dtype int64 (or --vocab N)")
    return exc


def meta_model_and_inputs(args):
    """The model and example inputs on ``meta`` (features, predict): nothing is allocated."""
    from profiling.model_refs import example_inputs, resolve_model_on_meta

    shape, batch = shape_and_batch(args)
    log.info("building %s on the meta device", args.model_ref)
    model = resolve_model_on_meta(args.model_ref)
    if (args.model_ref.startswith("hf:") and len(shape) == 1 and args.input_dtype is None
            and args.vocab is None):         # a Hugging Face model: --input is the sequence length
        from profiling.model_refs import hf_example_inputs

        return model, hf_example_inputs(model, batch, seq_len=shape[0])
    inputs = example_inputs(shape, batch, device="meta", dtype=args.input_dtype or "float32",
                            vocab=args.vocab)
    return model, inputs


def print_json(obj) -> None:
    """Print ``obj`` as indented JSON (non-JSON values as strings)."""
    print(json.dumps(obj, indent=2, default=str))


def print_result(result, as_json: bool, caught=()) -> None:
    """Print the result (a JSON object or text), then the held warnings it does not state."""
    text = json.dumps(result, indent=2, default=str) if as_json else str(result)
    print(text)
    sys.stdout.flush()
    said = json.dumps(result, default=str, ensure_ascii=False) if as_json else text
    cli_output.emit(caught, already_said=said)


def add_model_args(p, *, batch_required=True, dtypes=DTYPES):
    """MODEL_REF, --input, --batch, --dtype, --input-dtype, --vocab, --json."""
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


def add_condition_args(p):
    """--memory-format, --grad-scaler, --torch-version (predict, estimate)."""
    p.add_argument("--memory-format", choices=("contiguous", "channels_last"), default=None,
                   help="channels_last: model and 4-D input in NHWC (default contiguous)")
    p.add_argument("--grad-scaler", action="store_true",
                   help="training with torch.amp.GradScaler (fp16 mixed precision)")
    p.add_argument("--torch-version", default=None, metavar="X.Y.Z",
                   help="the torch version the model runs on (recorded with the result)")
