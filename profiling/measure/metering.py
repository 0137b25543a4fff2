"""Reading a meter around a block of work: the (seconds, joules) of one window, checked.

Shared by the measurement (:mod:`profiling.measure.protocol`) and the idle-power reading
(:mod:`profiling.measure.idle`), so both take energy the same way.
"""

from __future__ import annotations

import logging
import math
from typing import Any, Callable

from profiling.errors import ExanteError
from profiling.meters.base import EnergyMeter

__all__ = ["metered", "meter_info", "check_number", "opt_float"]

logger = logging.getLogger(__name__)


def period_text(meter: EnergyMeter) -> str:
    """The meter's counter update period as text (``"~0.1 s"``), or ``"unknown"``."""
    p = getattr(meter, "counter_period_s", None)
    return f"~{p:g} s" if p else "unknown"


def check_number(name: str, value, *, minimum: float = 0.0, strict: bool = False) -> float:
    """``value`` as a float, checked finite and >= ``minimum`` (> with ``strict``); else one
    ExanteError line naming ``name``."""
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise ExanteError(f"{name} must be a number, got {value!r}") from None
    if not math.isfinite(v) or v < minimum or (strict and v == minimum):
        op = ">" if strict else ">="
        raise ExanteError(f"{name} must be a finite number {op} {minimum:g}, got {value!r}")
    return v


def opt_float(x) -> float | None:
    """``float(x)``, or None when ``x`` is None or not a number."""
    try:
        return None if x is None else float(x)
    except (TypeError, ValueError):
        return None


def metered(meter: EnergyMeter, clock: Callable[[], float], body: Callable[[], None], *,
             what: str, hint: str) -> tuple[float, float]:
    """Run ``body`` between two (energy, time) reads; return (seconds, joules), both > 0.

    A meter with ``interval_energy_j(t0, t1)`` (counter changes) gives the energy of the
    window from its own log instead of two edge reads; its clock is used for t0/t1."""
    interval = getattr(meter, "interval_energy_j", None)
    if callable(interval):
        clk = getattr(meter, "clock", None) or clock
        t0 = clk()
        body()
        t1 = clk()
        dt = t1 - t0
        if dt <= 0:
            raise ExanteError(f"no measurable time passed over {what} ({dt:.3g} s); {hint}")
        de = interval(t0, t1)
        if de <= 0:
            raise ExanteError(f"energy counter of meter {meter.name!r} did not advance over {what} lasting {dt:.3f} s "
                              f"(counter period {period_text(meter)}); {hint}")
        return dt, de
    e0 = meter.energy_j()
    t0 = clock()
    body()
    e1 = meter.energy_j()
    t1 = clock()
    dt, de = t1 - t0, e1 - e0
    if dt <= 0:
        raise ExanteError(f"no measurable time passed over {what} ({dt:.3g} s); {hint}")
    if de <= 0:
        raise ExanteError(
            f"energy counter of meter {meter.name!r} did not advance over {what} lasting {dt:.3f} s "
            f"(counter period {period_text(meter)}); {hint}"
        )
    return dt, de


def meter_info(meter: EnergyMeter) -> dict[str, Any]:
    """``meter.info()``, or ``{}`` when the meter cannot describe itself (logged: the
    measurement stands, only its SM clock / temperature / device fields stay empty)."""
    try:
        return dict(meter.info() or {})
    except (OSError, RuntimeError, ValueError, ExanteError) as exc:
        logger.warning("meter %r: info() failed (%s); environment fields left empty", getattr(meter, "name", meter), exc)
        return {}
