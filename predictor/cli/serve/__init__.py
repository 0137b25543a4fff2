"""``exante serve``: a local page (127.0.0.1 only) with the calculator form (hours, or an LLM
training run ex ante), the LLM serving form and the life-cycle estimate form; results lead
with a breakdown chart (inline SVG, no script).

Standard library only (``http.server``). Modules: :mod:`.forms` (fields, the MODEL_REF gate:
zoo and generator references only, never a file or module; computations with the CLI's
validation), :mod:`.pages` (HTML, SVG charts, escaping), :mod:`.server` (Host/Origin checks,
timeouts, thread cap, body limits, routes). Routes: ``/`` (forms; they POST), ``/calc``,
``/serving`` and ``/estimate`` (HTML, GET or POST), ``/api/calc``, ``/api/serving`` and
``/api/estimate`` (JSON, GET or POST).
A bad input answers 400 with one readable line.
"""

from __future__ import annotations

from predictor.cli.serve.forms import (
    CALC_FIELDS,
    ESTIMATE_FIELDS,
    PAGE_REF_SCHEMES,
    SERVING_FIELDS,
    calc_from_fields,
    check_page_model_ref,
    estimate_from_fields,
    parse_fields,
    serving_from_fields,
)
from predictor.cli.serve.pages import (
    calc_page,
    estimate_page,
    index_page,
    interval_chart,
    serving_page,
)
from predictor.cli.serve.server import (
    DEFAULT_PORT,
    HOST,
    MAX_BODY_BYTES,
    ExanteServer,
    Handler,
    host_allowed,
    make_server,
    origin_allowed,
    serve_in_thread,
)
from profiling.errors import ExanteError

__all__ = ["CALC_FIELDS", "DEFAULT_PORT", "ESTIMATE_FIELDS", "HOST", "MAX_BODY_BYTES",
           "PAGE_REF_SCHEMES", "SERVING_FIELDS", "ExanteServer", "Handler", "add_parser",
           "calc_from_fields", "calc_page", "check_page_model_ref", "estimate_from_fields",
           "estimate_page", "host_allowed", "index_page", "interval_chart", "make_server",
           "origin_allowed", "parse_fields", "run_cli", "serve_in_thread", "serving_from_fields",
           "serving_page"]


def add_parser(sub) -> None:
    """Register ``exante serve``."""
    p = sub.add_parser(
        "serve", help="local page on 127.0.0.1: calculator, LLM serving and estimate forms",
        description="A local web page on 127.0.0.1 with the calculator (hours or an LLM "
                    "training run), LLM serving and estimate forms. "
                    "It answers only loopback Host/Origin headers and builds only zoo and "
                    "generator models (torchvision:, timm:, hf:, mlp:, mlpseq:, convstack:, "
                    "encoder:), never a file or module.")
    p.add_argument("--port", type=int, default=DEFAULT_PORT,
                   help=f"port on 127.0.0.1 (default {DEFAULT_PORT}; 0 = any free port)")
    p.set_defaults(func=run_cli)


def run_cli(args) -> int:
    """Run ``exante serve`` until Ctrl-C; returns the exit code."""
    if not 0 <= args.port <= 65535:
        raise ExanteError(f"--port must be in 0..65535, got {args.port}")
    try:
        server = make_server(args.port)
    except OSError as exc:
        raise ExanteError(f"cannot listen on {HOST}:{args.port}: {exc.strerror or exc}") from None
    print(f"exante serve: http://{HOST}:{server.server_address[1]}/  (Ctrl-C to stop)",
          flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        print("exante serve: stopped", flush=True)
    finally:
        server.server_close()
    return 0
