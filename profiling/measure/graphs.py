"""CUDA-graph execution of a workload: ``n`` calls captured in one ``torch.cuda.CUDAGraph``
after a warm-up on a side stream (as the torch docs require), ``n`` chosen so one replay lasts
>= ``target_s`` (1 ms). A failed capture raises :class:`GraphCaptureError` naming the real cause
and leaves the caller's stream current.
"""

from __future__ import annotations

import contextlib
import math
import time
import warnings
from typing import Callable, Sequence

import torch

from profiling.measure.workload import GraphCaptureError, ReplayCall, sync

__all__ = ["graph_workload", "GraphCaptureError"]


def _time_calls(fn: Callable, n: int, device: torch.device) -> float:
    sync(device)
    t0 = time.perf_counter()
    for _ in range(n):
        fn()
    sync(device)
    return (time.perf_counter() - t0) / n


def _capture_graph(step: Callable, n: int, device: torch.device, warmup: int = 3):
    """Warm up ``step`` on a side stream, then capture ``n`` calls in one CUDA graph (torch docs,
    "CUDA Graphs": whole-network capture). On failure the caller's current stream is restored
    (``torch.cuda.graph.__exit__`` skips that when ``capture_end`` itself raises)."""
    prev = torch.cuda.current_stream(device)
    s = torch.cuda.Stream(device=device)
    s.wait_stream(prev)
    try:
        with torch.cuda.stream(s):
            for _ in range(warmup):
                step()
        prev.wait_stream(s)
        torch.cuda.synchronize(device)
        g = torch.cuda.CUDAGraph()
        with torch.cuda.graph(g):
            for _ in range(n):
                step()
        torch.cuda.synchronize(device)
    except BaseException:
        with contextlib.suppress(Exception):
            torch.cuda.set_stream(prev)
        raise
    return g


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text.splitlines()[0] if text else ''}"


def _capture_reason(exc: BaseException) -> str:
    """The error that broke the capture: when an op fails inside ``torch.cuda.graph``, its
    ``__exit__`` (capture_end) raises a second, generic CUDA error whose ``__context__`` is the
    real cause (e.g. a host sync inside an op: "operation not permitted when stream is capturing")."""
    outer = _one_line(exc)
    inner = exc
    seen = {id(exc)}
    while inner.__context__ is not None and id(inner.__context__) not in seen:
        inner = inner.__context__
        seen.add(id(inner))
    if inner is exc:
        return outer
    return f"{_one_line(inner)} (then {outer})"


@contextlib.contextmanager
def _quiet_capturable_warning():
    """Eager warm-ups of a ``capturable=True`` optimizer warn once per instance (torch >= 2.x:
    "capturable=True ... step() is running without CUDA graph capture"); expected here."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r".*capturable=True.*", category=UserWarning)
        yield


def graph_workload(step: Callable, device: torch.device, *, target_s: float = 1e-3, max_calls: int = 4096,
                   description: str = "", keep: Sequence = (), **meta) -> ReplayCall:
    """Capture ``n`` calls of ``step`` in one CUDA graph so that one replay lasts >= ``target_s``."""
    if device.type != "cuda":
        raise GraphCaptureError(f"CUDA graphs need a CUDA device (device is {device})")
    g = None
    try:
        with _quiet_capturable_warning():
            for _ in range(3):  # eager warm-up (lazy init, cuDNN/cuBLAS heuristics, optimizer state)
                step()
            t_eager = _time_calls(step, 3, device)
            n = int(min(max_calls, max(1, math.ceil(target_s / max(t_eager, 1e-7)))))
            g = _capture_graph(step, n, device)
        g.replay()  # the first replay uploads the graph: keep it out of the timing
        t_replay = _time_calls(g.replay, 3, device)
        if t_replay < target_s and n < max_calls:  # graph replay is faster than eager: grow n
            n = int(min(max_calls, math.ceil(n * 1.2 * target_s / max(t_replay, 1e-9))))
            g = None  # free the first graph (and its private memory pool) before the second capture
            with _quiet_capturable_warning():
                g = _capture_graph(step, n, device)
            g.replay()
            t_replay = _time_calls(g.replay, 3, device)
    except Exception as exc:  # capture errors: keep the reason, leave the device usable
        g = None
        with contextlib.suppress(Exception):
            torch.cuda.synchronize(device)
        raise GraphCaptureError(f"CUDA graph capture failed: {_capture_reason(exc)}") from exc
    info = {"graph_calls": n, "graph_replay_s": t_replay, "eager_call_s": t_eager}
    return ReplayCall(fn=g.replay, calls_per_invocation=n, description=description, exec="graph",
                    device=str(device), info=info, _keep=[g, step, *keep], **meta)
