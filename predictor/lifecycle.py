"""Life-cycle energy and CO2 of a model: architecture search + training + inference.

The model (seed 004 §3.4–3.8, seed 002 §3.1, DESIGN.md §5)::

    I      = f(M, PT) · PUE                         energy of one inference (per sample)
    T      = Σ_epochs Σ_steps E_train_step(batch)   ≈ E · D · I · θ   (seed 004: T ∝ E·D·I·θ)
    θ      = E_train_step(b) / E_inference(b)       at the same batch b (shown in the report)
    CT     = Σ_h T_h                                architecture search / tuning trials
    E_life = CT + T + I · e                         e = number of requests served
    CO2eq  = E_life · EF  (+ M, SCI's embodied carbon, seed 002 Eq. 1)

Instead of multiplying a per-sample inference energy by θ, the per-call energies come from
``predictor.predict`` (DESIGN.md §4) for each distinct (mode, batch, dtype, optimizer): a
training run costs ``epochs × Σ_steps E_train_step(per-GPU batch) × gpus``; serving costs
``Σ_calls E_inference(batch)``. θ is then reported, not assumed.

Accounting choices (also listed in the report's ``notes``):

- **Batches.** Steps per epoch follow PyTorch: ``DataLoader(drop_last=False)`` gives
  ``ceil(dataset_size / batch_size)`` steps, the last one partial; its cost is predicted
  separately at its own batch size (one more cached predict call), not rounded up.
  ``drop_last=True`` drops it. Serving ``requests`` at ``batch_size`` works the same way.
- **GPUs.** ``gpus > 1`` means data-parallel (DDP): ``batch_size`` is the global batch. When
  it divides evenly, each GPU runs the step at ``batch_size / gpus`` on
  ``ceil(dataset_size / gpus)`` samples (``DistributedSampler`` padding). When it does not, the
  rule is ``numpy.array_split``'s: each global batch of B samples gives ``B mod gpus`` GPUs
  ``ceil(B / gpus)`` samples and the others ``floor(B / gpus)``; an epoch is
  ``floor(dataset_size / B)`` such steps plus the remainder (unless ``drop_last``) split the
  same way; GPUs left with 0 samples are counted idle-free (not charged). Each distinct per-GPU
  batch is predicted once and multiplied by its GPU count; gradient all-reduce and other
  communication are ignored.
- **Tokens.** ``dataset_tokens`` (CLI ``--tokens``) instead of ``dataset_size``: samples =
  ``ceil(tokens / tokens per sample)``, tokens per sample = the element count of the per-sample
  input (the sequence length for token-id inputs ``--input 512``).
- **Energy.** ``energy_j`` is GPU board energy (eager PyTorch, as the predictor defines it).
  ``energy_kwh = energy_j / 3.6e6 / gpu_share_of_server × PUE``; ``gpu_share_of_server`` is off
  (1.0) unless given (seed 002 Table 1 measured 0.74: :data:`predictor.carbon.GPU_SHARE_OF_SERVER`).
- **Intervals.** A stage total is a sum of many steps of the same predicted per-call energy, so
  the prediction errors of one configuration are fully correlated across its steps: low/high
  scale linearly (sum of lows, sum of highs). Stages are also summed low-with-low and
  high-with-high (conservative; they share the same predictor). The interval's nominal
  coverage is the predictor's.
- **Embodied carbon** (optional): ``embodied_kg`` is the embodied CO2 of the hardware that holds
  ``Scenario.gpus`` GPUs, amortised over ``hardware_lifetime_h`` per GPU-hour used:
  ``M = embodied_kg × GPU-hours / (gpus × hardware_lifetime_h)`` (SCI's M = TE · TS · RS).
- Not included: data loading, evaluation passes, checkpointing, idle gaps between trials,
  start-up, networking and storage.

Defaults: PUE 1.58 (seed 004 §3.4, Uptime Institute 2020 average), grid intensity of the world
average 475 gCO2eq/kWh (seed 000 §4.1) when no region or value is given — see
:mod:`predictor.carbon`.

Scenario files (TOML, :func:`load_scenario`)
--------------------------------------------
::

    model = "mlp:in=100,depth=10,width=100,out=1"   # MODEL_REF (required)
    input = "100"                 # per-sample shape "3x224x224", an int, or a list (required)
    input_dtype = "int64"         # optional: float32 (default) | float16 | bfloat16 | int64 | int32
    hardware = "h100"             # predictor hardware id
    pue = 1.58                    # data-centre PUE (>= 1)
    region = "aws:us-east-1"      # or: intensity_g_per_kwh = 120.0   (default: world average)
    gpus = 1                      # default GPU count of every run; size of the embodied hardware
    embodied_kg = 1500.0          # optional, with hardware_lifetime_h = 35040
    gpu_share_of_server = 0.74    # optional whole-server factor (seed 002 Table 1)

    [[training]]                  # one or more; the first is labelled "final" unless labelled
    epochs = 10
    dataset_size = 100000
    batch = 32
    optimizer = "adam"            # sgd | adam | adamw
    dtype = "fp32"                # fp32 | bf16
    # gpus = 4, label = "...", drop_last = false

    [search]                      # evenly spread trials (SearchPlan.from_trials) ...
    trials = 20
    epochs = [1, 10]              # an int, or [low, high] spread evenly over the trials
    dataset_fraction = [0.1, 1.0] # optional [low, high] fraction of dataset_size
    batch = 32                    # batch, dataset_size, optimizer, dtype, gpus, drop_last and
    dataset_size = 100000         # epochs default to the first [[training]] run's
    seed = 0                      # pairs epochs with fractions when both are ranges
    # ... or explicit trials instead of `trials`:  [[search.runs]]  with [[training]]'s keys

    [inference]
    requests = 1e6                # number of samples served (e in seed 004)
    batch = 1
    dtype = "fp32"

Unknown keys are an error naming the accepted ones. :func:`dump_scenario` writes a Scenario
back as TOML (search trials written out as ``[[search.runs]]``).
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import math
import random
import tomllib
from dataclasses import dataclass, field
from typing import Any, Callable

from profiling.errors import ExanteError

from . import carbon

OPTIMIZERS = ("sgd", "adam", "adamw")
DTYPES = ("fp32", "bf16")
STAGES = ("search", "training", "inference")
INPUT_DTYPES = ("float32", "float16", "bfloat16", "int64", "int32")   # profiling.model_refs'


# --------------------------------------------------------------------------- validation helpers

def _pos_int(value, name: str) -> int:
    """A positive integer; integral floats (``1e6`` from TOML or the CLI) are accepted."""
    if isinstance(value, bool):
        value = None
    if isinstance(value, float) and math.isfinite(value) and value.is_integer():
        value = int(value)
    if not isinstance(value, int) or value < 1:
        raise ExanteError(f"{name} must be a positive integer, got {value!r}")
    return value


def _pos_float(value, name: str, *, minimum: float = 0.0, inclusive: bool = False) -> float:
    try:
        v = float(value)
    except (TypeError, ValueError):
        v = math.nan
    if isinstance(value, bool) or not math.isfinite(v) or (v < minimum if inclusive else v <= minimum):
        op = ">=" if inclusive else ">"
        raise ExanteError(f"{name} must be a finite number {op} {minimum:g}, got {value!r}")
    return v


def _choice(value, name: str, accepted: tuple[str, ...]) -> str:
    v = value.lower() if isinstance(value, str) else value
    if v not in accepted:
        raise ExanteError(f"unknown {name} {value!r}; accepted: {', '.join(accepted)}")
    return v


def _input_shape(value) -> tuple[int, ...]:
    from profiling.model_refs import parse_input_shape

    if isinstance(value, str):
        try:
            return parse_input_shape(value)
        except ExanteError:
            pass                                  # reported below, naming `input`
    if isinstance(value, int) and not isinstance(value, bool):
        value = (value,)
    if isinstance(value, (list, tuple)) and value and all(
            isinstance(d, int) and not isinstance(d, bool) and d > 0 for d in value):
        return tuple(value)
    raise ExanteError(
        f"input must be a per-sample shape of positive integers, e.g. '3x224x224', 100 or "
        f"[3, 224, 224] (no batch dimension), got {value!r}")


# --------------------------------------------------------------------------- plans

@dataclass(frozen=True)
class TrainingRun:
    """One training run. ``batch_size`` is the global batch; ``gpus=None`` takes
    ``Scenario.gpus``. ``drop_last`` as in ``torch.utils.data.DataLoader``."""

    epochs: int
    dataset_size: int
    batch_size: int
    optimizer: str = "adam"
    dtype: str = "fp32"
    gpus: int | None = None
    label: str | None = None
    drop_last: bool = False

    def __post_init__(self):
        s = object.__setattr__
        s(self, "epochs", _pos_int(self.epochs, "epochs"))
        s(self, "dataset_size", _pos_int(self.dataset_size, "dataset_size"))
        s(self, "batch_size", _pos_int(self.batch_size, "batch_size"))
        s(self, "optimizer", _choice(self.optimizer, "optimizer", OPTIMIZERS))
        s(self, "dtype", _choice(self.dtype, "dtype", DTYPES))
        if self.batch_size > self.dataset_size:
            raise ExanteError(
                f"batch_size {self.batch_size} is larger than dataset_size {self.dataset_size}; "
                f"accepted: 1 <= batch_size <= dataset_size")
        if self.gpus is not None:
            s(self, "gpus", _pos_int(self.gpus, "gpus"))
        if not isinstance(self.drop_last, bool):
            raise ExanteError(f"drop_last must be true or false, got {self.drop_last!r}")
        if self.label is not None and not isinstance(self.label, str):
            raise ExanteError(f"label must be a string, got {self.label!r}")

    def plan(self, gpus: int | None = None) -> dict:
        """Per-epoch step plan: ``{gpus, per_gpu_batch, full_steps, last_batch, even, groups}``.

        ``groups`` lists ``(per_gpu_batch, n_gpus, steps_per_epoch, counts_wall_time)``: every
        distinct per-GPU step to predict, how many GPUs run it, how often, and whether it sets
        the wall time (the larger share of an uneven split does; see the module docstring). ``last_batch`` is the largest per-GPU size of the final partial
        step (0 if none)."""
        g = self.gpus or gpus or 1
        B, N = self.batch_size, self.dataset_size
        if B % g == 0:
            b = B // g
            per_rank = -(-N // g)     # DistributedSampler pads to ceil(N / gpus)
            full, last = divmod(per_rank, b)
            if self.drop_last:
                last = 0
            groups = [(b, g, full, True)] + ([(last, g, 1, True)] if last else [])
            return {"gpus": g, "per_gpu_batch": b, "full_steps": full, "last_batch": last,
                    "even": True, "groups": [x for x in groups if x[2]]}
        full, rest = divmod(N, B)
        if self.drop_last:
            rest = 0

        def split(n: int, steps: int) -> list[tuple[int, int, int]]:
            hi, r = -(-n // g), n % g
            parts = [(hi, r if r else g, steps, True)]
            if r and n // g:
                parts.append((n // g, g - r, steps, False))
            return [p for p in parts if p[0] and p[2]]

        groups = split(B, full) + (split(rest, 1) if rest else [])
        return {"gpus": g, "per_gpu_batch": -(-B // g), "full_steps": full,
                "last_batch": -(-rest // g) if rest else 0, "even": False, "groups": groups}


@dataclass(frozen=True)
class SearchPlan:
    """Architecture search / hyper-parameter tuning: CT = Σ_h T_h over ``runs``."""

    runs: tuple[TrainingRun, ...]

    def __post_init__(self):
        runs = tuple(self.runs) if isinstance(self.runs, (list, tuple)) else None
        if not runs or not all(isinstance(r, TrainingRun) for r in runs):
            raise ExanteError("SearchPlan needs a non-empty list of TrainingRun (one per trial)")
        object.__setattr__(self, "runs", runs)

    @classmethod
    def from_trials(cls, n_trials: int, base_run: TrainingRun,
                    epochs_range: tuple[int, int] | None = None,
                    dataset_fraction_range: tuple[float, float] | None = None,
                    seed: int = 0) -> "SearchPlan":
        """``n_trials`` copies of ``base_run``, with epochs and/or dataset fraction spread
        evenly (deterministically) over the given inclusive ranges.

        Values are ``low + (high - low) · i / (n - 1)`` for i = 0..n-1 (the midpoint when
        n = 1); epochs are rounded half-up, dataset sizes are ``round(fraction ·
        dataset_size)``. With both ranges the fractions are paired with the epochs through a
        permutation drawn from ``seed`` (a Latin-hypercube design); otherwise ``seed`` has no
        effect. Trials are labelled ``trial-01``, ``trial-02``, ...
        """
        n = _pos_int(n_trials, "trials")
        if not isinstance(base_run, TrainingRun):
            raise ExanteError("SearchPlan.from_trials needs base_run=TrainingRun(...)")

        def spread(lo, hi):
            return [(lo + hi) / 2] if n == 1 else [lo + (hi - lo) * i / (n - 1) for i in range(n)]

        epochs = [base_run.epochs] * n
        sizes = [base_run.dataset_size] * n
        if epochs_range is not None:
            lo, hi = _range(epochs_range, "epochs range")
            lo, hi = _pos_int(lo, "epochs range low"), _pos_int(hi, "epochs range high")
            epochs = [max(1, math.floor(v + 0.5)) for v in spread(lo, hi)]
        if dataset_fraction_range is not None:
            lo, hi = _range(dataset_fraction_range, "dataset fraction range")
            if not (0 < lo <= hi <= 1):
                raise ExanteError(
                    f"dataset fraction range must satisfy 0 < low <= high <= 1, got [{lo}, {hi}]")
            fr = spread(lo, hi)
            if epochs_range is not None:
                random.Random(seed).shuffle(fr)
            sizes = [max(1, math.floor(f * base_run.dataset_size + 0.5)) for f in fr]
            if min(sizes) < base_run.batch_size:
                raise ExanteError(
                    f"dataset fraction {lo} of {base_run.dataset_size} samples gives "
                    f"{min(sizes)} samples, fewer than batch_size {base_run.batch_size}; "
                    f"raise the low fraction or lower the batch")
        runs = tuple(dataclasses.replace(base_run, epochs=e, dataset_size=d,
                                         label=f"trial-{i + 1:02d}")
                     for i, (e, d) in enumerate(zip(epochs, sizes)))
        return cls(runs)


def _range(value, name: str) -> tuple[float, float]:
    if (not isinstance(value, (list, tuple)) or len(value) != 2
            or any(isinstance(v, bool) or not isinstance(v, (int, float)) for v in value)):
        raise ExanteError(f"{name} must be [low, high], got {value!r}")
    lo, hi = value
    if lo > hi:
        raise ExanteError(f"{name} must have low <= high, got {value!r}")
    return lo, hi


@dataclass(frozen=True)
class InferencePlan:
    """Serving: ``requests`` samples (seed 004's e) in forward calls of ``batch_size``."""

    requests: int
    batch_size: int = 1
    dtype: str = "fp32"

    def __post_init__(self):
        object.__setattr__(self, "requests", _pos_int(self.requests, "requests"))
        object.__setattr__(self, "batch_size", _pos_int(self.batch_size, "inference batch_size"))
        object.__setattr__(self, "dtype", _choice(self.dtype, "dtype", DTYPES))


@dataclass
class Scenario:
    """What to estimate. ``model``: a MODEL_REF string or an ``nn.Module``; ``input_shape``:
    per sample, without the batch dimension (``"3x224x224"``, ``100`` or a tuple)."""

    model: Any
    input_shape: Any
    training: TrainingRun | list[TrainingRun] | None = None
    search: SearchPlan | None = None
    inference: InferencePlan | None = None
    pue: float = carbon.DEFAULT_PUE
    region: str | None = None
    intensity_g_per_kwh: float | None = None
    hardware: str = "h100"
    embodied_kg: float | None = None
    hardware_lifetime_h: float | None = None
    gpus: int = 1
    gpu_share_of_server: float | None = None
    input_dtype: str | None = None     # None: float32; "int64" for models that take token ids

    def __post_init__(self):
        if not isinstance(self.model, str):
            try:
                from torch import nn
            except ImportError:  # pragma: no cover
                nn = None
            if nn is None or not isinstance(self.model, nn.Module):
                raise ExanteError(
                    f"model must be a MODEL_REF string or a torch.nn.Module, got "
                    f"{type(self.model).__name__}")
        self.input_shape = _input_shape(self.input_shape)
        if self.input_dtype is not None:
            self.input_dtype = _choice(self.input_dtype, "input_dtype", INPUT_DTYPES)
        self.gpus = _pos_int(self.gpus, "gpus")
        self.pue = _pos_float(self.pue, "pue", minimum=1.0, inclusive=True)
        if not isinstance(self.hardware, str) or not self.hardware:
            raise ExanteError(f"hardware must be a hardware id such as 'h100', got {self.hardware!r}")
        if self.region is not None and self.intensity_g_per_kwh is not None:
            raise ExanteError("give either region or intensity_g_per_kwh, not both")
        carbon.grid_intensity(self.region, self.intensity_g_per_kwh)  # fail early
        if self.embodied_kg is not None or self.hardware_lifetime_h is not None:
            if self.embodied_kg is None or self.hardware_lifetime_h is None:
                raise ExanteError("embodied carbon needs both embodied_kg (kg CO2eq of the "
                                  "hardware) and hardware_lifetime_h (hours it is used for)")
            self.embodied_kg = _pos_float(self.embodied_kg, "embodied_kg", inclusive=True)
            self.hardware_lifetime_h = _pos_float(self.hardware_lifetime_h, "hardware_lifetime_h")
        if self.gpu_share_of_server is not None:
            v = _pos_float(self.gpu_share_of_server, "gpu_share_of_server")
            if v > 1:
                raise ExanteError(f"gpu_share_of_server must be in (0, 1], got {v!r}")
            self.gpu_share_of_server = v

        runs = self.training
        if runs is None:
            runs = []
        elif isinstance(runs, TrainingRun):
            runs = [runs]
        elif not (isinstance(runs, (list, tuple)) and all(isinstance(r, TrainingRun) for r in runs)):
            raise ExanteError("training must be a TrainingRun, a list of them, or None")
        self.training = [
            self._resolve(r, "final" if i == 0 else f"training-{i + 1}")
            for i, r in enumerate(runs)] or None
        if self.search is not None:
            if not isinstance(self.search, SearchPlan):
                raise ExanteError("search must be a SearchPlan (e.g. SearchPlan.from_trials(...))")
            self.search = SearchPlan(tuple(
                self._resolve(r, f"trial-{i + 1:02d}") for i, r in enumerate(self.search.runs)))
        if self.inference is not None and not isinstance(self.inference, InferencePlan):
            raise ExanteError("inference must be an InferencePlan(requests, batch_size, dtype)")
        if not (self.training or self.search or self.inference):
            raise ExanteError("nothing to estimate: give a training run, a search plan or an "
                              "inference plan")

    def _resolve(self, run: TrainingRun, default_label: str) -> TrainingRun:
        return dataclasses.replace(run, gpus=run.gpus or self.gpus,
                                   label=run.label or default_label)

    @property
    def model_ref(self) -> str:
        return self.model if isinstance(self.model, str) else type(self.model).__name__


# --------------------------------------------------------------------------- report

@dataclass
class StageReport:
    """One life-cycle stage. ``energy_j``: GPU board energy; ``energy_kwh``: facility energy
    (÷ gpu_share_of_server × PUE); ``co2_kg``: operational only; ``time_s``: wall clock."""

    stage: str
    energy_j: float
    energy_j_low: float
    energy_j_high: float
    time_s: float
    time_s_low: float
    time_s_high: float
    gpu_hours: float
    gpu_hours_low: float
    gpu_hours_high: float
    energy_kwh: float
    energy_kwh_low: float
    energy_kwh_high: float
    co2_kg: float
    co2_kg_low: float
    co2_kg_high: float
    calls: int                      # steps (per GPU) or forward calls
    items: list[dict] = field(default_factory=list)   # per run / per batch size

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


@dataclass
class LifecycleReport:
    model: str
    input_shape: tuple[int, ...]
    hardware: str
    stages: dict[str, StageReport]
    theta: float | None
    theta_detail: dict | None
    pue: float
    pue_source: str
    grid: carbon.GridIntensity
    gpu_share_of_server: float | None
    total_energy_j: float
    total_energy_j_low: float
    total_energy_j_high: float
    total_energy_kwh: float
    total_energy_kwh_low: float
    total_energy_kwh_high: float
    operational_co2_kg: float
    operational_co2_kg_low: float
    operational_co2_kg_high: float
    embodied: dict | None
    co2_kg: float
    co2_kg_low: float
    co2_kg_high: float
    equivalents: list[tuple[str, float, str, str]]
    notes: list[str]
    predict_calls: int

    def _stage_value(self, stage: str, key: str) -> float:
        s = self.stages.get(stage)
        return getattr(s, key) if s is not None else 0.0

    def to_dict(self) -> dict:
        """JSON-ready dict; the ``exante estimate --json`` contract keys are at top level."""
        d: dict[str, Any] = {"model": self.model, "input_shape": list(self.input_shape),
                             "hardware": self.hardware}
        for stage in ("training", "search", "inference"):
            for suffix in ("", "_low", "_high"):
                d[f"{stage}_energy_j{suffix}"] = self._stage_value(stage, f"energy_j{suffix}")
        for suffix in ("", "_low", "_high"):
            d[f"total_energy_kwh{suffix}"] = getattr(self, f"total_energy_kwh{suffix}")
        for suffix in ("", "_low", "_high"):
            d[f"co2_kg{suffix}"] = getattr(self, f"co2_kg{suffix}")
        for suffix in ("", "_low", "_high"):
            d[f"operational_co2_kg{suffix}"] = getattr(self, f"operational_co2_kg{suffix}")
            d[f"total_energy_j{suffix}"] = getattr(self, f"total_energy_j{suffix}")
        d.update({
            "theta": self.theta,
            "theta_detail": self.theta_detail,
            "pue": self.pue,
            "pue_source": self.pue_source,
            "grid_intensity_g_per_kwh": self.grid.value_g_per_kwh,
            "grid_label": self.grid.label,
            "grid_source": self.grid.source,
            "gpu_share_of_server": self.gpu_share_of_server,
            "embodied": self.embodied,
            "stages": {k: v.to_dict() for k, v in self.stages.items()},
            "equivalents": [{"label": lab, "amount": amt, "unit": unit, "source": src}
                            for lab, amt, unit, src in self.equivalents],
            "notes": list(self.notes),
            "predict_calls": self.predict_calls,
        })
        return json.loads(json.dumps(d))     # plain JSON types (tuples → lists)

    def to_text(self) -> str:
        def e(x):
            return f"{x:.4g}"

        lines = [f"exante life-cycle estimate: {self.model}, input "
                 f"{'x'.join(map(str, self.input_shape))}, hardware {self.hardware}", ""]
        rows = [("stage", "steps/calls", "GPU-h", "GPU energy J [low, high]", "kWh (facility)",
                 "kg CO2eq [low, high]")]
        for name in STAGES:
            s = self.stages.get(name)
            if s is not None:
                rows.append((name, f"{s.calls:,d}", f"{s.gpu_hours:.4g}",
                             f"{e(s.energy_j)} [{e(s.energy_j_low)}, {e(s.energy_j_high)}]",
                             f"{s.energy_kwh:.4g}",
                             f"{e(s.co2_kg)} [{e(s.co2_kg_low)}, {e(s.co2_kg_high)}]"))
        rows.append(("total", "", "",
                     f"{e(self.total_energy_j)} [{e(self.total_energy_j_low)}, "
                     f"{e(self.total_energy_j_high)}]", f"{self.total_energy_kwh:.4g}",
                     f"{e(self.operational_co2_kg)} [{e(self.operational_co2_kg_low)}, "
                     f"{e(self.operational_co2_kg_high)}]"))
        widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]

        def fmt(r):
            return "  ".join(c.ljust(w) if i == 0 else c.rjust(w)
                             for i, (c, w) in enumerate(zip(r, widths))).rstrip()

        rule = "-" * (sum(widths) + 2 * (len(widths) - 1))
        lines += [fmt(rows[0]), rule] + [fmt(r) for r in rows[1:-1]] + [rule, fmt(rows[-1])]
        lines.append("")
        if self.embodied:
            em = self.embodied
            lines.append(f"embodied carbon: {e(em['co2_kg'])} kg [{e(em['co2_kg_low'])}, "
                         f"{e(em['co2_kg_high'])}] ({em['share_of_total']:.1%} of the total)")
        lines.append(f"total CO2eq: {e(self.co2_kg)} kg  [{e(self.co2_kg_low)}, {e(self.co2_kg_high)}]")
        if self.theta is not None:
            t = self.theta_detail
            lines.append(f"theta (train step / inference, {t['run']} at per-GPU batch {t['batch']}, "
                         f"{t['optimizer']}, {t['dtype']}): {self.theta:.3g}  (seed 004 measured ~5 "
                         f"on its setup)")
        lines.append(f"PUE {self.pue:g} — {self.pue_source if self.pue == carbon.DEFAULT_PUE else 'user-supplied'}")
        lines.append(f"grid {self.grid.value_g_per_kwh:g} gCO2eq/kWh — {self.grid.label}; "
                     f"source: {self.grid.source}")
        if self.gpu_share_of_server:
            lines.append(f"GPU share of server draw: {self.gpu_share_of_server:g} "
                         f"(GPU energy divided by it)")
        if self.equivalents:
            lines += ["", f"{self.co2_kg:.4g} kg CO2eq is about (US EPA via seed 002 §5.1):"]
            for label, amount, unit, _ in self.equivalents:
                lines.append(f"  {amount:>12.4g}  {label}")
        lines += ["", "notes:"] + [f"  - {n}" for n in self.notes]
        return "\n".join(lines)


# --------------------------------------------------------------------------- estimation

@dataclass
class _Cost:
    energy_j: float
    energy_j_low: float
    energy_j_high: float
    time_s: float
    time_s_low: float
    time_s_high: float


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

    return _Cost(e, opt("energy_j_low", e), opt("energy_j_high", e),
                 t, opt("time_s_low", t), opt("time_s_high", t))


class _Predictor:
    """Calls ``predict_fn`` once per distinct (mode, batch, dtype, optimizer)."""

    def __init__(self, model, input_shape, hardware, predict_fn, input_dtype=None):
        self.model, self.input_shape, self.hardware = model, input_shape, hardware
        self.input_dtype = input_dtype or "float32"
        self.predict_fn = predict_fn
        self.cache: dict[tuple, _Cost] = {}
        self.warnings: dict[str, list[str]] = {}   # predictor warning -> calls it came from

    def __call__(self, mode: str, batch: int, dtype: str, optimizer: str | None) -> _Cost:
        key = (mode, batch, dtype, optimizer if mode == "train_step" else None)
        if key not in self.cache:
            from profiling.model_refs import example_inputs

            inputs = example_inputs(self.input_shape, batch, device="meta",
                                    dtype=self.input_dtype)
            p = self.predict_fn(self.model, inputs, mode=mode, dtype=dtype,
                                hardware=self.hardware, optimizer=key[3])
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
        from predictor.predict import predict
    except ModuleNotFoundError as exc:
        if exc.name and exc.name.startswith("predictor"):
            raise ExanteError("the energy predictor (predictor.predict) is not available in "
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

    def add(self, cost: _Cost, n: int, gpus: int = 1, wall: bool = True):
        """``wall=False``: these steps run alongside others already counted (GPUs with the
        smaller share of an uneven batch), so they add energy and GPU time, not wall time."""
        if n <= 0:
            return
        for i, (ev, tv) in enumerate(zip(
                (cost.energy_j, cost.energy_j_low, cost.energy_j_high),
                (cost.time_s, cost.time_s_low, cost.time_s_high))):
            self.e[i] += ev * n * gpus
            if wall:
                self.t[i] += tv * n
            self.gpu_s[i] += tv * n * gpus
        self.calls += n


def _stage(name: str, acc: _Acc, items: list[dict], pue: float, share: float,
           grid: carbon.GridIntensity) -> StageReport:
    kwh = [carbon.to_kwh(x) / share * pue for x in acc.e]
    co2 = [carbon.co2_kg(k, grid) for k in kwh]
    return StageReport(
        stage=name,
        energy_j=acc.e[0], energy_j_low=acc.e[1], energy_j_high=acc.e[2],
        time_s=acc.t[0], time_s_low=acc.t[1], time_s_high=acc.t[2],
        gpu_hours=acc.gpu_s[0] / 3600, gpu_hours_low=acc.gpu_s[1] / 3600,
        gpu_hours_high=acc.gpu_s[2] / 3600,
        energy_kwh=kwh[0], energy_kwh_low=kwh[1], energy_kwh_high=kwh[2],
        co2_kg=co2[0], co2_kg_low=co2[1], co2_kg_high=co2[2],
        calls=acc.calls, items=items)


def _training_stage(runs, cost_of) -> tuple[_Acc, list[dict]]:
    acc = _Acc()
    items = []
    for run in runs:
        plan = run.plan()
        run_acc = _Acc()
        full = cost_of("train_step", plan["per_gpu_batch"], run.dtype, run.optimizer)
        for batch, n_gpus, steps, wall in plan["groups"]:
            cost = cost_of("train_step", batch, run.dtype, run.optimizer)
            run_acc.add(cost, steps * run.epochs, n_gpus, wall)
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
            "dtype": run.dtype, "drop_last": run.drop_last,
            "steps_per_epoch": plan["full_steps"] + (1 if plan["last_batch"] else 0),
            "last_batch_per_gpu": plan["last_batch"] or None,
            "step_energy_j": full.energy_j,
            "energy_j": run_acc.e[0], "energy_j_low": run_acc.e[1],
            "energy_j_high": run_acc.e[2], "time_s": run_acc.t[0],
        })
    return acc, items


def estimate(scenario: Scenario, predict_fn: Callable | None = None) -> LifecycleReport:
    """Life-cycle energy and CO2 of ``scenario`` (see the module docstring for the model).

    ``predict_fn(model, inputs, mode=, dtype=, hardware=, optimizer=)`` returns an object with
    ``energy_j, energy_j_low, energy_j_high, time_s`` (optionally ``time_s_low/high``) per call
    of the whole batch; the default is :func:`predictor.predict.predict`. It is called once per
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
                         scenario.hardware, predict_fn, scenario.input_dtype)

    stages: dict[str, StageReport] = {}
    if scenario.search:
        acc, items = _training_stage(scenario.search.runs, cost_of)
        stages["search"] = _stage("search", acc, items, pue, share, grid)
    if scenario.training:
        acc, items = _training_stage(scenario.training, cost_of)
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
    ref = (scenario.training or [None])[0] or (scenario.search.runs[0] if scenario.search else None)
    if ref is not None:
        b = ref.plan()["per_gpu_batch"]
        tr = cost_of("train_step", b, ref.dtype, ref.optimizer)
        fw = cost_of("inference", b, ref.dtype, None)
        if fw.energy_j > 0:
            theta = tr.energy_j / fw.energy_j
            theta_detail = {"run": ref.label, "batch": b, "optimizer": ref.optimizer,
                            "dtype": ref.dtype, "train_step_energy_j": tr.energy_j,
                            "inference_energy_j": fw.energy_j}

    ordered = {k: stages[k] for k in STAGES if k in stages}
    tot_e = [sum(getattr(s, f"energy_j{x}") for s in ordered.values()) for x in ("", "_low", "_high")]
    tot_kwh = [sum(getattr(s, f"energy_kwh{x}") for s in ordered.values())
               for x in ("", "_low", "_high")]
    op_co2 = [carbon.co2_kg(k, grid) for k in tot_kwh]

    embodied = None
    co2 = list(op_co2)
    if scenario.embodied_kg is not None:
        gpu_h = [sum(getattr(s, f"gpu_hours{x}") for s in ordered.values())
                 for x in ("", "_low", "_high")]
        m = [scenario.embodied_kg * h / (scenario.gpus * scenario.hardware_lifetime_h)
             for h in gpu_h]
        co2 = [o + mm for o, mm in zip(op_co2, m)]
        embodied = {"co2_kg": m[0], "co2_kg_low": m[1], "co2_kg_high": m[2],
                    "embodied_kg": scenario.embodied_kg,
                    "hardware_lifetime_h": scenario.hardware_lifetime_h,
                    "hardware_gpus": scenario.gpus, "gpu_hours": gpu_h[0],
                    "share_of_total": m[0] / co2[0] if co2[0] > 0 else 0.0,
                    "formula": "embodied_kg × GPU-hours / (gpus × hardware_lifetime_h) "
                               "(SCI's M, seed 002 §3.1)"}

    notes = _notes(scenario, share) + cost_of.warning_notes()
    return LifecycleReport(
        model=scenario.model_ref, input_shape=scenario.input_shape, hardware=scenario.hardware,
        stages=ordered, theta=theta, theta_detail=theta_detail, pue=pue,
        pue_source=carbon.PUE_SOURCE if pue == carbon.DEFAULT_PUE else "user-supplied value",
        grid=grid, gpu_share_of_server=scenario.gpu_share_of_server,
        total_energy_j=tot_e[0], total_energy_j_low=tot_e[1], total_energy_j_high=tot_e[2],
        total_energy_kwh=tot_kwh[0], total_energy_kwh_low=tot_kwh[1],
        total_energy_kwh_high=tot_kwh[2],
        operational_co2_kg=op_co2[0], operational_co2_kg_low=op_co2[1],
        operational_co2_kg_high=op_co2[2],
        embodied=embodied, co2_kg=co2[0], co2_kg_low=co2[1], co2_kg_high=co2[2],
        equivalents=carbon.everyday_equivalents(co2[0]), notes=notes,
        predict_calls=len(cost_of.cache))


def _notes(scenario: Scenario, share: float) -> list[str]:
    notes = [
        "energy_j is predicted GPU board energy (eager PyTorch, steady state, idle power "
        "included); kWh = J / 3.6e6"
        + (f" / gpu_share_of_server ({share:g})" if share != 1.0 else
           " (GPU only: CPU, DRAM and host not included; set gpu_share_of_server, e.g. 0.74 "
           "from seed 002 Table 1, to approximate the whole server)")
        + f" × PUE ({scenario.pue:g}).",
        "intervals: per-call low/high from the predictor summed linearly over steps (errors of "
        "one configuration are fully correlated) and over stages (conservative); nominal "
        "coverage is the predictor's.",
        "the last partial batch of each epoch (and of serving) is predicted at its own size "
        "(PyTorch DataLoader drop_last=False) unless drop_last is set.",
        "not included: data loading, evaluation passes, checkpointing, idle time between "
        "trials, start-up, networking and storage.",
    ]
    runs = list(scenario.training or []) + list(scenario.search.runs if scenario.search else [])
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
                     f"average, seed 004 §3.4): facility energy = 1.58 × GPU energy. Pass --pue "
                     f"(1.0 = GPU energy only, the default of exante calc).")
    if scenario.intensity_g_per_kwh is None and scenario.region is None:
        notes.append("no region or intensity given: the world-average grid intensity is used "
                     "(seed 000 §4.1); pass a region for a meaningful CO2 figure.")
    return notes


# --------------------------------------------------------------------------- CLI and TOML

def scenario_from_args(args) -> Scenario:
    """Build a Scenario from ``exante estimate`` flags (see predictor/cli.py)."""
    g = lambda name, default=None: getattr(args, name, default)  # noqa: E731
    optimizer, dtype = g("optimizer") or "adam", g("dtype") or "fp32"
    dataset_size = g("dataset_size")
    if g("tokens") is not None:
        if dataset_size is not None:
            raise ExanteError("give --dataset-size (samples) or --tokens, not both")
        if g("input") is None:
            raise ExanteError("--tokens needs --input (tokens per sample = its element count)")
        dataset_size = samples_from_tokens(g("tokens"), g("input"))
    train_keys = {"--epochs": g("epochs"), "--dataset-size or --tokens": dataset_size,
                  "--batch": g("batch")}
    training = None
    if any(v is not None for v in train_keys.values()):
        missing = [k for k, v in train_keys.items() if v is None]
        if missing:
            raise ExanteError(f"a training run needs --epochs, --dataset-size and --batch; "
                              f"missing {', '.join(missing)}")
        training = TrainingRun(g("epochs"), dataset_size, g("batch"), optimizer=optimizer,
                               dtype=dtype)
    search = None
    if g("trials") is not None:
        if training is None:
            raise ExanteError("--trials repeats the training run: give --epochs, "
                              "--dataset-size and --batch too")
        search = SearchPlan.from_trials(g("trials"), training)
    inference = None
    if g("inferences") is not None:
        batch = g("inference_batch")
        inference = InferencePlan(g("inferences"), 1 if batch is None else batch, dtype=dtype)
    return Scenario(
        model=g("model_ref"), input_shape=g("input"), training=training, search=search,
        inference=inference, pue=carbon.DEFAULT_PUE if g("pue") is None else g("pue"),
        region=g("region"), intensity_g_per_kwh=g("intensity"),
        hardware=g("hardware") or "h100", gpus=1 if g("gpus") is None else g("gpus"),
        input_dtype=g("input_dtype"))


# `exante estimate --scenario plan.toml` with flags: the rule (stated in `--help`)
SCENARIO_OVERRIDES = {"model_ref": "model", "input": "input", "hardware": "hardware",
                      "pue": "pue", "region": "region", "intensity": "intensity_g_per_kwh",
                      "gpus": "gpus", "input_dtype": "input_dtype"}
SCENARIO_REFUSED = {"epochs": "--epochs", "dataset_size": "--dataset-size", "tokens": "--tokens",
                    "batch": "--batch", "optimizer": "--optimizer", "dtype": "--dtype",
                    "trials": "--trials", "inferences": "--inferences",
                    "inference_batch": "--inference-batch"}


def scenario_overrides(args, path) -> dict:
    """Top-level keys that flags given with ``--scenario`` set in the file: MODEL_REF,
    ``--input``, ``--hardware``, ``--pue``, ``--region`` / ``--intensity`` (either replaces
    both of the file's grid keys) and ``--gpus`` override the file's values; flags that describe
    the runs (``--epochs``, ``--batch``, ``--inferences``, ...) are refused: edit the file."""
    given = [flag for name, flag in SCENARIO_REFUSED.items()
             if getattr(args, name, None) is not None]
    if given:
        raise ExanteError(
            f"{', '.join(given)} cannot be combined with --scenario: the runs come from "
            f"{path}; edit its tables, or drop --scenario (with --scenario only MODEL_REF, "
            "--input, --input-dtype, --hardware, --pue, --region/--intensity and --gpus "
            "override the file)")
    out = {key: getattr(args, name) for name, key in SCENARIO_OVERRIDES.items()
           if getattr(args, name, None) is not None}
    if "region" in out or "intensity_g_per_kwh" in out:
        out.setdefault("region", None)
        out.setdefault("intensity_g_per_kwh", None)
    return out


_TOP_KEYS = ("model", "input", "input_dtype", "hardware", "pue", "region", "intensity_g_per_kwh", "gpus",
             "embodied_kg", "hardware_lifetime_h", "gpu_share_of_server", "training", "search",
             "inference")
_RUN_KEYS = ("epochs", "dataset_size", "dataset_tokens", "batch", "optimizer", "dtype", "gpus",
             "label", "drop_last")
_SEARCH_KEYS = ("trials", "epochs", "dataset_fraction", "dataset_size", "dataset_tokens",
                "batch", "optimizer",
                "dtype", "gpus", "drop_last", "seed", "runs")
_INFERENCE_KEYS = ("requests", "batch", "dtype")


def _check_keys(table, accepted, where: str, path) -> None:
    if not isinstance(table, dict):
        raise ExanteError(f"{where} in {path} must be a table, got {type(table).__name__}")
    for key in table:
        if key not in accepted:
            close = difflib.get_close_matches(key, accepted, n=1)
            hint = f"did you mean {close[0]!r}? " if close else ""
            raise ExanteError(f"unknown key {key!r} in {where} of {path}; {hint}"
                              f"accepted: {', '.join(accepted)}")


def _need(table, key, where, path):
    if key not in table:
        raise ExanteError(f"{where} in {path} needs {key!r}")
    return table[key]


def samples_from_tokens(tokens, input_shape) -> int:
    """Samples holding ``tokens`` training tokens: ``ceil(tokens / tokens per sample)``, where
    tokens per sample is the element count of the per-sample input (sequence length)."""
    shape = _input_shape(input_shape)
    per_sample = math.prod(shape)
    n = _pos_float(tokens, "dataset_tokens")
    return max(1, math.ceil(n / per_sample))


def _run_from_table(t: dict, where: str, path, defaults: dict | None = None,
                    input_shape=None) -> TrainingRun:
    d = {**(defaults or {}), **t}
    if "dataset_tokens" in t and "dataset_size" in t:
        raise ExanteError(f"{where} in {path}: give dataset_size or dataset_tokens, not both")
    tokens = d.pop("dataset_tokens", None)
    if tokens is not None and "dataset_size" not in t:   # the table's own size wins
        d["dataset_size"] = samples_from_tokens(tokens, input_shape)
    with _in_table(where, path):
        return TrainingRun(
            epochs=_need(d, "epochs", where, path),
            dataset_size=_need(d, "dataset_size", where, path),
            batch_size=_pos_int(_need(d, "batch", where, path), "batch"),
            optimizer=d.get("optimizer", "adam"), dtype=d.get("dtype", "fp32"),
            gpus=d.get("gpus"), label=d.get("label"), drop_last=d.get("drop_last", False))


class _in_table:
    """Prefix an ExanteError raised inside with ``<where> in <path>: `` (TOML key context)."""

    def __init__(self, where: str, path):
        self.where, self.path = where, path

    def __enter__(self):
        return self

    def __exit__(self, kind, exc, tb):
        if isinstance(exc, ExanteError) and f" in {self.path}" not in str(exc):
            raise ExanteError(f"{self.where} in {self.path}: {exc}") from exc
        return False


def load_scenario(path, overrides: dict | None = None) -> Scenario:
    """Read a TOML scenario file (schema in the module docstring); ``overrides`` replace
    top-level keys (see :func:`scenario_overrides`)."""
    try:
        with open(path, "rb") as f:
            doc = tomllib.load(f)
    except FileNotFoundError:
        raise ExanteError(f"scenario file {str(path)!r} does not exist") from None
    except IsADirectoryError:
        raise ExanteError(f"scenario {str(path)!r} is a folder; give a TOML file "
                          "(e.g. --scenario plan.toml)") from None
    except OSError as exc:
        raise ExanteError(f"cannot read scenario file {str(path)!r}: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ExanteError(f"scenario file {str(path)!r} is not valid TOML: {exc}") from None
    except UnicodeDecodeError:
        raise ExanteError(f"scenario file {str(path)!r} is not UTF-8 text (TOML)") from None
    doc.update(overrides or {})
    doc = {k: v for k, v in doc.items() if v is not None}
    return scenario_from_dict(doc, path=str(path))


def scenario_from_dict(doc: dict, path: str = "<scenario>") -> Scenario:
    """Build a Scenario from the parsed TOML document (same schema as :func:`load_scenario`)."""
    _check_keys(doc, _TOP_KEYS, "the top level", path)
    model = _need(doc, "model", "the top level", path)
    if not isinstance(model, str):
        raise ExanteError(f"model in {path} must be a MODEL_REF string, got {model!r}")

    tr = doc.get("training")
    if isinstance(tr, dict):
        tr = [tr]
    if tr is not None and not isinstance(tr, list):
        raise ExanteError(f"training in {path} must be [[training]] tables")
    runs = []
    for i, t in enumerate(tr or []):
        _check_keys(t, _RUN_KEYS, f"[[training]] #{i + 1}", path)
        runs.append(_run_from_table(t, f"[[training]] #{i + 1}", path,
                                    input_shape=doc.get("input")))

    search = None
    if "search" in doc:
        s = doc["search"]
        _check_keys(s, _SEARCH_KEYS, "[search]", path)
        if "runs" in s:
            extra = [k for k in ("trials", "epochs", "dataset_fraction", "seed") if k in s]
            if extra:
                raise ExanteError(f"[search] in {path}: give either trials (with epochs / "
                                  f"dataset_fraction / seed) or [[search.runs]], not both "
                                  f"({', '.join(extra)} given with runs)")
            if not isinstance(s["runs"], list) or not s["runs"]:
                raise ExanteError(f"[search] runs in {path} must be one or more [[search.runs]]")
            inherit = {k: v for k, v in s.items() if k != "runs"}
            sruns = []
            for i, t in enumerate(s["runs"]):
                _check_keys(t, _RUN_KEYS, f"[[search.runs]] #{i + 1}", path)
                sruns.append(_run_from_table(t, f"[[search.runs]] #{i + 1}", path, inherit,
                                             input_shape=doc.get("input")))
            search = SearchPlan(tuple(sruns))
        else:
            trials = _need(s, "trials", "[search]", path)
            base = {}
            if runs:
                r0 = runs[0]
                base = {"epochs": r0.epochs, "dataset_size": r0.dataset_size,
                        "batch": r0.batch_size, "optimizer": r0.optimizer, "dtype": r0.dtype,
                        "gpus": r0.gpus, "drop_last": r0.drop_last}
            own = {k: v for k, v in s.items() if k in _RUN_KEYS and k != "label"}
            epochs = own.pop("epochs", base.get("epochs"))
            epochs_range = None
            if isinstance(epochs, list):
                epochs_range = _range(epochs, "[search] epochs")
                epochs = epochs_range[0]
            merged = {**base, **own}
            if epochs is not None:
                merged["epochs"] = epochs
            if "dataset_tokens" in own:
                merged.pop("dataset_size", None)
                merged = {**merged, "dataset_tokens": own["dataset_tokens"]}
            base_run = _run_from_table(merged, "[search] (or the first [[training]] run)", path,
                                       input_shape=doc.get("input"))
            fr = s.get("dataset_fraction")
            search = SearchPlan.from_trials(
                trials, base_run, epochs_range=epochs_range,
                dataset_fraction_range=None if fr is None else _range(fr, "[search] dataset_fraction"),
                seed=s.get("seed", 0))

    inference = None
    if "inference" in doc:
        t = doc["inference"]
        _check_keys(t, _INFERENCE_KEYS, "[inference]", path)
        with _in_table("[inference]", path):
            inference = InferencePlan(_need(t, "requests", "[inference]", path),
                                      _pos_int(t.get("batch", 1), "batch"), t.get("dtype", "fp32"))

    with _in_table("the top level", path):
        return Scenario(
            model=model, input_shape=_need(doc, "input", "the top level", path),
            training=runs or None, search=search, inference=inference,
            pue=doc.get("pue", carbon.DEFAULT_PUE), region=doc.get("region"),
            intensity_g_per_kwh=doc.get("intensity_g_per_kwh"),
            hardware=doc.get("hardware", "h100"), embodied_kg=doc.get("embodied_kg"),
            hardware_lifetime_h=doc.get("hardware_lifetime_h"), gpus=doc.get("gpus", 1),
            gpu_share_of_server=doc.get("gpu_share_of_server"),
            input_dtype=doc.get("input_dtype"))


def _toml_value(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    return json.dumps(str(v), ensure_ascii=False)


def _run_lines(run: TrainingRun) -> list[str]:
    out = [f"epochs = {run.epochs}", f"dataset_size = {run.dataset_size}",
           f"batch = {run.batch_size}", f"optimizer = {_toml_value(run.optimizer)}",
           f"dtype = {_toml_value(run.dtype)}"]
    if run.gpus is not None:
        out.append(f"gpus = {run.gpus}")
    if run.label is not None:
        out.append(f"label = {_toml_value(run.label)}")
    if run.drop_last:
        out.append("drop_last = true")
    return out


def dump_scenario(scenario: Scenario) -> str:
    """TOML text that :func:`load_scenario` reads back to an equal Scenario."""
    if not isinstance(scenario.model, str):
        raise ExanteError("only a Scenario whose model is a MODEL_REF string can be written as TOML")
    lines = [f"model = {_toml_value(scenario.model)}",
             f"input = {_toml_value('x'.join(map(str, scenario.input_shape)))}",
             f"hardware = {_toml_value(scenario.hardware)}",
             f"pue = {_toml_value(scenario.pue)}",
             f"gpus = {scenario.gpus}"]
    for key in ("region", "intensity_g_per_kwh", "embodied_kg", "hardware_lifetime_h",
                "gpu_share_of_server", "input_dtype"):
        v = getattr(scenario, key)
        if v is not None:
            lines.append(f"{key} = {_toml_value(v)}")
    for run in scenario.training or []:
        lines += ["", "[[training]]"] + _run_lines(run)
    if scenario.search:
        for run in scenario.search.runs:
            lines += ["", "[[search.runs]]"] + _run_lines(run)
    if scenario.inference:
        inf = scenario.inference
        lines += ["", "[inference]", f"requests = {inf.requests}", f"batch = {inf.batch_size}",
                  f"dtype = {_toml_value(inf.dtype)}"]
    return "\n".join(lines) + "\n"
