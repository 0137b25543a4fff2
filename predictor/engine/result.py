"""``WorkloadPrediction``: what the physics engine says of one workload.

:meth:`predictor.engine.calibrated.CalibratedHardware.predict_workload` returns it: time (s)
and total board energy (J) of one eager call of the whole batch, each an
:class:`~predictor.engine.interval.Interval`; the host (Python + launches) and GPU-kernel
times it composed them from (s); the regime ("gpu" or "host": which of the two dominates);
the split over the workload's layers, kept by *position* in ``Workload.layers`` (two configs
of one module are two rows); and the notes for what lies outside the fitted domain.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, replace

from predictor.engine.interval import Interval
from predictor.engine.workload import WLayer

__all__ = ["LayerSplit", "WorkloadPrediction", "widen_log"]


def widen_log(iv: Interval, extra: float) -> Interval:
    """``iv`` with its log half-width ``h`` (from ``high / value``) combined in quadrature with
    ``extra``: ``[v e^-h', v e^h']``, ``h' = hypot(h, extra)`` (log units)."""
    v = iv.value
    h = math.log(iv.high / v) if v > 0 else 0.0
    h = math.hypot(h, extra)
    return Interval(v, v * math.exp(-h), v * math.exp(h), iv.level)


@dataclass(frozen=True)
class LayerSplit:
    """One layer config's share of a prediction: ``index`` in ``Workload.layers``, its
    ``layer``, its lowering ``family``, and the time (s) and energy (J) of all its calls."""

    index: int
    layer: WLayer
    family: str
    time_s_total: float
    energy_j_total: float

    def to_row(self) -> dict:
        """The per-layer table row (``Prediction.layers``): per call and total, s and J."""
        x, n = self.layer, max(self.layer.count, 1)
        return {"name": x.names[0] if x.names else x.config.type, "names": list(x.names),
                "type": x.config.type, "count": x.count, "dtype": x.config.dtype,
                "family": self.family, "time_s_total": self.time_s_total,
                "energy_j_total": self.energy_j_total, "time_s": self.time_s_total / n,
                "energy_j": self.energy_j_total / n}


# the old dict keys of predict_workload (before it returned this dataclass)
_LEGACY = {"time_s": lambda r: r.time_s.value, "energy_j": lambda r: r.energy_j.value,
           "time_low": lambda r: r.time_s.low, "time_high": lambda r: r.time_s.high,
           "energy_low": lambda r: r.energy_j.low, "energy_high": lambda r: r.energy_j.high,
           "power_w": lambda r: r.power_w, "regime": lambda r: r.regime,
           "time_host_s": lambda r: r.time_host_s, "time_gpu_s": lambda r: r.time_gpu_s,
           "notes": lambda r: list(r.notes), "unknown_types": lambda r: list(r.unknown_types),
           "layers": lambda r: [s.to_row() for s in r.layers]}


@dataclass(frozen=True)
class WorkloadPrediction:
    """Time (s) and energy (J) of one call with intervals, their parts and the layer split."""

    time_s: Interval
    energy_j: Interval
    time_host_s: float             # host work: Python, dispatch, launches (s)
    time_gpu_s: float              # GPU kernels (s)
    regime: str                    # "gpu" | "host": the larger of the two
    layers: tuple[LayerSplit, ...] = ()
    notes: tuple[str, ...] = ()
    unknown_types: tuple[str, ...] = ()     # layer types no lowering rule priced
    #: (position in Workload.layers, reason) of the layers priced by the lowering's generic
    #: memory fallback (no rule, not captured, or their feature function raised)
    unpriced: tuple[tuple[int, str], ...] = ()
    unpriced_note: str | None = None        # the note of ``notes`` that names them

    @property
    def power_w(self) -> float:
        """Average board power over the call (W)."""
        return self.energy_j.value / max(self.time_s.value, 1e-15)

    def widened(self, extra: float, note: str | None = None,
                first_notes: tuple[str, ...] = ()) -> WorkloadPrediction:
        """Both intervals widened by ``extra`` log half-width in quadrature (:func:`widen_log`),
        with ``note`` then ``first_notes`` put before the notes."""
        head = ((note,) if note else ()) + tuple(first_notes)
        return replace(self, time_s=widen_log(self.time_s, extra),
                       energy_j=widen_log(self.energy_j, extra), notes=head + self.notes)

    def __getitem__(self, key: str):
        """The old dict form (``r["time_s"]``, ``r["energy_low"]`` ...), deprecated: use the
        attributes."""
        if key not in _LEGACY:
            raise KeyError(key)
        warnings.warn(f"WorkloadPrediction[{key!r}] is deprecated: use its attributes "
                      "(time_s / energy_j are Intervals)", DeprecationWarning, stacklevel=2)
        return _LEGACY[key](self)
