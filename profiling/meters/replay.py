"""A deterministic meter for tests: a scripted power trace (W) integrated over a fake clock (s).

:class:`ReplayMeter` (``"replay"``) gives an NVML-like quantised counter; :class:`FakeClock`
moves only when told to, so the protocol runs deterministically without a GPU.
"""

from __future__ import annotations

import math
from bisect import bisect_right
from typing import Callable, Sequence

from profiling.errors import ExanteError
from profiling.meters.base import EnergyMeter, cuda_sync

__all__ = ["FakeClock", "ReplayMeter"]


class FakeClock:
    """A deterministic clock: ``clock()`` / ``clock.now()`` read it, ``advance``/``sleep`` move it.

    ``sleeps`` records every ``sleep(dt)`` call (e.g. the protocol's phase jitter).
    """

    def __init__(self, start: float = 0.0):
        self.t = float(start)
        self.sleeps: list[float] = []

    def now(self) -> float:
        return self.t

    __call__ = now

    def advance(self, dt: float) -> float:
        if dt < 0:
            raise ValueError(f"FakeClock cannot go backwards (dt={dt})")
        self.t += dt
        return self.t

    def sleep(self, dt: float) -> None:
        self.sleeps.append(dt)
        self.advance(max(0.0, dt))


class ReplayMeter(EnergyMeter):
    """Integrates a scripted power trace over a clock, with an NVML-like quantised counter.

    Power is given as exactly one of:

    - ``power_w``: a constant (watts) or a callable ``p(t)`` of the clock time ``t``;
    - ``trace``: ``[(t, p), ...]`` samples, piecewise constant (``p_i`` holds on
      ``[t_i, t_{i+1})``; before the first sample the first power, after the last the last).

    Energy is 0 at construction time. The counter reads the integral up to
    ``floor(t / counter_period_s) * counter_period_s`` (``counter_period_s=0`` gives the exact
    integral). Constant and trace powers integrate exactly; callables with the midpoint rule on
    ``integration_step_s`` sub-steps. ``read_cost_s`` advances the clock on each read (an NVML
    read costs ~4 ms) when the clock is a :class:`FakeClock`. ``info`` overrides/extends
    :meth:`info`. ``reads`` and ``syncs`` count calls, for tests.
    """

    name = "replay"
    measured = True

    def __init__(self, power_w: float | Callable[[float], float] | None = None, clock: Callable[[], float] | None = None,
                 counter_period_s: float = 0.1, *, trace: Sequence[tuple[float, float]] | None = None,
                 integration_step_s: float = 1e-3, read_cost_s: float = 0.0, info: dict | None = None):
        if (power_w is None) == (trace is None):
            raise ExanteError("ReplayMeter needs exactly one of power_w (float or callable) or trace [(t, p), ...]")
        if counter_period_s < 0:
            raise ExanteError(f"counter_period_s must be >= 0, got {counter_period_s}")
        self.clock = clock if clock is not None else FakeClock()
        self.counter_period_s = float(counter_period_s)
        self.integration_step_s = float(integration_step_s)
        self.read_cost_s = float(read_cost_s)
        self._info = dict(info or {})
        self.reads = 0
        self.syncs = 0
        self._const: float | None = None
        self._fn: Callable[[float], float] | None = None
        self._trace_t: list[float] = []
        self._trace_p: list[float] = []
        self._trace_e: list[float] = []  # integral from trace_t[0] to trace_t[i]
        if trace is not None:
            pts = sorted((float(t), float(p)) for t, p in trace)
            if not pts:
                raise ExanteError("ReplayMeter trace is empty")
            self._trace_t = [t for t, _ in pts]
            self._trace_p = [p for _, p in pts]
            e = 0.0
            self._trace_e = [0.0]
            for i in range(1, len(pts)):
                e += self._trace_p[i - 1] * (self._trace_t[i] - self._trace_t[i - 1])
                self._trace_e.append(e)
        elif callable(power_w):
            self._fn = power_w
        elif power_w is not None:  # always, given the exactly-one check above
            self._const = float(power_w)
        self._t_origin = self._now()
        # incremental cache for callables: integral from origin to _cache_t
        self._cache_t = self._t_origin
        self._cache_e = 0.0

    def _now(self) -> float:
        return float(self.clock())

    def power_at(self, t: float) -> float:
        if self._const is not None:
            return self._const
        if self._fn is not None:
            return float(self._fn(t))
        i = bisect_right(self._trace_t, t) - 1
        return self._trace_p[max(i, 0)]

    def _trace_cum(self, t: float) -> float:
        """Integral of the trace from trace_t[0] to t (negative before it)."""
        t0 = self._trace_t[0]
        if t <= t0:
            return self._trace_p[0] * (t - t0)
        i = bisect_right(self._trace_t, t) - 1
        return self._trace_e[i] + self._trace_p[i] * (t - self._trace_t[i])

    def integral(self, t: float) -> float:
        """Exact (or finely integrated) energy in joules from construction time to ``t``."""
        a = self._t_origin
        if t <= a:
            return 0.0
        if self._const is not None:
            return self._const * (t - a)
        if self._fn is None:
            return self._trace_cum(t) - self._trace_cum(a)
        if t < self._cache_t:  # earlier than the cache: integrate from origin
            start_t, e = a, 0.0
        else:
            start_t, e = self._cache_t, self._cache_e
        span = t - start_t
        if span > 0:
            n = max(1, math.ceil(span / self.integration_step_s))
            h = span / n
            e += sum(self._fn(start_t + (i + 0.5) * h) for i in range(n)) * h
        if t >= self._cache_t:
            self._cache_t, self._cache_e = t, e
        return e

    def _consume_read_cost(self) -> None:
        if self.read_cost_s > 0 and hasattr(self.clock, "advance"):
            self.clock.advance(self.read_cost_s)

    def energy_j(self) -> float:
        self.reads += 1
        self._consume_read_cost()
        t = self._now()
        period = self.counter_period_s
        if period:  # > 0 (checked >= 0 at construction)
            t = math.floor(t / period) * period
        return self.integral(t)

    def power_w(self) -> float:
        return self.power_at(self._now())

    def sync(self) -> None:
        self.syncs += 1
        cuda_sync(None)  # a dry run on a GPU: windows must still end when the queued work has

    def info(self) -> dict:
        d = {
            "meter": self.name,
            "measured": self.measured,
            "gpu_name": "replay",
            "driver": None,
            "power_limit_w": None,
            "sm_clock_mhz": None,
            "temperature_c": None,
            "power_w": self.power_w(),
            "counter_period_s": self.counter_period_s,
        }
        d.update(self._info)
        return d
