"""The HTTP side of ``exante serve``: loopback-only, hardened ``http.server``.

- Host and Origin: a request whose ``Host`` is not ``127.0.0.1``, ``localhost`` or ``[::1]``
  (any port) is refused with 403, and so is one whose ``Origin`` is not that same loopback
  origin (DNS rebinding, cross-site form posts).
- Connections: one selector thread reads every request (:mod:`.intake`); a handler thread
  starts only once a request is complete, at most ``max_threads`` at once (503 beyond), so
  slow or idle clients hold no thread; a request not complete ``timeout_s`` (default 10 s)
  after accept is dropped, and the same timeout bounds writing the answer; HTTP/1.0, one
  request per connection; a client that disconnects or times out is logged at DEBUG, never
  printed as a traceback.
- Requests: GET (query string) or POST (``application/x-www-form-urlencoded``, at most 1 MB,
  else 413/415/411); a path with ``..`` or a backslash, plain or percent-encoded, is refused
  (400); only the routes below exist (404 otherwise).

Routes: ``/`` (forms), ``/calc``, ``/serving``, ``/estimate`` (HTML), ``/api/calc``,
``/api/serving``, ``/api/estimate`` (JSON). Every response carries a Content-Security-Policy
without scripts.
"""

from __future__ import annotations

import io
import json
import logging
import re
import sys
import threading
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Callable
from urllib.parse import unquote, urlsplit

from predictor.cli.serve.forms import (
    CALC_FIELDS,
    ESTIMATE_FIELDS,
    SERVING_FIELDS,
    calc_from_fields,
    check_finite,
    estimate_from_fields,
    parse_fields,
    serving_from_fields,
)
from predictor.cli.serve.intake import RequestIntake
from predictor.cli.serve.pages import (
    calc_page,
    error_page,
    estimate_page,
    index_page,
    serving_page,
)
from profiling.errors import ExanteError

logger = logging.getLogger(__name__)

HOST = "127.0.0.1"
DEFAULT_PORT = 8765
MAX_BODY_BYTES = 1 << 20
DEFAULT_TIMEOUT_S = 10.0
DEFAULT_MAX_THREADS = 32
_LOOPBACK = re.compile(r"(?:127\.0\.0\.1|localhost|\[::1\])(?::\d{1,5})?", re.IGNORECASE)
_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; "
                               "form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    # same-origin, not no-referrer: with no-referrer Chrome posts the page's forms with
    # "Origin: null", which the Origin check must refuse (the browser test caught it)
    "X-Content-Type-Options": "nosniff", "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store"}
_ROUTES = {"/calc": "calc", "/serving": "serving", "/estimate": "estimate"}
# route kind -> (accepted fields, computation, HTML page)
_KINDS = {"calc": (CALC_FIELDS, lambda v, h: calc_from_fields(v), calc_page),
          "serving": (SERVING_FIELDS, lambda v, h: serving_from_fields(v),
                      serving_page),
          "estimate": (ESTIMATE_FIELDS,
                       lambda v, h: estimate_from_fields(v, type(h).predict_fn),
                       estimate_page)}


class _Refused(Exception):
    """An HTTP-level refusal: status and one-line message."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


def host_allowed(host: str | None) -> bool:
    """``Host`` is a loopback name or address, with an optional port."""
    return bool(host) and _LOOPBACK.fullmatch((host or "").strip()) is not None


def origin_allowed(origin: str | None, host: str | None) -> bool:
    """No ``Origin`` (a navigation, curl), or exactly ``http://<the loopback Host>``."""
    if origin is None:
        return True
    return (host is not None and host_allowed(host)
            and origin.strip().lower() == f"http://{host.strip().lower()}")


class Handler(BaseHTTPRequestHandler):
    """GET and POST of the page's routes; ``predict_fn`` (class attribute) is injectable."""

    predict_fn: Callable | None = None
    server_version = "exante"
    sys_version = ""
    protocol_version = "HTTP/1.0"
    timeout = DEFAULT_TIMEOUT_S          # socket timeout per connection (StreamRequestHandler)

    def setup(self):
        super().setup()
        data = getattr(self.server, "take_buffer", lambda s: None)(self.request)
        if data is not None:                 # the request as the intake thread read it
            self.rfile = io.BytesIO(data)

    def log_message(self, fmt, *args):   # request lines and timeouts: DEBUG, not the terminal
        logger.debug("%s " + fmt, self.client_address[0], *args)

    def _send(self, status: int, body: str, ctype: str) -> None:
        data = body.encode("utf-8")
        self.send_response(int(status))
        self.send_header("Content-Type", f"{ctype}; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        for k, v in _HEADERS.items():
            self.send_header(k, v)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    def _reply_error(self, status: int, message: str, api: bool, form: str = "",
                     values: dict | None = None) -> None:
        if api:
            self._send(status, json.dumps({"error": message}), "application/json")
        else:
            self._send(status, error_page(message, form, values), "text/html")

    # ---------------------------------------------------------------- checks
    def _check_request(self) -> tuple[str, str, bool]:
        """Host, Origin and path checks; returns ``(route, query, api)``."""
        host = self.headers.get("Host")
        if not host_allowed(host):
            raise _Refused(HTTPStatus.FORBIDDEN,
                           f"refused: Host {host!r} is not a loopback name; this page answers "
                           "only 127.0.0.1, localhost or [::1] (any port)")
        origin = self.headers.get("Origin")
        if not origin_allowed(origin, host):
            raise _Refused(HTTPStatus.FORBIDDEN,
                           f"refused: Origin {origin!r} is not this page (http://{host}); "
                           "submit the forms from the page itself")
        url = urlsplit(self.path)
        if not self.path.startswith("/") or url.scheme or url.netloc:
            raise _Refused(HTTPStatus.BAD_REQUEST, "the request path must start with /")
        path = unquote(unquote(url.path))
        if ".." in path.split("/") or "\\" in path or "\x00" in path or "//" in path:
            raise _Refused(HTTPStatus.BAD_REQUEST, "path refused ('..', '//', backslash or "
                           "NUL): this page serves no files")
        api = path.startswith("/api/")
        return (path[4:] if api else path), url.query, api

    def _read_form_body(self) -> str:
        if self.headers.get("Transfer-Encoding"):
            raise _Refused(HTTPStatus.LENGTH_REQUIRED, "send the form with a Content-Length "
                           "(no Transfer-Encoding)")
        ctype = (self.headers.get("Content-Type") or "").split(";")[0].strip().lower()
        if ctype != "application/x-www-form-urlencoded":
            raise _Refused(HTTPStatus.UNSUPPORTED_MEDIA_TYPE,
                           f"Content-Type {ctype or 'missing'!r} not accepted; send "
                           "application/x-www-form-urlencoded (an HTML form's default)")
        length = self.headers.get("Content-Length")
        if length is None:
            raise _Refused(HTTPStatus.LENGTH_REQUIRED, "a POST needs a Content-Length")
        if not length.strip().isdigit():
            raise _Refused(HTTPStatus.BAD_REQUEST, f"bad Content-Length {length!r}")
        n = int(length)
        if n > MAX_BODY_BYTES:
            raise _Refused(HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
                           f"body of {n} bytes refused; at most {MAX_BODY_BYTES} bytes (1 MB)")
        data = self.rfile.read(n)
        if len(data) < n:
            raise ConnectionAbortedError("client closed before sending the whole body")
        try:
            return data.decode("utf-8")
        except UnicodeDecodeError:
            raise _Refused(HTTPStatus.BAD_REQUEST, "the form body is not UTF-8") from None

    # ---------------------------------------------------------------- methods
    def do_GET(self):  # noqa: N802 (http.server's name)
        self._handle(post=False)

    def do_POST(self):  # noqa: N802
        self._handle(post=True)

    def do_HEAD(self):  # noqa: N802
        self._handle(post=False)

    def _handle(self, post: bool) -> None:
        api, route, values = self.path.startswith("/api/"), "", None
        try:
            route, query, api = self._check_request()
            if route == "/" and not api and not post:
                return self._send(200, index_page(), "text/html")
            if route not in _ROUTES:
                raise _Refused(HTTPStatus.NOT_FOUND, f"no page {route!r}; pages: /, /calc, "
                               "/serving, /estimate, /api/calc, /api/serving, /api/estimate")
            accepted, compute, html_page = _KINDS[_ROUTES[route]]
            raw = self._read_form_body() if post else query
            values = parse_fields(raw, accepted)
            result = compute(values, self)
            check_finite(result)
            if api:
                return self._send(200, json.dumps(result.to_dict(), default=str),
                                  "application/json")
            return self._send(200, html_page(result, values), "text/html")
        except _Refused as exc:
            return self._reply_error(exc.status, str(exc), api)
        except ExanteError as exc:
            return self._reply_error(HTTPStatus.BAD_REQUEST, str(exc), api,
                                     _ROUTES.get(route, ""), values)
        except (ConnectionError, TimeoutError):
            raise                                  # the server logs these at DEBUG
        except Exception as exc:  # noqa: BLE001 - logged with its traceback, answered 500
            logger.exception("exante serve: internal error on %s", self.path[:200])
            return self._reply_error(HTTPStatus.INTERNAL_SERVER_ERROR,
                                     f"internal error: {type(exc).__name__}: {exc}", api)


_BUSY = (b"HTTP/1.0 503 Service Unavailable\r\nRetry-After: 1\r\nContent-Type: text/plain\r\n"
         b"Content-Length: 33\r\n\r\nexante serve: busy, retry shortly")


class ExanteServer(ThreadingHTTPServer):
    """ThreadingHTTPServer whose requests are read by one selector thread (:mod:`.intake`):
    a handler thread starts only for a complete request, at most ``max_threads`` at once
    (503 beyond); client disconnects are logged quietly."""

    daemon_threads = True
    request_queue_size = 128

    def __init__(self, address, handler, max_threads: int = DEFAULT_MAX_THREADS,
                 deadline_s: float = DEFAULT_TIMEOUT_S):
        super().__init__(address, handler)
        self._slots = threading.BoundedSemaphore(max_threads)
        self._buffers: dict = {}
        self.intake = RequestIntake(self._start_handler, deadline_s, MAX_BODY_BYTES)

    def process_request(self, request, client_address):
        self.intake.add(request, client_address)          # no thread until it is complete

    def _start_handler(self, sock, addr, data: bytes) -> None:
        if not self._slots.acquire(blocking=False):
            try:
                sock.settimeout(1.0)
                sock.sendall(_BUSY)
            except OSError:
                pass
            self.shutdown_request(sock)
            return
        self._buffers[sock] = data
        try:
            threading.Thread(target=self._handle, args=(sock, addr), daemon=True).start()
        except RuntimeError:                              # cannot start a thread
            self._buffers.pop(sock, None)
            self._slots.release()
            self.shutdown_request(sock)

    def _handle(self, sock, addr) -> None:
        try:
            self.finish_request(sock, addr)
        except Exception:  # noqa: BLE001 - reported by handle_error (quiet for disconnects)
            self.handle_error(sock, addr)
        finally:
            self._buffers.pop(sock, None)
            self.shutdown_request(sock)
            self._slots.release()

    def take_buffer(self, sock) -> bytes | None:
        """The bytes already read from ``sock`` by the intake (once)."""
        return self._buffers.pop(sock, None)

    def server_close(self):
        self.intake.close()
        super().server_close()

    def handle_error(self, request, client_address):
        """Log a request's failure: disconnects at DEBUG, the rest at ERROR with the
        traceback."""
        exc = sys.exc_info()[1]
        if isinstance(exc, (ConnectionError, TimeoutError)):
            logger.debug("client %s: %s: %s", client_address[0], type(exc).__name__, exc)
        else:
            logger.error("exante serve: %s while answering %s: %s", type(exc).__name__,
                         client_address[0], exc, exc_info=True)


def make_server(port: int = DEFAULT_PORT, predict_fn: Callable | None = None, *,
                timeout_s: float = DEFAULT_TIMEOUT_S,
                max_threads: int = DEFAULT_MAX_THREADS) -> ExanteServer:
    """A server bound to 127.0.0.1:``port`` (0 = any free port); not started."""
    attrs = {"timeout": float(timeout_s),
             "predict_fn": staticmethod(predict_fn) if predict_fn else None}
    handler = type("ExanteHandler", (Handler,), attrs)
    return ExanteServer((HOST, int(port)), handler, max_threads=max_threads,
                        deadline_s=float(timeout_s))


def serve_in_thread(port: int = 0, predict_fn: Callable | None = None, **kwargs):
    """Start a server in a daemon thread; returns ``(server, base_url)``. Stop with
    ``server.shutdown(); server.server_close()``."""
    server = make_server(port, predict_fn, **kwargs)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://{HOST}:{server.server_address[1]}"
