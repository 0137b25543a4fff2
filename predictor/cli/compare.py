"""``exante compare``: arguments and command (the computation is
:func:`predictor.search.compare.compare`)."""

from __future__ import annotations

import json

from predictor.search.compare import check_plot_path, compare
from profiling.errors import ExanteError

__all__ = ["add_parser", "cmd_compare"]

def add_parser(sub) -> None:
    """Register ``exante compare`` on an argparse sub-parsers object."""
    p = sub.add_parser("compare", help="rank designs by predicted energy (wide vs deep, ...)")
    p.add_argument("model_refs", metavar="MODEL_REF", nargs="+",
                   help="two or more MODEL_REFs (mlp:, mlpseq:, convstack:, encoder:, "
                        "torchvision:, timm:, file.py:factory, ...)")
    p.add_argument("--input", required=True, help="per-sample input shape, e.g. 100 or 3x224x224")
    p.add_argument("--batch", required=True, help="batch size (positive int)")
    p.add_argument("--mode", choices=("inference", "train_step"), default="inference")
    p.add_argument("--dtype", choices=("fp32", "bf16", "fp16"), default="fp32",
                   help="fp32, or autocast mixed precision bf16 | fp16")
    p.add_argument("--memory-format", choices=("contiguous", "channels_last"),
                   default="contiguous", help="channels_last: model and 4-D input in NHWC")
    p.add_argument("--grad-scaler", action="store_true",
                   help="train_step with torch.amp.GradScaler (fp16 training)")
    p.add_argument("--torch-version", default=None, metavar="X.Y.Z",
                   help="the torch version the designs run on (recorded with the result)")
    p.add_argument("--optimizer", choices=("sgd", "adam", "adamw"), default=None,
                   help="train_step optimizer (default sgd; adam with --epochs)")
    p.add_argument("--epochs", type=int, default=None, help="training run: epochs")
    p.add_argument("--dataset-size", type=int, default=None, help="training run: samples")
    p.add_argument("--pue", type=float, default=None, help="data-centre PUE (default 1.58)")
    grid = p.add_mutually_exclusive_group()
    grid.add_argument("--region", default=None, help="grid region, e.g. aws:us-east-1")
    grid.add_argument("--intensity", default=None, help="grid gCO2eq/kWh or coal|gas|hydro|...")
    p.add_argument("--hardware", default="h100")
    p.add_argument("--plot", default=None, metavar="FILE", help="write a .png or .svg chart")
    p.add_argument("--json", action="store_true",
                   help='print {"designs": [...]} in the order given')
    p.set_defaults(func=cmd_compare)


def cmd_compare(args) -> int:
    """Run ``exante compare`` (text or JSON on stdout; returns the exit code)."""
    if args.epochs is not None and args.epochs < 1:
        raise ExanteError(f"--epochs must be a positive integer, got {args.epochs}")
    if args.dataset_size is not None and args.dataset_size < 1:
        raise ExanteError(f"--dataset-size must be a positive integer, got {args.dataset_size}")
    if args.plot is not None:
        check_plot_path(args.plot)          # before the work, not after it
    c = compare(args.model_refs, args.input, args.batch, mode=args.mode, dtype=args.dtype,
                optimizer=args.optimizer, hardware=args.hardware, epochs=args.epochs,
                dataset_size=args.dataset_size, pue=args.pue, region=args.region,
                intensity=args.intensity, memory_format=args.memory_format,
                grad_scaler=args.grad_scaler, torch_version=args.torch_version)
    if args.plot is not None:
        c.plot(args.plot)
    if args.json:
        print(json.dumps(c.to_dict(), indent=2, default=str))
    else:
        print(c.to_text())
        if args.plot is not None:
            print(f"plot written to {args.plot}")
    return 0
