"""``exante bench zeus DIR``: epoch energy of the Zeus (NSDI '23) traces from datasheets alone.

DIR is laid out like ``extdata/zeus_nsdi23``: ``summary_power_<gpu>.csv`` files (columns
dataset, network, batch_size, optimizer, power_limit, time_per_epoch, average_power; one
training epoch per row, GPU power from NVML).  For every file whose ``<gpu>`` the hardware
catalogue knows (a variant whose TDP equals the file's maximum power limit is preferred, e.g.
``v100`` at 250 W -> ``v100-pcie``), the rows at the card's maximum power limit are predicted:

1. **datasheet**: the measured H100 physics model transferred to the GPU by its datasheet
   (:mod:`predictor.engine.transfer`); epoch = (samples // batch) steps at ``batch`` + one step at the
   remainder, each step an eager fp32 ``train_step`` of the network
   (:mod:`predictor.bench.zeus_models`);
2. **calibrated**: the same after :func:`predictor.fit.calibrate.calibrate` on 3 of the GPU's
   rows chosen to span the regimes (:func:`_pick_calibration`: the most host-bound row by
   the datasheet model, the most GPU-bound row of another network, the median-batch row of
   the remaining network);
3. **TDP x time**: the ML CO2 calculator's method, TDP x the *measured* epoch time;
4. **FLOPs x constant**: training FLOPs per epoch x one J/FLOP constant fitted on the same
   3 calibration rows (geometric mean).

MAPE of epoch energy (J = time_per_epoch x average_power) over the rows *not* used for
calibration (``n``; all four methods on the same rows); ``datasheet_mape_all_rows_pct`` covers
every row.  Assumptions (also in the report): the traces' PyTorch (1.x, 2021-22) ran
optimizers as per-parameter loops (``--optimizer-impl for-loop``, default) -- Adadelta with
11 elementwise ops per tensor, Adam 9, AdamW 10, SGD-momentum 3, with the traffic of those
ops (:data:`OPT_LOOP_BYTES`; with ``foreach``, Adadelta's traffic is counted as Adam's).
SQuAD features are taken as padded to 384 tokens (see experiments/zeus/README.md for why
the traces more likely padded dynamically).  Data loading, validation
and host CPU differences are not modelled (they are what calibration absorbs).
Skipped: deepspeech2 and NCF (no faithful torch definition here), sentiment140/BERT (dynamic
padding to each batch's longest tweet, up to 128 tokens, and an epoch over a 425k-tweet
Capriccio slice or the 1.6M-tweet set: neither sequence length nor epoch size is known).
"""

from __future__ import annotations

import math
import re
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

from predictor.carbon.hardware import catalogue, lookup
from predictor.cli.progress import bar
from profiling.errors import ExanteError

__all__ = ["run_zeus_bench", "load_power_traces", "resolve_gpu", "OPT_LOOP_OPS",
           "OPT_LOOP_BYTES", "SKIPPED_NETWORKS"]

_FILE_RE = re.compile(r"^summary_power_(.+)\.csv$")
_COLUMNS = ("dataset", "network", "batch_size", "optimizer", "power_limit", "time_per_epoch",
            "average_power")
#: torch 1.x single-tensor optimizer: elementwise ops (kernels) per parameter tensor per step
OPT_LOOP_OPS = {"adadelta": 11, "adam": 9, "adamw": 10, "sgd": 3}
#: ... and their memory traffic, bytes per fp32 parameter: 8 per unary in-place op (read,
#: write), 12 per binary one, summed over torch 1.x's ``_functional`` loops (Adadelta: mul_,
#: addcmul_, add, sqrt_, add, sqrt_, div_, mul_, add_, mul_, addcmul_; Adam: mul_, add_,
#: mul_, addcmul_, sqrt, div, add_, addcdiv_ (16); AdamW: + the decoupled decay mul_;
#: SGD-momentum: mul_, add_, add_)
OPT_LOOP_BYTES = {"adadelta": 108.0, "adam": 84.0, "adamw": 92.0, "sgd": 32.0}
#: the optimizer whose foreach lowering stands in for each trace optimizer
_OPT_PROXY = {"adadelta": "adam", "adam": "adam", "adamw": "adamw", "sgd": "sgd"}
SKIPPED_NETWORKS = {
    ("librispeech", "deepspeech2"): "no faithful torch definition of Zeus's DeepSpeech2 here",
    ("movielens-1m", "ncf"): "no faithful torch definition of Zeus's NCF here",
    ("sentiment140", "bert_base_uncased"): "dynamic padding (each batch's longest tweet, <= 128 "
    "tokens) and an ambiguous epoch size (425k-tweet Capriccio slice or 1.6M): not rebuildable",
}
N_CALIB = 3


def load_power_traces(folder: str | Path) -> dict:
    """``{gpu: DataFrame}`` of every ``summary_power_<gpu>.csv`` in ``folder``."""
    import pandas as pd

    d = Path(folder)
    if not d.is_dir():
        raise ExanteError(f"{d} is not a folder (expected one holding summary_power_<gpu>.csv "
                          "files, laid out like extdata/zeus_nsdi23)")
    out = {}
    for f in sorted(d.iterdir()):
        m = _FILE_RE.match(f.name)
        if not m:
            continue
        try:
            frame = pd.read_csv(f)
        except (UnicodeDecodeError, pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
            raise ExanteError(f"cannot read {f} as CSV ({type(exc).__name__}: "
                              f"{str(exc)[:80]}); expected columns {', '.join(_COLUMNS)}") from None
        missing = [c for c in _COLUMNS if c not in frame.columns]
        if missing:
            raise ExanteError(f"{f.name} lacks column(s) {', '.join(missing)}; expected "
                              f"{', '.join(_COLUMNS)}")
        out[m.group(1)] = frame
    if not out:
        raise ExanteError(f"no summary_power_<gpu>.csv file in {d}")
    return out


def resolve_gpu(name: str, max_power_w: float):
    """(catalogue spec, note) for a trace's GPU name; the variant whose TDP equals the
    trace's maximum power limit is preferred.  ExanteError when the catalogue lacks it."""
    spec = lookup(name)
    family = [s for s in catalogue() if s.key == spec.key or s.key.startswith(spec.key + "-")]
    match = [s for s in family if s.tdp_w and abs(s.tdp_w - max_power_w) < 0.5]
    if match and match[0].key != spec.key:
        return match[0], (f"{name}: maximum power limit {max_power_w:g} W matches "
                          f"{match[0].key} ({match[0].tdp_w:g} W), not {spec.key}")
    note = "" if spec.tdp_w and abs(spec.tdp_w - max_power_w) < 0.5 else (
        f"{name}: maximum power limit {max_power_w:g} W differs from {spec.key}'s TDP "
        f"{spec.tdp_w} W")
    return spec, note


def _forloop(lw, optimizer: str, n_tensors: int, n_params: float):
    """A lowered train step whose optimizer runs torch 1.x's per-tensor loop: every
    (op, tensor) pair is one Python-level aten call (dispatch) and one kernel launch, and the
    loop's traffic is :data:`OPT_LOOP_BYTES` per parameter."""
    from predictor.engine.lowering import HOST_FEATURES

    ops = OPT_LOOP_OPS[optimizer]
    host = lw.host.copy()
    ix = {h: i for i, h in enumerate(HOST_FEATURES)}
    n = float(ops * n_tensors)
    host[ix["opt_launch"]] = 0.0
    host[ix["opt_op"]] = 0.0
    host[ix["disp"]] += n
    host[ix["kern"]] += n
    kern = lw.kern.copy()
    kern[lw.layer == -1] = n
    nbytes = lw.bytes.copy()
    nbytes[lw.layer == -1] = OPT_LOOP_BYTES[optimizer] * n_params / max(
        float(np.sum(lw.layer == -1)), 1.0)
    return replace(lw, host=host, kern=kern, bytes=nbytes)


def _step(model, dataset, network, batch, optimizer, impl, cache):
    from predictor.bench.zeus_models import network_inputs
    from predictor.engine.lowering import lower
    from predictor.engine.predict import capture_workload

    key = (dataset, network, batch, optimizer, impl)
    if key not in cache:
        w = capture_workload(model, network_inputs(dataset, network, batch), "train_step", "fp32",
                             _OPT_PROXY[optimizer])
        lw = lower(w)
        if impl == "for-loop":
            lw = _forloop(lw, optimizer, len(w.param_numels), float(sum(w.param_numels)))
        cache[key] = lw
    return cache[key]


def _mape(rows: list[dict], pred: str, true: str = "energy_j") -> float:
    """MAPE (%) of column ``pred`` against column ``true`` over ``rows`` (nan if none)."""
    p = np.array([r[pred] for r in rows], float)
    t = np.array([r[true] for r in rows], float)
    return float(np.mean(np.abs(p / t - 1.0)) * 100) if len(t) else float("nan")


def _pick_calibration(rows: list[dict], n: int, host_share=None) -> list[int]:
    """Indices of ``n`` calibration rows that span the regimes the few-shot scales need.

    ``host_share[i]`` is the datasheet model's host time / GPU time of row ``i`` (None: every
    row counts as equally GPU-bound).  Picked in order: the most host-bound row (it pins the
    host and active-idle scales), the most GPU-bound row of another network (busy power and
    GPU efficiency), then the median-batch row of each remaining network, largest network
    first (its kernel mix: matmul vs conv); more rows alternate the extremes of the networks
    already used.  A median-batch row of every network (the earlier rule) sits between host-
    and GPU-bound on small networks, so host and GPU scales could not be told apart."""
    n = min(n, len(rows))
    share = list(host_share) if host_share is not None else [0.0] * len(rows)
    by: dict = {}
    for i, r in enumerate(rows):
        by.setdefault(r["network"], []).append(i)
    for k in by:
        by[k].sort(key=lambda i: rows[i]["batch_size"])
    pick: list[int] = []

    def add(i):
        if i is not None and i not in pick and len(pick) < n:
            pick.append(i)

    order = sorted(range(len(rows)), key=lambda i: (share[i], rows[i]["batch_size"]))
    if host_share is not None and n:
        a = order[-1]
        add(a)
        add(next((i for i in order if rows[i]["network"] != rows[a]["network"]), None))
    used = {rows[i]["network"] for i in pick}
    for net in sorted(by, key=lambda k: (-len(by[k]), k)):
        if net not in used:
            idx = by[net]
            add(idx[len(idx) // 2])
    for idx in sorted(by.values(), key=len, reverse=True):
        for i in (idx[0], idx[-1]) + tuple(idx):
            add(i)
    return sorted(pick)


def run_zeus_bench(folder, *, n_calib: int = N_CALIB, optimizer_impl: str = "for-loop",
                   progress=None) -> dict:
    """The report of ``exante bench zeus`` (see the module docstring)."""
    if optimizer_impl not in ("for-loop", "foreach"):
        raise ExanteError(f"unknown --optimizer-impl {optimizer_impl!r}; accepted: for-loop, foreach")
    t0 = time.perf_counter()
    traces = load_power_traces(folder)      # the folder is checked before torch loads
    from predictor.bench.zeus_models import ZEUS_NETWORKS, build_network
    from predictor.engine.transfer import transferred_artifact
    from predictor.fit.calibrate import Run, calibrate
    models: dict = {}
    cache: dict = {}
    per_gpu: dict = {}
    skipped_gpus: dict = {}
    all_rows: list = []
    notes: list[str] = []
    skipped_rows: dict = {}

    for gpu, frame in bar(list(traces.items()), desc="GPUs", unit="gpu"):
        pmax = float(frame["power_limit"].max())
        try:
            spec, note = resolve_gpu(gpu, pmax)
        except ExanteError as exc:
            skipped_gpus[gpu] = f"not in the hardware catalogue ({exc})"
            continue
        if note:
            notes.append(note)
        try:
            art = transferred_artifact(spec.key)
        except ExanteError as exc:
            skipped_gpus[gpu] = str(exc)
            continue
        base = art.model
        top = frame[frame["power_limit"] == pmax]
        rows = []
        for r in top.to_dict("records"):
            net = (str(r["dataset"]), str(r["network"]))
            if net not in ZEUS_NETWORKS:
                why = SKIPPED_NETWORKS.get(net, "network not rebuilt here")
                skipped_rows.setdefault(f"{net[0]}/{net[1]}", {"reason": why, "rows": {}})
                skipped_rows[f"{net[0]}/{net[1]}"]["rows"][gpu] = \
                    skipped_rows[f"{net[0]}/{net[1]}"]["rows"].get(gpu, 0) + 1
                continue
            opt = str(r["optimizer"]).lower()
            if opt not in OPT_LOOP_OPS:
                raise ExanteError(f"summary_power_{gpu}.csv: unknown optimizer {opt!r}; "
                                  f"accepted: {', '.join(OPT_LOOP_OPS)}")
            if net not in models:
                if progress:
                    progress(f"building {net[0]}/{net[1]}")
                models[net] = build_network(*net)
            b = int(r["batch_size"])
            samples = ZEUS_NETWORKS[net]["samples"]
            full, rem = divmod(samples, b)
            parts = [(_step(models[net], *net, b, opt, optimizer_impl, cache), float(full))]
            if rem:
                parts.append((_step(models[net], *net, rem, opt, optimizer_impl, cache), 1.0))
            t_m = float(r["time_per_epoch"])
            rows.append({"gpu": gpu, "hardware": spec.key, "dataset": net[0], "network": net[1],
                         "batch_size": b, "optimizer": opt, "power_limit_w": pmax,
                         "time_s": t_m, "energy_j": t_m * float(r["average_power"]),
                         "flops": float(sum((lw.flops * lw.mult).sum() * n for lw, n in parts)),
                         "_run": Run(parts, t_m, t_m * float(r["average_power"]),
                                     label=f"{net[1]} b{b}")})
        if not rows:
            skipped_gpus[gpu] = "no row of a rebuilt network at the maximum power limit"
            continue
        if progress:
            progress(f"{gpu} -> {spec.key}: {len(rows)} rows, calibrating on {n_calib}")
        from predictor.fit.calibrate import predict_runs, run_regimes

        runs = [r["_run"] for r in rows]
        ds_pred = predict_runs(base, runs)
        cal_idx = _pick_calibration(rows, min(n_calib, len(rows)), run_regimes(base, runs))
        cal = calibrate(base, [runs[i] for i in cal_idx])
        cal_pred = predict_runs(cal, runs)
        c = math.exp(np.mean([math.log(rows[i]["energy_j"] / rows[i]["flops"]) for i in cal_idx]))
        for i, r in enumerate(rows):
            r.update(datasheet_time_s=float(ds_pred[i, 0]), datasheet_energy_j=float(ds_pred[i, 1]),
                     calibrated_time_s=float(cal_pred[i, 0]),
                     calibrated_energy_j=float(cal_pred[i, 1]),
                     tdp_proxy_energy_j=float(spec.tdp_w) * r["time_s"],
                     flops_proxy_energy_j=c * r["flops"], calibration_row=i in cal_idx)
        ev = [r for r in rows if not r["calibration_row"]]
        if art.manifest.get("measured") and spec.key in (art.manifest.get("joint_gpus") or ()):
            notes.append(f"{gpu}: the shipped {spec.key} model was fitted on these traces, so its "
                         "'datasheet' numbers are in-sample; leave-one-GPU-out numbers are in "
                         "experiments/multigpu/results")
        per_gpu[gpu] = {
            "datasheet_mape_pct": _mape(ev, "datasheet_energy_j"),
            "calibrated_mape_pct": _mape(ev, "calibrated_energy_j"),
            "tdp_proxy_mape_pct": _mape(ev, "tdp_proxy_energy_j"),
            "flops_proxy_mape_pct": _mape(ev, "flops_proxy_energy_j"),
            "n": len(ev),
            "datasheet_mape_all_rows_pct": _mape(rows, "datasheet_energy_j"),
            "datasheet_time_mape_all_rows_pct": _mape(rows, "datasheet_time_s", "time_s"),
            "n_all": len(rows), "hardware": spec.key, "tdp_w": spec.tdp_w,
            "power_limit_w": pmax, "transferred_from": getattr(base, "source", base.hardware),
            # the shipped model of this GPU was fitted on these traces: "datasheet" numbers
            # are then in-sample (held-out ones: experiments/multigpu, leave-one-GPU-out)
            "in_sample": bool(art.manifest.get("measured"))
            and spec.key in (art.manifest.get("joint_gpus") or ()),
            "calibration_rows": [f"{rows[i]['network']} b{rows[i]['batch_size']}"
                                 for i in cal_idx],
            "calibration_scales": {k: math.exp(v) for k, v in
                                   cal.info["calibration"]["scales_log"].items()},
            "flops_proxy_j_per_flop": c,
            "per_network": {
                net: {"n": len(sub), "datasheet_mape_pct": _mape(sub, "datasheet_energy_j"),
                      "calibrated_mape_pct": _mape(sub, "calibrated_energy_j"),
                      "datasheet_time_mape_pct": _mape(sub, "datasheet_time_s", "time_s")}
                for net in sorted({r["network"] for r in ev})
                for sub in [[r for r in ev if r["network"] == net]]},
        }
        all_rows += rows
    if not per_gpu:
        raise ExanteError("no GPU of " + str(folder) + " could be predicted: " + "; ".join(
            f"{g}: {why}" for g, why in skipped_gpus.items()))
    for r in all_rows:
        r.pop("_run")
    return {"dir": str(folder), "per_gpu": per_gpu, "skipped_gpus": skipped_gpus,
            "skipped_networks": skipped_rows, "notes": notes, "optimizer_impl": optimizer_impl,
            "n_calibration_rows": n_calib, "metric": "MAPE of epoch energy (time_per_epoch x "
            "average_power) at the card's maximum power limit, over rows not used for calibration",
            "assumptions": [
                "eager fp32 PyTorch train steps; epoch = samples // batch steps + a remainder step",
                f"optimizer implementation: {optimizer_impl} (torch 1.x ran per-tensor loops)",
                "for-loop optimizer traffic per parameter: " + ", ".join(
                    f"{k} {v:g} B" for k, v in OPT_LOOP_BYTES.items())
                + " (foreach: Adadelta counted as Adam)",
                "CIFAR-100 ShuffleNet V2 as in Zeus's example (weiaicunzai/pytorch-cifar100)",
                "SQuAD: 384-token sequences, 88,524 features per epoch",
                "data loading, validation and the host CPU are not modelled"],
            "rows": all_rows, "elapsed_s": round(time.perf_counter() - t0, 1)}
