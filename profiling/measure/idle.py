"""Idle power (W) of a device, read once per session (the ``idle_power_w`` of the protocol)."""

from __future__ import annotations

import time
import warnings
from typing import Callable

from profiling.measure.metering import check_number, metered
from profiling.meters.base import EnergyMeter

__all__ = ["measure_idle_power"]


def measure_idle_power(
    meter: EnergyMeter,
    duration_s: float = 3.0,
    settle_s: float = 2.0,
    *,
    clock: Callable[[], float] = time.perf_counter,
    sleep: Callable[[float], None] = time.sleep,
) -> float:
    """Idle power in watts: ``sync``, wait ``settle_s`` (active idle decays toward deep idle,
    ~120 W -> ~75 W on an H100), then energy delta / time over ``duration_s`` of sleeping.

    With the ``estimated`` meter this simply returns its rated power.
    """
    duration_s = check_number("duration_s", duration_s, strict=True)
    settle_s = check_number("settle_s", settle_s)
    period = getattr(meter, "counter_period_s", None)
    if period and duration_s < 10 * period:
        warnings.warn(
            f"idle window {duration_s:g} s is < 10x the counter period of meter {meter.name!r} ({period:g} s)",
            stacklevel=2,
        )
    meter.sync()
    if settle_s > 0:
        sleep(settle_s)
    dt, de = metered(meter, clock, lambda: sleep(duration_s), what=f"a {duration_s:g} s idle window",
                      hint="check the meter and the clock/sleep functions")
    return de / dt
