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
import json
import math
import os
import sys
import time
from typing import Any, Callable, Sequence

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

import torch  # noqa: E402

from experiments.lifecycle.lc_models import (  # noqa: E402
    ZOO,
    ModelSpec,
    SmallCNN,
    SmallTransformer,
    autocast,
    free,
    get_spec,
    infer,
    loss_fn,
    make_dataset,
    n_params,
    steps_per_epoch,
    sync,
    train,
    warm_up,
)
from experiments.lifecycle.lc_session import (  # noqa: E402
    NO_PREDICTION,
    PREDICTION_COLUMNS,
    PROVENANCE_COLUMNS,
    SCRIPT_VERSION,
    Session,
    artifact_status,
    compare,
    now_iso,
    predict_run,
    quiet_warnings,
)
from profiling.dataset import schema  # noqa: E402
from profiling.dataset.atomic import file_lock, write_atomic_chunks  # noqa: E402
from profiling.errors import ExanteError  # noqa: E402

# the scripts use this module as ``L``: the zoo and training loops (lc_models), the session and
# predictions (lc_session), and the tables, budget and CLI below
__all__ = [
    "artifact_status",
    "autocast",
    "compare",
    "free",
    "get_spec",
    "infer",
    "loss_fn",
    "make_dataset",
    "ModelSpec",
    "n_params",
    "NO_PREDICTION",
    "now_iso",
    "predict_run",
    "PREDICTION_COLUMNS",
    "PROVENANCE_COLUMNS",
    "quiet_warnings",
    "SCRIPT_VERSION",
    "Session",
    "SmallCNN",
    "SmallTransformer",
    "steps_per_epoch",
    "sync",
    "train",
    "warm_up",
    "ZOO",
    "ExanteError",
    "schema",
]

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
    with file_lock(path):
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
    write_atomic_chunks(dst, [tab.encode(out, with_header=True)])
    print(f"re-predicted {len(out)} rows of {os.path.basename(src)} -> {os.path.basename(dst)}")
    return dst


def describe(exc: BaseException) -> str:
    """One line naming a failed run's exception (the run is recorded as failed, the script goes
    on; a CUDA out-of-memory error, say, must not lose the runs after it)."""
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        with contextlib.suppress(Exception):  # cache release after a failed run, best effort
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
