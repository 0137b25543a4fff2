"""Leave-one-family-out accuracy of the shipped physics model on whole-model rows.

For each model family (``models.csv`` ``family``: one architecture with all its batches,
dtypes and modes), fit :class:`predictor.engine.physics.PhysicsModel` on the other families and
predict the held-out one.  Side by side, on the same folds, two baselines fitted per
(mode, dtype) by relative least squares (y = a*x + b, rows weighted 1/y^2):
FLOPs-linear (forward FLOPs) and params-linear.  And the re-measurement floor: one session
against the mean of the three (the ``*_runs`` fields of the reference set).

Interval coverage is measured honestly: for each held-out family the conformal half-width is
computed from the *other* families' out-of-fold residuals (combined with the session spread,
as shipped), then checked on that family.

Writes ``results.json``, ``table.md`` and ``pred_vs_measured.png`` to ``--out`` and, with
``--readme``, replaces the README's accuracy section (between the ``accuracy:begin/end``
markers)::

    python experiments/accuracy/whole_model.py --hardware h100 --readme
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from predictor.engine.calibrated import conformal_halfwidth  # noqa: E402
from predictor.fit.calibrated_fit import (  # noqa: E402
    GPU_BOUND_POWER_W,
    _session_floor,
    cross_validate,
    metrics,
)
from predictor.fit.datasets import load_whole_model_data  # noqa: E402
from predictor.fit.hardware_fit import datasheet_for  # noqa: E402

BEGIN, END = "<!-- accuracy:begin -->", "<!-- accuracy:end -->"


def linear_baseline(x: np.ndarray, y: np.ndarray, groups: np.ndarray, strata: np.ndarray
                    ) -> np.ndarray:
    """Out-of-group predictions of y = a*x + b fitted per stratum by relative least squares."""
    out = np.full(len(y), np.nan)
    for g in np.unique(groups):
        test = groups == g
        for s in np.unique(strata[test]):
            tr = (~test) & (strata == s)
            te = test & (strata == s)
            if tr.sum() < 2:
                tr = ~test                       # too few rows of the stratum: pool
            w = 1.0 / y[tr]
            A = np.column_stack([x[tr], np.ones(tr.sum())]) * w[:, None]
            coef, *_ = np.linalg.lstsq(A, y[tr] * w, rcond=None)
            out[te] = np.maximum(coef[0] * x[te] + coef[1], 1e-12)
    return out


def honest_coverage(r: np.ndarray, groups: np.ndarray, gpu: np.ndarray, floor: dict,
                    coverage: float) -> np.ndarray:
    """Inside-the-interval flags with half-widths from the other groups' residuals."""
    inside = np.zeros(len(r), bool)
    for g in np.unique(groups):
        test = groups == g
        for regime in (True, False):
            te = test & (gpu == regime)
            if not te.any():
                continue
            pool = (~test) & (gpu == regime)
            if pool.sum() < 10:
                pool = ~test
            q = conformal_halfwidth(np.abs(r[pool]), coverage)
            fl = floor[floor["gpu_bound"] == regime] if (floor["gpu_bound"] == regime).any() \
                else floor
            qs = conformal_halfwidth(fl["r"].to_numpy(), coverage)
            inside[te] = np.abs(r[te]) <= math.hypot(q, qs)
    return inside


def run(hardware: str, datasets: Path, coverage: float = 0.9) -> dict:
    t0 = time.time()
    data = load_whole_model_data(datasets / hardware)
    f = data.frame
    idle = float(np.nanmean(f["idle_power_w"]))
    ds = datasheet_for(hardware, idle)
    y = data.y
    fam = f["family"].to_numpy()
    oof = cross_validate(data, ds)
    kind_oof = cross_validate(data, ds, groups=f["kind"].to_numpy())
    strata = (f["mode"] + "|" + f["dtype"]).to_numpy()
    flops = np.array([sum(_flops(x) * x.count for x in w.layers) for w in data.workloads])
    params = f["params"].to_numpy(float)
    base = {name: np.column_stack([linear_baseline(x, y[:, j], fam, strata) for j in (0, 1)])
            for name, x in (("flops_linear", flops), ("params_linear", params))}
    gpu = (f["power_w"] > GPU_BOUND_POWER_W).to_numpy()
    fl = _session_floor(data)
    rows = []
    slices = [("all", np.ones(len(f), bool))] + \
        [(f"mode={m}", (f["mode"] == m).to_numpy()) for m in sorted(set(f["mode"]))] + \
        [("GPU-bound (> 250 W)", gpu), ("host-bound (<= 250 W)", ~gpu)] + \
        [(f"dtype={d}", (f["dtype"] == d).to_numpy()) for d in sorted(set(f["dtype"]))] + \
        [(f"kind={k}", (f["kind"] == k).to_numpy()) for k in sorted(set(f["kind"]))]
    sess = data.sessions.merge(f[["key", "time_s", "energy_j", "power_w", "mode"]], on="key",
                               suffixes=("", "_mean"))
    inside = {}
    for j, target in enumerate(("time", "energy")):
        r = np.log(oof[:, j] / y[:, j])
        floor = pd.DataFrame({"r": fl[target], "gpu_bound": fl["gpu_bound"]})
        inside[target] = honest_coverage(r, fam, gpu, floor, coverage)
    for name, mask in slices:
        if not mask.any():
            continue
        for j, target in enumerate(("time", "energy")):
            col = "time_s" if j == 0 else "energy_j"
            smask = sess["key"].isin(f.loc[mask, "key"])
            floor_m = metrics(sess.loc[smask, col + "_mean"], sess.loc[smask, col])
            rows.append({
                "slice": name, "target": target, "n": int(mask.sum()),
                "exante": metrics(y[mask, j], oof[mask, j]),
                "exante_leave_kind_out": metrics(y[mask, j], kind_oof[mask, j]),
                "flops_linear": metrics(y[mask, j], base["flops_linear"][mask, j]),
                "params_linear": metrics(y[mask, j], base["params_linear"][mask, j]),
                "remeasure_floor": floor_m,
                "interval_coverage_pct": float(np.mean(inside[target][mask]) * 100)})
    per_row = f[["key", "family", "kind", "mode", "dtype", "batch"]].assign(
        time_s=y[:, 0], time_pred_s=oof[:, 0], energy_j=y[:, 1], energy_pred_j=oof[:, 1],
        power_w=f["power_w"], inside_time=inside["time"], inside_energy=inside["energy"])
    return {"hardware": hardware, "n_workloads": int(len(f)), "coverage_nominal": coverage,
            "scheme": "leave-one-family-out (family = one architecture, all its batches, "
                      "dtypes and modes)",
            "date": datetime.now(timezone.utc).strftime("%Y-%m-%d"),
            "seconds": round(time.time() - t0, 1), "slices": rows,
            "per_row": per_row.to_dict(orient="records")}


def _flops(wl) -> float:
    """FLOPs per call of one workload layer for the FLOPs-linear baseline; a layer without a
    feature function counts 0 (as in fvcore); any other failure is raised, never zeroed."""
    from profiling.features.api import layer_features

    if not wl.supported:
        return 0.0
    return float(layer_features(wl.config).get("flops", 0))


def table_md(res: dict) -> str:
    out = [f"Leave-one-family-out on the {res['n_workloads']} H100 reference workloads "
           f"(`python experiments/accuracy/whole_model.py --hardware {res['hardware']} "
           f"--readme`, {res['date']}). MAPE / median APE / share within ±10 %; baselines "
           "fitted on the same folds per (mode, dtype); the floor is one session against the "
           "mean of three; coverage of the nominal-90 % interval with half-widths taken from "
           "the other families only.", "",
           "| slice | target | n | exante | leave-kind-out | FLOPs-linear | params-linear | "
           "re-measure floor | 90 % interval covers |",
           "|---|---|---|---|---|---|---|---|---|"]

    def m(d):
        return f"{d['mape_pct']:.1f} / {d['median_ape_pct']:.1f} / {d['within_10_pct']:.0f} %"

    for r in res["slices"]:
        out.append(f"| {r['slice']} | {r['target']} | {r['n']} | **{m(r['exante'])}** | "
                   f"{m(r['exante_leave_kind_out'])} | {m(r['flops_linear'])} | "
                   f"{m(r['params_linear'])} | {m(r['remeasure_floor'])} | "
                   f"{r['interval_coverage_pct']:.0f} % |")
    return "\n".join(out) + "\n"


def plot(res: dict, path: Path) -> None:
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return
    df = pd.DataFrame(res["per_row"])
    fig, axes = plt.subplots(1, 2, figsize=(10, 4.5))
    for ax, (col, pred, label) in zip(axes, (("time_s", "time_pred_s", "time per call (s)"),
                                              ("energy_j", "energy_pred_j", "energy per call (J)")),
                                  strict=True):
        for kind, mk in (("vision", "o"), ("transformer", "s"), ("mlp", "^")):
            d = df[df["kind"] == kind]
            ax.scatter(d[col], d[pred], marker=mk, s=18, label=kind, alpha=0.8)
        lo, hi = df[[col, pred]].min().min() * 0.7, df[[col, pred]].max().max() * 1.4
        ax.plot([lo, hi], [lo, hi], "k-", lw=0.8)
        ax.plot([lo, hi], [lo * 1.1, hi * 1.1], "k:", lw=0.6)
        ax.plot([lo, hi], [lo / 1.1, hi / 1.1], "k:", lw=0.6)
        ax.set_xscale("log"), ax.set_yscale("log")
        ax.set_xlabel(f"measured {label}"), ax.set_ylabel(f"predicted (held out) {label}")
        ax.legend(fontsize=8)
    fig.suptitle(f"exante on {res['hardware']}: leave-one-family-out (dotted: ±10 %)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def update_readme(readme: Path, md: str, png_rel: str) -> None:
    text = readme.read_text(encoding="utf-8")
    block = f"{BEGIN}\n{md}\n![predicted vs measured]({png_rel})\n{END}"
    if BEGIN in text and END in text:
        pre, rest = text.split(BEGIN, 1)
        _, post = rest.split(END, 1)
        text = pre + block + post
    else:
        text = text.rstrip("\n") + "\n\n" + block + "\n"
    readme.write_text(text, encoding="utf-8")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--hardware", default="h100")
    ap.add_argument("--datasets", type=Path, default=ROOT / "datasets")
    ap.add_argument("--out", type=Path, default=ROOT / "experiments" / "accuracy" / "results")
    ap.add_argument("--readme", action="store_true", help="update README.md's accuracy section")
    a = ap.parse_args(argv)
    res = run(a.hardware, a.datasets)
    a.out.mkdir(parents=True, exist_ok=True)
    (a.out / f"{a.hardware}_whole_model.json").write_text(json.dumps(res, indent=1, default=float))
    md = table_md(res)
    (a.out / f"{a.hardware}_whole_model.md").write_text(md)
    png = a.out / f"{a.hardware}_whole_model.png"
    plot(res, png)
    print(md)
    if a.readme:
        update_readme(ROOT / "README.md", md, str(png.relative_to(ROOT)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
