"""Energy meters behind one interface (Zeus-style: hardware behind an ABC, a replay meter for tests).

Every meter exposes a *cumulative* energy counter in joules (``energy_j()``), so one
measurement is always ``E1 - E0`` over a window that starts and ends with ``sync()``.

Meters:

- :class:`NVMLMeter` (``"nvml"``): the GPU's total-energy counter
  (``nvmlDeviceGetTotalEnergyConsumption``, mJ). On an H100 it steps every ~100 ms and a read
  costs a few ms, so read it only at window edges.
- :class:`NVMLPowerPollingMeter` (``"nvml-power"``): for GPUs without that counter; a background
  thread polls ``nvmlDeviceGetPowerUsage`` (mW) every ~15 ms and integrates it (trapezoid).
- :class:`RAPLMeter` (``"rapl"``): CPU package energy from ``/sys/class/powercap``, wrap-aware.
- :class:`EstimatedMeter` (``"estimated"``): *not a measurement*: rated power x elapsed time,
  ``measured = False``.
- :class:`ReplayMeter` (``"replay"``): integrates a scripted power trace over a
  :class:`FakeClock`, with an NVML-like quantised counter; for deterministic tests.
- :class:`CounterChangeMeter` (``"nvml-changes"``): wraps a counter meter; a background thread
  reads the counter every 2 ms and logs each change, and the energy over a window is the average
  power between the first and last counter change inside it x the window's length (the method
  of the H100 reference set, ``shared/reference/h100/README.md``): no quantisation error from
  the ~100 ms counter steps.

Hardware libraries (``pynvml``, ``torch``) are imported lazily, so ``import profiling.meters``
works on a machine with no GPU and no pynvml. No meter ever changes a GPU setting (clocks,
power limits, persistence mode...): they only read.

Device indices are CUDA indices (what ``torch.cuda`` calls device ``i``); when
``CUDA_VISIBLE_DEVICES`` is set they are mapped to the NVML index (NVML ignores that variable).
"""

from __future__ import annotations

import glob
import math
import os
import platform
import sys
import threading
import time
from abc import ABC, abstractmethod
from bisect import bisect_right
from typing import Callable, Sequence

from profiling.errors import ExanteError, MeterUnavailable

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

METER_NAMES = ("auto", "nvml", "nvml-changes", "nvml-power", "rapl", "estimated")

NVML_COUNTER_PERIOD_S = 0.1  # observed on H100: the energy counter steps every ~100 ms
_GPU_EXTRA_HINT = "pip install 'exante[gpu]'"


# --------------------------------------------------------------------------- base class


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
        _cuda_sync(None)

    def info(self) -> dict:
        """What is readable about the device and the meter (never a hostname)."""
        return {"meter": self.name, "measured": self.measured, "counter_period_s": self.counter_period_s}

    def close(self) -> None:
        """Release resources (threads, library handles). Idempotent."""

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, measured={self.measured})"


def _cuda_sync(device: int | None) -> None:
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


# --------------------------------------------------------------------------- NVML


def _import_pynvml(meter: str):
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
    except Exception:
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
            except Exception:
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
        except Exception as exc:  # NVMLError_LibraryNotFound / DriverNotLoaded / ...
            raise MeterUnavailable(f"meter {self.name!r} unavailable: no NVIDIA GPU visible (NVML init failed: {exc})") from None
        self._nvml = pynvml
        try:
            self.nvml_index, self._handle = _cuda_to_nvml_index(pynvml, self.device_index, self.name)
        except MeterUnavailable:
            self._shutdown()
            raise
        except Exception as exc:
            self._shutdown()
            raise MeterUnavailable(f"meter {self.name!r} unavailable: cannot open GPU {self.device_index} via NVML ({exc})") from None

    def _shutdown(self) -> None:
        try:
            self._nvml.nvmlShutdown()
        except Exception:
            pass

    def _read(self, fn: Callable, *args):
        """One NVML query; ``None`` when the GPU does not support it."""
        try:
            return fn(self._handle, *args)
        except Exception:
            return None

    def sync(self) -> None:
        _cuda_sync(self.device_index)

    def power_w(self) -> float | None:
        mw = self._read(self._nvml.nvmlDeviceGetPowerUsage)
        return None if mw is None else mw / 1000.0

    def info(self) -> dict:
        n = self._nvml
        name = self._read(n.nvmlDeviceGetName)
        try:
            driver = _decode(n.nvmlSystemGetDriverVersion())
        except Exception:
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
        except Exception as exc:
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

    def __init__(self):
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


# --------------------------------------------------------------------------- RAPL


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
            "cpu_name": _cpu_name(),
            "driver": None,
            "power_limit_w": None,
            "sm_clock_mhz": None,
            "temperature_c": None,
            "domains": [d["name"] for d in self._domains],
            "counter_period_s": self.counter_period_s,
        }


def _cpu_name() -> str | None:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or None


# --------------------------------------------------------------------------- estimated


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


# --------------------------------------------------------------------------- replay (tests)


class FakeClock:
    """A deterministic clock: ``clock()`` / ``clock.now()`` read it, ``advance``/``sleep`` move it.

    ``sleeps`` records every ``sleep(dt)`` call (e.g. the protocol's phase jitter).
    """

    def __init__(self, start: float = 0.0):
        self.t = float(start)
        self.sleeps: list[float] = []

    def now(self) -> float:
        return self.t

    __call__ = now

    def advance(self, dt: float) -> float:
        if dt < 0:
            raise ValueError(f"FakeClock cannot go backwards (dt={dt})")
        self.t += dt
        return self.t

    def sleep(self, dt: float) -> None:
        self.sleeps.append(dt)
        self.advance(max(0.0, dt))


class ReplayMeter(EnergyMeter):
    """Integrates a scripted power trace over a clock, with an NVML-like quantised counter.

    Power is given as exactly one of:

    - ``power_w``: a constant (watts) or a callable ``p(t)`` of the clock time ``t``;
    - ``trace``: ``[(t, p), ...]`` samples, piecewise constant (``p_i`` holds on
      ``[t_i, t_{i+1})``; before the first sample the first power, after the last the last).

    Energy is 0 at construction time. The counter reads the integral up to
    ``floor(t / counter_period_s) * counter_period_s`` (``counter_period_s=0`` gives the exact
    integral). Constant and trace powers integrate exactly; callables with the midpoint rule on
    ``integration_step_s`` sub-steps. ``read_cost_s`` advances the clock on each read (an NVML
    read costs ~4 ms) when the clock is a :class:`FakeClock`. ``info`` overrides/extends
    :meth:`info`. ``reads`` and ``syncs`` count calls, for tests.
    """

    name = "replay"
    measured = True

    def __init__(self, power_w: float | Callable[[float], float] | None = None, clock: Callable[[], float] | None = None,
                 counter_period_s: float = 0.1, *, trace: Sequence[tuple[float, float]] | None = None,
                 integration_step_s: float = 1e-3, read_cost_s: float = 0.0, info: dict | None = None):
        if (power_w is None) == (trace is None):
            raise ExanteError("ReplayMeter needs exactly one of power_w (float or callable) or trace [(t, p), ...]")
        if counter_period_s < 0:
            raise ExanteError(f"counter_period_s must be >= 0, got {counter_period_s}")
        self.clock = clock if clock is not None else FakeClock()
        self.counter_period_s = float(counter_period_s)
        self.integration_step_s = float(integration_step_s)
        self.read_cost_s = float(read_cost_s)
        self._info = dict(info or {})
        self.reads = 0
        self.syncs = 0
        self._const: float | None = None
        self._fn: Callable[[float], float] | None = None
        self._trace_t: list[float] = []
        self._trace_p: list[float] = []
        self._trace_e: list[float] = []  # integral from trace_t[0] to trace_t[i]
        if trace is not None:
            pts = sorted((float(t), float(p)) for t, p in trace)
            if not pts:
                raise ExanteError("ReplayMeter trace is empty")
            self._trace_t = [t for t, _ in pts]
            self._trace_p = [p for _, p in pts]
            e = 0.0
            self._trace_e = [0.0]
            for i in range(1, len(pts)):
                e += self._trace_p[i - 1] * (self._trace_t[i] - self._trace_t[i - 1])
                self._trace_e.append(e)
        elif callable(power_w):
            self._fn = power_w
        else:
            self._const = float(power_w)
        self._t_origin = self._now()
        # incremental cache for callables: integral from origin to _cache_t
        self._cache_t = self._t_origin
        self._cache_e = 0.0

    def _now(self) -> float:
        return float(self.clock())

    def power_at(self, t: float) -> float:
        if self._const is not None:
            return self._const
        if self._fn is not None:
            return float(self._fn(t))
        i = bisect_right(self._trace_t, t) - 1
        return self._trace_p[max(i, 0)]

    def _trace_cum(self, t: float) -> float:
        """Integral of the trace from trace_t[0] to t (negative before it)."""
        t0 = self._trace_t[0]
        if t <= t0:
            return self._trace_p[0] * (t - t0)
        i = bisect_right(self._trace_t, t) - 1
        return self._trace_e[i] + self._trace_p[i] * (t - self._trace_t[i])

    def integral(self, t: float) -> float:
        """Exact (or finely integrated) energy in joules from construction time to ``t``."""
        a = self._t_origin
        if t <= a:
            return 0.0
        if self._const is not None:
            return self._const * (t - a)
        if self._fn is None:
            return self._trace_cum(t) - self._trace_cum(a)
        if t < self._cache_t:  # earlier than the cache: integrate from origin
            start_t, e = a, 0.0
        else:
            start_t, e = self._cache_t, self._cache_e
        span = t - start_t
        if span > 0:
            n = max(1, math.ceil(span / self.integration_step_s))
            h = span / n
            e += sum(self._fn(start_t + (i + 0.5) * h) for i in range(n)) * h
        if t >= self._cache_t:
            self._cache_t, self._cache_e = t, e
        return e

    def _consume_read_cost(self) -> None:
        if self.read_cost_s > 0 and hasattr(self.clock, "advance"):
            self.clock.advance(self.read_cost_s)

    def energy_j(self) -> float:
        self.reads += 1
        self._consume_read_cost()
        t = self._now()
        if self.counter_period_s > 0:
            t = math.floor(t / self.counter_period_s) * self.counter_period_s
        return self.integral(t)

    def power_w(self) -> float:
        return self.power_at(self._now())

    def sync(self) -> None:
        self.syncs += 1
        _cuda_sync(None)  # a dry run on a GPU: windows must still end when the queued work has

    def info(self) -> dict:
        d = {
            "meter": self.name,
            "measured": self.measured,
            "gpu_name": "replay",
            "driver": None,
            "power_limit_w": None,
            "sm_clock_mhz": None,
            "temperature_c": None,
            "power_w": self.power_w(),
            "counter_period_s": self.counter_period_s,
        }
        d.update(self._info)
        return d


# --------------------------------------------------------------------------- counter changes


class CounterChangeMeter(EnergyMeter):
    """Energy over a window from the counter's *changes* (the H100 reference set's method).

    A daemon thread reads ``inner.energy_j()`` every ``poll_s`` (2 ms) and logs ``(t, E)``
    whenever the value changes (``t`` = ``clock()`` right after the read). For a window
    ``[t0, t1]`` (same clock), :meth:`interval_energy_j` takes the first and last logged changes
    inside it, ``P = (E_last - E_first) / (t_last - t_first)`` (W), and returns ``P x (t1 - t0)``
    (J). A counter that steps every ~100 ms thus gives the window's average power without the
    up-to-one-step quantisation of two edge reads; the timestamps' lag (<= one poll + one read)
    is the same at both ends and cancels. ``protocol.measure`` uses :meth:`interval_energy_j`
    whenever a meter has it. ``energy_j()`` reads the inner counter directly.

    ``last_interval`` holds the last window's ``n_changes`` and ``span_s`` (seconds between
    the first and last change). Changes older than ``keep_s`` are dropped.
    """

    measured = True

    def __init__(self, inner: EnergyMeter, poll_s: float = 0.002, *, clock: Callable[[], float] = time.perf_counter,
                 keep_s: float = 900.0, autostart: bool = True):
        if not poll_s > 0:
            raise ExanteError(f"poll_s must be > 0, got {poll_s!r}")
        self.inner = inner
        self.name = f"{inner.name}-changes"
        self.measured = bool(getattr(inner, "measured", True))
        self.counter_period_s = getattr(inner, "counter_period_s", None)
        self.poll_s = float(poll_s)
        self.keep_s = float(keep_s)
        self._clock = clock
        self._lock = threading.Lock()
        self._t: list[float] = []
        self._e: list[float] = []
        self._last_poll_t = -math.inf
        self._last_e: float | None = None
        self._error: BaseException | None = None
        self.n_reads = 0
        self.last_interval: dict = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._poll()
        if autostart:
            self.start()

    @property
    def clock(self) -> Callable[[], float]:
        return self._clock

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._loop, name="exante-counter-changes", daemon=True)
            self._thread.start()

    def _poll(self) -> None:
        e = float(self.inner.energy_j())
        t = self._clock()
        with self._lock:
            self.n_reads += 1
            if self._last_e is not None and e != self._last_e:  # the first read is no change
                self._t.append(t)
                self._e.append(e)
                if len(self._t) > 4096 and t - self._t[0] > self.keep_s:  # bounded memory
                    cut = bisect_right(self._t, t - self.keep_s)
                    del self._t[:cut], self._e[:cut]
            self._last_e = e
            self._last_poll_t = t

    def _loop(self) -> None:
        while not self._stop.wait(self.poll_s):
            try:
                self._poll()
            except Exception as exc:  # reported to the next interval_energy_j caller
                self._error = exc
                return

    def _wait_for(self, t1: float, timeout_s: float) -> None:
        """Wait until a poll has happened after ``t1`` (or poll here if the thread is not running)."""
        if self._thread is None or not self._thread.is_alive():
            if self._error is not None:
                raise ExanteError(f"meter {self.name!r}: the polling thread failed ({self._error})")
            self._poll()
            return
        deadline = time.monotonic() + timeout_s
        while self._last_poll_t < t1 and time.monotonic() < deadline:
            time.sleep(self.poll_s / 2)

    def interval_energy_j(self, t0: float, t1: float) -> float:
        """Energy (J) over ``[t0, t1]``: mean power between the first and last counter change
        inside the window x ``(t1 - t0)``. Raises ``ExanteError`` with fewer than 2 changes."""
        if not t1 > t0:
            raise ExanteError(f"empty window [{t0}, {t1}]")
        self._wait_for(t1, timeout_s=max(0.05, 20 * self.poll_s))
        with self._lock:
            i = bisect_right(self._t, t0 - 1e-12)  # first change at or after t0
            j = bisect_right(self._t, t1) - 1  # last change at or before t1
            n = j - i + 1
            if n >= 2:
                ta, tb, ea, eb = self._t[i], self._t[j], self._e[i], self._e[j]
        if n < 2:
            period = self.counter_period_s
            raise ExanteError(
                f"energy counter of meter {self.name!r} changed {max(n, 0)} time(s) in a window of {t1 - t0:.3f} s "
                f"(counter period {'~%g s' % period if period else 'unknown'}); use windows of several counter periods")
        span = tb - ta
        self.last_interval = {"n_changes": n, "span_s": span}
        return (eb - ea) / span * (t1 - t0)

    def energy_j(self) -> float:
        return float(self.inner.energy_j())

    def power_w(self) -> float | None:
        return self.inner.power_w()

    def sync(self) -> None:
        self.inner.sync()

    def info(self) -> dict:
        d = dict(self.inner.info())
        d["meter"] = self.name
        d["counter_note"] = ((d.get("counter_note") or "") + f"; read every {self.poll_s * 1e3:g} ms by a thread, "
                             "window power between the first and last counter change").lstrip("; ")
        d["poll_s"] = self.poll_s
        return d

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=1.0)
            self._thread = None
        self.inner.close()


# --------------------------------------------------------------------------- factory


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
