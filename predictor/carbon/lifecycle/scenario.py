"""What a life-cycle estimate prices: :class:`TrainingRun`, :class:`SearchPlan`,
:class:`InferencePlan` and :class:`Scenario` (model, per-sample input, hardware, PUE, grid
intensity, GPUs), each validated on construction with one-line :class:`ExanteError` s."""

from __future__ import annotations

import dataclasses
import math
import random
from dataclasses import dataclass
from typing import Any

from predictor.carbon import regions as carbon
from profiling.errors import ExanteError
from profiling.input_spec import parse_input_shape

OPTIMIZERS = ("sgd", "adam", "adamw")
DTYPES = ("fp32", "bf16", "fp16")
MEMORY_FORMATS = ("contiguous", "channels_last")
STAGES = ("search", "training", "inference")
INPUT_DTYPES = ("float32", "float16", "bfloat16", "int64", "int32")   # profiling.model_refs'


# --------------------------------------------------------------------------- validation helpers

# Upper bounds of what a plan can describe: far above any published run (GPT-3: 3e11
# tokens, seed 004's serving: 1e9 requests), low enough that no total overflows a float.
MAX_COUNT = {"epochs": 10**6, "dataset_size": 10**15, "batch_size": 10**9, "requests": 10**18,
             "inference batch_size": 10**9, "gpus": 10**6, "trials": 10**5}
PUE_RANGE = (1.0, 3.0)                   # 1.0: GPU energy only; published averages 1.1-2.5
MAX_INTENSITY_G_PER_KWH = 2000.0         # coal's life-cycle intensity is ~820-1100 g/kWh


def _pos_int(value, name: str) -> int:
    """A positive integer (at most :data:`MAX_COUNT` of ``name``); integral floats (``1e6``
    from TOML or the CLI) are accepted."""
    if isinstance(value, bool):
        value = None
    if isinstance(value, float) and math.isfinite(value) and value.is_integer():
        value = int(value)
    if not isinstance(value, int) or value < 1:
        raise ExanteError(f"{name} must be a positive integer, got {value!r}")
    top = MAX_COUNT.get(name)
    if top is not None and value > top:
        raise ExanteError(f"{name} {value:.3g} is beyond what a plan can describe; accepted: "
                          f"1 to {top:.0e}")
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
    grad_scaler: bool = False           # fp16 training with torch.amp.GradScaler

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
        if not isinstance(self.grad_scaler, bool):
            raise ExanteError(f"grad_scaler must be true or false, got {self.grad_scaler!r}")
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

        def split(n: int, steps: int) -> list[tuple[int, int, int, bool]]:
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
                    epochs_range: tuple[float, float] | None = None,
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
                     for i, (e, d) in enumerate(zip(epochs, sizes, strict=True)))
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
    memory_format: str = "contiguous"  # "channels_last": model and (4-D) input in NHWC
    torch_version: str | None = None   # recorded condition, passed to the predictor

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
        self.memory_format = _choice(self.memory_format, "memory_format", MEMORY_FORMATS)
        if self.torch_version is not None and (not isinstance(self.torch_version, str)
                                               or not self.torch_version[:1].isdigit()):
            raise ExanteError(f"torch_version must be a version string like '2.4.1', got "
                              f"{self.torch_version!r}")
        self.gpus = _pos_int(self.gpus, "gpus")
        self.pue = _pos_float(self.pue, "pue", minimum=1.0, inclusive=True)
        if self.pue > PUE_RANGE[1]:
            raise ExanteError(f"pue {self.pue:g} is not a data centre's PUE; accepted: "
                              f"{PUE_RANGE[0]:g} (GPU energy only) to {PUE_RANGE[1]:g}")
        if not isinstance(self.hardware, str) or not self.hardware:
            raise ExanteError(f"hardware must be a hardware id such as 'h100', got {self.hardware!r}")
        if self.region is not None and self.intensity_g_per_kwh is not None:
            raise ExanteError("give either region or intensity_g_per_kwh, not both")
        g = carbon.grid_intensity(self.region, self.intensity_g_per_kwh)  # fail early
        if g.value_g_per_kwh > MAX_INTENSITY_G_PER_KWH:
            raise ExanteError(f"grid intensity {g.value_g_per_kwh:g} gCO2eq/kWh is beyond any "
                              f"grid's; accepted: 0 to {MAX_INTENSITY_G_PER_KWH:g} (coal is "
                              "~820-1100)")
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
    def training_runs(self) -> list[TrainingRun]:
        """The training runs (after ``__post_init__``: a list, empty without training)."""
        t = self.training
        return [t] if isinstance(t, TrainingRun) else list(t or [])

    @property
    def model_ref(self) -> str:
        """The model's MODEL_REF, or its class name for an ``nn.Module``."""
        return self.model if isinstance(self.model, str) else type(self.model).__name__
