"""CPU package energy from Linux powercap (Intel RAPL; AMD exposes the same tree), wrap-aware."""

from __future__ import annotations

import glob
import os
import platform
import threading

from profiling.errors import MeterUnavailable
from profiling.meters.base import EnergyMeter

__all__ = ["RAPLMeter", "cpu_name"]


class RAPLMeter(EnergyMeter):
    """CPU package energy from Linux powercap (Intel RAPL; AMD exposes the same tree).

    Sums the top-level package domains ``<root>/intel-rapl:<n>/energy_uj``; each counter wraps
    at ``max_energy_range_uj``, which is handled as long as reads are less than one wrap period
    apart (minutes to hours). On most kernels ``energy_uj`` is readable by root only.
    """

    name = "rapl"
    measured = True
    counter_period_s = 0.001

    def __init__(self, root: str = "/sys/class/powercap"):
        self.root = root
        if not os.path.isdir(root):
            raise MeterUnavailable(f"meter 'rapl' unavailable: {root} not found (no Linux powercap / RAPL on this machine)")
        dirs = sorted(d for d in glob.glob(os.path.join(root, "intel-rapl:*")) if os.path.basename(d).count(":") == 1)
        if not dirs:
            raise MeterUnavailable(f"meter 'rapl' unavailable: no package domains (intel-rapl:<n>) under {root}")
        self._domains: list[dict] = []
        for d in dirs:
            path = os.path.join(d, "energy_uj")
            try:
                raw = self._read_int(path)
            except PermissionError:
                raise MeterUnavailable(
                    f"meter 'rapl' unavailable: permission denied reading {path} (RAPL counters are root-only on most kernels)"
                ) from None
            except (OSError, ValueError) as exc:
                raise MeterUnavailable(f"meter 'rapl' unavailable: cannot read {path} ({exc})") from None
            try:
                max_range = self._read_int(os.path.join(d, "max_energy_range_uj"))
            except (OSError, ValueError):
                max_range = None
            try:
                with open(os.path.join(d, "name")) as f:
                    dname = f.read().strip()
            except OSError:
                dname = os.path.basename(d)
            self._domains.append({"path": path, "name": dname, "max_uj": max_range, "last_uj": raw, "acc_uj": 0})
        self._lock = threading.Lock()

    @staticmethod
    def _read_int(path: str) -> int:
        with open(path) as f:
            return int(f.read().strip())

    def energy_j(self) -> float:
        total = 0
        with self._lock:
            for dom in self._domains:
                raw = self._read_int(dom["path"])
                delta = raw - dom["last_uj"]
                if delta < 0:  # wrapped
                    delta += dom["max_uj"] if dom["max_uj"] else 0
                    if delta < 0:
                        delta = 0
                dom["acc_uj"] += delta
                dom["last_uj"] = raw
                total += dom["acc_uj"]
        return total / 1e6

    def info(self) -> dict:
        return {
            "meter": self.name,
            "measured": True,
            "gpu_name": None,
            "cpu_name": cpu_name(),
            "driver": None,
            "power_limit_w": None,
            "sm_clock_mhz": None,
            "temperature_c": None,
            "domains": [d["name"] for d in self._domains],
            "counter_period_s": self.counter_period_s,
        }


def cpu_name() -> str | None:
    """The CPU's model name (``/proc/cpuinfo``, else ``platform.processor()``); None if unknown."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:  # no /proc (macOS, Windows): ask platform instead
        pass
    return platform.processor() or None
