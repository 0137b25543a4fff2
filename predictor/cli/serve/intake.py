"""Reading requests without a thread per connection: one selector thread collects each
connection's bytes until the request is complete (headers, then ``Content-Length`` bytes of
body), and only then hands ``(socket, bytes)`` to a handler thread.

A slow or idle client therefore holds a socket and a small buffer, never a thread; a
connection that has not sent a complete request within ``deadline_s`` (counted from accept,
not per byte: trickling does not help) is closed. A body announced larger than ``max_body``
is handed over at once so the handler can answer 413 without reading it. At most
:data:`MAX_PENDING` connections and :data:`MAX_BUFFERED_BYTES` bytes wait at once.
"""

from __future__ import annotations

import logging
import re
import selectors
import socket
import threading
import time
from typing import Callable

logger = logging.getLogger(__name__)

_LENGTH = re.compile(rb"\ncontent-length:[ \t]*(\d{1,19})[ \t]*\r?(?:\n|$)", re.IGNORECASE)
MAX_HEAD_BYTES = 64 * 1024
MAX_PENDING = 1024                 # connections still sending their request
MAX_BUFFERED_BYTES = 64 << 20      # all their bytes together; beyond, the sender is dropped


def request_complete(buf: bytes, max_body: int) -> bool:
    """True when ``buf`` holds a whole request (or enough to refuse it)."""
    ends = [i for i in (buf.find(b"\r\n\r\n"), buf.find(b"\n\n")) if i >= 0]
    if not ends:
        return len(buf) > MAX_HEAD_BYTES          # the handler refuses the oversized head
    end = min(ends)
    m = _LENGTH.search(buf[:end + 2])
    n = int(m.group(1)) if m else 0
    if n > max_body:
        return True                               # 413 without reading the body
    body_start = end + (4 if buf[end:end + 4] == b"\r\n\r\n" else 2)
    return len(buf) - body_start >= n


class RequestIntake:
    """Selector thread; ``dispatch(sock, addr, data)`` is called with each complete request."""

    def __init__(self, dispatch: Callable, deadline_s: float, max_body: int):
        self._dispatch, self.deadline_s, self.max_body = dispatch, deadline_s, max_body
        self._sel = selectors.DefaultSelector()
        self._lock = threading.Lock()
        self._new: list = []
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._sel.register(self._wake_r, selectors.EVENT_READ, None)
        self._stop = False
        self._buffered = 0
        self._thread = threading.Thread(target=self._loop, name="exante-intake", daemon=True)
        self._thread.start()

    def add(self, sock: socket.socket | None, addr) -> None:
        """Hand an accepted socket to the selector thread (``None``: wake it to stop)."""
        with self._lock:
            self._new.append((sock, addr))
        try:
            self._wake_w.send(b"x")
        except OSError:
            pass

    def close(self) -> None:
        """Stop the selector thread and drop the sockets it holds."""
        self._stop = True
        self.add(None, None)
        self._thread.join(timeout=5)
        for key in list(self._sel.get_map().values()):
            if key.data is not None:
                self._drop(key.fileobj)
        self._sel.close()
        self._wake_r.close()
        self._wake_w.close()

    def pending(self) -> int:
        """Number of connections being read."""
        return len(self._sel.get_map()) - 1

    def _forget(self, sock) -> None:
        try:
            key = self._sel.unregister(sock)
        except (KeyError, ValueError):
            return
        if key.data is not None:
            self._buffered -= len(key.data[1])

    def _drop(self, sock) -> None:
        self._forget(sock)
        try:
            sock.close()
        except OSError:
            pass

    def _accept_new(self) -> None:
        with self._lock:
            new, self._new = self._new, []
        for sock, addr in new:
            if sock is None:
                continue
            if self.pending() >= MAX_PENDING:
                sock.close()
                continue
            sock.setblocking(False)
            self._sel.register(sock, selectors.EVENT_READ,
                               [addr, bytearray(), time.monotonic() + self.deadline_s])

    def _loop(self) -> None:
        while not self._stop:
            for key, _ in self._sel.select(timeout=0.25):
                if key.data is None:
                    try:
                        self._wake_r.recv(4096)
                    except OSError:
                        pass
                    self._accept_new()
                    continue
                self._read(key.fileobj, key.data)
            now = time.monotonic()
            for key in list(self._sel.get_map().values()):
                if key.data is not None and key.data[2] < now:
                    logger.debug("client %s: no complete request within %.1f s; closed",
                                 key.data[0][0], self.deadline_s)
                    self._drop(key.fileobj)

    def _read(self, sock, data) -> None:
        addr, buf, _ = data
        try:
            chunk = sock.recv(65536)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            chunk = b""
        if not chunk:                                 # the client left
            self._drop(sock)
            return
        if self._buffered + len(chunk) > MAX_BUFFERED_BYTES:
            logger.debug("client %s: request bytes over the intake budget; closed", addr[0])
            self._drop(sock)
            return
        buf += chunk
        self._buffered += len(chunk)
        if request_complete(bytes(buf), self.max_body):
            self._forget(sock)
            sock.setblocking(True)
            self._dispatch(sock, addr, bytes(buf))
