"""ML.ENERGY v3 leaderboard export: LLM serving energy per output token, leave-one-model-out.

Reads every ``tasks/*.json`` of a folder laid out like ``shared/extdata/mlenergy_v3`` whose
configurations carry ``energy_per_token_joules`` (LLM and multimodal-LLM tasks; diffusion tasks
are skipped). For each held-out model (``-FP8`` variants count as the same model) the serving
model of :mod:`predictor.carbon.llm.serving` is fitted on the other models -- per GPU type the
roofline coefficient ``a``, a fixed time per decode step, a time per output token and an
all-reduce time per output token paid by ``num_gpus - 1`` devices, plus one
prompt-energy coefficient per task (the prompt lengths are not in the export) -- minimising
the mean absolute relative error (non-negative, iteratively reweighted least squares), and
predicts the held-out rows from their configuration only (params, activated params, weight
precision, GPU, GPU count, ``max_num_seqs`` as the concurrency, the task's mean output
length). Proxies, same split: TDP × measured time (``num_gpus · TDP / output throughput``;
it needs the measured time) and params-linear (``c · activated params``).
"""

from __future__ import annotations

import json
import statistics
from pathlib import Path

import numpy as np
from scipy.optimize import nnls

from predictor.carbon.hardware import lookup
from predictor.carbon.llm import serving
from predictor.carbon.llm.serving import COEFFICIENTS
from profiling.errors import ExanteError

GPU_KEYS = {"H100": "h100", "B200": "b200", "A100": "a100-80gb", "H200": "h200"}


def load_rows(folder) -> list[dict]:
    """One row per ML.ENERGY LLM configuration: measured J per output token (``y``) and the
    roofline features (J per token at a = 1)."""
    d = Path(folder)
    files = sorted((d / "tasks").glob("*.json")) if (d / "tasks").is_dir() else sorted(d.glob("*.json"))
    if not files:
        raise ExanteError(f"{folder}: no tasks/*.json (expected the ML.ENERGY leaderboard export)")
    rows = []
    for f in files:
        try:
            doc = json.loads(f.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as e:
            raise ExanteError(f"{f}: not readable JSON ({e})") from None
        for c in doc.get("configurations", []) if isinstance(doc, dict) else []:
            if c.get("energy_per_token_joules") is None or c.get("gpu_model") not in GPU_KEYS:
                continue
            spec = lookup(GPU_KEYS[c["gpu_model"]])
            pt = float(c["total_params_billions"]) * 1e9
            pa = float(c.get("activated_params_billions") or c["total_params_billions"]) * 1e9
            prec = str(c.get("weight_precision", "bfloat16"))
            n, b = int(c["num_gpus"]), float(c["max_num_seqs"])
            tdp_w = spec.tdp_w
            if tdp_w is None:
                raise ExanteError(f"{spec.name} has no TDP in the hardware catalogue")
            rows.append({
                "task": f.stem, "model": c["model_id"].removesuffix("-FP8"), "model_id": c["model_id"],
                "gpu": spec.key, "gpus": n, "batch": b, "precision": prec,
                "y": float(c["energy_per_token_joules"]),
                "x_dec": serving.decode_feature(spec, n, b, pt, pa, prec),
                "x_fix": n * tdp_w / b, "x_tok": n * tdp_w,
                "x_ar": (n - 1) * tdp_w,
                "x_pre": serving.prefill_feature(spec, pa, prec) / float(c["avg_output_len"]),
                "tdp_time": n * tdp_w / float(c["output_throughput_tokens_per_sec"]),
                "params_active": pa})
    if not rows:
        raise ExanteError(f"{folder}: no LLM configuration with energy_per_token_joules")
    return rows


_PER_GPU = 4   # coefficients per GPU type: serving.COEFFICIENTS


def _design(rows: list[dict], tasks: list[str], gpus: list[str]) -> np.ndarray:
    """Columns: per GPU [decode roofline, fixed step, per token, all-reduce], then per task
    [prefill]."""
    X = np.zeros((len(rows), _PER_GPU * len(gpus) + len(tasks)))
    for i, r in enumerate(rows):
        g = _PER_GPU * gpus.index(r["gpu"])
        X[i, g:g + _PER_GPU] = (r["x_dec"], r["x_fix"], r["x_tok"], r["x_ar"])
        X[i, _PER_GPU * len(gpus) + tasks.index(r["task"])] = r["x_pre"]
    return X


def fit(rows: list[dict], tasks: list[str], gpus: list[str], iters: int = 30) -> np.ndarray:
    """Non-negative coefficients minimising mean |pred / y - 1| (IRLS from the least-squares
    fit of relative errors); columns scaled to unit maximum for conditioning."""
    X = _design(rows, tasks, gpus)
    y = np.array([r["y"] for r in rows])
    scale = X.max(axis=0)
    scale[scale == 0] = 1.0
    Xs = X / scale
    w = 1.0 / y
    c, _ = nnls(Xs * w[:, None], y * w)
    for _ in range(iters):
        e = np.abs(Xs @ c / y - 1)
        w = 1.0 / (y * np.sqrt(np.maximum(e, 1e-3)))
        c, _ = nnls(Xs * w[:, None], y * w)
    return c / scale


def _predict(coef, rows, tasks, gpus):
    return list(_design(rows, tasks, gpus) @ coef)


def _mape(pred, true) -> float:
    return float(100 * np.mean(np.abs(np.asarray(pred) / np.asarray(true) - 1)))


def run_mlenergy_bench(folder, progress=None) -> dict:
    """Leave-one-model-out error of the serving energy model on an ML.ENERGY export (J per
    output token; % errors)."""
    rows = load_rows(folder)
    tasks = sorted({r["task"] for r in rows})
    gpus = sorted({r["gpu"] for r in rows})
    models = sorted({r["model"] for r in rows})
    pred, prox_tdp, prox_lin = {}, {}, {}
    tdp_scale = []
    for k, m in enumerate(models):
        if progress:
            progress(k + 1, len(models), m)
        train = [r for r in rows if r["model"] != m]
        test = [i for i, r in enumerate(rows) if r["model"] == m]
        coef = fit(train, tasks, gpus)
        for i, p in zip(test, _predict(coef, [rows[i] for i in test], tasks, gpus), strict=True):
            pred[i] = p
        s = statistics.median(r["y"] / r["tdp_time"] for r in train)   # TDP×time, rescaled
        c = (sum(r["params_active"] / r["y"] for r in train)
             / sum((r["params_active"] / r["y"]) ** 2 for r in train))
        for i in test:
            prox_tdp[i] = s * rows[i]["tdp_time"]
            prox_lin[i] = c * rows[i]["params_active"]
        tdp_scale.append(s)
    idx = range(len(rows))
    y = [rows[i]["y"] for i in idx]

    def block(sel):
        yy = [rows[i]["y"] for i in sel]
        ape = [abs(pred[i] / rows[i]["y"] - 1) * 100 for i in sel]
        return {"n": len(sel), "mape_pct": _mape([pred[i] for i in sel], yy),
                "median_ape_pct": float(np.median(ape)),
                "within_25_pct": float(np.mean(np.array(ape) <= 25) * 100),
                "tdp_x_time_mape_pct": _mape([prox_tdp[i] for i in sel], yy),
                "tdp_x_time_raw_mape_pct": _mape([rows[i]["tdp_time"] for i in sel], yy),
                "params_linear_mape_pct": _mape([prox_lin[i] for i in sel], yy)}

    full = fit(rows, tasks, gpus)

    per_gpu_coef = {g: {name: float(full[_PER_GPU * k + j]) for j, name in enumerate(COEFFICIENTS)}
                    for k, g in enumerate(gpus)}
    a_mean = float(np.mean([v["a"] for v in per_gpu_coef.values()]))
    report = {"dir": str(folder), "rows": len(rows), "models": len(models), "tasks": tasks,
              "split": "leave-one-model-out (-FP8 variants held out with their model)",
              "overall": block(list(idx)),
              "per_gpu": {g: block([i for i in idx if rows[i]["gpu"] == g]) for g in gpus},
              "per_task": {t: block([i for i in idx if rows[i]["task"] == t]) for t in tasks},
              "per_model": {m: block([i for i in idx if rows[i]["model"] == m]) for m in models},
              "coefficients_all_rows": per_gpu_coef,
              "implied_prompt_tokens_per_request": {
                  t: float(full[_PER_GPU * len(gpus) + j] / a_mean) if a_mean > 0 else None
                  for j, t in enumerate(tasks)},
              "tdp_x_time_scale_median": float(statistics.median(tdp_scale))}
    report["mean_energy_per_token_j"] = float(np.mean(y))
    return report


def _cmd(args) -> int:
    from predictor.bench.cli import _emit, _progress

    r = run_mlenergy_bench(args.dir, progress=_progress(args.quiet or args.json))
    o = r["overall"]
    lines = [f"ML.ENERGY serving energy per output token, {r['dir']}: {r['rows']} rows, "
             f"{r['models']} models, {r['split']}",
             f"  ours (ex ante) MAPE {o['mape_pct']:.1f} %, median {o['median_ape_pct']:.1f} %, "
             f"within 25 %: {o['within_25_pct']:.0f} %",
             f"  proxies: TDP x measured time {o['tdp_x_time_mape_pct']:.1f} % (raw "
             f"{o['tdp_x_time_raw_mape_pct']:.1f} %), params-linear {o['params_linear_mape_pct']:.1f} %"]
    lines += [f"  {g}: MAPE {v['mape_pct']:.1f} % (n={v['n']})" for g, v in r["per_gpu"].items()]
    return _emit(r, args.json, lines)


def add_parser(bsub) -> None:
    """``exante bench mlenergy DIR [--json] [--quiet]``."""
    q = bsub.add_parser("mlenergy", help="LLM serving energy per token on ML.ENERGY v3, "
                                         "leave-one-model-out, with TDP x time and params proxies")
    q.add_argument("dir", metavar="DIR", help="folder with tasks/*.json (ML.ENERGY export)")
    q.add_argument("--json", action="store_true", help="print one JSON object")
    q.add_argument("--quiet", action="store_true", help="no progress on stderr")
    q.set_defaults(func=_cmd)
