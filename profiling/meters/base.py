"""The meter interface: a cumulative energy counter in joules behind one ABC (Zeus-style).

Every meter exposes ``energy_j()`` (J, monotone), so one measurement is always ``E1 - E0``
over a window that starts and ends with ``sync()``. No meter ever changes a GPU setting.
"""

from __future__ import annotations

import sys
from abc import ABC, abstractmethod

__all__ = ["EnergyMeter", "cuda_sync", "NVML_COUNTER_PERIOD_S"]

NVML_COUNTER_PERIOD_S = 0.1  # observed on H100: the energy counter steps every ~100 ms


class EnergyMeter(ABC):
    """A cumulative energy counter for one device.

    ``energy_j()`` is monotone (joules since some arbitrary origin); a measurement is the
    difference of two reads taken after ``sync()``. ``counter_period_s`` is the counter's
    update granularity (``None`` if unknown / continuous); windows should be >> that.
    """

    name: str = "meter"
    measured: bool = True
    counter_period_s: float | None = None

    @abstractmethod
    def energy_j(self) -> float:
        """Cumulative energy in joules (monotone non-decreasing)."""

    def power_w(self) -> float | None:
        """Instantaneous power in watts, if the hardware exposes it."""
        return None

    def sync(self) -> None:
        """Wait until queued device work has finished (default: the current CUDA device, if used)."""
        cuda_sync(None)

    def info(self) -> dict:
        """What is readable about the device and the meter (never a hostname)."""
        return {"meter": self.name, "measured": self.measured, "counter_period_s": self.counter_period_s}

    def close(self) -> None:
        """Release resources (threads, library handles). Idempotent."""
        return None  # nothing to release by default

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, measured={self.measured})"


def cuda_sync(device: int | None) -> None:
    """``torch.cuda.synchronize(device)`` if torch is loaded and CUDA has been initialised.

    Does not import torch and does not create a CUDA context: if nothing has used CUDA, there is
    nothing to wait for.
    """
    torch = sys.modules.get("torch")
    if torch is None:
        return
    cuda = getattr(torch, "cuda", None)
    if cuda is None or not cuda.is_available() or not cuda.is_initialized():
        return
    if device is None:
        cuda.synchronize()
    else:
        cuda.synchronize(device)
