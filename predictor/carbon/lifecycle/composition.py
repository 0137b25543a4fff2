"""The composition: :func:`estimate` prices a :class:`Scenario` stage by stage (search, training,
inference) from per-step predictions (``predict_fn``; default: the packaged predictor), applies
PUE and grid intensity, and returns a :class:`LifecycleReport`."""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Callable, Sequence

from predictor.carbon import regions as carbon
from predictor.carbon.interval_fields import interval_ends
from predictor.carbon.lifecycle.report import LifecycleReport, StageReport
from predictor.carbon.lifecycle.scenario import STAGES, Scenario
from predictor.engine.interval import Interval
from profiling.errors import ExanteError

log = logging.getLogger(__name__)
DEFAULT_LEVEL = 0.9       # nominal coverage of a predict_fn's interval that does not state one
_OVERFLOW = ("the estimate overflows (total energy or CO2 is not a finite number); check the "
             "run's epochs, dataset size, requests and the predictor")

# --------------------------------------------------------------------------- estimation

@dataclass
class _Cost:
    """One call's predicted ``energy`` (J) and ``time`` (s)."""

    energy: Interval
    time: Interval

    energy_j, energy_j_low, energy_j_high = interval_ends("energy")
    time_s, time_s_low, time_s_high = interval_ends("time")


def _as_cost(p) -> _Cost:
    try:
        e = float(p.energy_j)
        t = float(p.time_s)
    except (AttributeError, TypeError, ValueError):
        raise ExanteError("predict_fn must return an object with energy_j, energy_j_low, "
                          "energy_j_high and time_s") from None

    def opt(name, default):
        v = getattr(p, name, None)
        return default if v is None else float(v)

    level = float(getattr(p, "coverage", None) or DEFAULT_LEVEL)
    return _Cost(_interval((e, opt("energy_j_low", e), opt("energy_j_high", e)), level,
                           "predict_fn's energy_j"),
                 _interval((t, opt("time_s_low", t), opt("time_s_high", t)), level,
                           "predict_fn's time_s"))


def _interval(vals: Sequence[float], level: float, what: str) -> Interval:
    """``Interval(value, low, high, level)`` of ``vals`` = (value, low, high); a one-line
    ExanteError when they do not make one (a non-finite estimate, or a predictor whose
    interval does not hold its value)."""
    try:
        return Interval(vals[0], vals[1], vals[2], level)
    except ValueError as exc:
        if not all(math.isfinite(v) for v in vals):
            raise ExanteError(_OVERFLOW) from None
        raise ExanteError(f"{what}: {exc}") from None


class _Predictor:
    """Calls ``predict_fn`` once per distinct (mode, batch, dtype, optimizer)."""

    def __init__(self, model, input_shape, hardware, predict_fn, input_dtype=None,
                 conditions=None):
        self.model, self.input_shape, self.hardware = model, input_shape, hardware
        self.input_dtype = input_dtype or "float32"
        # memory_format / torch_version: passed only when set (a custom predict_fn need not
        # know them)
        self.conditions = {k: v for k, v in (conditions or {}).items()
                           if v not in (None, "contiguous")}
        self.predict_fn = predict_fn
        self.cache: dict[tuple, _Cost] = {}
        self.warnings: dict[str, list[str]] = {}   # predictor warning -> calls it came from

    def __call__(self, mode: str, batch: int, dtype: str, optimizer: str | None,
                 grad_scaler: bool = False) -> _Cost:
        scaler = bool(grad_scaler and mode == "train_step")
        key = (mode, batch, dtype, optimizer if mode == "train_step" else None, scaler)
        if key not in self.cache:
            from profiling.model_refs import example_inputs

            inputs = example_inputs(self.input_shape, batch, device="meta",
                                    dtype=self.input_dtype)
            extra = dict(self.conditions, **({"grad_scaler": True} if scaler else {}))
            log.info("predicting one %s call at batch %d (%s%s) on %s", mode, batch, dtype,
                     f", {key[3]}" if key[3] else "", self.hardware)
            p = self.predict_fn(self.model, inputs, mode=mode, dtype=dtype,
                                hardware=self.hardware, optimizer=key[3], **extra)
            self.cache[key] = _as_cost(p)
            for w in getattr(p, "warnings", None) or ():
                self.warnings.setdefault(str(w), []).append(f"{mode} b{batch} {dtype}")
        return self.cache[key]

    def warning_notes(self) -> list[str]:
        """The predictor's own warnings (non-measured artifact, unsupported layers, ...)."""
        return [f"predictor ({', '.join(calls[:3])}{', ...' if len(calls) > 3 else ''}): {w}"
                for w, calls in self.warnings.items()]


def _default_predict_fn() -> Callable:
    try:
        from predictor.engine.predict import predict
    except ModuleNotFoundError as exc:
        if exc.name and exc.name.startswith("predictor"):
            raise ExanteError("the energy predictor (predictor.engine.predict) is not available in "
                              "this install; pass predict_fn= or install exante fully") from None
        raise
    return predict


def _resolve_model(model):
    if not isinstance(model, str):
        return model
    from profiling.model_refs import resolve_model_on_meta

    return resolve_model_on_meta(model)  # capture works on meta: no weights allocated


class _Acc:
    """Running sums of energy and time (central, low, high)."""

    def __init__(self):
        self.e = [0.0, 0.0, 0.0]
        self.t = [0.0, 0.0, 0.0]
        self.gpu_s = [0.0, 0.0, 0.0]
        self.calls = 0
        self.level = 1.0             # the lowest coverage of the calls added

    def add(self, cost: _Cost, n: int, gpus: int = 1, wall: bool = True):
        """``wall=False``: these steps run alongside others already counted (GPUs with the
        smaller share of an uneven batch), so they add energy and GPU time, not wall time."""
        if n <= 0:
            return
        self.level = min(self.level, cost.energy.level)
        for i, (ev, tv) in enumerate(zip(
                (cost.energy_j, cost.energy_j_low, cost.energy_j_high),
                (cost.time_s, cost.time_s_low, cost.time_s_high), strict=True)):
            self.e[i] += ev * n * gpus
            if wall:
                self.t[i] += tv * n
            self.gpu_s[i] += tv * n * gpus
        self.calls += n


def _stage(name: str, acc: _Acc, items: list[dict], pue: float, share: float,
           grid: carbon.GridIntensity) -> StageReport:
    kwh = [carbon.to_kwh(x) / share * pue for x in acc.e]
    co2 = [carbon.co2_kg(k, grid) for k in kwh]
    lv = acc.level
    return StageReport(
        stage=name, energy=_interval(acc.e, lv, f"{name} energy"),
        time=_interval(acc.t, lv, f"{name} time"),
        gpu_time=_interval([s / 3600 for s in acc.gpu_s], lv, f"{name} GPU-hours"),
        facility_energy=_interval(kwh, lv, f"{name} kWh"),
        co2=_interval(co2, lv, f"{name} CO2"), calls=acc.calls, items=items)


def _training_stage(runs, cost_of) -> tuple[_Acc, list[dict]]:
    acc = _Acc()
    items = []
    for run in runs:
        plan = run.plan()
        run_acc = _Acc()
        full = cost_of("train_step", plan["per_gpu_batch"], run.dtype, run.optimizer,
                       run.grad_scaler)
        for batch, n_gpus, steps, wall in plan["groups"]:
            cost = cost_of("train_step", batch, run.dtype, run.optimizer, run.grad_scaler)
            run_acc.add(cost, steps * run.epochs, n_gpus, wall)
        acc.level = min(acc.level, run_acc.level)
        for i in range(3):
            acc.e[i] += run_acc.e[i]
            acc.t[i] += run_acc.t[i]
            acc.gpu_s[i] += run_acc.gpu_s[i]
        acc.calls += run_acc.calls
        items.append({
            "label": run.label, "epochs": run.epochs, "dataset_size": run.dataset_size,
            "batch_size": run.batch_size, "gpus": plan["gpus"],
            "per_gpu_batch": plan["per_gpu_batch"], "even_split": plan["even"],
            "per_gpu_steps": [list(x) for x in plan["groups"]], "optimizer": run.optimizer,
            "dtype": run.dtype, "drop_last": run.drop_last, "grad_scaler": run.grad_scaler,
            "steps_per_epoch": plan["full_steps"] + (1 if plan["last_batch"] else 0),
            "last_batch_per_gpu": plan["last_batch"] or None,
            "step_energy_j": full.energy_j,
            "energy_j": run_acc.e[0], "energy_j_low": run_acc.e[1],
            "energy_j_high": run_acc.e[2], "time_s": run_acc.t[0],
        })
    return acc, items


def estimate(scenario: Scenario, predict_fn: Callable | None = None) -> LifecycleReport:
    """Life-cycle energy and CO2 of ``scenario`` (see the module docstring for the model):
    per stage and in total, GPU board energy (J), facility energy (kWh, × PUE), GPU-hours and
    kg CO2eq, each an :class:`~predictor.engine.interval.Interval`.

    ``predict_fn(model, inputs, mode=, dtype=, hardware=, optimizer=)`` returns an object with
    ``energy_j, energy_j_low, energy_j_high, time_s`` (optionally ``time_s_low/high``) per call
    of the whole batch; the default is :func:`predictor.engine.predict.predict`. It is called once per
    distinct (mode, batch, dtype, optimizer) with a ``meta`` tensor of shape
    ``(batch, *input_shape)``.
    """
    if not isinstance(scenario, Scenario):
        raise ExanteError(f"estimate() needs a Scenario, got {type(scenario).__name__}")
    if predict_fn is None:
        predict_fn = _default_predict_fn()
    grid = carbon.grid_intensity(scenario.region, scenario.intensity_g_per_kwh)
    pue = scenario.pue
    share = scenario.gpu_share_of_server or 1.0
    cost_of = _Predictor(_resolve_model(scenario.model), scenario.input_shape,
                         scenario.hardware, predict_fn, scenario.input_dtype,
                         {"memory_format": scenario.memory_format,
                          "torch_version": scenario.torch_version})

    stages: dict[str, StageReport] = {}
    if scenario.search:
        acc, items = _training_stage(scenario.search.runs, cost_of)
        stages["search"] = _stage("search", acc, items, pue, share, grid)
    if scenario.training_runs:
        acc, items = _training_stage(scenario.training_runs, cost_of)
        stages["training"] = _stage("training", acc, items, pue, share, grid)
    if scenario.inference:
        inf = scenario.inference
        full_calls, last = divmod(inf.requests, inf.batch_size)
        acc = _Acc()
        full = cost_of("inference", inf.batch_size, inf.dtype, None)
        acc.add(full, full_calls)
        if last:
            acc.add(cost_of("inference", last, inf.dtype, None), 1)
        item = {"requests": inf.requests, "batch_size": inf.batch_size, "dtype": inf.dtype,
                "calls": full_calls + (1 if last else 0), "last_batch": last or None,
                "call_energy_j": full.energy_j,
                "energy_per_request_j": acc.e[0] / inf.requests,
                "energy_per_request_kwh_facility": carbon.to_kwh(acc.e[0] / inf.requests)
                / share * pue}
        stages["inference"] = _stage("inference", acc, [item], pue, share, grid)

    # θ at the final training run's per-GPU batch (else the first search trial's)
    theta = theta_detail = None
    ref = (scenario.training_runs[0] if scenario.training_runs
           else scenario.search.runs[0] if scenario.search else None)
    if ref is not None:
        b = ref.plan()["per_gpu_batch"]
        tr = cost_of("train_step", b, ref.dtype, ref.optimizer, ref.grad_scaler)
        fw = cost_of("inference", b, ref.dtype, None)
        if fw.energy_j > 0:
            theta = tr.energy_j / fw.energy_j
            theta_detail = {"run": ref.label, "batch": b, "optimizer": ref.optimizer,
                            "dtype": ref.dtype, "train_step_energy_j": tr.energy_j,
                            "inference_energy_j": fw.energy_j}

    ordered = {k: stages[k] for k in STAGES if k in stages}
    for name, st in ordered.items():
        log.info("%s: %d calls, %.4g J GPU energy", name, st.calls, st.energy_j)
    tot_e = [sum(getattr(s, f"energy_j{x}") for s in ordered.values()) for x in ("", "_low", "_high")]
    tot_kwh = [sum(getattr(s, f"energy_kwh{x}") for s in ordered.values())
               for x in ("", "_low", "_high")]
    op_co2 = [carbon.co2_kg(k, grid) for k in tot_kwh]

    embodied = None
    co2 = list(op_co2)
    if scenario.embodied_kg is not None and scenario.hardware_lifetime_h is not None:
        gpu_h = [sum(getattr(s, f"gpu_hours{x}") for s in ordered.values())
                 for x in ("", "_low", "_high")]
        m = [scenario.embodied_kg * h / (scenario.gpus * scenario.hardware_lifetime_h)
             for h in gpu_h]
        co2 = [o + mm for o, mm in zip(op_co2, m, strict=True)]
        embodied = {"co2_kg": m[0], "co2_kg_low": m[1], "co2_kg_high": m[2],
                    "embodied_kg": scenario.embodied_kg,
                    "hardware_lifetime_h": scenario.hardware_lifetime_h,
                    "hardware_gpus": scenario.gpus, "gpu_hours": gpu_h[0],
                    "share_of_total": m[0] / co2[0] if co2[0] > 0 else 0.0,
                    "formula": "embodied_kg × GPU-hours / (gpus × hardware_lifetime_h) "
                               "(SCI's M, Dodge et al. 2022, seed 002 §3.1)"}

    if not all(math.isfinite(v) and v >= 0 for v in (*tot_e, *tot_kwh, *co2)):
        raise ExanteError(_OVERFLOW)
    lv = min((s.energy.level for s in ordered.values()), default=DEFAULT_LEVEL)
    notes = _notes(scenario, share) + cost_of.warning_notes()
    return LifecycleReport(
        model=scenario.model_ref, input_shape=scenario.input_shape, hardware=scenario.hardware,
        stages=ordered, theta=theta, theta_detail=theta_detail, pue=pue,
        pue_source=carbon.PUE_SOURCE if pue == carbon.DEFAULT_PUE else "user-supplied value",
        grid=grid, gpu_share_of_server=scenario.gpu_share_of_server,
        total_energy=_interval(tot_e, lv, "total energy"),
        total_facility_energy=_interval(tot_kwh, lv, "total kWh"),
        operational_co2=_interval(op_co2, lv, "operational CO2"),
        embodied=embodied, co2=_interval(co2, lv, "CO2"),
        equivalents=carbon.everyday_equivalents(co2[0]), notes=notes,
        predict_calls=len(cost_of.cache))


def _notes(scenario: Scenario, share: float) -> list[str]:
    notes = [
        "energy_j is predicted GPU board energy (eager PyTorch, steady state, idle power "
        "included); kWh = J / 3.6e6"
        + (f" / gpu_share_of_server ({share:g})" if share != 1.0 else
           " (GPU only: CPU, DRAM and host not included; set gpu_share_of_server, e.g. 0.74 "
           "from Dodge et al. 2022 (seed 002) Table 1, to approximate the whole server)")
        + f" × PUE ({scenario.pue:g}).",
        "intervals: per-call low/high from the predictor summed linearly over steps (errors of "
        "one configuration are fully correlated) and over stages (conservative); nominal "
        "coverage is the predictor's.",
        "the last partial batch of each epoch (and of serving) is predicted at its own size "
        "(PyTorch DataLoader drop_last=False) unless drop_last is set.",
        "not included: data loading, evaluation passes, checkpointing, idle time between "
        "trials, start-up, networking and storage.",
    ]
    runs = scenario.training_runs + list(scenario.search.runs if scenario.search else [])
    if any((r.gpus or 1) > 1 for r in runs):
        notes.append("multi-GPU runs: data-parallel, one GPU's step at batch/gpus predicted and "
                     "multiplied by gpus; gradient all-reduce and other communication are "
                     "ignored (an underestimate).")
    if any(not r.plan(scenario.gpus)["even"] for r in runs):
        notes.append("a global batch that does not divide over the GPUs is split like "
                     "numpy.array_split (B mod gpus GPUs take ceil(B/gpus), the rest floor); "
                     "each share is predicted at its own batch size.")
    if scenario.pue == carbon.DEFAULT_PUE:
        notes.append(f"PUE {carbon.DEFAULT_PUE} is estimate's default (Uptime Institute 2020 "
                     f"average, Gitzel et al. 2023 (seed 004) §3.4): facility energy = 1.58 × GPU energy. Pass --pue "
                     f"(1.0 = GPU energy only, the default of exante calc).")
    if scenario.intensity_g_per_kwh is None and scenario.region is None:
        notes.append("no region or intensity given: the world-average grid intensity is used "
                     "(Luccioni & Hernandez-Garcia, seed 000 §4.1); pass a region for a meaningful CO2 figure.")
    return notes
