"""The resumable sweep runner: :func:`run_sweep` (atomic row appends, ``tasks.csv`` resume
bookkeeping, ``meta.json``, time budget, tqdm progress) over a local or dask backend."""

from __future__ import annotations

import contextlib
import os
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Callable

from profiling.dataset import schema
from profiling.errors import ExanteError
from profiling.measure.session import ProfileSession
from profiling.sweeps.execution import _worker_execute, execute_task, torch_flags
from profiling.sweeps.registry import get_sweep
from profiling.sweeps.tasks import REFERENCE_EVERY, SweepDefinition, SweepTask

# --------------------------------------------------------------------------- runner


@dataclass
class SweepSummary:
    """What :func:`run_sweep` returns: task counts (planned, done before, run, ok, failed), rows
    written, wall time ``elapsed_s`` (s), why it stopped early, its sessions and first 20 errors."""
    name: str
    sweep_id: str
    out_dir: str
    n_tasks: int  # tasks in the (limited/sharded) sweep
    n_already_done: int  # skipped on resume
    n_run: int = 0
    n_ok: int = 0
    n_errors: int = 0
    n_layer_rows: int = 0
    n_model_rows: int = 0
    n_reference_rows: int = 0
    n_duplicate_rows_dropped: int = 0
    elapsed_s: float = 0.0
    stopped: str | None = None  # None (finished), "time_budget"
    sessions: list = field(default_factory=list)
    errors: list = field(default_factory=list)  # (task key, message), first 20

    @property
    def n_remaining(self) -> int:
        return self.n_tasks - self.n_already_done - self.n_run

    @property
    def complete(self) -> bool:
        return self.n_remaining == 0

    def __str__(self) -> str:
        state = "complete" if self.complete else f"{self.n_remaining} task(s) left (resumable)"
        if self.stopped:
            state += f"; stopped by {self.stopped}"
        lines = [
            f"sweep {self.sweep_id} -> {self.out_dir}: {state}",
            f"  tasks: {self.n_tasks} in sweep, {self.n_already_done} done before, {self.n_run} run now "
            f"({self.n_ok} ok, {self.n_errors} errors) in {self.elapsed_s:.1f} s",
            f"  rows written: {self.n_layer_rows} layer, {self.n_model_rows} model, {self.n_reference_rows} reference"
            + (f" ({self.n_duplicate_rows_dropped} duplicate layer rows dropped)" if self.n_duplicate_rows_dropped else ""),
            f"  sessions: {', '.join(self.sessions) or '-'}",
        ]
        for key, msg in self.errors[:5]:
            lines.append(f"  error: {key}: {msg}")
        return "\n".join(lines)


def _now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


class _Writer:
    """Driver side: dedups, appends rows atomically, keeps meta.json current."""

    def __init__(self, out_dir: str, sweep: SweepDefinition, sweep_id: str, hardware: str, summary: SweepSummary,
                 backend: str, meter_name: str):
        self.out_dir = out_dir
        self.layers = schema.layer_table(out_dir)
        self.models = schema.model_table(out_dir)
        self.tasks = schema.task_table(out_dir)
        self.sweep, self.sweep_id, self.hardware = sweep, sweep_id, hardware
        self.summary = summary
        self.backend, self.meter_name = backend, meter_name
        self.meta_path = os.path.join(out_dir, schema.META_FILE)
        self.layer_keys = {k for sid, k in self.layers.keys() if sid == sweep_id}
        self.model_keys = {k for sid, k in self.models.keys() if sid == sweep_id}

    def known_measurements(self) -> dict:
        """key -> {energy_j, time_s} of this sweep's layer rows (dedup + additivity sums on resume)."""
        out = {}
        for r in self.layers.read():
            if r["sweep_id"] == self.sweep_id and r["layer_type"] != "reference" and r["key"]:
                out[r["key"]] = {"energy_j": r["energy_j"], "time_s": r["time_s"]}
        return out

    def write(self, res: dict) -> None:
        layer_rows = []
        for r in res.get("layer_rows", []):
            if r["key"] in self.layer_keys:
                self.summary.n_duplicate_rows_dropped += 1
                continue
            self.layer_keys.add(r["key"])
            layer_rows.append(r)
        ref_rows = list(res.get("reference_rows", []))
        model_rows = [r for r in res.get("model_rows", []) if r["key"] not in self.model_keys]
        self.layers.append(layer_rows + ref_rows)
        self.models.append(model_rows)
        self.model_keys.update(r["key"] for r in model_rows)
        sess = res.get("session") or {}
        error = res.get("error")
        if not error and res.get("skipped"):  # an ok task whose layers were not all measured (e.g. graph capture)
            error = ("not measured: " + "; ".join(f"{s.get('type')} [{s.get('exec')}]: {s.get('reason')}"
                                                  for s in res["skipped"]))[:500]
        self.tasks.append([schema.task_row(
            sweep_id=self.sweep_id, key=res["task_key"], kind=res.get("kind"), family=res.get("family"),
            status=res["status"], error=error, n_layer_rows=len(layer_rows), n_model_rows=len(model_rows),
            elapsed_s=res.get("elapsed_s"), session_id=sess.get("session_id"), date=_now_iso())])
        s = self.summary
        s.n_run += 1
        s.n_ok += res["status"] == "ok"
        if res["status"] != "ok":
            s.n_errors += 1
            if len(s.errors) < 20:
                s.errors.append((res["task_key"], res.get("error")))
        s.n_layer_rows += len(layer_rows)
        s.n_model_rows += len(model_rows)
        s.n_reference_rows += len(ref_rows)
        if sess.get("session_id") and sess["session_id"] not in s.sessions:
            s.sessions.append(sess["session_id"])
        self.update_meta(sess, task_done=True)

    def update_meta(self, sess: dict | None = None, *, task_done: bool = False, finished: bool = False) -> None:
        schema.update_meta(self.out_dir, lambda meta: self._update(meta, sess, task_done, finished))

    def _update(self, meta: dict, sess: dict | None, task_done: bool, finished: bool) -> None:
        meta.setdefault("hardware", self.hardware)
        meta["schema_version"] = schema.SCHEMA_VERSION
        meta["updated"] = _now_iso()
        sw = meta.setdefault("sweeps", {}).setdefault(self.sweep_id, {})
        sw.update({"name": self.sweep.name, "description": self.sweep.description,
                   "expected_h100_s": self.sweep.expected_duration_s})
        sw.setdefault("started", _now_iso())
        sw["n_tasks"] = self.summary.n_tasks  # of the task list of the last run (limit/shard applied)
        sw["n_tasks_done"] = self.summary.n_already_done + self.summary.n_run
        if finished:
            sw["last_run"] = {"ended": _now_iso(), "elapsed_s": round(self.summary.elapsed_s, 1),
                              "stopped": self.summary.stopped, "backend": self.backend, "meter": self.meter_name,
                              "tasks_run": self.summary.n_run, "errors": self.summary.n_errors}
            if self.summary.complete:
                sw["completed"] = _now_iso()
        if sess and sess.get("session_id"):
            sid = sess["session_id"]
            sessions = meta.setdefault("sessions", {})
            entry = sessions.setdefault(sid, {"started": sess.get("started"), "sweep_ids": []})
            if self.sweep_id not in entry.setdefault("sweep_ids", []):
                entry["sweep_ids"].append(self.sweep_id)
            for k in ("env", "idle_power_w", "device", "worker", "meter", "hardware", "n_measured", "n_reference"):
                if sess.get(k) is not None:
                    entry[k] = sess[k]
            entry["updated"] = _now_iso()
            if task_done:
                entry["n_tasks"] = entry.get("n_tasks", 0) + 1
            ids = sw.setdefault("sessions", [])
            if sid not in ids:
                ids.append(sid)


def run_sweep(name, out_dir, *, resume: bool = True, backend: str = "local", scheduler=None, meter="auto",
              n_jobs: int | None = 1, limit: int | None = None, shard: tuple[int, int] | None = None,
              progress: bool = True, hardware: str = "h100", time_budget_s: float | None = None,
              device=None, tag: str | None = None, protocol_kwargs: dict | None = None,
              idle_kwargs: dict | None = None, idle_power_w: float | None = None, rated_power_w: float | None = None,
              reference: bool = True, reference_every: int | None = None, retry_errors: bool = False,
              max_consecutive_errors: int = 25, on_task: Callable[[dict], None] | None = None,
              session_id: str | None = None) -> SweepSummary:
    """Run sweep ``name`` into the dataset folder ``out_dir`` (``datasets/<hardware>``).

    - ``resume``: skip tasks already recorded in ``tasks.csv`` for this sweep id (errored ones
      too, unless ``retry_errors``) and reuse this sweep's layer measurements already in
      ``layers.csv`` (dedup, additivity sums); ``resume=False`` re-measures everything.
    - ``tag``: sweep id = ``name@tag``, a separate measurement of the same design (e.g. one per
      session or machine, for the cross-session spread of host-bound workloads).
    - ``backend="local"``: tasks run one after another in this process on ``device``.
      ``backend="dask"``: ``scheduler`` is a ``dask.distributed.Client``, a cluster or an
      address; tasks go through ``joblib.Parallel(return_as="generator_unordered")`` under
      ``joblib.parallel_config(backend="dask")``; every worker (one per GPU; set
      ``CUDA_VISIBLE_DEVICES`` or ``EXANTE_DEVICE`` per worker) opens its own meter by name and
      measures its idle power; the driver writes the results as they arrive. ``n_jobs``
      defaults to the number of workers.
    - ``meter``: a name (``auto``, ``nvml``, ``nvml-power``, ``rapl``, ``estimated``, ``replay``).
    - ``time_budget_s``: no task is started once the elapsed time plus the mean task time would
      exceed it; the sweep stays resumable. ``limit``/``shard`` restrict the task list.
    - The sweep's own ``protocol`` settings apply (``protocol_kwargs`` override them), its
      ``torch_flags`` are set while it runs and restored after, and ``reference_every``
      defaults to the sweep's (else ``REFERENCE_EVERY``).
    - ``on_task(result)`` is called after each task's rows are written (e.g. to copy the dataset
      files somewhere safe as the sweep goes). ``session_id`` names the (local) session in the
      rows, e.g. one id for every sweep of one lent-GPU call (default: a fresh id per run).
    """
    sweep = get_sweep(name)
    protocol_kwargs = {**(sweep.protocol or {}), **(protocol_kwargs or {})} or None
    if reference_every is None:
        reference_every = sweep.reference_every or REFERENCE_EVERY
    with torch_flags(sweep.torch_flags):
        return _run_sweep(sweep, out_dir, resume=resume, backend=backend, scheduler=scheduler, meter=meter,
                          n_jobs=n_jobs, limit=limit, shard=shard, progress=progress, hardware=hardware,
                          time_budget_s=time_budget_s, device=device, tag=tag, protocol_kwargs=protocol_kwargs,
                          idle_kwargs=idle_kwargs, idle_power_w=idle_power_w, rated_power_w=rated_power_w,
                          reference=reference, reference_every=reference_every, retry_errors=retry_errors,
                          max_consecutive_errors=max_consecutive_errors, on_task=on_task, session_id=session_id)


def _run_sweep(sweep, out_dir, *, resume, backend, scheduler, meter, n_jobs, limit, shard, progress, hardware,
               time_budget_s, device, tag, protocol_kwargs, idle_kwargs, idle_power_w, rated_power_w, reference,
               reference_every, retry_errors, max_consecutive_errors, on_task, session_id) -> SweepSummary:
    if backend not in ("local", "dask"):
        raise ExanteError(f"unknown backend {backend!r}; accepted: local, dask")
    if tag is not None and not str(tag).replace("-", "").replace("_", "").isalnum():
        raise ExanteError(f"tag must be letters, digits, '-' or '_', got {tag!r}")
    sweep_id = sweep.name if not tag else f"{sweep.name}@{tag}"
    out_dir = os.fspath(out_dir)
    os.makedirs(out_dir, exist_ok=True)
    tasks = sweep.tasks(limit=limit, shard=shard)
    summary = SweepSummary(name=sweep.name, sweep_id=sweep_id, out_dir=out_dir, n_tasks=len(tasks), n_already_done=0)
    meter_name = meter if isinstance(meter, str) else getattr(meter, "name", type(meter).__name__)
    writer = _Writer(out_dir, sweep, sweep_id, hardware, summary, backend, meter_name)

    done: set = set()
    known: dict = {}
    if resume:
        for r in writer.tasks.read():
            if r["sweep_id"] == sweep_id and (r["status"] == "ok" or not retry_errors):
                done.add(r["key"])
        known = writer.known_measurements()
    else:
        writer.layer_keys.clear()
        writer.model_keys.clear()
    remaining = [t for t in tasks if t.key not in done]
    summary.n_already_done = len(tasks) - len(remaining)

    t_start = time.perf_counter()
    deadline = None if time_budget_s is None else time.time() + float(time_budget_s)
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(tasks), initial=summary.n_already_done, desc=sweep_id, unit="task", dynamic_ncols=True)

    def over_budget() -> bool:
        if time_budget_s is None:
            return False
        elapsed = time.perf_counter() - t_start
        mean = elapsed / summary.n_run if summary.n_run else 0.0
        return elapsed + mean > time_budget_s

    consecutive_errors = 0

    def handle(res: dict) -> bool:
        nonlocal consecutive_errors
        if res.get("status") == "skipped":
            return True
        writer.write(res)
        if on_task is not None:
            on_task(res)
        consecutive_errors = consecutive_errors + 1 if res["status"] != "ok" else 0
        if bar is not None:
            bar.update(1)
            bar.set_postfix_str(res["task_key"][:40], refresh=False)
        if res.get("fatal"):
            raise ExanteError(f"sweep {sweep_id}: {res['fatal']}; stopping (resumable: run the sweep again in a "
                              "new process)")
        if consecutive_errors >= max_consecutive_errors:
            raise ExanteError(f"sweep {sweep_id}: {consecutive_errors} tasks failed in a row (last: {res.get('error')}); "
                              "stopping (resumable)")
        return True

    try:
        if backend == "local":
            session = None
            try:
                for task in remaining:
                    if over_budget():
                        summary.stopped = "time_budget"
                        break
                    if session is None:
                        session = ProfileSession(meter=meter, device=device, rated_power_w=rated_power_w,
                                                 hardware=hardware, sweep_id=sweep_id,
                                                 protocol_kwargs=protocol_kwargs, idle_kwargs=idle_kwargs,
                                                 idle_power_w=idle_power_w, reference=reference,
                                                 reference_every=reference_every, known=known,
                                                 session_id=session_id)
                    handle(_execute(task, session))
            finally:
                if session is not None:
                    session.close()
        else:
            _run_dask(remaining, writer, handle, scheduler=scheduler, n_jobs=n_jobs, deadline=deadline,
                      cfg={"meter": meter_name, "hardware": hardware, "sweep_id": sweep_id,
                           "device": None if device is None else str(device), "rated_power_w": rated_power_w,
                           "protocol_kwargs": protocol_kwargs, "idle_kwargs": idle_kwargs,
                           "idle_power_w": idle_power_w, "reference": reference, "reference_every": reference_every},
                      known=known, summary=summary, over_budget=over_budget)
    finally:
        summary.elapsed_s = time.perf_counter() - t_start
        if bar is not None:
            bar.close()
        with contextlib.suppress(Exception):
            writer.update_meta(finished=True)
    return summary


def _execute(task: SweepTask, session) -> dict:
    """Indirection so tests can interrupt a sweep in the middle."""
    return execute_task(task, session)


def _make_client(scheduler):
    from dask.distributed import Client

    if scheduler is None:
        raise ExanteError("backend 'dask' needs scheduler= (a dask.distributed Client, cluster or address)")
    if isinstance(scheduler, Client):
        return scheduler, False
    return Client(scheduler, set_as_default=False), True


def _run_dask(remaining, writer, handle, *, scheduler, n_jobs, deadline, cfg, known, summary, over_budget):
    import joblib

    client, owned = _make_client(scheduler)
    try:
        n_workers = len(client.scheduler_info().get("workers", {})) or 1
        jobs = n_jobs if (n_jobs and n_jobs > 1) else n_workers
        with client.as_current():
            with joblib.parallel_config(backend="dask", n_jobs=jobs):
                gen = joblib.Parallel(return_as="generator_unordered", pre_dispatch="n_jobs")(
                    joblib.delayed(_worker_execute)(t, cfg, known, deadline) for t in remaining)
                try:
                    for res in gen:
                        handle(res)
                        if over_budget():
                            summary.stopped = "time_budget"
                            break
                finally:
                    with contextlib.suppress(Exception):
                        gen.close()
        if deadline is not None and summary.stopped is None and summary.n_remaining > 0:
            summary.stopped = "time_budget"
    finally:
        if owned:
            client.close()
