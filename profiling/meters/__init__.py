"""Energy meters behind one interface (Zeus-style: hardware behind an ABC, a replay meter for tests).

Every meter exposes a *cumulative* energy counter in joules (``energy_j()``), so one
measurement is always ``E1 - E0`` over a window that starts and ends with ``sync()``.

Modules (imports flow one way: ``base`` <- the meters <- ``registry``; this package only
re-exports their public names):

- :mod:`~profiling.meters.base`: :class:`EnergyMeter` (the ABC), ``cuda_sync``.
- :mod:`~profiling.meters.nvml`: :class:`NVMLMeter` (``"nvml"``, the GPU's total-energy counter,
  mJ, steps every ~100 ms on an H100) and :class:`NVMLPowerPollingMeter` (``"nvml-power"``,
  trapezoid integral of the power (mW) polled every ~15 ms, for GPUs without the counter).
- :mod:`~profiling.meters.rapl`: :class:`RAPLMeter` (``"rapl"``), CPU package energy, wrap-aware.
- :mod:`~profiling.meters.estimated`: :class:`EstimatedMeter` (``"estimated"``): *not a
  measurement*: rated power x elapsed time, ``measured = False``.
- :mod:`~profiling.meters.replay`: :class:`ReplayMeter` (``"replay"``), a scripted power trace
  integrated over a :class:`FakeClock` with an NVML-like quantised counter; for deterministic tests.
- :mod:`~profiling.meters.changes`: :class:`CounterChangeMeter` (``"nvml-changes"``): wraps a
  counter meter; a thread logs each counter change, and a window's energy is the average power
  between its first and last change x its length (the H100 reference set's method).
- :mod:`~profiling.meters.registry`: :func:`get_meter` and ``METER_NAMES``.

Hardware libraries (``pynvml``, ``torch``) are imported lazily, so ``import profiling.meters``
works on a machine with no GPU and no pynvml. No meter ever changes a GPU setting (clocks,
power limits, persistence mode...): they only read.
"""

from __future__ import annotations

from profiling.meters.base import EnergyMeter
from profiling.meters.changes import CounterChangeMeter
from profiling.meters.estimated import EstimatedMeter
from profiling.meters.nvml import NVMLMeter, NVMLPowerPollingMeter
from profiling.meters.rapl import RAPLMeter
from profiling.meters.registry import METER_NAMES, get_meter
from profiling.meters.replay import FakeClock, ReplayMeter

__all__ = [
    "EnergyMeter",
    "NVMLMeter",
    "NVMLPowerPollingMeter",
    "RAPLMeter",
    "EstimatedMeter",
    "ReplayMeter",
    "FakeClock",
    "CounterChangeMeter",
    "get_meter",
    "METER_NAMES",
]
