"""Leave-one-family-out accuracy of exante on whole-model rows of datasets/<hw>/.

For each model family f (``models.csv`` column ``family``): fit everything (per-layer
regressors, optimizer step, composer, conformal intervals) on the other families' model rows
and on the layer rows -- minus the layer configs that occur *only* in f's models -- then
predict f's whole-model rows.  f's architectures are never seen in fitting.

Side by side, on the same training folds, two baselines fitted per (mode, dtype) by relative
least squares (rows weighted 1/y², the fairest linear fit for a percentage metric):

* FLOPs-linear:  y = α·FLOPs + β
* params-linear: y = α·params + β

Reported per target (energy, time), per mode and dtype: MAPE, median APE, RMSPE, % within
±10 %, and the empirical coverage of exante's nominal-90 % intervals.  Writes
``results.json``, ``table.md`` and ``pred_vs_measured.png`` to ``--out``.

    python experiments/accuracy/run.py --hardware h100          # real data (needs datasets/h100)
    python experiments/accuracy/run.py --synthetic --quick      # the SYNTHETIC test fixture
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import warnings
from datetime import datetime, timezone

import numpy as np
import pandas as pd

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, ROOT)

from predictor.fit import regression as R  # noqa: E402
from profiling.errors import ExanteError  # noqa: E402


# ----------------------------------------------------------------------------- baselines
def _model_totals(models: pd.DataFrame, keytab: pd.DataFrame) -> pd.DataFrame:
    """FLOPs and params per model row: the row's columns, else Σ count·feature of its layers."""
    flops, params = [], []
    for row in models.itertuples(index=False):
        counts = R._parse_counts(row.layer_counts)
        f = p = 0.0
        for k, c in counts.items():
            if k in keytab.index:
                f += c * float(keytab.at[k, "flops"] or 0)
                p += c * float(keytab.at[k, "params"] or 0)
        fr = getattr(row, "flops", None)
        pr = getattr(row, "params", None)
        flops.append(float(fr) if fr is not None and np.isfinite(fr) and fr > 0 else f)
        params.append(float(pr) if pr is not None and np.isfinite(pr) and pr > 0 else p)
    return pd.DataFrame({"flops_total": flops, "params_total": params}, index=models.index)


def _fit_linear(x, y):
    """(α, β) >= 0 minimising Σ((αx+β-y)/y)²."""
    A = np.column_stack([x, np.ones(len(x))])
    return R._nnls_relative(A, y, scales=np.array([np.median(y) / max(np.median(x), 1e-30),
                                                   np.median(y)]))


def baseline_predict(train: pd.DataFrame, test: pd.DataFrame, xcol: str, ycol: str) -> np.ndarray:
    out = np.full(len(test), np.nan)
    for (mode, dtype), g in test.groupby(["mode", "dtype"]):
        tr = train[(train["mode"] == mode) & (train["dtype"] == dtype)]
        if len(tr) < 2:
            tr = train[train["mode"] == mode]
        if len(tr) < 2:
            continue
        a, b = _fit_linear(tr[xcol].to_numpy(float), tr[ycol].to_numpy(float))
        out[test.index.get_indexer(g.index)] = a * g[xcol].to_numpy(float) + b
    return out


# ----------------------------------------------------------------------------- LOFO
def leave_one_family_out(layers: pd.DataFrame, models: pd.DataFrame, *, quick: bool,
                         time_base="gbr", energy_base="gbr", intervals=True,
                         log=print) -> pd.DataFrame:
    layers = R.clean_layers(layers)
    models = R.clean_models(models)
    if models is None:
        raise ExanteError("no usable whole-model rows (eager, measured, no unsupported layers)")
    keytab = R._key_table(layers)
    models = pd.concat([models, _model_totals(models, keytab)], axis=1)
    fams = sorted(models["family"].astype(str).unique())
    if len(fams) < 2:
        raise ExanteError(f"leave-one-family-out needs >= 2 model families, found {fams}")
    counts = [set(R._parse_counts(v)) for v in models["layer_counts"]]
    lkeys = R._config_keys(layers)
    out = models.copy()
    for col in ("pred_time_s", "pred_energy_j", "time_lo", "time_hi", "energy_lo", "energy_hi",
                "flops_time_s", "flops_energy_j", "params_time_s", "params_energy_j"):
        out[col] = np.nan
    for f in fams:
        t0 = time.perf_counter()
        te = np.where(models["family"].astype(str) == f)[0]
        tr = np.where(models["family"].astype(str) != f)[0]
        train_keys = set().union(*[counts[i] for i in tr])
        held = set().union(*[counts[i] for i in te]) - train_keys
        Lf = layers[~np.isin(lkeys, list(held))]
        Mtr, Mte = models.iloc[tr], models.iloc[te]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            if intervals and Mtr["family"].nunique() >= 2:
                hm, _ = R.build_hardware_model(Lf, Mtr, quick=quick, n_splits=3 if quick else 5,
                                               time_base=time_base, energy_base=energy_base)
            else:
                keytab_f = R._key_table(Lf)
                floors = R.estimate_host_floor(Lf)
                P, _ = R.estimate_active_idle_power(Lf, floors)
                hm = R._fit_core(Lf, Mtr, keytab_f, time_base=time_base, energy_base=energy_base,
                                 quick=quick, random_state=0, P=P, floors=floors,
                                 idle=R._median_idle(Lf, P), fit_shape=False)
                hm.uncertainty = None
        ok_mode = np.array([m in hm.modes for m in Mte["mode"]])
        Mte = Mte[ok_mode]
        if len(Mte) == 0:
            continue
        sums = R.model_level_frame(hm, Mte, keytab)
        pred = hm.compose(sums)
        bad = sums["missing_keys"].to_numpy() > 0
        pred[bad] = np.nan
        idx = Mte.index
        out.loc[idx, "pred_time_s"] = pred[:, 0]
        out.loc[idx, "pred_energy_j"] = pred[:, 1]
        if hm.uncertainty is not None:
            hb = hm.host_bound(pred[:, 0], pred[:, 1])
            for j, i in enumerate(idx):
                if not np.isfinite(pred[j, 0]):
                    continue
                m = Mte.at[i, "mode"]
                out.loc[i, ["time_lo", "time_hi"]] = hm.interval("time", pred[j, 0], hb[j], m)
                out.loc[i, ["energy_lo", "energy_hi"]] = hm.interval("energy", pred[j, 1], hb[j], m)
        for base, xcol in (("flops", "flops_total"), ("params", "params_total")):
            out.loc[idx, f"{base}_time_s"] = baseline_predict(Mtr, Mte, xcol, "time_s")
            out.loc[idx, f"{base}_energy_j"] = baseline_predict(Mtr, Mte, xcol, "energy_j")
        log(f"  held out {f:<16} {len(Mte):4d} rows   {time.perf_counter() - t0:5.1f} s")
    return out


def summarize(out: pd.DataFrame) -> dict:
    res = {}
    groups = [("all", out)] + [(f"{m}/{d}", g) for (m, d), g in out.groupby(["mode", "dtype"])]
    for name, g in groups:
        for tgt, ycol, pcol, lo, hi in (("energy", "energy_j", "pred_energy_j", "energy_lo",
                                         "energy_hi"),
                                        ("time", "time_s", "pred_time_s", "time_lo", "time_hi")):
            y = g[ycol].to_numpy(float)
            entry = {"exante": R.error_metrics(y, g[pcol]),
                     "flops_linear": R.error_metrics(y, g[f"flops_{ycol}"]),
                     "params_linear": R.error_metrics(y, g[f"params_{ycol}"])}
            l, h = g[lo].to_numpy(float), g[hi].to_numpy(float)
            ok = np.isfinite(l) & np.isfinite(h)
            entry["interval_coverage"] = float(np.mean((y[ok] >= l[ok]) & (y[ok] <= h[ok]))) \
                if ok.any() else None
            entry["interval_median_width_pct"] = float(100 * np.median((h[ok] - l[ok]) / y[ok])) \
                if ok.any() else None
            res[f"{tgt}/{name}"] = entry
    per_family = {}
    for f, g in out.groupby("family"):
        per_family[str(f)] = {
            "energy_mape": R.error_metrics(g["energy_j"], g["pred_energy_j"])["mape"],
            "time_mape": R.error_metrics(g["time_s"], g["pred_time_s"])["mape"], "n": int(len(g))}
    res["per_family"] = per_family
    return res


def markdown_table(summary: dict, header: str) -> str:
    lines = [header, "",
             "| target | mode/dtype | n | exante MAPE | median APE | RMSPE | within ±10 % | "
             "90 % interval coverage | FLOPs-linear MAPE | params-linear MAPE |",
             "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for key, e in summary.items():
        if key == "per_family":
            continue
        tgt, _, grp = key.partition("/")
        x = e["exante"]
        cov = e["interval_coverage"]
        lines.append(
            f"| {tgt} | {grp} | {x['n']} | {x['mape']:.1f} % | {x['median_ape']:.1f} % | "
            f"{x['rmspe']:.1f} % | {x['within_10']:.0f} % | "
            f"{'–' if cov is None else f'{100 * cov:.0f} %'} | "
            f"{e['flops_linear']['mape']:.1f} % | {e['params_linear']['mape']:.1f} % |")
    lines += ["", "Per held-out family (MAPE): " + ", ".join(
        f"{f} energy {v['energy_mape']:.1f} % / time {v['time_mape']:.1f} % (n={v['n']})"
        for f, v in summary["per_family"].items())]
    return "\n".join(lines) + "\n"


def plot(out: pd.DataFrame, path: str, title: str) -> bool:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except Exception:
        return False
    fig, axes = plt.subplots(1, 2, figsize=(11, 5))
    for ax, (ycol, pcol, bcol, label) in zip(axes, (
            ("energy_j", "pred_energy_j", "flops_energy_j", "energy per call [J]"),
            ("time_s", "pred_time_s", "flops_time_s", "time per call [s]"))):
        y = out[ycol].to_numpy(float)
        ax.scatter(y, out[bcol], s=8, c="lightgrey", label="FLOPs-linear", zorder=1)
        for f, g in out.groupby("family"):
            ax.scatter(g[ycol], g[pcol], s=10, label=f"exante: {f}", zorder=2)
        lo, hi = np.nanmin(y) / 2, np.nanmax(y) * 2
        ax.plot([lo, hi], [lo, hi], "k-", lw=0.8)
        ax.plot([lo, hi], [1.1 * lo, 1.1 * hi], "k:", lw=0.6)
        ax.plot([lo, hi], [lo / 1.1, hi / 1.1], "k:", lw=0.6)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlim(lo, hi)
        ax.set_ylim(lo, hi)
        ax.set_xlabel(f"measured {label}")
        ax.set_ylabel(f"predicted {label}")
    axes[0].legend(fontsize=7, loc="upper left")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=130)
    plt.close(fig)
    return True


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description="leave-one-family-out accuracy of exante")
    ap.add_argument("--hardware", default="h100")
    ap.add_argument("--datasets", default=os.path.join(ROOT, "datasets"))
    ap.add_argument("--synthetic", action="store_true",
                    help="use the SYNTHETIC test-fixture dataset (not a measurement)")
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--no-intervals", action="store_true",
                    help="skip the per-fold conformal calibration (faster)")
    ap.add_argument("--time-family", default="gbr")
    ap.add_argument("--energy-family", default="gbr")
    ap.add_argument("--out", default=None,
                    help="output folder (default $EXANTE_RESULTS or <tmp>/exante-results, "
                         "then accuracy/<hardware> or accuracy/synthetic)")
    args = ap.parse_args(argv)
    if args.out is None:                    # outside the repository (experiments/outputs.py)
        sys.path.insert(0, os.path.dirname(os.path.dirname(HERE)))
        from experiments.outputs import default_root

        args.out = str(default_root() / "accuracy" / ("synthetic" if args.synthetic
                                                      else args.hardware))

    if args.synthetic:
        sys.path.insert(0, HERE)
        from synthetic import make_synthetic_dataset

        hw = "synthetic"
        layers, models = make_synthetic_dataset(hardware=hw, second_session_fraction=0.2)
        source = "SYNTHETIC test fixture (experiments/accuracy/synthetic.py) -- not a measurement"
    else:
        from predictor.fit.hardware_fit import read_dataset

        hw = args.hardware
        try:
            layers, models, _ = read_dataset(hw, args.datasets)
        except ExanteError as exc:
            print(f"error: {exc}\n(or run with --synthetic to exercise the pipeline on the "
                  "synthetic test fixture)", file=sys.stderr)
            return 2
        if models is None:
            print(f"error: datasets/{hw}/models.csv is missing: whole-model rows are needed "
                  "for this evaluation (run a model sweep with `exante sweep`)", file=sys.stderr)
            return 2
        gpus = sorted(set(layers.get("gpu_name", pd.Series(dtype=object)).dropna().astype(str)))
        source = f"datasets/{hw} ({', '.join(gpus) or 'unknown GPU'})"
    print(f"leave-one-family-out on {source}")
    t0 = time.perf_counter()
    try:
        out = leave_one_family_out(layers, models, quick=args.quick,
                                   time_base=args.time_family, energy_base=args.energy_family,
                                   intervals=not args.no_intervals)
    except ExanteError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    summary = summarize(out)
    os.makedirs(args.out, exist_ok=True)
    stamp = datetime.now(timezone.utc).isoformat(timespec="seconds")
    header = (f"**Leave-one-family-out accuracy, {source}** — {len(out)} whole-model rows, "
              f"{out['family'].nunique()} families, per-layer families time={args.time_family}, "
              f"energy={args.energy_family}{', quick' if args.quick else ''}; {stamp}. "
              "Baselines fitted per (mode, dtype) on the same training folds.")
    results = {"source": source, "hardware": hw, "created": stamp, "quick": args.quick,
               "families": {"time": args.time_family, "energy": args.energy_family},
               "n_rows": int(len(out)), "seconds": round(time.perf_counter() - t0, 1),
               "summary": summary}
    with open(os.path.join(args.out, "results.json"), "w") as fh:
        json.dump(results, fh, indent=2, default=float)
    md = markdown_table(summary, header)
    with open(os.path.join(args.out, "table.md"), "w") as fh:
        fh.write(md)
    cols = [c for c in ("model_ref", "family", "mode", "dtype", "optimizer", "batch", "time_s",
                        "pred_time_s", "time_lo", "time_hi", "energy_j", "pred_energy_j",
                        "energy_lo", "energy_hi", "flops_energy_j", "params_energy_j")
            if c in out.columns]
    out[cols].to_csv(os.path.join(args.out, "predictions.csv"), index=False)
    plotted = plot(out, os.path.join(args.out, "pred_vs_measured.png"),
                   f"exante leave-one-family-out — {source}")
    print(md)
    print(f"wrote {args.out}/results.json, table.md, predictions.csv"
          f"{', pred_vs_measured.png' if plotted else ' (matplotlib missing: no plot)'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
