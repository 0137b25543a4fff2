"""``exante serve``: a local page (127.0.0.1 only) with the calculator form and the
predict/estimate form, results with a breakdown chart (inline SVG, no JavaScript).

Standard library only (``http.server``). Routes:

- ``GET /``                       the two forms
- ``GET /calc?device=..&count=..`` calculator result page; ``GET /api/calc?..`` the same as JSON
- ``GET /estimate?model=..``      life-cycle estimate page; ``GET /api/estimate?..`` as JSON

Every input is validated server-side by the same code as the CLI (:func:`predictor.calc`,
:class:`predictor.lifecycle.Scenario`); a bad one answers 400 with one readable line.
Unknown parameters are refused by name.
"""

from __future__ import annotations

import html
import json
import threading
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Callable
from urllib.parse import parse_qs, urlsplit

from predictor import carbon
from predictor.calc import calc, human_energy, human_mass
from profiling.errors import ExanteError

HOST = "127.0.0.1"
DEFAULT_PORT = 8765
CALC_FIELDS = ("device", "count", "hours", "gpu_hours", "power_w", "utilization", "pue",
               "region", "intensity", "offset_pct", "params", "tokens", "mfu", "dtype", "tp",
               "pp")
ESTIMATE_FIELDS = ("model", "input", "batch", "epochs", "dataset_size", "region", "pue",
                   "inferences", "inference_batch", "gpus", "hardware", "optimizer", "dtype")

_STYLE = """body{font-family:system-ui,sans-serif;max-width:60rem;margin:2rem auto;padding:0 1rem}
form{border:1px solid #ccc;border-radius:6px;padding:1rem;margin:1rem 0}
label{display:inline-block;min-width:11rem;margin:.2rem 0}input{width:14rem}
.err{color:#a00;font-weight:bold}table{border-collapse:collapse}td{padding:.15rem .6rem}
small{color:#555}pre{white-space:pre-wrap}"""


def _page(title: str, body: str) -> str:
    return (f"<!doctype html><html lang=en><head><meta charset=utf-8><title>{html.escape(title)}"
            f"</title><style>{_STYLE}</style></head><body><h1>{html.escape(title)}</h1>{body}"
            f"<p><a href='/'>back to the forms</a></p></body></html>")


def _input(name: str, label: str, value: str = "", hint: str = "") -> str:
    return (f"<label for={name}>{html.escape(label)}</label> <input id={name} name={name} "
            f"value='{html.escape(value, quote=True)}'> <small>{html.escape(hint)}</small><br>")


def index_page() -> str:
    calc_form = "".join([
        "<form action='/calc' method=get><h2>Calculator</h2>",
        _input("device", "device", "v100", "e.g. v100, a100-80gb, h100, tpu-v3"),
        _input("count", "count", "8"), _input("hours", "hours (wall-clock)", "36"),
        _input("gpu_hours", "or device-hours", ""),
        _input("power_w", "power per device (W)", "", "empty: catalogue TDP"),
        _input("utilization", "or utilization (0-1]", ""),
        _input("pue", "PUE", "", "empty: 1.0"),
        _input("region", "region", "aws:us-east-1", "aws:.., gcp:.., azure:.., france, us:average"),
        _input("intensity", "or intensity", "", "gCO2eq/kWh, or coal|gas|hydro|oil|nuclear"),
        _input("offset_pct", "offset (%)", ""),
        "<details><summary>LLM-scale training instead of hours</summary>",
        _input("params", "parameters N", ""), _input("tokens", "tokens D", ""),
        _input("mfu", "MFU (0-1]", ""), _input("dtype", "dtype", "bf16"),
        _input("tp", "tensor parallel", "1"), _input("pp", "pipeline parallel", "1"),
        "</details><button type=submit>calculate</button></form>"])
    est_form = "".join([
        "<form action='/estimate' method=get><h2>Predict / estimate (fitted model)</h2>",
        _input("model", "model reference", "mlp:in=100,depth=10,width=100,out=1",
               "torchvision:NAME, timm:NAME, mlp:..., file.py:factory"),
        _input("input", "per-sample input", "100", "e.g. 3x224x224"),
        _input("batch", "batch", "256"), _input("epochs", "epochs", "10"),
        _input("dataset_size", "dataset size", "100000"),
        _input("inferences", "inferences served", ""),
        _input("region", "region", "", "empty: world average"),
        _input("pue", "PUE", "", "empty: 1.58 (estimate's default)"),
        _input("hardware", "hardware id", "h100"),
        "<button type=submit>estimate</button></form>"])
    return _page("exante — energy and CO2 before training", calc_form + est_form)


def _bar_chart(parts: list[tuple[str, float]], unit: str) -> str:
    """Horizontal bar chart (inline SVG) of ``(label, value)``."""
    top = max((v for _, v in parts), default=0) or 1.0
    rows, y = [], 10
    for label, v in parts:
        w = 360 * v / top
        rows.append(f"<text x=0 y={y + 14}>{html.escape(label)}</text>"
                    f"<rect x=170 y={y} width={w:.1f} height=18 fill='#4a7ab5'/>"
                    f"<text x={175 + w:.1f} y={y + 14}>{v:,.4g} {html.escape(unit)}</text>")
        y += 26
    return (f"<svg role=img aria-label='breakdown' width=640 height={y + 10} "
            f"font-size=13>{''.join(rows)}</svg>")


def _params(query: str, accepted: tuple[str, ...]) -> dict:
    raw = parse_qs(query, keep_blank_values=True)
    unknown = [k for k in raw if k not in accepted]
    if unknown:
        raise ExanteError(f"unknown field(s) {', '.join(sorted(unknown))}; accepted: "
                          f"{', '.join(accepted)}")
    out = {}
    for k, vals in raw.items():
        if len(vals) > 1:
            raise ExanteError(f"field {k} given {len(vals)} times; give it once")
        v = vals[0].strip()
        if v:
            out[k] = v
    return out


def calc_from_query(query: str):
    p = _params(query, CALC_FIELDS)
    return calc(p.get("device"), count=p.get("count", 1), hours=p.get("hours"),
                gpu_hours=p.get("gpu_hours"), power_w=p.get("power_w"),
                utilization=p.get("utilization"), pue=p.get("pue"), region=p.get("region"),
                intensity=p.get("intensity"), offset_pct=p.get("offset_pct"),
                params=p.get("params"), tokens=p.get("tokens"), mfu=p.get("mfu"),
                dtype=p.get("dtype", "bf16"), tp=p.get("tp", 1), pp=p.get("pp", 1))


def calc_page(r) -> str:
    parts = [("device energy", r.device_energy_kwh),
             ("facility overhead (PUE)", r.energy_kwh - r.device_energy_kwh)]
    rows = "".join(f"<tr><td>{html.escape(k)}</td><td>{html.escape(v)}</td></tr>" for k, v in [
        ("devices", f"{r.count} × {r.device or 'custom'}"),
        ("duration", f"{r.hours:,.4g} h ({r.device_hours:,.4g} device-hours)"),
        ("power per device", f"{r.power_w:,.4g} W"),
        ("device energy (before PUE)", human_energy(r.device_energy_kwh)),
        ("facility energy", f"{human_energy(r.energy_kwh)} (PUE {r.pue:g})"),
        ("CO2eq", f"{human_mass(r.co2_kg)} at {r.grid_intensity_g_per_kwh:g} g/kWh "
                  f"({r.grid_label})"),
        ("after offsets", human_mass(r.co2_kg_after_offset))])
    srcs = "".join(f"<li><b>{html.escape(k)}</b>: {html.escape(v)}</li>"
                   for k, v in r.sources.items())
    notes = "".join(f"<li>{html.escape(n)}</li>" for n in r.notes)
    return _page("Calculator result", f"<table>{rows}</table><h2>Breakdown (kWh)</h2>"
                 f"{_bar_chart(parts, 'kWh')}<h2>Sources</h2><ul>{srcs}</ul>"
                 f"<h2>Notes</h2><ul>{notes}</ul>")


def estimate_from_query(query: str, predict_fn: Callable | None = None):
    from predictor import lifecycle

    p = _params(query, ESTIMATE_FIELDS)
    for k in ("epochs", "dataset_size", "batch", "inferences", "inference_batch", "gpus", "pue"):
        if k in p:       # numbers as numbers; anything else goes on to a named error
            try:
                v = float(p[k])
                p[k] = int(v) if v.is_integer() and k != "pue" else v
            except ValueError:
                pass
    for need in ("model", "input"):
        if need not in p:
            raise ExanteError(f"field {need} is required")
    training = None
    if any(k in p for k in ("epochs", "dataset_size", "batch")):
        missing = [k for k in ("epochs", "dataset_size", "batch") if k not in p]
        if missing:
            raise ExanteError(f"a training run needs epochs, dataset_size and batch; missing "
                              f"{', '.join(missing)}")
        training = lifecycle.TrainingRun(p["epochs"], p["dataset_size"], p["batch"],
                                         optimizer=p.get("optimizer", "adam"),
                                         dtype=p.get("dtype", "fp32"))
    inference = None
    if "inferences" in p:
        inference = lifecycle.InferencePlan(p["inferences"], p.get("inference_batch", 1),
                                            dtype=p.get("dtype", "fp32"))
    region = p.get("region")
    if region is not None:
        carbon.grid_intensity(region)      # validate before any model is built
    scenario = lifecycle.Scenario(
        model=p["model"], input_shape=p["input"], training=training, inference=inference,
        pue=p.get("pue", carbon.DEFAULT_PUE), region=region,
        hardware=p.get("hardware", "h100"), gpus=p.get("gpus", 1))
    return lifecycle.estimate(scenario, predict_fn=predict_fn)


def estimate_page(report) -> str:
    d = report.to_dict()
    stages = d.get("stages", {})
    parts = [(name, s.get("energy_kwh", 0.0)) for name, s in stages.items()]
    pre = html.escape(report.to_text())
    return _page("Life-cycle estimate", f"<h2>Energy by stage (kWh)</h2>"
                 f"{_bar_chart(parts, 'kWh')}<pre>{pre}</pre>")


class Handler(BaseHTTPRequestHandler):
    """Routes GET requests; ``predict_fn`` (class attribute) is injectable for tests."""

    predict_fn: Callable | None = None
    server_version = "exante"

    def log_message(self, fmt, *args):  # keep the terminal quiet
        pass

    def _send(self, status: int, body: str, ctype: str) -> None:
        data = body.encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", f"{ctype}; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):  # noqa: N802 (http.server's name)
        url = urlsplit(self.path)
        api = url.path.startswith("/api/")
        route = url.path[4:] if api else url.path
        try:
            if route == "/" and not api:
                return self._send(200, index_page(), "text/html")
            if route == "/calc":
                r = calc_from_query(url.query)
                return (self._send(200, json.dumps(r.to_dict(), default=str), "application/json")
                        if api else self._send(200, calc_page(r), "text/html"))
            if route == "/estimate":
                predict_fn = type(self).predict_fn
                r = estimate_from_query(url.query, predict_fn)
                return (self._send(200, json.dumps(r.to_dict(), default=str), "application/json")
                        if api else self._send(200, estimate_page(r), "text/html"))
            return self._error(HTTPStatus.NOT_FOUND, f"no page {url.path}; pages: /, /calc, "
                               f"/estimate, /api/calc, /api/estimate", api)
        except ExanteError as exc:
            return self._error(HTTPStatus.BAD_REQUEST, str(exc), api)
        except Exception as exc:  # noqa: BLE001 - the page must answer, not hang
            return self._error(HTTPStatus.INTERNAL_SERVER_ERROR,
                               f"internal error: {type(exc).__name__}: {exc}", api)

    def _error(self, status: HTTPStatus, message: str, api: bool) -> None:
        if api:
            self._send(status, json.dumps({"error": message}), "application/json")
        else:
            self._send(status, _page("Input error", f"<p class=err>{html.escape(message)}</p>"),
                       "text/html")


def make_server(port: int = DEFAULT_PORT, predict_fn: Callable | None = None
                ) -> ThreadingHTTPServer:
    """A server bound to 127.0.0.1:``port`` (0 = any free port); not started."""
    handler = type("ExanteHandler", (Handler,), {"predict_fn": staticmethod(predict_fn)
                                                 if predict_fn else None})
    return ThreadingHTTPServer((HOST, int(port)), handler)


def serve_in_thread(port: int = 0, predict_fn: Callable | None = None):
    """Start a server in a daemon thread; returns ``(server, base_url)``. Stop with
    ``server.shutdown(); server.server_close()``."""
    server = make_server(port, predict_fn)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://{HOST}:{server.server_address[1]}"


def add_parser(sub) -> None:
    p = sub.add_parser("serve", help="local page on 127.0.0.1: calculator and estimate forms")
    p.add_argument("--port", type=int, default=DEFAULT_PORT,
                   help=f"port on 127.0.0.1 (default {DEFAULT_PORT}; 0 = any free port)")
    p.set_defaults(func=run_cli)


def run_cli(args) -> int:
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
    finally:
        server.server_close()
    return 0
