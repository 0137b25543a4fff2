"""What one protocol measurement returns (per call of fn; seconds, joules, watts).

:class:`Measurement` holds the reported numbers and every :class:`Window` measured;
``Measurement.as_row()`` gives the dataset's flat row (keys ``ROW_FIELDS``).
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass

__all__ = ["PROTOCOL_VERSION", "ROW_FIELDS", "Window", "Measurement", "spread_of"]

PROTOCOL_VERSION = "2"  # 2: counter-change energy when the meter offers it; sync_every windows

#: keys of ``Measurement.as_row()``, in order
ROW_FIELDS = (
    "time_s",
    "energy_j",
    "energy_dynamic_j",
    "power_w",
    "idle_power_w",
    "spread",
    "n_windows",
    "calls_per_window",
    "sm_clock_mhz",
    "temperature_c",
    "meter",
    "protocol_version",
    "remeasured",
    "measured",
)


@dataclass
class Window:
    """One measured window: ``calls`` calls of fn; ``time_s``/``energy_j`` are window TOTALS."""

    calls: int
    time_s: float
    energy_j: float
    jitter_s: float = 0.0  # phase-jitter sleep before the window
    round: int = 0  # 0 = first round, 1 = first re-measure round, ...
    used: bool = False  # part of the set the reported numbers come from
    n_changes: int | None = None  # counter changes inside the window (counter-change meters)
    span_s: float | None = None  # seconds between the first and last of them

    @property
    def time_per_call_s(self) -> float:
        return self.time_s / self.calls

    @property
    def energy_per_call_j(self) -> float:
        return self.energy_j / self.calls


@dataclass
class Measurement:
    """Per-call result of :func:`measure` (all energies/times per call of fn)."""

    time_s: float
    energy_j: float  # total board energy per call
    energy_dynamic_j: float  # energy_j - idle_power_w * time_s
    power_w: float  # energy_j / time_s
    idle_power_w: float
    spread: float  # (max - min) / median of per-call energy over the USED windows
    windows: list[Window]  # all windows measured, including unused ones
    calls_per_window: int
    remeasured: int  # extra rounds measured because windows disagreed
    sm_clock_mhz: float | None
    temperature_c: float | None
    meter: str
    measured: bool  # False for the "estimated" meter
    protocol_version: str = PROTOCOL_VERSION
    max_spread: float = 0.05

    @property
    def n_windows(self) -> int:
        """Number of windows the reported numbers come from."""
        return sum(1 for w in self.windows if w.used)

    @property
    def consistent(self) -> bool:
        return self.spread <= self.max_spread

    @property
    def spread_all(self) -> float:
        """Spread over every window measured (used or not)."""
        return spread_of([w.energy_per_call_j for w in self.windows])

    def as_row(self) -> dict:
        """Flat dict for the dataset (INTERNALS.md §schema names); no window list."""
        return {k: getattr(self, k) for k in ROW_FIELDS}


def spread_of(values) -> float:
    """(max - min) / median; 0 for fewer than 2 values; inf when the median is not positive."""
    values = list(values)
    if len(values) < 2:
        return 0.0
    med = statistics.median(values)
    rng_ = max(values) - min(values)
    if med <= 0:
        return 0.0 if rng_ == 0 else math.inf
    return rng_ / med
