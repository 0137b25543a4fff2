"""Run one task on a measurement session: meters, torch precision flags, device-memory hygiene,
CUDA-context checks and the per-worker entry point used by the dask backend."""

from __future__ import annotations

import contextlib
import gc
import os
import threading
import time
import traceback
from typing import Any

import torch

from profiling.errors import ExanteError, MeterUnavailable
from profiling.measure.profiler import profile_model
from profiling.measure.session import ProfileSession, open_meter
from profiling.measure.whole_model import measure_whole_model
from profiling.sweeps.builders import build_from_spec
from profiling.sweeps.tasks import REFERENCE_EVERY, SweepTask, _canon

# --------------------------------------------------------------------------- meters


def make_meter(name="auto", *, device=None, hardware: str | None = None, rated_power_w: float | None = None):
    """See :func:`profiling.measure.profiler.open_meter` (``auto | nvml | nvml-power | rapl | estimated | replay``)."""
    return open_meter(name, device=device, hardware=hardware, rated_power_w=rated_power_w)


# --------------------------------------------------------------------------- task execution


def _free_memory():
    """Give the task's device memory back before the next task (a full gc costs ~0.1 s: GPU only)."""
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        gc.collect()
        with contextlib.suppress(Exception):  # a broken context is reported by _cuda_context_error
            torch.cuda.empty_cache()


def _cuda_context_error(device) -> str | None:
    """None if CUDA still works on ``device``; else the error. A sticky CUDA error (illegal
    memory access, device-side assert) makes every later CUDA call in this process fail, so
    the sweep must stop rather than record every following task as failed."""
    dev = torch.device(device) if device is not None else None
    if dev is None or dev.type != "cuda" or not torch.cuda.is_initialized():
        return None
    try:
        torch.cuda.synchronize(dev)
        if float(torch.ones(1, device=dev).add_(1).sum()) != 2.0:
            return "a tiny CUDA computation returned a wrong result"
    except RuntimeError as exc:  # torch's CUDA errors (AcceleratorError included)
        text = str(exc).strip()
        return f"{type(exc).__name__}: {text.splitlines()[0] if text else ''}"
    return None


TORCH_FLAGS = {  # name -> (getter, setter) of a torch precision flag
    "allow_tf32_matmul": (lambda: torch.backends.cuda.matmul.allow_tf32,
                          lambda v: setattr(torch.backends.cuda.matmul, "allow_tf32", bool(v))),
    "allow_tf32_cudnn": (lambda: torch.backends.cudnn.allow_tf32,
                         lambda v: setattr(torch.backends.cudnn, "allow_tf32", bool(v))),
    "cudnn_benchmark": (lambda: torch.backends.cudnn.benchmark,
                        lambda v: setattr(torch.backends.cudnn, "benchmark", bool(v))),
}


@contextlib.contextmanager
def torch_flags(flags: dict | None):
    """Set torch precision flags (``TORCH_FLAGS`` names) for the duration, then restore them."""
    flags = dict(flags or {})
    bad = sorted(set(flags) - set(TORCH_FLAGS))
    if bad:
        raise ExanteError(f"unknown torch flag(s) {bad}; accepted: {', '.join(TORCH_FLAGS)}")
    old = {k: TORCH_FLAGS[k][0]() for k in flags}
    try:
        for k, v in flags.items():
            TORCH_FLAGS[k][1](v)
        yield
    finally:
        for k, v in old.items():
            with contextlib.suppress(Exception):
                TORCH_FLAGS[k][1](v)


# the last whole model built (a reference-set model serves its consecutive rows; dropped after a
# train_step, which changes its weights, and before any other model)
_WHOLE_CACHE: dict = {}


def _whole_model(task: SweepTask, device):
    ident = _canon({k: v for k, v in task.spec.items() if k != "batch"}) + f"|{device}"
    if _WHOLE_CACHE.get("ident") != ident:
        _WHOLE_CACHE.clear()
        model, _ = build_from_spec({**task.spec, "batch": 1}, device=device)
        _WHOLE_CACHE.update(ident=ident, model=model)
    _, inputs = build_from_spec({**task.spec, "batch": task.batch}, device="meta")
    return _WHOLE_CACHE["model"], inputs


def _execute_whole(task: SweepTask, session, out: dict) -> None:
    try:
        model, inputs = _whole_model(task, session.device)
        row, refs, notes = measure_whole_model(
            model, inputs, session=session, mode=task.mode, dtype=task.dtype, optimizer=task.optimizer,
            model_ref=task.model_ref, family=task.family, spec=task.spec, task_key=task.key)
    finally:
        if task.mode != "inference":
            _WHOLE_CACHE.clear()
    out["model_rows"] = [row]
    out["reference_rows"] = refs
    if notes:
        out["error"] = "; ".join(notes)[:500]


def execute_task(task: SweepTask, session, *, deadline: float | None = None) -> dict:
    """Run one task in ``session`` (a profiler.ProfileSession); never raises for a task's own
    failure (status ``error`` with the message), only for a broken meter or an interrupt."""
    if deadline is not None and time.time() > deadline:
        return {"task_key": task.key, "status": "skipped", "session": session.describe()}
    t0 = time.perf_counter()
    out: dict[str, Any] = {"task_key": task.key, "kind": task.kind, "family": task.family, "status": "ok", "error": None,
           "layer_rows": [], "model_rows": [], "reference_rows": [], "skipped": []}
    model = inputs = None
    try:
        if task.kind == "whole":
            _execute_whole(task, session, out)
        else:
            model, inputs = task.build(device=session.device)
            res = profile_model(
                model, inputs, mode=task.mode, dtype=task.dtype, optimizer=task.optimizer, session=session,
                execs=task.execs, measure_model=task.kind == "model", task_key=task.key, family=task.family,
                model_ref=task.model_ref, spec=task.spec, progress=False,
            )
            out["layer_rows"] = res.layer_rows
            out["reused_keys"] = res.reused_keys
            out["model_rows"] = [res.model_row] if res.model_row is not None else []
            out["reference_rows"] = res.reference_rows
            out["skipped"] = res.skipped
            if task.kind == "layer" and not res.layer_rows and not res.reused_keys:
                out["status"] = "error"
                out["error"] = ("; ".join(s.get("reason", "") for s in res.skipped)
                                or "; ".join(res.notes) or "no supported layer captured")[:500]
    except (MeterUnavailable, KeyboardInterrupt):
        raise
    except Exception as exc:  # the task's own failure (OOM, unsupported op...): record and go on
        out["status"] = "error"
        msg = str(exc).splitlines()[0] if str(exc) else ""
        out["error"] = f"{type(exc).__name__}: {msg}"[:500]
        out["traceback"] = traceback.format_exc(limit=4)[-2000:]
        # rows measured before the failure (e.g. the whole model ran out of memory after its
        # layers were measured) are written too: the session already counts them as known
        partial = getattr(exc, "exante_partial", None)
        if isinstance(partial, dict):
            for k in ("layer_rows", "reference_rows", "skipped", "reused_keys"):
                out[k] = list(partial.get(k) or [])
    finally:
        del model, inputs
        _free_memory()
    return _finish_task(task, session, out, t0)


def _finish_task(task: SweepTask, session, out: dict, t0: float) -> dict:
    if out["status"] != "ok" or out["skipped"]:
        broken = _cuda_context_error(session.device)
        if broken:
            _WHOLE_CACHE.clear()
            out["fatal"] = f"CUDA context unusable after task {task.key} ({broken})"
    out["elapsed_s"] = time.perf_counter() - t0
    out["session"] = session.describe()
    return out


_WORKER = threading.local()


def _worker_execute(task: SweepTask, cfg: dict, known: dict, deadline: float | None) -> dict:
    """Runs on a dask worker: one cached ProfileSession per worker thread and configuration."""
    cache = getattr(_WORKER, "sessions", None)
    if cache is None:
        cache = _WORKER.sessions = {}
    ck = _canon(cfg)
    session = cache.get(ck)
    if session is None:
        device = os.environ.get("EXANTE_DEVICE") or cfg.get("device")
        session = ProfileSession(meter=cfg["meter"], device=device, rated_power_w=cfg.get("rated_power_w"), hardware=cfg["hardware"], sweep_id=cfg["sweep_id"],
                                 protocol_kwargs=cfg.get("protocol_kwargs"), idle_kwargs=cfg.get("idle_kwargs"),
                                 idle_power_w=cfg.get("idle_power_w"), reference=cfg.get("reference"),
                                 reference_every=cfg.get("reference_every", REFERENCE_EVERY))
        try:
            from distributed import get_worker

            session.worker = get_worker().address
        except (ImportError, ValueError):  # no dask here / not running on a dask worker
            session.worker = None
        cache[ck] = session
    session.known.update({k: v for k, v in known.items() if k not in session.known})
    return execute_task(task, session, deadline=deadline)
