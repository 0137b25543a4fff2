"""NOT a measurement: energy = rated power (W) x elapsed wall time (s), labelled ``measured = False``."""

from __future__ import annotations

import math
import time
from typing import Callable

from profiling.errors import ExanteError
from profiling.meters.base import EnergyMeter

__all__ = ["EstimatedMeter"]


class EstimatedMeter(EnergyMeter):
    """NOT a measurement: energy = rated power x elapsed wall time. ``measured = False``.

    Use only when nothing can be read, and label results as estimates (``info()["estimated"]``).
    """

    name = "estimated"
    measured = False
    counter_period_s = None

    def __init__(self, rated_power_w: float, clock: Callable[[], float] = time.perf_counter, *,
                 source: str = "user-supplied rated power"):
        try:
            p = float(rated_power_w)
        except (TypeError, ValueError):
            raise ExanteError(f"rated_power_w must be a number of watts, got {rated_power_w!r}") from None
        if not (p > 0 and math.isfinite(p)):
            raise ExanteError(f"rated_power_w must be a positive number of watts, got {rated_power_w!r}")
        self.rated_power_w = p
        self.source = source
        self._clock = clock
        self._t0 = clock()

    def energy_j(self) -> float:
        return self.rated_power_w * (self._clock() - self._t0)

    def power_w(self) -> float:
        return self.rated_power_w

    def info(self) -> dict:
        return {
            "meter": self.name,
            "measured": False,
            "estimated": True,
            "rated_power_w": self.rated_power_w,
            "rated_power_source": self.source,
            "gpu_name": None,
            "driver": None,
            "power_limit_w": None,
            "sm_clock_mhz": None,
            "temperature_c": None,
            "counter_period_s": None,
        }
