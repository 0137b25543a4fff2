"""The life-cycle experiments' measuring session (meter, idle power, provenance) and the ex-ante
prediction of a run (``predictor.carbon.lifecycle.estimate``); see lcbench.py."""

from __future__ import annotations

import functools
import os
import sys
import time
import uuid
import warnings
from datetime import datetime, timezone
from typing import Any, Callable

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

import torch  # noqa: E402

from experiments.lifecycle.lc_models import (  # noqa: E402
    ModelSpec,
    sync,
)
from profiling.errors import ExanteError  # noqa: E402

SCRIPT_VERSION = "1"
NO_PREDICTION = "no prediction"

# --------------------------------------------------------------------------- measuring session


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


PROVENANCE_COLUMNS = (
    "hardware", "hardware_detected", "device", "meter", "meter_measured", "idle_power_w", "sm_clock_mhz",
    "temperature_c", "gpu_name", "driver", "power_limit_w", "cpu_name", "torch_version", "cuda_version",
    "cudnn_version", "allow_tf32_matmul", "allow_tf32_cudnn", "python_version", "platform", "protocol_version",
    "session_id", "date", "smoke", "script_version",
)


class Session:
    """One measuring session: meter, device, idle power (measured once, in this session) and
    provenance (``profiling.measure.protocol.environment_info``)."""

    def __init__(self, *, meter: str, device: str, hardware: str, rated_power_w: float | None = None,
                 idle_s: float = 3.0, settle_s: float = 2.0, smoke: bool = False):
        from profiling.measure.profiler import cpu_name, hardware_id, open_meter
        from profiling.measure.protocol import environment_info
        from profiling.measure.replay import resolve_device

        self.device = resolve_device(device)
        self.hardware = hardware
        self.smoke = bool(smoke)
        self._threads = None
        if self.smoke and self.device.type == "cpu":
            # one intra-op thread: CPU smoke timings stay stable on a shared CI machine
            self._threads = torch.get_num_threads()
            torch.set_num_threads(1)
        if self.device.type == "cuda":
            # the CUDA context first: the NVML meter can then match the device by UUID, and the
            # idle window does not include context creation
            torch.zeros(1, device=self.device)
            sync(self.device)
        self.meter = open_meter(meter, device=self.device, hardware=hardware, rated_power_w=rated_power_w)
        self.env = dict(environment_info(self.meter))
        self.env.setdefault("cpu_name", cpu_name())
        self.session_id = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S") + "-" + uuid.uuid4().hex[:6]
        self.hardware_detected = hardware_id(self.env.get("gpu_name"), self.device)
        if self.env.get("gpu_name") and self.hardware_detected != hardware:
            warnings.warn(f"--hardware {hardware!r} but the GPU is {self.env['gpu_name']!r} "
                          f"({self.hardware_detected}); rows keep both", stacklevel=2)
        self.idle_power_w = self.measure_idle(idle_s, settle_s)

    def measure_idle(self, duration_s: float, settle_s: float) -> float:
        from profiling.measure.protocol import measure_idle_power

        sync(self.device)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return float(measure_idle_power(self.meter, duration_s=duration_s, settle_s=settle_s))

    def metered(self, body: Callable[[Callable[[int], None]], Any], *, marks: bool = True) -> dict:
        """Run ``body(mark)`` between two synced (energy, time) reads. ``mark(i)`` (called by
        the body at epoch ends) syncs and reads the counter once more; returns ``time_s``,
        ``energy_j``, ``marks`` ([[elapsed_s, energy_j], ...] cumulative), ``result``."""
        meter = self.meter
        points: list = []
        meter.sync()
        sync(self.device)
        e0 = meter.energy_j()
        t0 = time.perf_counter()

        def mark(_i: int) -> None:
            if marks:
                sync(self.device)
                points.append([time.perf_counter() - t0, meter.energy_j() - e0])

        result = body(mark)
        sync(self.device)
        meter.sync()
        e1 = meter.energy_j()
        t1 = time.perf_counter()
        dt, de = t1 - t0, e1 - e0
        if dt <= 0 or de <= 0:
            raise ExanteError(f"meter {meter.name!r} did not advance over a {dt:.3f} s run "
                              f"(energy delta {de:.3g} J); runs must be much longer than the counter period")
        points.append([dt, de])
        return {"time_s": dt, "energy_j": de, "marks": points, "result": result}

    def provenance(self) -> dict:
        info = {}
        try:
            info = self.meter.info() or {}
        except Exception as exc:  # noqa: BLE001 - clock/temperature columns stay empty, said once
            warnings.warn(f"meter {self.meter.name!r} gave no clock/temperature info "
                          f"({type(exc).__name__}: {exc})", stacklevel=2)
        env = self.env
        return {
            "hardware": self.hardware, "hardware_detected": self.hardware_detected, "device": str(self.device),
            "meter": env.get("meter"), "meter_measured": env.get("measured"), "idle_power_w": self.idle_power_w,
            "sm_clock_mhz": info.get("sm_clock_mhz"), "temperature_c": info.get("temperature_c"),
            **{k: env.get(k) for k in ("gpu_name", "driver", "power_limit_w", "cpu_name", "torch_version",
                                       "cuda_version", "cudnn_version", "allow_tf32_matmul", "allow_tf32_cudnn",
                                       "python_version", "platform", "protocol_version")},
            "session_id": self.session_id, "date": now_iso(), "smoke": self.smoke, "script_version": SCRIPT_VERSION,
        }

    def describe(self) -> dict:
        return {"session_id": self.session_id, "env": self.env, "idle_power_w": self.idle_power_w,
                "device": str(self.device), "hardware": self.hardware, "hardware_detected": self.hardware_detected}

    def close(self) -> None:
        if self._threads is not None:
            torch.set_num_threads(self._threads)
            self._threads = None
        try:
            self.meter.close()
        except Exception as exc:  # noqa: BLE001 - the rows are written; closing must not lose them
            warnings.warn(f"closing meter {self.meter.name!r} failed ({type(exc).__name__}: {exc})",
                          stacklevel=2)


# --------------------------------------------------------------------------- predictions


PREDICTION_COLUMNS = (
    "prediction_status", "prediction_note", "artifact_id", "predicted_at",
    "pred_energy_j", "pred_energy_j_low", "pred_energy_j_high", "pred_time_s", "pred_step_energy_j",
    "pred_theta", "pred_co2_kg",
)


def artifact_status(hardware: str, artifact_dir: str | None) -> tuple[bool, str, str | None]:
    """(available, note, artifact id) for the predictor artifact of ``hardware``."""
    try:
        from predictor.artifacts import load_artifact

        art = load_artifact(hardware, artifact_dir)
    except ExanteError as exc:
        return False, str(exc).splitlines()[0][:300], None
    except ImportError as exc:  # the predictor's dependencies are missing on this machine
        return False, f"predictor unavailable ({exc})"[:300], None
    return True, "", art.manifest.get("id")


def _predict_fn(artifact_dir: str | None):
    from predictor.engine.predict import predict

    return functools.partial(predict, artifact_dir=artifact_dir)


def quiet_warnings(fn):
    """Run fn() collecting warnings; returns (result, [warning texts])."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        out = fn()
    texts = []
    for w in caught:
        t = str(w.message).splitlines()[0][:200]
        if t not in texts:
            texts.append(t)
    return out, texts


def predict_run(spec: ModelSpec, *, hardware: str, artifact_dir: str | None, epochs: int | None, dataset_size: int,
                batch: int, optimizer: str, dtype: str = "fp32", drop_last: bool = False,
                inference_requests: int | None = None, inference_batch: int | None = None) -> dict:
    """The ex-ante prediction of one training run (``epochs=None``: none) and optionally of
    serving ``inference_requests`` samples at ``inference_batch``, with
    ``predictor.carbon.lifecycle.estimate``.

    Always returns every PREDICTION_COLUMNS key (training-stage numbers); ``prediction_status``
    is ``"ok"``, ``"no prediction"`` (no artifact for the hardware) or ``"failed"`` (the
    predictor refused, reason in ``prediction_note``). Extra keys: ``pred_inference_energy_j``
    (+ ``_low``/``_high``), ``pred_inference_time_s``, ``pred_inference_call_energy_j``."""
    from predictor.carbon.lifecycle import InferencePlan, Scenario, TrainingRun, estimate

    out: dict[str, Any] = {k: None for k in PREDICTION_COLUMNS}
    out.update(pred_inference_energy_j=None, pred_inference_energy_j_low=None, pred_inference_energy_j_high=None,
               pred_inference_time_s=None, pred_inference_call_energy_j=None)
    out["predicted_at"] = now_iso()
    ok, note, art_id = artifact_status(hardware, artifact_dir)
    if not ok:
        out.update(prediction_status=NO_PREDICTION, prediction_note=note)
        return out
    out["artifact_id"] = art_id
    try:
        run = None if epochs is None else TrainingRun(epochs=epochs, dataset_size=dataset_size, batch_size=batch,
                                                      optimizer=optimizer, dtype=dtype, drop_last=drop_last)
        inf = None
        if inference_requests:
            inf = InferencePlan(requests=inference_requests, batch_size=inference_batch or batch, dtype=dtype)
        model: Any = spec.model_ref or spec.build()
        sc = Scenario(model=model, input_shape=spec.input_shape, training=run, inference=inf, hardware=hardware)
        rep, notes = quiet_warnings(lambda: estimate(sc, predict_fn=_predict_fn(artifact_dir)))
    except Exception as exc:  # noqa: BLE001 - a predictor failure must not cost the measurement
        note = str(exc).splitlines()[0] if str(exc) else ""
        if not isinstance(exc, ExanteError):
            note = f"{type(exc).__name__}: {note}"
        out.update(prediction_status="failed", prediction_note=note[:300])
        return out
    out.update(prediction_status="ok", prediction_note="; ".join(notes)[:500] or None, pred_theta=rep.theta)
    if "training" in rep.stages:
        tr = rep.stages["training"]
        out.update(pred_energy_j=tr.energy_j, pred_energy_j_low=tr.energy_j_low, pred_energy_j_high=tr.energy_j_high,
                   pred_time_s=tr.time_s, pred_step_energy_j=tr.items[0]["step_energy_j"], pred_co2_kg=tr.co2_kg)
    if "inference" in rep.stages:
        s = rep.stages["inference"]
        out.update(pred_inference_energy_j=s.energy_j, pred_inference_energy_j_low=s.energy_j_low,
                   pred_inference_energy_j_high=s.energy_j_high, pred_inference_time_s=s.time_s,
                   pred_inference_call_energy_j=s.items[0]["call_energy_j"])
    return out


def compare(measured: float | None, predicted: float | None, low: float | None = None,
            high: float | None = None) -> dict:
    """``ratio`` = predicted / measured, ``error_pct`` = 100 (predicted - measured) / measured,
    ``in_interval`` whether the measurement lies in [low, high]."""
    if measured is None or predicted is None or not (measured > 0):
        return {"ratio": None, "error_pct": None, "in_interval": None}
    inside = None if low is None or high is None else bool(low <= measured <= high)
    return {"ratio": predicted / measured, "error_pct": 100.0 * (predicted - measured) / measured,
            "in_interval": inside}
