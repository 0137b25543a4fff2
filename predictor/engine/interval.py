"""``Interval``: one predicted quantity with its interval -- the one interval type of every
result (a prediction, a NAS score, a compare row, a life-cycle stage).

The unit is the one the field holding it names (``energy_j: Interval`` is in joules).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

__all__ = ["Interval"]


@dataclass(frozen=True)
class Interval:
    """``value`` with its interval ``[low, high]`` of nominal coverage ``level`` (0-1)."""

    value: float
    low: float
    high: float
    level: float = 0.9

    def __post_init__(self) -> None:
        vals = (self.value, self.low, self.high)
        if any(math.isnan(v) for v in vals):
            if not all(math.isnan(v) for v in (self.low, self.high)):
                raise ValueError(f"interval with a NaN end: {self}")
        elif not self.low <= self.value <= self.high:
            raise ValueError(f"interval does not hold its value: {self.low} <= {self.value} "
                             f"<= {self.high} is false")
        if not 0.0 < self.level <= 1.0:
            raise ValueError(f"interval level must be in (0, 1], got {self.level}")

    @classmethod
    def exact(cls, value: float) -> Interval:
        """A value known exactly (a zero-width interval, level 1)."""
        return cls(value, value, value, 1.0)

    @classmethod
    def ratio(cls, value: float, factor: float, level: float = 0.9) -> Interval:
        """``value`` x/÷ ``factor`` (``factor`` >= 1): a multiplicative interval."""
        if not factor >= 1.0:
            raise ValueError(f"a ratio interval needs factor >= 1, got {factor}")
        return cls(value, value / factor, value * factor, level)

    def scaled(self, k: float) -> Interval:
        """The interval of ``k`` x the quantity (``k`` >= 0: per call -> per epoch, J -> kWh)."""
        if k < 0:
            raise ValueError(f"scale must be >= 0, got {k}")
        return Interval(self.value * k, self.low * k, self.high * k, self.level)

    def __add__(self, other: Interval) -> Interval:
        """Sum of two quantities, ends added (conservative: errors assumed to go together)."""
        return Interval(self.value + other.value, self.low + other.low, self.high + other.high,
                        min(self.level, other.level))

    @property
    def width_ratio(self) -> float:
        """high / low (1 for an exact value; inf when low is 0)."""
        return self.high / self.low if self.low > 0 else math.inf

    def contains(self, x: float) -> bool:
        """Whether ``x`` lies in ``[low, high]``."""
        return self.low <= x <= self.high

    def to_dict(self) -> dict:
        return {"value": self.value, "low": self.low, "high": self.high, "level": self.level}
