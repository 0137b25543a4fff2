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

Modules: this one (``profile_model``: the layer rows and the model row with its additivity
ratio), :mod:`~profiling.measure.session` (``ProfileSession``, ``open_meter``, ``hardware_id``),
:mod:`~profiling.measure.profile_result` (``ProfileResult``) and :mod:`~profiling.measure.whole_model`
(``measure_whole_model``); their public names are re-exported here.
"""

from __future__ import annotations

import contextlib
import gc
import hashlib
import json
import logging
from typing import Any, Sequence, cast

import torch
from torch import nn

from profiling.capture import capture
from profiling.dataset import schema
from profiling.errors import ExanteError, MeterUnavailable
from profiling.features import layer_features
from profiling.measure import replay
from profiling.measure.profile_result import ProfileResult
from profiling.measure.session import REFERENCE_EVERY, ProfileSession, hardware_id, open_meter
from profiling.measure.whole_model import input_shapes, measure_whole_model
from profiling.meters.rapl import cpu_name

__all__ = ["profile_model", "measure_whole_model", "ProfileResult", "ProfileSession", "open_meter", "hardware_id"]

logger = logging.getLogger(__name__)

_cpu_name = cpu_name  # the old private name (experiments/lifecycle/lcbench.py imports it from here)


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
    default matmul reference) or a ``replay.ReplayCall``, re-measured every ``reference_every``
    configs. ``protocol_kwargs`` go to ``protocol.measure`` (e.g. ``min_window_s``),
    ``idle_kwargs`` to ``protocol.measure_idle_power``. ``session`` shares a session between
    calls (sweeps). The model is moved to the device; its train/eval flags are restored.
    """
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
    if session is None:
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
        xs = replay.prepare_inputs(inputs, dev, int_high=replay.min_embedding_rows(model) or 2)
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
                    row = schema.layer_row(cfg, features=feats[cfg.key()], measurement=meas, env=session.row_env(),
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
            with contextlib.suppress(AttributeError):  # an exception type that takes no attributes
                cast(Any, exc).exante_partial = {"layer_rows": list(layer_rows), "reference_rows": list(ref_rows),
                                      "skipped": list(skipped), "reused_keys": list(reused)}
            raise
        finally:
            if bar is not None:
                bar.close()
    finally:
        for mod, was_training in flags:
            mod.training = was_training
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
        except RuntimeError as exc:  # a broken context: the next config's own error will say so
            logger.debug("freeing CUDA memory on %s failed: %s", dev, exc)


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
    shapes = input_shapes(xs)
    key = task_key or "model:" + hashlib.sha1(json.dumps(
        [model_ref, sorted(counts.items()), shapes, mode, dtype, optimizer], default=str).encode()).hexdigest()[:16]
    return schema.model_row(
        key=key, model_ref=model_ref or type(model).__name__, family=family, spec=spec, input_shape=shapes,
        batch=int(shapes[0][0]) if shapes and shapes[0] else 1, mode=mode, dtype=dtype, optimizer=optimizer,
        measurement=meas, env=session.row_env(), hardware=hardware, layer_counts=counts, totals=totals, exec="eager",
        sweep_id=sweep_id, task_key=task_key,
    )
