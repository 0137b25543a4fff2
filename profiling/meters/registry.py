"""Open a meter by name (:func:`get_meter`); ``"auto"`` never falls back silently."""

from __future__ import annotations

from profiling.errors import ExanteError, MeterUnavailable
from profiling.meters.base import EnergyMeter
from profiling.meters.changes import CounterChangeMeter
from profiling.meters.estimated import EstimatedMeter
from profiling.meters.nvml import NVMLMeter, NVMLPowerPollingMeter
from profiling.meters.rapl import RAPLMeter

__all__ = ["METER_NAMES", "get_meter"]

METER_NAMES = ("auto", "nvml", "nvml-changes", "nvml-power", "rapl", "estimated")


def get_meter(name: str = "auto", device_index: int = 0, rated_power_w: float | None = None) -> EnergyMeter:
    """Open a meter by name: ``"nvml" | "nvml-changes" | "nvml-power" | "rapl" | "estimated" | "auto"``.

    ``"auto"`` opens the NVML energy counter and raises :class:`MeterUnavailable` if it cannot;
    it never falls back silently to another meter, and never to the estimate
    (``"estimated"`` needs ``rated_power_w`` and is labelled ``measured = False``).
    """
    key = str(name).strip().lower() if name is not None else "auto"
    if key == "nvml":
        return NVMLMeter(device_index)
    if key == "nvml-changes":
        return CounterChangeMeter(NVMLMeter(device_index))
    if key == "nvml-power":
        return NVMLPowerPollingMeter(device_index)
    if key == "rapl":
        return RAPLMeter()
    if key == "estimated":
        if rated_power_w is None:
            raise ExanteError("meter 'estimated' needs the device's rated power: pass rated_power_w (--rated-power-w WATTS)")
        return EstimatedMeter(rated_power_w)
    if key == "auto":
        try:
            return NVMLMeter(device_index)
        except MeterUnavailable as exc:
            reason = str(exc).split(": ", 1)[-1]
            raise MeterUnavailable(
                f"no energy meter available: tried 'nvml' ({reason}); accepted meters: nvml, nvml-power, rapl, "
                "estimated (labelled estimate: --meter estimated --rated-power-w WATTS)"
            ) from None
    raise ExanteError(f"unknown meter {name!r}; accepted: {', '.join(METER_NAMES)}")
