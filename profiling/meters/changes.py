"""Energy over a window from a counter's *changes* (the H100 reference set's method).

:class:`CounterChangeMeter` (``"<inner>-changes"``, e.g. ``"nvml-changes"``) wraps a counter
meter; a background thread reads the counter every 2 ms and logs each change, and the energy
over a window is the average power between the first and last counter change inside it x the
window's length (``shared/reference/h100/README.md``): no quantisation error from the ~100 ms
counter steps.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from bisect import bisect_right
from typing import Callable

from profiling.errors import ExanteError
from profiling.meters.base import EnergyMeter

__all__ = ["CounterChangeMeter"]

logger = logging.getLogger(__name__)


class CounterChangeMeter(EnergyMeter):
    """Energy over a window from the counter's *changes* (the H100 reference set's method).

    A daemon thread reads ``inner.energy_j()`` every ``poll_s`` (2 ms) and logs ``(t, E)``
    whenever the value changes (``t`` = ``clock()`` right after the read). For a window
    ``[t0, t1]`` (same clock), :meth:`interval_energy_j` takes the first and last logged changes
    inside it, ``P = (E_last - E_first) / (t_last - t_first)`` (W), and returns ``P x (t1 - t0)``
    (J). A counter that steps every ~100 ms thus gives the window's average power without the
    up-to-one-step quantisation of two edge reads; the timestamps' lag (<= one poll + one read)
    is the same at both ends and cancels. ``protocol.measure`` uses :meth:`interval_energy_j`
    whenever a meter has it. ``energy_j()`` reads the inner counter directly.

    ``last_interval`` holds the last window's ``n_changes`` and ``span_s`` (seconds between
    the first and last change). Changes older than ``keep_s`` are dropped.
    """

    measured = True

    def __init__(self, inner: EnergyMeter, poll_s: float = 0.002, *, clock: Callable[[], float] = time.perf_counter,
                 keep_s: float = 900.0, autostart: bool = True):
        if not poll_s > 0:
            raise ExanteError(f"poll_s must be > 0, got {poll_s!r}")
        self.inner = inner
        self.name = f"{inner.name}-changes"
        self.measured = bool(getattr(inner, "measured", True))
        self.counter_period_s = getattr(inner, "counter_period_s", None)
        self.poll_s = float(poll_s)
        self.keep_s = float(keep_s)
        self._clock = clock
        self._lock = threading.Lock()
        self._t: list[float] = []
        self._e: list[float] = []
        self._last_poll_t = -math.inf
        self._last_e: float | None = None
        self._error: BaseException | None = None
        self.n_reads = 0
        self.last_interval: dict = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._poll()
        if autostart:
            self.start()

    @property
    def clock(self) -> Callable[[], float]:
        return self._clock

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._loop, name="exante-counter-changes", daemon=True)
            self._thread.start()

    def _poll(self) -> None:
        e = float(self.inner.energy_j())
        t = self._clock()
        with self._lock:
            self.n_reads += 1
            if self._last_e is not None and e != self._last_e:  # the first read is no change
                self._t.append(t)
                self._e.append(e)
                if len(self._t) > 4096 and t - self._t[0] > self.keep_s:  # bounded memory
                    cut = bisect_right(self._t, t - self.keep_s)
                    del self._t[:cut], self._e[:cut]
            self._last_e = e
            self._last_poll_t = t

    def _loop(self) -> None:
        while not self._stop.wait(self.poll_s):
            try:
                self._poll()
            except Exception as exc:  # any inner meter's failure: kept, re-raised (as ExanteError) by the next reader
                logger.warning("meter %r: the polling thread stopped: %s", self.name, exc)
                self._error = exc
                return

    def _wait_for(self, t1: float, timeout_s: float) -> None:
        """Wait until a poll has happened after ``t1`` (or poll here if the thread is not running)."""
        if self._thread is None or not self._thread.is_alive():
            if self._error is not None:
                raise ExanteError(f"meter {self.name!r}: the polling thread failed ({self._error})") from self._error
            self._poll()
            return
        deadline = time.monotonic() + timeout_s
        while self._last_poll_t < t1 and time.monotonic() < deadline:
            time.sleep(self.poll_s / 2)

    def interval_energy_j(self, t0: float, t1: float) -> float:
        """Energy (J) over ``[t0, t1]``: mean power between the first and last counter change
        inside the window x ``(t1 - t0)``. Raises ``ExanteError`` with fewer than 2 changes."""
        if not t1 > t0:
            raise ExanteError(f"empty window [{t0}, {t1}]")
        self._wait_for(t1, timeout_s=max(0.05, 20 * self.poll_s))
        with self._lock:
            i = bisect_right(self._t, t0 - 1e-12)  # first change at or after t0
            j = bisect_right(self._t, t1) - 1  # last change at or before t1
            n = j - i + 1
            if n >= 2:
                ta, tb, ea, eb = self._t[i], self._t[j], self._e[i], self._e[j]
        if n < 2:
            period = self.counter_period_s
            raise ExanteError(
                f"energy counter of meter {self.name!r} changed {max(n, 0)} time(s) in a window of {t1 - t0:.3f} s "
                f"(counter period {'~%g s' % period if period else 'unknown'}); use windows of several counter periods")
        span = tb - ta
        self.last_interval = {"n_changes": n, "span_s": span}
        return (eb - ea) / span * (t1 - t0)

    def energy_j(self) -> float:
        return float(self.inner.energy_j())

    def power_w(self) -> float | None:
        return self.inner.power_w()

    def sync(self) -> None:
        self.inner.sync()

    def info(self) -> dict:
        d = dict(self.inner.info())
        d["meter"] = self.name
        d["counter_note"] = ((d.get("counter_note") or "") + f"; read every {self.poll_s * 1e3:g} ms by a thread, "
                             "window power between the first and last counter change").lstrip("; ")
        d["poll_s"] = self.poll_s
        return d

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=1.0)
            self._thread = None
        self.inner.close()
