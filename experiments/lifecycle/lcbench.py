"""Shared pieces of the life-cycle experiments (validate_training.py, linearity.py) and of
experiments/wide_vs_deep/run.py: a small model zoo, synthetic datasets held on the device, a
real training loop (shuffled mini-batches indexed from device tensors each epoch, the last
batch partial as with ``DataLoader(drop_last=False)``), an energy-metered interval, the
ex-ante prediction of a training run (``predictor.carbon.lifecycle.estimate``), provenance columns,
atomic resumable result tables and a time budget.

Training semantics are DESIGN.md §4's ``train_step``: ``zero_grad(set_to_none=True)`` ->
forward -> loss (cross-entropy for classifier outputs -- 2-D with more than one column --,
MSE otherwise, the rule of ``profiling.measure.replay._loss_fn``) -> ``backward()`` ->
``optimizer.step()``; optimizers from ``profiling.measure.replay.make_optimizer`` (``sgd`` = SGD with
momentum 0.9, ``adam``/``adamw`` torch defaults). ``bf16`` = autocast around forward and loss.

Nothing here changes a GPU setting. Energy is total board energy between two counter reads
taken after ``meter.sync()``.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import functools
import json
import math
import os
import re
import sys
import time
import uuid
import warnings
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Callable, Sequence

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

import torch  # noqa: E402
from torch import nn  # noqa: E402

from profiling.dataset import schema  # noqa: E402
from profiling.errors import ExanteError  # noqa: E402

SCRIPT_VERSION = "1"
NO_PREDICTION = "no prediction"

# --------------------------------------------------------------------------- models


@dataclass(frozen=True)
class ModelSpec:
    """A model of the zoo: how to build it, its per-sample input shape and its output."""

    name: str
    family: str                     # "mlp" | "cnn" | "transformer"
    input_shape: tuple[int, ...]    # per sample, no batch dim
    out_features: int               # > 1: classifier (cross-entropy); 1: regression (MSE)
    builder: Callable[[], nn.Module]
    model_ref: str | None = None    # a MODEL_REF string when one exists (mlp:...)
    note: str = ""

    @property
    def classifier(self) -> bool:
        return self.out_features > 1

    @property
    def loss(self) -> str:
        return "cross_entropy" if self.classifier else "mse"

    def build(self) -> nn.Module:
        return self.builder()


def _mlp_spec(name: str, depth: int, width: int, in_f: int = 100, out_f: int = 1, note: str = "") -> ModelSpec:
    from profiling.model_refs import build_mlp

    ref = f"mlp:in={in_f},depth={depth},width={width},out={out_f}"
    return ModelSpec(name, "mlp", (in_f,), out_f, functools.partial(build_mlp, in_f, depth, width, out_f),
                     model_ref=ref, note=note)


class SmallCNN(nn.Module):
    """Three 3x3 convolutions with ReLU (two of stride 2), global average pool, linear head."""

    def __init__(self, in_ch: int = 3, c1: int = 32, c2: int = 64, classes: int = 10):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(in_ch, c1, 3, padding=1), nn.ReLU(),
            nn.Conv2d(c1, c2, 3, stride=2, padding=1), nn.ReLU(),
            nn.Conv2d(c2, c2, 3, stride=2, padding=1), nn.ReLU(),
            nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.head = nn.Linear(c2, classes)

    def forward(self, x):
        return self.head(self.features(x))


class SmallTransformer(nn.Module):
    """A post-norm transformer encoder on float sequences (batch, seq, d_model), mean-pooled,
    then a linear classifier (float inputs, so ``Scenario(input_shape=(seq, d))`` works)."""

    def __init__(self, d_model: int = 128, nhead: int = 4, ff: int = 256, layers: int = 2, classes: int = 10):
        super().__init__()
        layer = nn.TransformerEncoderLayer(d_model, nhead, ff, dropout=0.0, batch_first=True)
        self.encoder = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.head = nn.Linear(d_model, classes)

    def forward(self, x):
        return self.head(self.encoder(x).mean(dim=1))


def _zoo() -> dict[str, ModelSpec]:
    z = [
        # seed 004 Table 6 shapes (input 100, `Layers` hidden layers of `Layer Size`, 1 output)
        _mlp_spec("mlp-d10-w100", 10, 100, note="seed 004 Table 6 row 2 (wide)"),
        _mlp_spec("mlp-d100-w10", 100, 10, note="seed 004 Table 6 row 1 (deep)"),
        _mlp_spec("mlp-d10-w300", 10, 300, note="seed 004 Table 6 row 10 (wide)"),
        # GPU-bound MLP (large matmuls), classifier
        _mlp_spec("mlp-d4-w4096", 4, 4096, in_f=1024, out_f=10, note="GPU-bound: 4 x 4096 wide, 10 classes"),
        ModelSpec("cnn-small", "cnn", (3, 32, 32), 10, functools.partial(SmallCNN, 3, 32, 64, 10),
                  note="3 conv (32, 64, 64 filters) + GAP + linear, CIFAR-sized input"),
        ModelSpec("transformer-small", "transformer", (64, 128), 10,
                  functools.partial(SmallTransformer, 128, 4, 256, 2, 10),
                  note="2-layer encoder, d_model 128, 4 heads, ff 256, seq 64"),
        # tiny versions for --smoke on CPU
        _mlp_spec("mlp-d2-w16", 2, 16, in_f=32, out_f=1, note="smoke"),
        ModelSpec("cnn-tiny", "cnn", (3, 8, 8), 4, functools.partial(SmallCNN, 3, 4, 8, 4), note="smoke"),
        ModelSpec("transformer-tiny", "transformer", (8, 16), 4,
                  functools.partial(SmallTransformer, 16, 2, 32, 1, 4), note="smoke"),
    ]
    return {s.name: s for s in z}


ZOO = _zoo()
_MLP_NAME = re.compile(r"^mlp-d(\d+)-w(\d+)(?:-i(\d+))?(?:-o(\d+))?$")


def get_spec(name: str) -> ModelSpec:
    """A zoo model by name; any ``mlp-d<depth>-w<width>[-i<in>][-o<out>]`` is also accepted
    (input 100 and 1 output by default, as in seed 004's grid)."""
    if name in ZOO:
        return ZOO[name]
    m = _MLP_NAME.match(name)
    if m:
        d, w, i, o = (int(g) if g else None for g in m.groups())
        return _mlp_spec(name, d, w, in_f=i or 100, out_f=o or 1)
    raise ExanteError(f"unknown model {name!r}; known: {', '.join(ZOO)} or mlp-d<depth>-w<width>[-i<in>][-o<out>]")


def n_params(model: nn.Module) -> int:
    return int(sum(p.numel() for p in model.parameters()))


# --------------------------------------------------------------------------- data and training


def make_dataset(spec: ModelSpec, n: int, device: torch.device, seed: int = 0):
    """Synthetic (X, Y) ON ``device``: X ~ N(0, 1) of shape (n, *input_shape); Y class ids for a
    classifier, N(0, 1) targets of shape (n, out) otherwise."""
    g = torch.Generator(device=device).manual_seed(seed)   # generated on the device itself
    x = torch.randn((n, *spec.input_shape), generator=g, device=device)
    if spec.classifier:
        y = torch.randint(0, spec.out_features, (n,), generator=g, device=device)
    else:
        y = torch.randn((n, spec.out_features), generator=g, device=device)
    return x, y


def loss_fn(spec: ModelSpec) -> Callable:
    return nn.functional.cross_entropy if spec.classifier else nn.functional.mse_loss


def autocast(dtype: str, device: torch.device):
    from profiling.measure.replay import autocast_context

    return autocast_context(dtype, device)


def steps_per_epoch(n: int, batch: int, drop_last: bool = False) -> tuple[int, int]:
    """(full steps, size of the last partial batch or 0)."""
    full, last = divmod(n, batch)
    return full, (0 if drop_last else last)


def train(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, spec: ModelSpec, epochs: int, batch: int,
          optimizer: str, dtype: str = "fp32", drop_last: bool = False,
          on_epoch: Callable[[int], None] | None = None) -> int:
    """Train ``epochs`` epochs: each epoch a fresh ``torch.randperm`` on the device, mini-batches
    gathered with ``index_select`` from the device tensors, the last one partial unless
    ``drop_last``. Returns the number of optimizer steps. ``on_epoch(i)`` runs after epoch i
    (not after the last one)."""
    from profiling.measure.replay import make_optimizer

    dev = x.device
    model.train()
    opt = make_optimizer(optimizer, model.parameters())
    lossf = loss_fn(spec)
    n = x.shape[0]
    stop = n - (n % batch) if drop_last else n
    steps = 0
    for ep in range(epochs):
        perm = torch.randperm(n, device=dev)
        for s in range(0, stop, batch):
            idx = perm[s:s + batch]
            xb = x.index_select(0, idx)
            yb = y.index_select(0, idx)
            opt.zero_grad(set_to_none=True)
            with autocast(dtype, dev):
                loss = lossf(model(xb), yb)
            loss.backward()
            opt.step()
            steps += 1
        if on_epoch is not None and ep < epochs - 1:
            on_epoch(ep)
    return steps


def infer(model: nn.Module, x: torch.Tensor, *, passes: int, batch: int, dtype: str = "fp32",
          on_pass: Callable[[int], None] | None = None) -> int:
    """``passes`` forward passes over ``x`` in order (contiguous slices, last batch partial),
    ``model.eval()`` under ``torch.inference_mode()``. Returns the number of forward calls."""
    dev = x.device
    model.eval()
    n = x.shape[0]
    calls = 0
    with torch.inference_mode():
        for p in range(passes):
            for s in range(0, n, batch):
                with autocast(dtype, dev):
                    model(x[s:s + batch])
                calls += 1
            if on_pass is not None and p < passes - 1:
                on_pass(p)
    return calls


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def warm_up(spec: ModelSpec, model: nn.Module, x, y, *, batch: int, optimizer: str, dtype: str, steps: int,
            last_batch: int = 0, inference: bool = False) -> float:
    """Warm the device up on a COPY of the model (lazy CUDA init, cuBLAS/cuDNN heuristics,
    allocator pools) at the run's batch sizes; returns the steady time per step (s), measured
    over the second half of the warm-up steps."""
    dev = x.device
    m = copy.deepcopy(model)
    steps = max(2, int(steps))
    n = x.shape[0]
    nb = min(batch, n)
    xs, ys = x[:nb], y[:nb]
    try:
        if last_batch:
            if inference:
                infer(m, x[:last_batch], passes=1, batch=last_batch, dtype=dtype)
            else:
                train(m, x[:last_batch], y[:last_batch], spec=spec, epochs=1, batch=last_batch,
                      optimizer=optimizer, dtype=dtype)
        half = steps // 2
        if inference:
            infer(m, xs, passes=steps - half, batch=nb, dtype=dtype)
        else:
            train(m, xs, ys, spec=spec, epochs=steps - half, batch=nb, optimizer=optimizer, dtype=dtype)
        sync(dev)
        t0 = time.perf_counter()
        if inference:
            infer(m, xs, passes=half, batch=nb, dtype=dtype)
        else:
            train(m, xs, ys, spec=spec, epochs=half, batch=nb, optimizer=optimizer, dtype=dtype)
        sync(dev)
        return (time.perf_counter() - t0) / max(1, half)
    finally:
        del m
        free(dev)


def free(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.empty_cache()


# --------------------------------------------------------------------------- measuring session


def _now() -> str:
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
        from profiling.measure.profiler import _cpu_name, hardware_id, open_meter
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
        self.env.setdefault("cpu_name", _cpu_name())
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
        except Exception:
            pass
        env = self.env
        return {
            "hardware": self.hardware, "hardware_detected": self.hardware_detected, "device": str(self.device),
            "meter": env.get("meter"), "meter_measured": env.get("measured"), "idle_power_w": self.idle_power_w,
            "sm_clock_mhz": info.get("sm_clock_mhz"), "temperature_c": info.get("temperature_c"),
            **{k: env.get(k) for k in ("gpu_name", "driver", "power_limit_w", "cpu_name", "torch_version",
                                       "cuda_version", "cudnn_version", "allow_tf32_matmul", "allow_tf32_cudnn",
                                       "python_version", "platform", "protocol_version")},
            "session_id": self.session_id, "date": _now(), "smoke": self.smoke, "script_version": SCRIPT_VERSION,
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
        except Exception:
            pass


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


def _quiet(fn):
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
    out["predicted_at"] = _now()
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
        rep, notes = _quiet(lambda: estimate(sc, predict_fn=_predict_fn(artifact_dir)))
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


# --------------------------------------------------------------------------- tables, budget, CLI


def table(path: str, columns: Sequence[str]) -> schema.CsvTable:
    return schema.CsvTable(path, columns, key_columns=("run_key",))


def read_rows(path: str):
    """The table as a pandas DataFrame (empty when missing)."""
    import pandas as pd

    if not os.path.isfile(path) or os.path.getsize(path) == 0:
        return pd.DataFrame()
    return pd.read_csv(path)


PREDICTIONS = "predictions.json"


def record_prediction(out_dir: str, key: str, pred: dict) -> None:
    """Add ``pred`` under ``key`` to ``<out_dir>/predictions.json`` (read-modify-write under the
    file lock, atomic replace) BEFORE the run is measured: a pre-registered prediction."""
    path = os.path.join(out_dir, PREDICTIONS)
    with schema._locked(path):
        doc = schema.read_json(path, default={}) or {}
        doc[key] = pred
        schema.write_json_atomic(path, doc)


def finish_files(out_dir: str, own_files: Sequence[str], export_dir: str | None) -> list[str]:
    """Remove this script's advisory ``.lock`` files (single writer; the device tool brings back
    at most 8 files) and, with ``export_dir``, copy the script's outputs there (flat)."""
    import shutil

    for name in own_files:
        with contextlib.suppress(OSError):
            os.unlink(os.path.join(out_dir, name + ".lock"))
    copied = []
    if export_dir:
        os.makedirs(export_dir, exist_ok=True)
        for name in own_files:
            src = os.path.join(out_dir, name)
            if os.path.isfile(src) and os.path.abspath(src) != os.path.abspath(os.path.join(export_dir, name)):
                shutil.copyfile(src, os.path.join(export_dir, name))
                copied.append(name)
    return copied


class Budget:
    """``--time-budget-s``: a run is started only if elapsed + its estimated duration fits."""

    def __init__(self, limit_s: float | None):
        self.limit_s = None if limit_s is None or math.isinf(float(limit_s)) else float(limit_s)
        self.t0 = time.monotonic()

    @classmethod
    def from_args(cls, args, default_s: float) -> "Budget":
        """The user's ``--time-budget-s``, else ``default_s`` (none in smoke mode)."""
        if args.time_budget_s is not None:
            return cls(args.time_budget_s)
        return cls(None if args.smoke else default_s)

    def elapsed(self) -> float:
        return time.monotonic() - self.t0

    def exhausted(self, margin_s: float = 1.0) -> bool:
        """No time left to start anything (checked before a run's data, prediction and warm-up)."""
        return self.limit_s is not None and self.elapsed() + margin_s >= self.limit_s

    def fits(self, estimate_s: float) -> bool:
        return self.limit_s is None or self.elapsed() + max(0.0, estimate_s) <= self.limit_s


def common_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--hardware", default="h100", help="predictor hardware id (artifact) and row label (default h100)")
    p.add_argument("--out", required=True, help="output folder (created; results are appended, runs resumed)")
    p.add_argument("--meter", default="nvml", help="nvml | nvml-power | estimated | replay (default nvml)")
    p.add_argument("--device", default="cuda", help="cuda | cuda:N | cpu (default cuda)")
    p.add_argument("--smoke", action="store_true", help="tiny CPU-sized configuration (CI)")
    p.add_argument("--time-budget-s", type=float, default=None,
                   help="start no run that would end past this many seconds from the start (default: the "
                        "script's own, sized for the GPU session; none with --smoke; 'inf' for no limit)")
    p.add_argument("--artifact-dir", default=None,
                   help="folder with <hardware>.joblib/.json (else $EXANTE_ARTIFACT_DIR, then the package's)")
    p.add_argument("--rated-power-w", type=float, default=None, help="power of the 'estimated'/'replay' meter")
    p.add_argument("--dtype", default="fp32", choices=("fp32", "bf16"))
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--idle-s", type=float, default=None, help="idle-power window (default 3 s; smoke 0.05 s)")
    p.add_argument("--export", default=None, metavar="DIR",
                   help="at the end, copy this script's output files (at most 7, flat) to DIR, e.g. \"$OUT\"")
    p.add_argument("--analyse-only", action="store_true",
                   help="measure nothing (no GPU needed): rebuild the summaries, fits and plots from the rows in --out")
    p.add_argument("--repredict", action="store_true",
                   help="measure nothing (no GPU needed): recompute the predictions of the rows already in --out "
                        "with the current artifact; writes *_repredicted.* files beside them, each row's note "
                        "saying the prediction was made after the measurement")


def open_session(args) -> Session:
    idle = args.idle_s if args.idle_s is not None else (0.05 if args.smoke else 3.0)
    settle = 0.0 if args.smoke else 2.0
    return Session(meter=args.meter, device=args.device, hardware=args.hardware, rated_power_w=args.rated_power_w,
                   idle_s=idle, settle_s=settle, smoke=args.smoke)


REPREDICTED = "re-predicted after the measurement"


def repredicted_name(path: str) -> str:
    root, ext = os.path.splitext(path)
    return f"{root}_repredicted{ext}"


def repredict_table(src: str, columns: Sequence[str], predict_row: Callable[[dict], dict]) -> str:
    """Rewrite the rows of ``src`` with fresh predictions into ``<src>_repredicted.csv``
    (measurements untouched; comparisons recomputed; notes prefixed with REPREDICTED).
    ``predict_row(row)`` gets the raw CSV row and returns PREDICTION_COLUMNS-like keys."""
    rows = table(src, columns).read(raw=True)
    out = []
    for r in rows:
        pred = predict_row(r)
        new = dict(r)
        new.update({k: v for k, v in pred.items() if k in columns})
        note = new.get("prediction_note") or ""
        new["prediction_note"] = REPREDICTED + (f"; {note}" if note else "")
        e = float(r["energy_j"])
        c = compare(e, pred.get("pred_energy_j"), pred.get("pred_energy_j_low"), pred.get("pred_energy_j_high"))
        new.update(pred_ratio=c["ratio"], pred_error_pct=c["error_pct"], in_interval=c["in_interval"])
        if "time_ratio" in columns:
            t = float(r["time_s"])
            new["time_ratio"] = compare(t, pred.get("pred_time_s"))["ratio"]
        out.append(new)
    dst = repredicted_name(src)
    tab = table(dst, columns)
    schema._write_atomic_bytes(dst, [tab._encode(out, with_header=True)])
    print(f"re-predicted {len(out)} rows of {os.path.basename(src)} -> {os.path.basename(dst)}")
    return dst


def describe(exc: BaseException) -> str:
    """One line naming a failed run's exception (the run is recorded as failed, the script goes
    on; a CUDA out-of-memory error, say, must not lose the runs after it)."""
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        with contextlib.suppress(Exception):
            torch.cuda.empty_cache()
    msg = str(exc).splitlines()[0] if str(exc) else ""
    return f"{type(exc).__name__}: {msg}"[:300]


def attempt(status: dict, key: str, fn: Callable[[], Any], *, cleanup: Callable[[], None] | None = None):
    """Run one measurement; a failure (OOM, refusal) is recorded in ``status["failed"]`` and
    printed, and ``None`` is returned so the caller goes on with the next run. A ``None``
    result (the time budget ran out mid-run) is recorded in ``status["skipped_budget"]``."""
    try:
        result = fn()
    except Exception as exc:  # noqa: BLE001 - OOM, refusals: record, go on
        msg = describe(exc)
        status["failed"].append({"run": key, "error": msg})
        print(f"failed: {key}: {msg}", file=sys.stderr)
        return None
    finally:
        if cleanup is not None:
            cleanup()
    if result is None:
        status["skipped_budget"].append(key)
    return result


def post_analysis(fn: Callable, *args) -> int:
    """Run the summary/plot step; the measured rows are already saved, so a failure here
    (a missing plotting/pandas library, say) is reported and gives exit status 3, not a crash."""
    try:
        fn(*args)
    except Exception as exc:  # noqa: BLE001
        print(f"warning: the analysis step failed ({type(exc).__name__}: {exc}); the measured rows are saved; "
              f"rerun the script (nothing is re-measured) to rebuild the summaries", file=sys.stderr)
        return 3
    return 0


def write_status(out_dir: str, name: str, status: dict) -> None:
    schema.write_json_atomic(os.path.join(out_dir, name), status)


def fmt(v, spec: str = ".4g") -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "-"
    try:
        return format(float(v), spec)
    except (TypeError, ValueError):
        return str(v)


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return "\n".join(lines) + "\n"


def nan_to_none(v):
    try:
        if v is None or (isinstance(v, float) and math.isnan(v)):
            return None
    except TypeError:
        pass
    return v


def dumps(obj) -> str:
    return json.dumps(obj, separators=(",", ":"))
