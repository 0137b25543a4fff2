"""A measuring session: what one session's measurements share (DESIGN.md §2).

:class:`ProfileSession` holds the meter, the device, the idle power (measured once, W), the
environment, the reference workload and the layer measurements already taken (so a sweep
measures each distinct layer config once per session: key = config key + mode + exec + dtype +
optimizer). :func:`open_meter` opens a meter by name (``replay``/``replay-changes`` included,
for CPU runs); :func:`hardware_id` names the hardware ("h100").
"""

from __future__ import annotations

import json
import logging
import re
import time
import uuid
from datetime import datetime, timezone

import torch

from profiling.dataset import schema
from profiling.errors import ExanteError
from profiling.measure import replay
from profiling.measure.environment import environment_info
from profiling.measure.idle import measure_idle_power
from profiling.measure.protocol import measure
from profiling.meters.base import EnergyMeter
from profiling.meters.changes import CounterChangeMeter
from profiling.meters.estimated import EstimatedMeter
from profiling.meters.rapl import cpu_name
from profiling.meters.registry import get_meter
from profiling.meters.replay import ReplayMeter

__all__ = ["ProfileSession", "open_meter", "hardware_id", "now_iso", "REFERENCE_EVERY", "RATED_POWER_W"]

logger = logging.getLogger(__name__)

REFERENCE_EVERY = 20
RATED_POWER_W = {"h100": 700.0, "h200": 700.0, "a100": 400.0}


def now_iso() -> str:
    """The current UTC time, ISO 8601 to the second (``2026-12-03T04:00:00+00:00``)."""
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def hardware_id(gpu_name: str | None, device: torch.device | None = None) -> str:
    """A short hardware id from a GPU name ("NVIDIA H100 80GB HBM3" -> "h100"); "cpu" on CPU."""
    if device is not None and device.type == "cpu" and not gpu_name:
        return "cpu"
    if not gpu_name:
        return "unknown"
    m = re.search(r"\b(H100|H200|H20|GH200|B200|B100|A100|A10G|A10|A30|A40|L40S|L40|L4|V100|T4|P100|RTX ?\d{4}\w*)\b",
                  gpu_name, re.I)
    if m:
        return m.group(1).replace(" ", "").lower()
    return re.sub(r"[^a-z0-9]+", "-", gpu_name.lower()).strip("-") or "unknown"


def open_meter(name="auto", *, device=None, hardware: str | None = None, rated_power_w: float | None = None):
    """A meter by name (``auto | nvml | nvml-changes | nvml-power | rapl | estimated | replay |
    replay-changes``), an
    ``EnergyMeter`` instance (returned as is) or a zero-argument factory.

    ``replay`` integrates a constant power (``rated_power_w`` or 100 W) over the real clock:
    a stand-in for CPU tests and dry runs (rows say ``meter=replay``); ``replay-changes`` the same
    with 50 ms counter steps read through :class:`~profiling.meters.CounterChangeMeter` (the
    ``nvml-changes`` code path). ``estimated`` uses
    ``rated_power_w`` or the hardware's rated power and is labelled ``measured = False``.
    """
    if isinstance(name, EnergyMeter):
        return name
    if callable(name) and not isinstance(name, str):
        return name()
    key = str(name or "auto").lower()
    index = 0
    if device is not None:
        dev = torch.device(device)
        if dev.type == "cuda":
            index = dev.index or 0
    if key == "replay":
        return ReplayMeter(power_w=float(rated_power_w or 100.0), clock=time.perf_counter, counter_period_s=0.0,
                                  info={"gpu_name": None})
    if key == "replay-changes":  # the counter-change path of protocol v2 on a CPU: 50 ms counter steps
        inner = ReplayMeter(power_w=float(rated_power_w or 100.0), clock=time.perf_counter,
                                   counter_period_s=0.05, info={"gpu_name": None})
        return CounterChangeMeter(inner)
    if key == "estimated":
        p = rated_power_w or RATED_POWER_W.get(str(hardware or "").lower())
        if p is None:
            raise ExanteError(f"meter 'estimated' needs rated_power_w (no rated power known for hardware {hardware!r})")
        return EstimatedMeter(p, source="user-supplied rated power" if rated_power_w else f"rated power of {hardware}")
    return get_meter(key, device_index=index)


class ProfileSession:
    """One measuring session: meter, device, idle power, environment, reference, known layers."""

    def __init__(self, meter=None, *, device=None, hardware: str | None = None, sweep_id: str | None = None,
                 idle_power_w: float | None = None, protocol_kwargs: dict | None = None,
                 idle_kwargs: dict | None = None, reference=None, reference_every: int = REFERENCE_EVERY,
                 known: dict | None = None, session_id: str | None = None, rated_power_w: float | None = None):
        self.device = replay.resolve_device(device)
        self._owns_meter = not isinstance(meter, EnergyMeter)
        self.meter = open_meter("auto" if meter is None else meter, device=self.device, hardware=hardware,
                                rated_power_w=rated_power_w)
        self.sweep_id = sweep_id
        self.protocol_kwargs = dict(protocol_kwargs or {})
        self.idle_kwargs = dict(idle_kwargs or {})
        self._idle_power_w = None if idle_power_w is None else float(idle_power_w)
        self.idle_measured = idle_power_w is None
        self.known: dict = dict(known or {})  # layer row key -> {"energy_j", "time_s"}
        self.session_id = session_id or (datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S") + "-" + uuid.uuid4().hex[:6])
        self.started = now_iso()
        self.reference = reference
        self.reference_every = max(1, int(reference_every))
        self._ref_workload: replay.ReplayCall | None = None
        self._since_reference = 0
        self.n_reference = 0
        self.n_measured = 0
        self.worker: str | None = None  # the dask worker's address, when run on one
        self._env: dict | None = None
        self.hardware = hardware or hardware_id(self.env.get("gpu_name"), self.device)

    # -- lazily measured / read -----------------------------------------------------------
    @property
    def env(self) -> dict:
        if self._env is None:
            env = dict(environment_info(self.meter))
            env.setdefault("cpu_name", cpu_name())
            env["session_id"] = self.session_id
            env["device"] = str(self.device)
            self._env = env
        return self._env

    @property
    def idle_power_w(self) -> float:
        if self._idle_power_w is None:
            self._idle_power_w = float(measure_idle_power(self.meter, **self.idle_kwargs))
        return self._idle_power_w

    def describe(self) -> dict:
        """What meta.json records about this session."""
        return {"session_id": self.session_id, "started": self.started, "env": self.env,
                "idle_power_w": self._idle_power_w, "idle_measured": self.idle_measured, "device": str(self.device),
                "worker": self.worker, "meter": getattr(self.meter, "name", None), "hardware": self.hardware,
                "n_measured": self.n_measured, "n_reference": self.n_reference,
                "protocol_kwargs": {k: v for k, v in self.protocol_kwargs.items() if not callable(v)}}

    # -- measuring ----------------------------------------------------------------------------
    def measure(self, workload: replay.ReplayCall) -> dict:
        """Protocol measurement of ``workload``; per-call fields divided by calls_per_invocation."""
        idle = self.idle_power_w
        m = measure(workload.fn, self.meter, idle_power_w=idle, **self.protocol_kwargs)
        d = m.as_row()
        n = max(1, int(workload.calls_per_invocation))
        for k in ("time_s", "energy_j", "energy_dynamic_j"):
            d[k] = d[k] / n
        d["calls_per_invocation"] = n
        d["windows"] = m.windows  # per fn() call (one graph replay = n calls), kept as windows_json
        self.n_measured += 1
        self._since_reference += 1
        return d

    def reference_due(self) -> bool:
        return self.reference not in (None, False) and (self.n_reference == 0 or
                                                       self._since_reference >= self.reference_every)

    def measure_reference(self, *, task_key: str | None = None) -> dict:
        """Measure the reference workload; returns a ``layers.csv`` row with layer_type 'reference'."""
        wl = self._ref_workload
        if wl is None:
            ref = self.reference
            wl = ref if isinstance(ref, replay.ReplayCall) else replay.reference_workload(self.device)
            self._ref_workload = wl
        meas = self.measure(wl)
        self._since_reference = 0
        self.n_reference += 1
        name = wl.info.get("reference", "reference")
        row = schema.layer_row(
            None, features=None, measurement=meas, env=self.row_env(), mode="inference", exec=wl.exec, dtype="fp32",
            optimizer=None, hardware=self.hardware, sweep_id=self.sweep_id, task_key=task_key, layer_type="reference",
            extra={"key": f"reference|{name}|{self.session_id}|{self.n_reference}", "config_key": name,
                   "hparams": json.dumps({"description": wl.description})},
        )
        return row

    def maybe_reference(self, rows: list, *, task_key: str | None = None) -> None:
        if self.reference_due():
            rows.append(self.measure_reference(task_key=task_key))

    def row_env(self) -> dict:
        """The environment for one row: the session's, dated now (UTC)."""
        env = dict(self.env)
        env["date"] = now_iso()
        return env

    _row_env = row_env  # the old name (experiments/wide_vs_deep/run.py calls it)

    def close(self) -> None:
        self._ref_workload = None
        if self._owns_meter:
            try:
                self.meter.close()
            except (OSError, RuntimeError, ExanteError) as exc:  # the measurements stand; the meter leaks
                logger.warning("closing meter %r failed: %s", getattr(self.meter, "name", self.meter), exc)
