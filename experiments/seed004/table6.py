"""Seed 004 Table 6 / Fig. 12: wide vs deep MLPs at equal node counts, predicted vs measured.

The 18 MLPs of seed 004 Table 6 (``predictor.search.generators.TABLE6``; input 100, ``Layers`` hidden
Linear+ReLU of ``Layer Size`` units, one output) were measured on an H100 in the reference
set (``datasets/h100``, from shared/reference/h100: inference at batch 1 and 32, Adam
train_step at batch 32, three sessions each).  For each setting this script ranks them with
``predictor.search.compare.compare`` (the shipped h100 artifact, which was fitted on these rows too:
*in-sample*) and, to see what is learnt rather than remembered, with physics models refitted
without the row's own shape (*leave-one-shape-out*) and without any MLP at all
(*leave-all-MLPs-out*), and reports Kendall's tau-b of predicted vs measured energy, the share
of the 153 pairs ordered alike, and the equal-node wide/deep pairs ordered alike.  The seed's
own kWh (RTX 2080 Ti, Keras, whole training run) is compared by rank too.

Writes ``table6.csv``, ``table6.md`` and ``table6.png`` (Fig. 12: train-step energy vs
parameters and vs nodes, wide and deep, measured filled, predicted hollow) to ``--out``::

    python experiments/seed004/table6.py --write-results     # or --out DIR
"""

from __future__ import annotations

import argparse
import itertools
import os
import sys
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.stats import kendalltau

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from experiments.outputs import add_output_args, output_dir  # noqa: E402
from predictor.fit.calibrated_fit import cross_validate  # noqa: E402
from predictor.fit.datasets import load_whole_model_data  # noqa: E402
from predictor.fit.hardware_fit import datasheet_for  # noqa: E402
from predictor.search.compare import compare  # noqa: E402
from predictor.search.generators import table6_specs  # noqa: E402

SETTINGS = (("inference", 1, None), ("inference", 32, None), ("train_step", 32, "adam"))


def pair_agreement(pred, meas) -> float:
    """Share of pairs ordered alike (ties in either count as disagreement)."""
    pairs = list(itertools.combinations(range(len(pred)), 2))
    ok = sum(1 for i, j in pairs if (pred[i] - pred[j]) * (meas[i] - meas[j]) > 0)
    return ok / len(pairs)


def heldout_predictions(datasets: Path) -> dict:
    """Energy predictions of every reference row by physics models fitted without it:
    leave-one-MLP-shape-out and leave-all-MLPs-out (other rows: not used)."""
    data = load_whole_model_data(datasets / "h100")
    f = data.frame
    ds = datasheet_for("h100", float(np.nanmean(f["idle_power_w"])))
    mlp = (f["kind"] == "mlp").to_numpy()
    groups = np.where(mlp, f["family"].to_numpy(), "not-mlp")
    shape = cross_validate(data, ds, groups=groups)[:, 1]
    kind = cross_validate(data, ds, groups=np.where(mlp, "mlp", "not-mlp"))[:, 1]
    return {k: {"loso": a, "lamo": b} for k, a, b in zip(f["key"], shape, kind, strict=True)}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    add_output_args(ap, ROOT / "experiments/seed004/results")
    ap.add_argument("--datasets", default=str(ROOT / "datasets"))
    ap.add_argument("--no-heldout", action="store_true", help="skip the refits (faster)")
    args = ap.parse_args(argv)
    args.out = output_dir(args, ROOT / "experiments/seed004/results", "seed004")
    warnings.simplefilter("ignore")
    meas = load_whole_model_data(Path(args.datasets) / "h100").frame.set_index("key")
    held = {} if args.no_heldout else heldout_predictions(Path(args.datasets))
    grid = table6_specs()
    rows, summary = [], []
    for mode, batch, opt in SETTINGS:
        c = compare([s for _, s in grid], "100", batch, mode=mode, optimizer=opt)
        for (meta, spec), d in zip(grid, c.designs, strict=True):
            key = f"mlp-d{meta['layers']}-w{meta['layer_size']}|{mode}|fp32|b{batch}"
            m = meas.loc[key]
            h = held.get(key, {})
            rows.append({**meta, "ref": spec.ref, "mode": mode, "batch": batch,
                         "optimizer": opt or "", "measured_energy_j": m["energy_j"],
                         "measured_time_s": m["time_s"], "pred_energy_j": d.energy_j,
                         "pred_energy_j_low": d.energy_j_low,
                         "pred_energy_j_high": d.energy_j_high, "pred_time_s": d.time_s,
                         "pred_rank": d.rank, "tie_group": d.tie_group,
                         "pred_loso_energy_j": h.get("loso", np.nan),
                         "pred_lamo_energy_j": h.get("lamo", np.nan),
                         "flops": d.flops})
        sub = pd.DataFrame(rows[-len(grid):])
        y = sub["measured_energy_j"].to_numpy()
        s = {"mode": mode, "batch": batch, "n": len(sub),
             "overlapping_pairs": len(c.overlaps()), "pairs": len(grid) * (len(grid) - 1) // 2}
        for name, col in (("in-sample (shipped)", "pred_energy_j"),
                          ("leave-one-shape-out", "pred_loso_energy_j"),
                          ("leave-all-MLPs-out", "pred_lamo_energy_j"),
                          ("FLOPs", "flops"), ("params", "params")):
            x = sub[col].to_numpy(float)
            if np.isnan(x).any():
                continue
            tau = kendalltau(x, y).statistic
            s[f"tau|{name}"] = tau
            s[f"pairs_ok|{name}"] = pair_agreement(x, y)
            same = [(i, j) for i, j in itertools.combinations(range(len(sub)), 2)
                    if sub["nodes"].iloc[i] == sub["nodes"].iloc[j]]
            s[f"equal_node_pairs_ok|{name}"] = sum(
                1 for i, j in same if (x[i] - x[j]) * (y[i] - y[j]) > 0) / len(same)
            if not name.startswith(("FLOPs", "params")):
                s[f"mape_pct|{name}"] = float(np.mean(np.abs(x / y - 1)) * 100)
        if mode == "train_step":
            s["tau|measured vs seed kWh"] = kendalltau(y, sub["seed_kwh"]).statistic
            s["tau|in-sample vs seed kWh"] = kendalltau(sub["pred_energy_j"],
                                                       sub["seed_kwh"]).statistic
        summary.append(s)
    df = pd.DataFrame(rows)
    df.to_csv(os.path.join(args.out, "table6.csv"), index=False)
    _markdown(df, summary, os.path.join(args.out, "table6.md"))
    _plot(df, os.path.join(args.out, "table6.png"))
    for s in summary:
        print({k: (round(v, 3) if isinstance(v, float) else v) for k, v in s.items()})
    return 0


def _markdown(df, summary, path):
    names = ("in-sample (shipped)", "leave-one-shape-out", "leave-all-MLPs-out", "FLOPs",
             "params")
    with open(path, "w") as fh:
        fh.write("# Seed 004 Table 6 on the H100: wide vs deep, predicted vs measured\n\n"
                 "Generated by `python experiments/seed004/table6.py`. Measured: H100 reference "
                 "set (3 sessions, mean). Predicted: `predictor.search.compare` with the shipped h100 "
                 "artifact (fitted on these rows: in-sample), and physics models refitted "
                 "without the shape (leave-one-shape-out) or without any MLP "
                 "(leave-all-MLPs-out). FLOPs and params: the proxies' own ranking.\n\n")
        fh.write("| setting | ranking by | Kendall tau-b | pairs ordered alike | equal-node "
                 "wide/deep pairs alike | MAPE energy |\n|---|---|---|---|---|---|\n")
        for s in summary:
            for n in names:
                if f"tau|{n}" not in s:
                    continue
                mape = s.get(f"mape_pct|{n}")
                fh.write(f"| {s['mode']} b{s['batch']} | {n} | {s[f'tau|{n}']:.3f} | "
                         f"{100 * s[f'pairs_ok|{n}']:.0f} % | "
                         f"{100 * s[f'equal_node_pairs_ok|{n}']:.0f} % | "
                         f"{'' if mape is None else f'{mape:.1f} %'} |\n")
        fh.write("\n")
        for s in summary:
            fh.write(f"- {s['mode']} b{s['batch']}: `exante compare` leaves "
                     f"{s['overlapping_pairs']} of {s['pairs']} pairs unranked (90 % "
                     "intervals overlap).\n")
            if "tau|measured vs seed kWh" in s:
                fh.write(f"- The seed's own Table 6 kWh (RTX 2080 Ti, Keras, full run) vs our "
                         f"H100 train-step measurements: tau {s['tau|measured vs seed kWh']:.3f};"
                         f" vs our in-sample prediction: {s['tau|in-sample vs seed kWh']:.3f}.\n")
        fh.write("\n| Layers | Size | Nodes | Params | shape | mode | measured J | predicted J "
                 "[90 %] | held-out (shape) J |\n|---|---|---|---|---|---|---|---|---|\n")
        for _, r in df.iterrows():
            fh.write(f"| {r['layers']} | {r['layer_size']} | {r['nodes']} | {r['params']} | "
                     f"{r['shape']} | {r['mode']} b{r['batch']} | {r['measured_energy_j']:.3f} | "
                     f"{r['pred_energy_j']:.3f} [{r['pred_energy_j_low']:.3f}–"
                     f"{r['pred_energy_j_high']:.3f}] | {r['pred_loso_energy_j']:.3f} |\n")


def _plot(df, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    t = df[df["mode"] == "train_step"]
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for ax, x, label in ((axes[0], "params", "trainable parameters"),
                         (axes[1], "nodes", "nodes (Layers x Layer Size)")):
        for shape, color in (("wide", "#1f77b4"), ("deep", "#d62728")):
            s = t[t["shape"] == shape].sort_values(x)
            ax.plot(s[x], s["measured_energy_j"], "o", color=color,
                    label=f"{shape}: measured (H100)")
            ax.errorbar(s[x], s["pred_energy_j"],
                        yerr=[s["pred_energy_j"] - s["pred_energy_j_low"],
                              s["pred_energy_j_high"] - s["pred_energy_j"]],
                        fmt="o", mfc="none", color=color, capsize=2, lw=0.8,
                        label=f"{shape}: predicted (90 %)")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel(label)
        ax.set_ylabel("energy per Adam train step, batch 32 (J)")
    axes[0].legend(fontsize=7)
    fig.suptitle("Seed 004 Table 6 / Fig. 12 on an H100: deep MLPs cost more per step than "
                 "wide ones", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


if __name__ == "__main__":
    raise SystemExit(main())
