"""Layer-by-layer energy profiling of a model (DESIGN.md §2): capture -> features -> replay each
distinct layer alone (eager and CUDA graph) -> the whole model in the same session.

``profile_model(model, inputs, mode=..., dtype=..., meter=...)`` returns a
:class:`ProfileResult` whose rows follow the dataset contract (``profiling.dataset.schema``):

- ``layer_rows``: one per (distinct supported layer config, exec) measured now;
- ``model_row``: the whole model (eager), with ``layer_counts`` (config key -> calls per
  forward), ``sum_layer_energy_j`` = sum(count x E_layer(eager)) and the additivity ratio
  ``rho = sum_layer_energy_j / energy_j`` (and the same for time);
- ``reference_rows``: a fixed reference workload re-measured at the start of a session and
  every ``reference_every`` configs (drift detection), ``layer_type == "reference"``.

A :class:`ProfileSession` holds what one measuring session shares: the meter, the idle power
(measured once), the environment, the reference workload and the layer measurements already
taken (so a sweep measures each distinct layer config once per session: key = config key +
mode + exec + dtype + optimizer). ``profile_model`` opens its own session unless given one.

All numbers are per call (per layer call, per model call). Measuring needs a real meter on a
GPU; on a CPU the pipeline runs end to end with the ``estimated`` or ``replay`` meter (rows
labelled by ``meter``/``meter_measured``), eager only (CUDA graphs are recorded as skipped).
"""

from __future__ import annotations

import contextlib
import gc
import hashlib
import json
import os
import re
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Sequence

import torch
from torch import nn

from profiling.dataset import schema
from profiling.errors import ExanteError, MeterUnavailable
from profiling.measure import replay

__all__ = ["profile_model", "measure_whole_model", "ProfileResult", "ProfileSession", "open_meter", "hardware_id"]

REFERENCE_EVERY = 20
RATED_POWER_W = {"h100": 700.0, "h200": 700.0, "a100": 400.0}


def _now_iso() -> str:
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
    from profiling import meters

    if isinstance(name, meters.EnergyMeter):
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
        return meters.ReplayMeter(power_w=float(rated_power_w or 100.0), clock=time.perf_counter, counter_period_s=0.0,
                                  info={"gpu_name": None})
    if key == "replay-changes":  # the counter-change path of protocol v2 on a CPU: 50 ms counter steps
        inner = meters.ReplayMeter(power_w=float(rated_power_w or 100.0), clock=time.perf_counter,
                                   counter_period_s=0.05, info={"gpu_name": None})
        return meters.CounterChangeMeter(inner)
    if key == "estimated":
        p = rated_power_w or RATED_POWER_W.get(str(hardware or "").lower())
        if p is None:
            raise ExanteError(f"meter 'estimated' needs rated_power_w (no rated power known for hardware {hardware!r})")
        return meters.EstimatedMeter(p, source="user-supplied rated power" if rated_power_w else f"rated power of {hardware}")
    return meters.get_meter(key, device_index=index)


def _cpu_name() -> str | None:
    try:
        from profiling.meters import _cpu_name as f

        return f()
    except Exception:
        return None


class ProfileSession:
    """One measuring session: meter, device, idle power, environment, reference, known layers."""

    def __init__(self, meter=None, *, device=None, hardware: str | None = None, sweep_id: str | None = None,
                 idle_power_w: float | None = None, protocol_kwargs: dict | None = None,
                 idle_kwargs: dict | None = None, reference=None, reference_every: int = REFERENCE_EVERY,
                 known: dict | None = None, session_id: str | None = None, rated_power_w: float | None = None):
        self.device = replay.resolve_device(device)
        from profiling import meters

        self._owns_meter = not isinstance(meter, meters.EnergyMeter)
        self.meter = open_meter("auto" if meter is None else meter, device=self.device, hardware=hardware,
                                rated_power_w=rated_power_w)
        self.sweep_id = sweep_id
        self.protocol_kwargs = dict(protocol_kwargs or {})
        self.idle_kwargs = dict(idle_kwargs or {})
        self._idle_power_w = None if idle_power_w is None else float(idle_power_w)
        self.idle_measured = idle_power_w is None
        self.known: dict = dict(known or {})  # layer row key -> {"energy_j", "time_s"}
        self.session_id = session_id or (datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S") + "-" + uuid.uuid4().hex[:6])
        self.started = _now_iso()
        self.reference = reference
        self.reference_every = max(1, int(reference_every))
        self._ref_workload = None
        self._since_reference = 0
        self.n_reference = 0
        self.n_measured = 0
        self.worker = None
        self._env = None
        self.hardware = hardware or hardware_id(self.env.get("gpu_name"), self.device)

    # -- lazily measured / read -----------------------------------------------------------
    @property
    def env(self) -> dict:
        if self._env is None:
            from profiling.measure.protocol import environment_info

            env = dict(environment_info(self.meter))
            env.setdefault("cpu_name", _cpu_name())
            env["session_id"] = self.session_id
            env["device"] = str(self.device)
            self._env = env
        return self._env

    @property
    def idle_power_w(self) -> float:
        if self._idle_power_w is None:
            from profiling.measure.protocol import measure_idle_power

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
    def measure(self, workload: replay.Workload) -> dict:
        """Protocol measurement of ``workload``; per-call fields divided by calls_per_invocation."""
        from profiling.measure.protocol import measure

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
        if self._ref_workload is None:
            ref = self.reference
            self._ref_workload = ref if isinstance(ref, replay.Workload) else replay.reference_workload(self.device)
        wl = self._ref_workload
        meas = self.measure(wl)
        self._since_reference = 0
        self.n_reference += 1
        name = wl.info.get("reference", "reference")
        row = schema.layer_row(
            None, features=None, measurement=meas, env=self._row_env(), mode="inference", exec=wl.exec, dtype="fp32",
            optimizer=None, hardware=self.hardware, sweep_id=self.sweep_id, task_key=task_key, layer_type="reference",
            extra={"key": f"reference|{name}|{self.session_id}|{self.n_reference}", "config_key": name,
                   "hparams": json.dumps({"description": wl.description})},
        )
        return row

    def maybe_reference(self, rows: list, *, task_key: str | None = None) -> None:
        if self.reference_due():
            rows.append(self.measure_reference(task_key=task_key))

    def _row_env(self) -> dict:
        env = dict(self.env)
        env["date"] = _now_iso()
        return env

    def close(self) -> None:
        self._ref_workload = None
        if self._owns_meter:
            try:
                self.meter.close()
            except Exception:
                pass


# --------------------------------------------------------------------------- result


@dataclass
class ProfileResult:
    layer_rows: list
    model_row: dict | None
    reference_rows: list
    unsupported: list  # {type, names, count, key, reason}
    skipped: list  # {key, type, exec, reason}: supported layers not measured in some exec
    reused_keys: list  # layer row keys taken from earlier measurements of the session
    env: dict
    session_id: str
    mode: str
    dtype: str
    optimizer: str | None
    hardware: str
    layer_counts: dict = field(default_factory=dict)
    names: dict = field(default_factory=dict)  # config key -> module paths
    notes: list = field(default_factory=list)

    @property
    def additivity_ratio(self) -> float | None:
        return None if self.model_row is None else self.model_row.get("additivity_ratio")

    def to_text(self) -> str:
        def fmt_t(s):
            return "-" if s is None else (f"{s * 1e6:.1f} us" if s < 1e-3 else f"{s * 1e3:.2f} ms")

        def fmt_e(j):
            return "-" if j is None else (f"{j * 1e3:.3f} mJ" if j < 1 else f"{j:.3f} J")

        head = (f"profile: mode {self.mode}, dtype {self.dtype}"
                + (f", optimizer {self.optimizer}" if self.optimizer else "")
                + f", hardware {self.hardware}, GPU {self.env.get('gpu_name') or '-'}, meter {self.env.get('meter')}"
                + ("" if self.env.get("measured", True) else " (ESTIMATE, not a measurement)"))
        lines = [head]
        header = ("layer", "type", "count", "exec", "time/call", "energy/call", "power", "spread", "count x energy")
        rows = []
        for r in self.layer_rows:
            cnt = self.layer_counts.get(r["config_key"], 0)
            name = (self.names.get(r["config_key"]) or ["?"])[0]
            rows.append((name[-32:], r["layer_type"], str(cnt), r["exec"], fmt_t(r["time_s"]), fmt_e(r["energy_j"]),
                         f"{r['power_w']:.0f} W" if r["power_w"] is not None else "-",
                         f"{100 * r['spread']:.1f} %" if r["spread"] is not None else "-",
                         fmt_e(cnt * r["energy_j"]) if r["exec"] == "eager" and r["energy_j"] is not None else ""))
        widths = [max(len(str(c)) for c in col) for col in zip(header, *rows)] if rows else [len(h) for h in header]
        line = lambda cells: "  ".join(str(c).ljust(w) for c, w in zip(cells, widths)).rstrip()  # noqa: E731
        lines.append(line(header))
        lines.append(line(["-" * w for w in widths]))
        lines += [line(r) for r in rows]
        m = self.model_row
        if m is not None:
            lines.append("")
            lines.append(f"whole model ({m['n_layer_calls']} layer calls, {m['n_distinct_layers']} distinct): "
                         f"time {fmt_t(m['time_s'])}, energy {fmt_e(m['energy_j'])}, power {m['power_w']:.0f} W, "
                         f"spread {100 * (m['spread'] or 0):.1f} %")
            rho, trho = m.get("additivity_ratio"), m.get("time_additivity_ratio")
            lines.append(f"sum of layers (eager): energy {fmt_e(m.get('sum_layer_energy_j'))}, time "
                         f"{fmt_t(m.get('sum_layer_time_s'))}; additivity ratio rho = "
                         f"{'-' if rho is None else f'{rho:.3f}'} (time {'-' if trho is None else f'{trho:.3f}'})")
        for ref in self.reference_rows:
            lines.append(f"reference: {fmt_t(ref['time_s'])}, {fmt_e(ref['energy_j'])}, {ref['power_w']:.0f} W")
        if self.unsupported:
            lines.append("unsupported (not measured): " + ", ".join(f"{u['type']} x{u['count']}" for u in self.unsupported))
        if self.skipped:
            lines.append("skipped: " + "; ".join(f"{s['type']} [{s['exec']}]: {s['reason']}" for s in self.skipped[:10])
                         + (f"; ... ({len(self.skipped)} in all)" if len(self.skipped) > 10 else ""))
        lines += self.notes
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.to_text()

    def write(self, dataset_dir) -> dict:
        """Append the rows to ``<dataset_dir>/layers.csv`` and ``models.csv`` (atomically) and
        record the session in ``meta.json``; returns how many rows went where."""
        from profiling.dataset.txn import all_or_nothing

        layers = schema.layer_table(dataset_dir)
        models = schema.model_table(dataset_dir)
        env = self.env
        meta_path = os.path.join(os.fspath(dataset_dir), schema.META_FILE)
        with all_or_nothing(layers.path, models.path, meta_path):   # no partial session
            n_l = layers.append(list(self.layer_rows) + list(self.reference_rows))
            n_m = models.append([self.model_row] if self.model_row is not None else [])
            schema.update_meta(dataset_dir, self._meta_update)
        return {"layers": n_l, "models": n_m}

    def _meta_update(self, meta) -> None:
        env = self.env

        meta.setdefault("hardware", self.hardware)
        meta["schema_version"] = schema.SCHEMA_VERSION
        meta["updated"] = _now_iso()
        s = meta.setdefault("sessions", {}).setdefault(self.session_id, {"started": env.get("date")})
        s["env"] = env
        s["updated"] = _now_iso()


# --------------------------------------------------------------------------- profile_model


def _input_shapes(xs) -> list:
    return [list(x.shape) for x in replay.input_tensors(xs)]


def profile_model(
    model: nn.Module,
    inputs,
    *,
    mode: str = "inference",
    dtype: str = "fp32",
    optimizer: str | None = None,
    meter=None,
    device=None,
    execs: Sequence[str] = ("eager", "graph"),
    sweep_id: str | None = None,
    hardware: str | None = None,
    protocol_kwargs: dict | None = None,
    idle_power_w: float | None = None,
    progress: bool = True,
    reference=None,
    reference_every: int = REFERENCE_EVERY,
    measure_model: bool = True,
    model_ref: str | None = None,
    family: str | None = None,
    spec: Any = None,
    task_key: str | None = None,
    session: ProfileSession | None = None,
    idle_kwargs: dict | None = None,
    rated_power_w: float | None = None,
) -> ProfileResult:
    """Measure every distinct supported layer of ``model`` alone and the whole model.

    ``inputs``: a tensor or tuple of tensors including the batch dim (any device, ``meta``
    gives synthetic inputs). ``mode``: ``inference | forward_backward | train_step``;
    ``train_step`` without ``optimizer`` uses ``"sgd"`` (recorded). ``execs``: layer replays in
    ``eager`` and/or ``graph`` (CUDA graphs; skipped and recorded on CPU). ``meter``: a name
    (``auto``, ``nvml``, ``nvml-power``, ``rapl``, ``estimated``, ``replay``) or an
    ``EnergyMeter``. ``idle_power_w`` skips the idle measurement. ``reference``: ``True`` (the
    default matmul reference) or a ``replay.Workload``, re-measured every ``reference_every``
    configs. ``protocol_kwargs`` go to ``protocol.measure`` (e.g. ``min_window_s``),
    ``idle_kwargs`` to ``protocol.measure_idle_power``. ``session`` shares a session between
    calls (sweeps). The model is moved to the device; its train/eval flags are restored.
    """
    from profiling.capture.core import capture
    from profiling.features.api import layer_features

    execs = tuple(execs)
    if not execs:
        raise ExanteError("execs must name at least one of: eager, graph")
    notes: list = []
    if mode == "train_step" and optimizer is None:
        notes.append("train_step without an optimizer: using sgd (momentum 0.9)")
    for ex in execs:
        optimizer = schema.check_run(mode, ex, dtype, optimizer, default_optimizer="sgd")
    if not isinstance(model, nn.Module):
        raise ExanteError(f"profile_model needs a torch.nn.Module, got {type(model).__name__}")

    own_session = session is None
    if own_session:
        session = ProfileSession(meter, device=device, hardware=hardware, sweep_id=sweep_id, idle_power_w=idle_power_w,
                                 protocol_kwargs=protocol_kwargs, idle_kwargs=idle_kwargs, reference=reference,
                                 reference_every=reference_every, rated_power_w=rated_power_w)
    dev = session.device
    hw = session.hardware
    sweep_id = sweep_id if sweep_id is not None else session.sweep_id
    flags = [(m, m.training) for m in model.modules()]
    layer_rows: list = []
    ref_rows: list = []
    unsupported: list = []
    skipped: list = []
    reused: list = []
    model_row = None
    training = mode != "inference"
    try:
        replay.materialize(model, dev)
        xs = replay.prepare_inputs(inputs, dev, int_high=replay._min_embedding_rows(model) or 2)
        cap = capture(model, xs, dtype=dtype, train=training)

        feats: dict = {}
        counts: dict = {}
        names: dict = {}
        jobs: list = []
        graph_skip_noted = False
        for layer in cap.layers:
            cfg = layer.config
            k = cfg.key()
            reason = None
            if not layer.supported:
                reason = f"no feature function for {cfg.type!r}"
            else:
                try:
                    feats[k] = layer_features(cfg)
                except Exception as exc:
                    reason = f"feature function failed: {type(exc).__name__}: {exc}"
            if reason is not None:
                unsupported.append({"type": cfg.type, "names": list(layer.names), "count": layer.count, "key": k,
                                    "reason": reason})
                continue
            counts[k] = counts.get(k, 0) + layer.count
            names[k] = list(layer.names)
            for ex in execs:
                if ex == "graph" and dev.type != "cuda":
                    if not graph_skip_noted:  # eager only on CPU: noted once, not per layer
                        notes.append(f"exec 'graph' skipped: CUDA graphs need a CUDA device (device is {dev})")
                        graph_skip_noted = True
                    continue
                rk = schema.row_key(k, mode, ex, dtype, optimizer)
                if rk in session.known:
                    reused.append(rk)
                    continue
                jobs.append((layer, ex, rk))

        bar = None
        if progress:
            from tqdm.auto import tqdm

            bar = tqdm(total=len(jobs) + int(measure_model), desc="profile", unit="config", leave=False)
        try:
            for layer, ex, rk in jobs:
                cfg = layer.config
                session.maybe_reference(ref_rows, task_key=task_key)
                wl = None
                failed = False
                try:
                    wl = replay.build_layer_workload(layer, mode=mode, dtype=dtype, device=dev, exec=ex,
                                                     optimizer=optimizer)
                    meas = session.measure(wl)
                    row = schema.layer_row(cfg, features=feats[cfg.key()], measurement=meas, env=session._row_env(),
                                           mode=mode, exec=ex, dtype=dtype, optimizer=optimizer, hardware=hw,
                                           sweep_id=sweep_id, task_key=task_key)
                    layer_rows.append(row)
                    session.known[rk] = {"energy_j": row["energy_j"], "time_s": row["time_s"]}
                except (MeterUnavailable, KeyboardInterrupt):
                    raise
                except Exception as exc:  # unsupported replay, graph capture, OOM, protocol refusal
                    msg = str(exc).splitlines()[0] if str(exc) else ""
                    skipped.append({"key": rk, "type": cfg.type, "exec": ex, "reason": f"{type(exc).__name__}: {msg}"[:300]})
                    failed = True
                finally:
                    if wl is not None:
                        wl.close()
                    del wl
                if failed or ex == "graph":
                    # after the except block (its traceback holds the failed workload's frames) and
                    # after close(): return the graph's private pool / the failed config's blocks
                    _free_cuda(dev, collect=failed)
                if bar is not None:
                    bar.update(1)

            if measure_model:
                session.maybe_reference(ref_rows, task_key=task_key)
                model_row = _measure_model(model, xs, cap, counts, feats, session, mode=mode, dtype=dtype,
                                           optimizer=optimizer, hardware=hw, sweep_id=sweep_id, task_key=task_key,
                                           model_ref=model_ref, family=family, spec=spec, reused=len(reused))
                if bar is not None:
                    bar.update(1)
        except BaseException as exc:
            # keep what was measured before the failure (whole-model OOM, reference or meter error):
            # the rows are in session.known already, so a sweep must still write them
            with contextlib.suppress(Exception):
                exc.exante_partial = {"layer_rows": list(layer_rows), "reference_rows": list(ref_rows),
                                      "skipped": list(skipped), "reused_keys": list(reused)}
            raise
        finally:
            if bar is not None:
                bar.close()
    finally:
        for m, f in flags:
            m.training = f
        if own_session:
            session.close()

    return ProfileResult(layer_rows=layer_rows, model_row=model_row, reference_rows=ref_rows, unsupported=unsupported,
                         skipped=skipped, reused_keys=reused, env=session.env, session_id=session.session_id, mode=mode,
                         dtype=dtype, optimizer=optimizer, hardware=hw, layer_counts=counts, names=names, notes=notes)


def _free_cuda(dev: torch.device, *, collect: bool = False) -> None:
    """Return cached CUDA blocks (and released graph pools) to the driver between configs."""
    if dev.type == "cuda":
        if collect:
            gc.collect()
        try:
            torch.cuda.synchronize(dev)
            torch.cuda.empty_cache()
        except Exception:
            pass


def _sum_over(counts: dict, session: ProfileSession, field_: str, mode, exec_, dtype, optimizer) -> float | None:
    total = 0.0
    for k, c in counts.items():
        hit = session.known.get(schema.row_key(k, mode, exec_, dtype, optimizer))
        if hit is None or hit.get(field_) is None:
            return None
        total += c * float(hit[field_])
    return total


def _measure_model(model, xs, cap, counts, feats, session, *, mode, dtype, optimizer, hardware, sweep_id, task_key,
                   model_ref, family, spec, reused) -> dict:
    wl = replay.build_model_workload(model, xs, mode=mode, dtype=dtype, optimizer=optimizer, device=session.device)
    try:
        meas = session.measure(wl)
    finally:
        wl.close()
    totals: dict = {"params": int(sum(p.numel() for p in model.parameters()))}
    for f in ("macs", "flops", "bytes_read", "bytes_written"):
        totals[f] = int(sum(c * int(feats[k].get(f) or 0) for k, c in counts.items()))
    e_sum = _sum_over(counts, session, "energy_j", mode, "eager", dtype, optimizer)
    t_sum = _sum_over(counts, session, "time_s", mode, "eager", dtype, optimizer)
    g_sum = _sum_over(counts, session, "energy_j", mode, "graph", dtype, optimizer)
    totals.update(
        n_unsupported=len(cap.layers) - len(counts),
        unsupported_types=sorted({l.config.type for l in cap.layers if l.config.key() not in counts}),
        sum_layer_energy_j=e_sum,
        sum_layer_time_s=t_sum,
        sum_layer_energy_graph_j=g_sum,
        additivity_ratio=(e_sum / meas["energy_j"]) if (e_sum is not None and meas["energy_j"] > 0) else None,
        time_additivity_ratio=(t_sum / meas["time_s"]) if (t_sum is not None and meas["time_s"] > 0) else None,
        layers_reused=reused,
    )
    shapes = _input_shapes(xs)
    key = task_key or "model:" + hashlib.sha1(json.dumps(
        [model_ref, sorted(counts.items()), shapes, mode, dtype, optimizer], default=str).encode()).hexdigest()[:16]
    return schema.model_row(
        key=key, model_ref=model_ref or type(model).__name__, family=family, spec=spec, input_shape=shapes,
        batch=int(shapes[0][0]) if shapes and shapes[0] else 1, mode=mode, dtype=dtype, optimizer=optimizer,
        measurement=meas, env=session._row_env(), hardware=hardware, layer_counts=counts, totals=totals, exec="eager",
        sweep_id=sweep_id, task_key=task_key,
    )


# --------------------------------------------------------------------------- whole model only


def measure_whole_model(model: nn.Module, inputs, *, session: ProfileSession, mode: str = "inference",
                        dtype: str = "fp32", optimizer: str | None = None, model_ref: str | None = None,
                        family: str | None = None, spec: Any = None, task_key: str | None = None,
                        sweep_id: str | None = None, features: bool = True) -> tuple[dict, list, list]:
    """Measure the whole model only (no layer replays): ``(model_row, reference_rows, notes)``.

    The measurement comes first; then (``features=True``) one capture gives the row's
    ``layer_counts`` and feature totals. A capture or feature failure does not lose the
    measurement: the row keeps ``layer_counts = {}``, ``n_unsupported = 1`` and
    ``unsupported_types = ["(capture failed)"]`` (so fits that need the counts skip it) and the
    reason is returned in ``notes``."""
    from profiling.capture.core import capture
    from profiling.features.api import layer_features

    optimizer = schema.check_run(mode, "eager", dtype, optimizer, default_optimizer="sgd")
    dev = session.device
    ref_rows: list = []
    notes: list = []
    flags = [(m, m.training) for m in model.modules()]
    try:
        session.maybe_reference(ref_rows, task_key=task_key)
        replay.materialize(model, dev)
        xs = replay.prepare_inputs(inputs, dev, int_high=replay._min_embedding_rows(model) or 2)
        wl = replay.build_model_workload(model, xs, mode=mode, dtype=dtype, optimizer=optimizer, device=dev)
        try:
            meas = session.measure(wl)
        finally:
            wl.close()
        totals: dict = {"params": int(sum(p.numel() for p in model.parameters()))}
        counts: dict = {}
        if features:
            try:
                cap = capture(model, xs, dtype=dtype, train=mode != "inference")
                feats = {}
                for layer in cap.layers:
                    k = layer.config.key()
                    if layer.supported:
                        try:
                            feats[k] = layer_features(layer.config)
                        except Exception:
                            continue
                        counts[k] = counts.get(k, 0) + layer.count
                for f in ("macs", "flops", "bytes_read", "bytes_written"):
                    totals[f] = int(sum(c * int(feats[k].get(f) or 0) for k, c in counts.items()))
                totals["n_unsupported"] = sum(1 for l in cap.layers if l.config.key() not in counts)
                totals["unsupported_types"] = sorted({l.config.type for l in cap.layers if l.config.key() not in counts})
            except Exception as exc:  # keep the measurement; the features can be recomputed offline
                counts = {}  # marked so that fits needing the counts skip the row
                totals["n_unsupported"] = 1
                totals["unsupported_types"] = ["(capture failed)"]
                notes.append(f"features not captured: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"[:300])
        shapes = _input_shapes(xs)
        row = schema.model_row(
            key=task_key or "model:" + hashlib.sha1(json.dumps([model_ref, shapes, mode, dtype, optimizer],
                                                               default=str).encode()).hexdigest()[:16],
            model_ref=model_ref or type(model).__name__, family=family, spec=spec, input_shape=shapes,
            batch=int(shapes[0][0]) if shapes and shapes[0] else 1, mode=mode, dtype=dtype, optimizer=optimizer,
            measurement=meas, env=session._row_env(), hardware=session.hardware, layer_counts=counts, totals=totals,
            exec="eager", sweep_id=sweep_id if sweep_id is not None else session.sweep_id, task_key=task_key)
    except BaseException as exc:
        with contextlib.suppress(Exception):
            exc.exante_partial = {"layer_rows": [], "reference_rows": list(ref_rows), "skipped": [], "reused_keys": []}
        raise
    finally:
        for m, f in flags:
            m.training = f
    return row, ref_rows, notes
