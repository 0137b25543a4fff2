"""NVIDIA GPU meters through NVML (``pynvml``, imported lazily: ``pip install 'exante[gpu]'``).

- :class:`NVMLMeter` (``"nvml"``): the GPU's total-energy counter
  (``nvmlDeviceGetTotalEnergyConsumption``, mJ). On an H100 it steps every ~100 ms and a read
  costs a few ms, so read it only at window edges.
- :class:`NVMLPowerPollingMeter` (``"nvml-power"``): for GPUs without that counter; a background
  thread polls ``nvmlDeviceGetPowerUsage`` (mW) every ~15 ms and integrates it (trapezoid).

Device indices are CUDA indices (what ``torch.cuda`` calls device ``i``); when
``CUDA_VISIBLE_DEVICES`` is set they are mapped to the NVML index (NVML ignores that variable).
Only NVML errors (``pynvml.NVMLError``) are caught; the meters never change a GPU setting.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
import time
from typing import Any, Callable

from profiling.errors import ExanteError, MeterUnavailable
from profiling.meters.base import NVML_COUNTER_PERIOD_S, EnergyMeter, cuda_sync

__all__ = ["NVMLMeter", "NVMLPowerPollingMeter"]

logger = logging.getLogger(__name__)

_GPU_EXTRA_HINT = "pip install 'exante[gpu]'"


def _import_pynvml(meter: str) -> Any:
    """The ``pynvml`` module, or :class:`MeterUnavailable` naming the extra to install."""
    try:
        import pynvml  # provided by the nvidia-ml-py package
    except ImportError:
        raise MeterUnavailable(f"meter {meter!r} unavailable: pynvml not installed ({_GPU_EXTRA_HINT})") from None
    return pynvml


def _is_nvml_error(pynvml, exc: BaseException, name: str) -> bool:
    cls = getattr(pynvml, name, None)
    return isinstance(cls, type) and isinstance(exc, cls)


def _not_supported(pynvml, exc: BaseException) -> bool:
    if _is_nvml_error(pynvml, exc, "NVMLError_NotSupported"):
        return True
    code = getattr(pynvml, "NVML_ERROR_NOT_SUPPORTED", None)
    return code is not None and getattr(exc, "value", object()) == code


def _decode(x) -> str:
    return x.decode() if isinstance(x, (bytes, bytearray)) else str(x)


def _torch_cuda_uuid(cuda_index: int) -> str | None:
    """The UUID torch's CUDA device ``cuda_index`` reports, if torch is loaded and CUDA is
    already initialised (never imports torch, never creates a CUDA context); else None."""
    torch = sys.modules.get("torch")
    cuda = getattr(torch, "cuda", None) if torch is not None else None
    try:
        if cuda is None or not cuda.is_available() or not cuda.is_initialized():
            return None
        uuid = getattr(cuda.get_device_properties(cuda_index), "uuid", None)
        return None if uuid is None else str(uuid)
    except (RuntimeError, AssertionError, ValueError) as exc:  # torch: invalid device / CUDA error
        logger.debug("no CUDA UUID for device %d (%s); matching NVML devices by index", cuda_index, exc)
        return None


def _nvml_index_by_uuid(pynvml, count: int, uuid: str):
    want = uuid.lower().removeprefix("gpu-")
    for idx in range(count):
        h = pynvml.nvmlDeviceGetHandleByIndex(idx)
        have = _decode(pynvml.nvmlDeviceGetUUID(h)).lower().removeprefix("gpu-")
        if have == want:
            return idx, h
    return None


def _cuda_to_nvml_index(pynvml, cuda_index: int, meter: str) -> tuple[int, object]:
    """Map a CUDA device index to (NVML index, NVML handle), honouring CUDA_VISIBLE_DEVICES.

    With several GPUs, and torch's CUDA already initialised, the device is matched by UUID
    (exact whatever ``CUDA_DEVICE_ORDER`` is: CUDA enumerates fastest-first by default, NVML
    by PCI bus id); otherwise by the index rules below."""
    count = pynvml.nvmlDeviceGetCount()
    if count < 1:
        raise MeterUnavailable(f"meter {meter!r} unavailable: no NVIDIA GPU visible (NVML reports 0 devices)")
    if count > 1:
        uuid = _torch_cuda_uuid(cuda_index)
        if uuid:
            try:
                hit = _nvml_index_by_uuid(pynvml, count, uuid)
            except pynvml.NVMLError as exc:
                logger.debug("NVML UUID lookup failed (%s); matching by index", exc)
                hit = None
            if hit is not None:
                return hit
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is None:
        if not 0 <= cuda_index < count:
            raise MeterUnavailable(
                f"meter {meter!r} unavailable: GPU index {cuda_index} out of range (NVML sees {count} GPU(s): 0..{count - 1})"
            )
        return cuda_index, pynvml.nvmlDeviceGetHandleByIndex(cuda_index)
    entries = [e.strip() for e in visible.split(",") if e.strip()]
    if not entries or entries[0].startswith("-"):
        raise MeterUnavailable(f"meter {meter!r} unavailable: no NVIDIA GPU visible (CUDA_VISIBLE_DEVICES={visible!r})")
    if not 0 <= cuda_index < len(entries):
        raise MeterUnavailable(
            f"meter {meter!r} unavailable: GPU index {cuda_index} out of range (CUDA_VISIBLE_DEVICES={visible!r})"
        )
    entry = entries[cuda_index]
    if entry.isdigit():
        idx = int(entry)
        if idx >= count:
            raise MeterUnavailable(
                f"meter {meter!r} unavailable: CUDA_VISIBLE_DEVICES names GPU {idx} but NVML sees {count} GPU(s)"
            )
        return idx, pynvml.nvmlDeviceGetHandleByIndex(idx)
    # UUID form ("GPU-...", possibly abbreviated); find the matching NVML device.
    for idx in range(count):
        h = pynvml.nvmlDeviceGetHandleByIndex(idx)
        uuid = _decode(pynvml.nvmlDeviceGetUUID(h))
        if uuid == entry or uuid.startswith(entry):
            return idx, h
    raise MeterUnavailable(f"meter {meter!r} unavailable: no NVML device matches CUDA_VISIBLE_DEVICES entry {entry!r}")


class _NVMLBase(EnergyMeter):
    """NVML initialisation, device lookup and ``info()`` shared by the two NVML meters."""

    def __init__(self, device_index: int = 0):
        self.device_index = int(device_index)
        self._closed = False
        pynvml = _import_pynvml(self.name)
        try:
            pynvml.nvmlInit()
        except pynvml.NVMLError as exc:  # NVMLError_LibraryNotFound / DriverNotLoaded / ...
            raise MeterUnavailable(f"meter {self.name!r} unavailable: no NVIDIA GPU visible (NVML init failed: {exc})") from None
        self._nvml = pynvml
        try:
            self.nvml_index, self._handle = _cuda_to_nvml_index(pynvml, self.device_index, self.name)
        except MeterUnavailable:
            self._shutdown()
            raise
        except pynvml.NVMLError as exc:
            self._shutdown()
            raise MeterUnavailable(f"meter {self.name!r} unavailable: cannot open GPU {self.device_index} via NVML ({exc})") from None

    def _shutdown(self) -> None:
        try:
            self._nvml.nvmlShutdown()
        except self._nvml.NVMLError as exc:  # nothing left to release
            logger.debug("nvmlShutdown failed: %s", exc)

    def _read(self, fn: Callable, *args):
        """One NVML query; ``None`` when the GPU does not support it."""
        try:
            return fn(self._handle, *args)
        except self._nvml.NVMLError:
            return None

    def sync(self) -> None:
        cuda_sync(self.device_index)

    def power_w(self) -> float | None:
        mw = self._read(self._nvml.nvmlDeviceGetPowerUsage)
        return None if mw is None else mw / 1000.0

    def info(self) -> dict:
        n = self._nvml
        name = self._read(n.nvmlDeviceGetName)
        try:
            driver = _decode(n.nvmlSystemGetDriverVersion())
        except n.NVMLError:
            driver = None
        limit_mw = self._read(n.nvmlDeviceGetEnforcedPowerLimit)
        sm = self._read(n.nvmlDeviceGetClockInfo, getattr(n, "NVML_CLOCK_SM", 1))
        temp = self._read(n.nvmlDeviceGetTemperature, getattr(n, "NVML_TEMPERATURE_GPU", 0))
        return {
            "meter": self.name,
            "measured": self.measured,
            "gpu_name": None if name is None else _decode(name),
            "driver": driver,
            "power_limit_w": None if limit_mw is None else limit_mw / 1000.0,
            "sm_clock_mhz": None if sm is None else float(sm),
            "temperature_c": None if temp is None else float(temp),
            "power_w": self.power_w(),
            "device_index": self.device_index,
            "nvml_index": self.nvml_index,
            "counter_period_s": self.counter_period_s,
        }

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._shutdown()


class NVMLMeter(_NVMLBase):
    """The GPU's total-energy counter (mJ since driver load), read via NVML.

    The counter steps every ~100 ms on an H100 (``counter_period_s``), so a window of length
    T has a quantisation error of at most ~2 x 0.1 s x power; with the protocol's random phase
    jitter that error averages out. Volta and newer GPUs have the counter.
    """

    name = "nvml"
    measured = True
    counter_period_s = NVML_COUNTER_PERIOD_S

    def __init__(self, device_index: int = 0):
        super().__init__(device_index)
        try:
            self._nvml.nvmlDeviceGetTotalEnergyConsumption(self._handle)
        except self._nvml.NVMLError as exc:
            self.close()
            if _not_supported(self._nvml, exc):
                raise MeterUnavailable(
                    f"meter 'nvml' unavailable: GPU {self.device_index} lacks the total-energy counter; use --meter nvml-power"
                ) from None
            raise MeterUnavailable(f"meter 'nvml' unavailable: cannot read the GPU energy counter ({exc})") from None

    def energy_j(self) -> float:
        return self._nvml.nvmlDeviceGetTotalEnergyConsumption(self._handle) / 1000.0

    def info(self) -> dict:
        d = super().info()
        d["counter_note"] = "NVML total-energy counter (mJ); steps every ~100 ms on H100, ~4 ms per read"
        return d


class _TrapezoidIntegrator:
    """Cumulative trapezoid integral of (t, power) samples; thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._t: float | None = None
        self._p: float = 0.0
        self._e: float = 0.0
        self.samples = 0

    def add(self, t: float, p: float) -> float:
        with self._lock:
            if self._t is not None and t > self._t:
                self._e += 0.5 * (p + self._p) * (t - self._t)
            if self._t is None or t >= self._t:
                self._t, self._p = t, p
            self.samples += 1
            return self._e

    @property
    def energy_j(self) -> float:
        with self._lock:
            return self._e


class NVMLPowerPollingMeter(_NVMLBase):
    """Integrates ``nvmlDeviceGetPowerUsage`` (mW) sampled by a background thread.

    For GPUs without the total-energy counter. NVML's power reading is itself an average that
    refreshes every ~75-100 ms, so this is less exact than :class:`NVMLMeter`; polling every
    ``poll_interval_s`` (default 15 ms) keeps the integration error small against that.
    ``energy_j()`` takes a fresh sample, so it returns the integral up to *now*.
    """

    name = "nvml-power"
    measured = True

    def __init__(self, device_index: int = 0, poll_interval_s: float = 0.015, *, clock: Callable[[], float] = time.monotonic,
                 autostart: bool = True):
        if not poll_interval_s > 0:
            raise ExanteError(f"poll_interval_s must be > 0, got {poll_interval_s!r}")
        super().__init__(device_index)
        if self._read(self._nvml.nvmlDeviceGetPowerUsage) is None:
            self.close()
            raise MeterUnavailable(f"meter 'nvml-power' unavailable: GPU {self.device_index} does not report its power draw")
        self.poll_interval_s = float(poll_interval_s)
        self.counter_period_s = max(self.poll_interval_s, NVML_COUNTER_PERIOD_S)
        self._clock = clock
        self._integ = _TrapezoidIntegrator()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._sample()
        if autostart:
            self.start()

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._loop, name="exante-nvml-power", daemon=True)
            self._thread.start()

    def _sample(self) -> float:
        mw = self._read(self._nvml.nvmlDeviceGetPowerUsage)
        t = self._clock()
        if mw is None:  # transient read failure: hold the last value
            return self._integ.energy_j
        return self._integ.add(t, mw / 1000.0)

    def _loop(self) -> None:
        while not self._stop.wait(self.poll_interval_s):
            self._sample()

    def energy_j(self) -> float:
        return self._sample()

    def info(self) -> dict:
        d = super().info()
        d["counter_note"] = f"trapezoid integral of NVML power polled every {self.poll_interval_s * 1000:.0f} ms"
        d["poll_interval_s"] = self.poll_interval_s
        return d

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=1.0)
            self._thread = None
        super().close()
