"""Flat float views of an :class:`~predictor.engine.interval.Interval` field.

A result holds each predicted quantity as one ``Interval`` (``energy: Interval``, in J) and
keeps the flat attributes and JSON keys its users read (``energy_j``, ``energy_j_low``,
``energy_j_high``)::

    @dataclass
    class StageReport:
        energy: Interval                                   # J
        energy_j, energy_j_low, energy_j_high = interval_ends("energy")

Used by the life-cycle stages (:mod:`predictor.carbon.lifecycle.report`) and the compare
rows (:mod:`predictor.search.compare`).
"""

from __future__ import annotations

from typing import overload

from predictor.engine.interval import Interval

__all__ = ["IntervalEnd", "flat", "interval_ends"]


class IntervalEnd:
    """Read-only attribute: one end (``value``, ``low`` or ``high``) of the Interval held in
    the field ``field`` (same unit as that field)."""

    def __init__(self, field: str, end: str) -> None:
        if end not in ("value", "low", "high"):
            raise ValueError(f"an interval end is value, low or high, got {end!r}")
        self.field, self.end = field, end

    @overload
    def __get__(self, obj: None, objtype: type | None = None) -> IntervalEnd: ...

    @overload
    def __get__(self, obj: object, objtype: type | None = None) -> float: ...

    def __get__(self, obj: object | None, objtype: type | None = None) -> IntervalEnd | float:
        if obj is None:
            return self
        return getattr(getattr(obj, self.field), self.end)


def interval_ends(field: str) -> tuple[IntervalEnd, IntervalEnd, IntervalEnd]:
    """The (value, low, high) views of the Interval field ``field``."""
    return IntervalEnd(field, "value"), IntervalEnd(field, "low"), IntervalEnd(field, "high")


def flat(name: str, interval: Interval) -> dict[str, float]:
    """``{name: value, name_low: low, name_high: high}`` (the JSON form of one quantity)."""
    return {name: interval.value, f"{name}_low": interval.low, f"{name}_high": interval.high}
