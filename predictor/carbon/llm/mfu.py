"""Ex-ante model-FLOPs utilisation (MFU) of LLM training, from published runs.

MFU here is ``6·N·D / (device_hours · 3600 · peak)`` with ``N`` the (activated) parameters,
``D`` the tokens and ``peak`` the device's dense bf16 rate (fp16 where the device has no bf16).
Two flavours:

- ``"published"`` (the default): what the papers' *published device-hours* imply. Those hours
  include restarts, failed steps, evaluation and downtime, so this is what to use to predict
  the hours (and energy) of a whole run.
- ``"training"``: MFU while training (what throughput logs report) = published MFU / goodput,
  the goodput being the median ratio over the runs that report both.

The table ``predictor/data/llm_mfu.csv`` is fitted by ``experiments/calculator/derive_mfu.py``
from ``predictor/data/llm_runs.csv`` (one cited row per run): per device generation, the
median published MFU; ``params_slope`` a shared slope of log MFU on log10 params (0 when the
leave-one-run-out check did not favour it); the interval from the 5th/95th percentiles of the
leave-one-run-out log residuals.
"""

from __future__ import annotations

import csv
import io
import math
import statistics
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from typing import Any

from predictor.carbon.hardware import lookup
from predictor.carbon.interval_fields import interval_ends
from predictor.engine.interval import Interval
from profiling.errors import ExanteError

FLAVOURS = ("published", "training")
POOLED = "all"
REF_LOG10_PARAMS = 10.5          # centre of the params slope (about 30 B)
TRAIN_FLOPS_PER_PARAM_TOKEN = 6.0
INTERVAL_LEVEL = 0.9      # the default's interval: 5-95 % of the leave-one-run-out residuals


@dataclass(frozen=True)
class MFUEstimate:
    """A model-FLOPs utilisation in (0, 1] with its interval (``utilisation``; ``mfu``,
    ``mfu_low``, ``mfu_high`` read it); ``source`` says where it came from."""

    utilisation: Interval
    flavour: str
    source: str

    mfu, mfu_low, mfu_high = interval_ends("utilisation")


@dataclass(frozen=True)
class Run:
    """One published training run (a row of ``llm_runs.csv``)."""

    run: str
    params: float
    flops_params: float      # activated parameters (MoE) or params
    tokens: float | None      # None when the paper gives total FLOPs instead
    flops: float | None       # published total training FLOPs (else 6·N·D)
    device: str
    generation: str
    peak_tflops: float
    device_hours: float
    mfu_reported: float | None
    row: dict

    @property
    def train_flops(self) -> float:
        """Training FLOPs: the published total, else 6·N·D."""
        if self.flops is not None:
            return self.flops
        if self.tokens is None:
            raise ExanteError(f"published run {self.run}: neither flops nor tokens given")
        return TRAIN_FLOPS_PER_PARAM_TOKEN * self.flops_params * self.tokens

    @property
    def mfu_published(self) -> float:
        """MFU implied by the published device-hours (0-1)."""
        return self.train_flops / (self.device_hours * 3600.0 * self.peak_tflops * 1e12)


def _f(text) -> float | None:
    text = (text or "").strip()
    return float(text) if text else None


def _need(row: dict, key: str) -> float:
    v = _f(row.get(key))
    if v is None:
        raise ExanteError(f"published run {row.get('run')!r}: {key} is missing")
    return v


def load_runs(text: str | None = None) -> list[Run]:
    """The published runs (package ``llm_runs.csv`` unless ``text`` is given)."""
    if text is None:
        text = resources.files("predictor.data").joinpath("llm_runs.csv").read_text("utf-8")
    out = []
    for row in csv.DictReader(io.StringIO(text)):
        spec = lookup(row["device"])
        dtype, _ = spec.training_dtype("bf16")
        n = _need(row, "params")
        out.append(Run(row["run"], n, _f(row.get("active_params")) or n, _f(row["tokens"]),
                       _f(row.get("flops")), spec.key, spec.generation, spec.peak(dtype),
                       _need(row, "device_hours"), _f(row.get("mfu_reported")), row))
    return out


# ------------------------------------------------------------------------------ fitting
def _quantile(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    if len(xs) == 1:
        return xs[0]
    pos = q * (len(xs) - 1)
    lo = int(math.floor(pos))
    hi = min(lo + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (pos - lo)


def fit_table(runs: list[Run], *, slope: bool) -> dict:
    """``{"by_gen": {gen: log-MFU intercept}, "pooled": .., "slope": ..}`` (log-space medians
    of the runs' MFU after removing the shared params slope)."""
    x = {r.run: math.log10(r.flops_params) - REF_LOG10_PARAMS for r in runs}
    y = {r.run: math.log(r.mfu_published) for r in runs}
    b = 0.0
    if slope:  # within-generation least squares on demeaned values
        num = den = 0.0
        for gen in {r.generation for r in runs}:
            grp = [r for r in runs if r.generation == gen]
            if len(grp) < 2:
                continue
            mx = statistics.fmean(x[r.run] for r in grp)
            my = statistics.fmean(y[r.run] for r in grp)
            num += sum((x[r.run] - mx) * (y[r.run] - my) for r in grp)
            den += sum((x[r.run] - mx) ** 2 for r in grp)
        b = num / den if den > 0 else 0.0
    adj = {r.run: y[r.run] - b * x[r.run] for r in runs}
    by_gen = {gen: statistics.median(adj[r.run] for r in runs if r.generation == gen)
              for gen in {r.generation for r in runs}}
    return {"by_gen": by_gen, "pooled": statistics.median(adj.values()), "slope": b,
            "n_by_gen": {g: sum(r.generation == g for r in runs) for g in by_gen}}


def predict_log_mfu(table: dict, generation: str, flops_params: float) -> tuple[float, str]:
    """(log MFU, the generation used or the pooled key) for ``flops_params`` parameters."""
    x = math.log10(flops_params) - REF_LOG10_PARAMS
    if generation in table["by_gen"]:
        return table["by_gen"][generation] + table["slope"] * x, generation
    return table["pooled"] + table["slope"] * x, POOLED


def loro_residuals(runs: list[Run], *, slope: bool) -> dict[str, float]:
    """Leave-one-run-out log residuals ``log(published MFU / predicted)`` per run."""
    out = {}
    for r in runs:
        rest = [o for o in runs if o.run != r.run]
        t = fit_table(rest, slope=slope)
        out[r.run] = math.log(r.mfu_published) - predict_log_mfu(t, r.generation,
                                                                  r.flops_params)[0]
    return out


def goodput(runs: list[Run]) -> tuple[float, int]:
    """Median of published MFU / reported MFU over runs reporting both (1.0 if none)."""
    ratios = [r.mfu_published / r.mfu_reported for r in runs if r.mfu_reported]
    return (statistics.median(ratios), len(ratios)) if ratios else (1.0, 0)


# ------------------------------------------------------------------------------ the shipped table
@lru_cache(maxsize=None)
def shipped_table() -> dict:
    """The fitted table in package data (see ``experiments/calculator/derive_mfu.py``)."""
    text = resources.files("predictor.data").joinpath("llm_mfu.csv").read_text("utf-8")
    rows = list(csv.DictReader(io.StringIO(text)))
    t: dict[str, Any] = {"by_gen": {}, "n_by_gen": {}, "pooled": None, "slope": None, "q_low": None,
         "q_high": None, "goodput": None, "source": None}
    for row in rows:
        gen = row["generation"]
        if gen == POOLED:
            t["pooled"] = math.log(float(row["mfu_published"]))
        else:
            t["by_gen"][gen] = math.log(float(row["mfu_published"]))
            t["n_by_gen"][gen] = int(row["n_runs"])
        t["slope"] = float(row["params_slope"])
        t["q_low"], t["q_high"] = float(row["log_resid_q05"]), float(row["log_resid_q95"])
        t["goodput"] = float(row["goodput"])
        t["source"] = row["source"]
    return t


def default_mfu(spec, flops_params: float | None, *, flavour: str = "published") -> MFUEstimate:
    """The ex-ante MFU of training on ``spec`` (a :class:`~predictor.carbon.hardware.HardwareSpec`)
    for a model of ``flops_params`` (activated) parameters (None: the generation's median)."""
    if flavour not in FLAVOURS:
        raise ExanteError(f"mfu flavour must be one of {', '.join(FLAVOURS)}, got {flavour!r}")
    t = shipped_table()
    n = flops_params if flops_params else 10 ** REF_LOG10_PARAMS
    log_m, used = predict_log_mfu(t, spec.generation, n)
    if used == POOLED:
        basis = (f"no published run on {spec.generation or spec.name}: pooled median of "
                 f"{sum(t['n_by_gen'].values())} runs")
    else:
        basis = f"median of {t['n_by_gen'][used]} published {used} runs"
    if t["slope"]:
        basis += f", params slope {t['slope']:+.3f} per decade"
    lo, hi = log_m + t["q_low"], log_m + t["q_high"]
    what = "hours as published (incl. restarts and downtime)"
    if flavour == "training":
        g = t["goodput"]
        log_m, lo, hi = (v - math.log(g) for v in (log_m, lo, hi))
        what = f"while training (published / goodput {g:.3f})"
    clip = lambda v: min(1.0, math.exp(v))  # noqa: E731
    return MFUEstimate(Interval(clip(log_m), clip(lo), clip(hi), INTERVAL_LEVEL), flavour,
                       f"ex-ante default, {what}: {basis}; interval = 5-95 % of the "
                       f"leave-one-run-out residuals ({t['source']})")
