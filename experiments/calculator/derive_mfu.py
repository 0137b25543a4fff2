"""Derive the ex-ante LLM-training MFU table from published runs (issue 18, item 1).

Reads ``predictor/data/llm_runs.csv`` (one cited row per run: params, tokens, device, count,
device-hours), fits two candidate models of the published MFU -- per-generation median, and
per-generation median plus a shared slope on log10 params -- scores both leave-one-run-out
(device-hours error of each held-out run, and whether its published hours fall inside the
interval computed *without* it: nested leave-one-out residuals), keeps the slope only if it
lowers the median error by more than one point without losing coverage, and writes
``predictor/data/llm_mfu.csv``.

Run:  python experiments/calculator/derive_mfu.py [--write] [--write-readme]
"""

from __future__ import annotations

import argparse
import csv
import io
import math
import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from predictor.carbon.llm import mfu as M  # noqa: E402

OUT = ROOT / "predictor" / "data" / "llm_mfu.csv"
START, END = "<!-- llm-mfu:start -->", "<!-- llm-mfu:end -->"
Q_LOW, Q_HIGH = 0.05, 0.95


def evaluate(runs, *, slope: bool) -> dict:
    """Leave-one-run-out: per run the predicted MFU, device-hours error and whether the
    published hours lie in the interval from the other runs' own LORO residuals."""
    rows = []
    for r in runs:
        rest = [o for o in runs if o.run != r.run]
        t = M.fit_table(rest, slope=slope)
        log_pred, used = M.predict_log_mfu(t, r.generation, r.flops_params)
        res = list(M.loro_residuals(rest, slope=slope).values())
        lo = log_pred + M._quantile(res, Q_LOW)
        hi = log_pred + M._quantile(res, Q_HIGH)
        pred = math.exp(log_pred)
        hours_pred = r.device_hours * r.mfu_published / pred
        rows.append({"run": r.run, "gen": r.generation, "basis": used,
                     "mfu_pub": r.mfu_published, "mfu_pred": pred,
                     "mfu_low": math.exp(lo), "mfu_high": math.exp(hi),
                     "hours_err": hours_pred / r.device_hours - 1,
                     "inside": math.exp(lo) <= r.mfu_published <= math.exp(hi)})
    errs = [abs(x["hours_err"]) for x in rows]
    return {"rows": rows, "median_abs_err": statistics.median(errs),
            "coverage": sum(x["inside"] for x in rows) / len(rows)}


def write_table(runs, slope: bool) -> None:
    t = M.fit_table(runs, slope=slope)
    res = list(M.loro_residuals(runs, slope=slope).values())
    q_lo, q_hi = M._quantile(res, Q_LOW), M._quantile(res, Q_HIGH)
    g, n_g = M.goodput(runs)
    src = (f"experiments/calculator/derive_mfu.py on llm_runs.csv ({len(runs)} runs; "
           f"goodput from {n_g} runs reporting MFU)")
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["generation", "n_runs", "mfu_published", "params_slope", "log_resid_q05",
                "log_resid_q95", "goodput", "source"])
    for gen in sorted(t["by_gen"]):
        w.writerow([gen, t["n_by_gen"][gen], f"{math.exp(t['by_gen'][gen]):.4f}",
                    f"{t['slope']:.4f}", f"{q_lo:.4f}", f"{q_hi:.4f}", f"{g:.4f}", src])
    w.writerow([M.POOLED, len(runs), f"{math.exp(t['pooled']):.4f}", f"{t['slope']:.4f}",
                f"{q_lo:.4f}", f"{q_hi:.4f}", f"{g:.4f}", src])
    tmp = OUT.with_suffix(".tmp")
    tmp.write_text(buf.getvalue(), encoding="utf-8")
    tmp.replace(OUT)


def table(ev: dict) -> str:
    lines = ["| run | generation | published MFU | predicted (LORO) | interval | device-hours "
             "error | inside |", "|---|---|---|---|---|---|---|"]
    for x in ev["rows"]:
        basis = "" if x["basis"] == x["gen"] else " (pooled)"
        lines.append(f"| {x['run']} | {x['gen']}{basis} | {x['mfu_pub']:.3f} | "
                     f"{x['mfu_pred']:.3f} | {x['mfu_low']:.3f}-{x['mfu_high']:.3f} | "
                     f"{100 * x['hours_err']:+.1f} % | {'yes' if x['inside'] else 'no'} |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--write", action="store_true", help=f"write {OUT.relative_to(ROOT)}")
    ap.add_argument("--write-readme", action="store_true",
                    help="replace the README section between the llm-mfu markers")
    args = ap.parse_args()
    runs = M.load_runs()
    evs = {s: evaluate(runs, slope=s) for s in (False, True)}
    for s, ev in evs.items():
        print(f"{'generation + params slope' if s else 'generation median'}: LORO median "
              f"|device-hours error| {100 * ev['median_abs_err']:.1f} %, published inside "
              f"interval {100 * ev['coverage']:.0f} % of {len(runs)} runs")
    # Occam: the params slope must buy > 1 point of median error, without losing coverage
    gain = evs[False]["median_abs_err"] - evs[True]["median_abs_err"]
    best = gain > 0.01 and evs[True]["coverage"] >= evs[False]["coverage"]
    ev = evs[best]
    print(f"chosen: {'generation + params slope' if best else 'generation median'}\n")
    print(table(ev))
    if args.write:
        write_table(runs, best)
        print(f"\nwrote {OUT.relative_to(ROOT)}")
    if args.write_readme:
        g, n_g = M.goodput(runs)
        other = evs[not best]
        section = (
            f"{START}\nGenerated by `python experiments/calculator/derive_mfu.py --write "
            f"--write-readme` from `predictor/data/llm_runs.csv` ({len(runs)} published runs, "
            f"every row cited; all transcribed from papers and model cards, none is in the "
            f"seeds). Default flavour: MFU implied by the *published device-hours* "
            f"(restarts and downtime included); `--mfu-flavour training` divides by the "
            f"goodput {g:.3f} (median of {n_g} runs that also report MFU). Model: "
            f"{'per-generation median with a shared log10-params slope' if best else 'per-generation median'}"
            f" (the other candidate: median error {100 * other['median_abs_err']:.1f} %, "
            f"coverage {100 * other['coverage']:.0f} %). Leave-one-run-out (interval from the "
            f"other runs' own leave-one-out residuals, 5-95 %): median |device-hours error| "
            f"**{100 * ev['median_abs_err']:.1f} %**, published value inside the interval for "
            f"**{100 * ev['coverage']:.0f} %** of runs.\n\n{table(ev)}\n{END}")
        from experiments.outputs import replace_readme_section

        replace_readme_section(ROOT / "README.md", START, END, section)


if __name__ == "__main__":
    main()
