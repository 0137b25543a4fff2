"""Seed 004 §4.1, §4.2 and §4.4 on our hardware: is training energy linear in the dataset size
and in the number of epochs, and what is the training overhead θ?

Measured (real training loop of lcbench: shuffled mini-batches gathered from device tensors
each epoch, last batch partial, total board energy between synced counter reads):

- dataset-size sweep: sizes ``base x {1, 2, 4, 8}`` at a fixed number of epochs (the largest
  of the epoch list);
- epoch sweep: epochs ``{1, 2, 4, 8}`` at a fixed size (the largest size); the run
  (largest size, most epochs) is shared by both sweeps and measured once;
- θ (seed 004 §4.4, T ∝ E·D·I·θ): forward-only passes (``model.eval()``,
  ``torch.inference_mode()``) over the same data at the same batch;
  θ = (E_train / samples trained) / (E_inference / samples inferred), and the seed's
  "overhead" = 1 - 1/θ (its Figure 9 approaches ~80 %).

Each run's prediction (``predictor.carbon.lifecycle.estimate``) is recorded BEFORE it is measured;
with no fitted artifact the rows say ``no prediction``. A straight line is fitted to
measured (and, separately, predicted) energies of each sweep: slope, intercept, R², largest
relative residual. Writes ``linearity_runs.csv`` (appended atomically, resumable),
``linearity_fits.csv``, ``theta.csv``, ``linearity.md`` and ``linearity.png`` (rebuilt from
all rows each time).

    python experiments/lifecycle/linearity.py --hardware h100 --out OUT/lifecycle
    python experiments/lifecycle/linearity.py --out /tmp/lc --smoke --device cpu --meter replay
"""

from __future__ import annotations

import argparse
import functools
import math
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
if HERE not in sys.path:
    sys.path.insert(0, HERE)

import lcbench as L  # noqa: E402

from profiling.dataset.atomic import write_atomic_chunks  # noqa: E402

DEFAULTS = dict(models="mlp-d10-w100", batch=32, optimizer="adam", base_size=16_000, factors="1,2,4,8",
                epochs="1,2,4,8", theta_passes=4)
SMOKE = dict(models="mlp-d2-w16", batch=16, optimizer="adam", base_size=40, factors="1,2,4,8", epochs="1,2,4,8",
             theta_passes=2)

# default --time-budget-s outside --smoke: the three scripts together stay within ~10 min of H100 time
DEFAULT_BUDGET_S = 180
RUNS = "linearity_runs.csv"
FITS = "linearity_fits.csv"
THETA = "theta.csv"
RUN_COLUMNS = (
    "run_key", "experiment", "kind", "model", "family", "model_ref", "params", "input_shape", "loss",
    "dataset_size", "epochs", "passes", "batch", "optimizer", "dtype", "steps", "samples", "warmup_step_s",
    "time_s", "energy_j", "energy_dynamic_j", "power_w", "energy_per_sample_j", "epoch_marks_json",
) + L.PREDICTION_COLUMNS + (
    "pred_inference_energy_j", "pred_inference_energy_j_low", "pred_inference_energy_j_high",
    "pred_inference_call_energy_j", "pred_ratio", "pred_error_pct", "in_interval",
) + L.PROVENANCE_COLUMNS
FIT_COLUMNS = (
    "model", "sweep", "x", "fixed", "batch", "optimizer", "dtype", "meter", "device", "hardware", "n_points",
    "x_values", "slope_j", "intercept_j", "r2", "max_abs_rel_residual", "dyn_slope_j", "dyn_r2",
    "pred_n_points", "pred_slope_j", "pred_intercept_j", "pred_r2", "slope_ratio_pred_over_measured",
)
THETA_COLUMNS = (
    "model", "dataset_size", "batch", "optimizer", "dtype", "meter", "device", "hardware", "train_epochs",
    "inference_passes", "train_energy_per_sample_j", "inference_energy_per_sample_j", "theta", "theta_dynamic",
    "overhead_pct", "pred_theta_step", "pred_theta_per_sample",
)


def _ints(text: str) -> list[int]:
    return [int(v) for v in str(text).split(",") if v.strip()]


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    L.common_args(p)
    p.add_argument("--models", default=None, help=f"comma-separated zoo models (default {DEFAULTS['models']})")
    p.add_argument("--batch", type=int, default=None, help=f"default {DEFAULTS['batch']} (Keras' default)")
    p.add_argument("--optimizer", default=None, choices=("sgd", "adam", "adamw"))
    p.add_argument("--base-size", type=int, default=None, help=f"N (default {DEFAULTS['base_size']})")
    p.add_argument("--factors", default=None, help="dataset sizes = base x these (default 1,2,4,8)")
    p.add_argument("--epochs", default=None, help="epoch sweep (default 1,2,4,8)")
    p.add_argument("--theta-passes", type=int, default=None, help="inference passes for θ (default 4)")
    p.add_argument("--warmup-steps", type=int, default=None)
    return p.parse_args(argv)


def plan(args) -> dict:
    d = dict(SMOKE if args.smoke else DEFAULTS)
    for k in d:
        v = getattr(args, k, None)
        if v is not None:
            d[k] = v
    sizes = [d["base_size"] * f for f in _ints(d["factors"])]
    epochs = _ints(d["epochs"])
    if len(sizes) < 2 or len(epochs) < 2:
        raise L.ExanteError("need at least two dataset sizes and two epoch counts to fit a line")
    fixed_e, fixed_n = max(epochs), max(sizes)
    runs = []      # (kind, n, epochs_or_passes) in an order that keeps partial results useful
    size_runs = [("train", n, fixed_e) for n in sorted(sizes)]
    epoch_runs = [("train", fixed_n, e) for e in sorted(epochs)]
    for pair in zip(size_runs, epoch_runs, strict=False):  # interleaved; the longer list's rest below
        for r in pair:
            if r not in runs:
                runs.append(r)
    for r in size_runs + epoch_runs:
        if r not in runs:
            runs.append(r)
    runs.append(("inference", fixed_n, int(d["theta_passes"])))
    return dict(d, sizes=sizes, epoch_list=epochs, fixed_epochs=fixed_e, fixed_size=fixed_n, runs=runs,
                models=[m.strip() for m in str(d["models"]).split(",") if m.strip()])


def run_key(kind, model, n, e, batch, opt, dtype, device, meter, hardware) -> str:
    if kind == "inference":
        return f"inference|{model}|n={n}|passes={e}|b={batch}|{dtype}|{device}|{meter}|{hardware}"
    return f"train|{model}|n={n}|e={e}|b={batch}|{opt}|{dtype}|{device}|{meter}|{hardware}"


STATUS = "linearity_status.json"


def own_files(repredicted: bool = False) -> tuple[str, ...]:
    """This script's outputs in --out (what --export copies)."""
    names = (RUNS, FITS, THETA, "linearity.md", "linearity.png")
    if repredicted:
        return tuple(L.repredicted_name(n) for n in names)
    return names + (STATUS, L.PREDICTIONS)


def main(argv=None) -> int:
    args = parse_args(argv)
    cfg = plan(args)
    if args.analyse_only:
        rc = L.post_analysis(analyse, args.out, cfg)
    else:
        rc = run(args, cfg)
    L.finish_files(args.out, own_files(args.repredict), args.export)
    return rc


def run(args, cfg) -> int:
    import torch

    warm = args.warmup_steps if args.warmup_steps is not None else (2 if args.smoke else 20)
    if args.repredict:
        dst = L.repredict_table(os.path.join(args.out, RUNS), RUN_COLUMNS, lambda r: _repredict_row(args, r))
        return L.post_analysis(analyse, args.out, cfg, os.path.basename(dst), "_repredicted")
    os.makedirs(args.out, exist_ok=True)
    tab = L.table(os.path.join(args.out, RUNS), RUN_COLUMNS)
    done = tab.keys()
    budget = L.Budget.from_args(args, DEFAULT_BUDGET_S)
    try:
        sess = L.open_session(args)
    except L.ExanteError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    dev = sess.device
    status = {"script": "linearity", "started": L.now_iso(), "session": sess.describe(), "plan": {
        k: cfg[k] for k in ("models", "batch", "optimizer", "sizes", "epoch_list", "fixed_epochs", "fixed_size",
                            "theta_passes")}, "measured": [], "skipped_existing": [], "skipped_budget": [],
              "failed": []}
    print(f"session {sess.session_id}: meter {args.meter}, device {dev}, idle {sess.idle_power_w:.1f} W; "
          f"{len(cfg['runs'])} runs per model")
    try:
        for model_name in cfg["models"]:
            spec = L.get_spec(model_name)
            todo = [r for r in cfg["runs"] if run_key(r[0], model_name, r[1], r[2], cfg["batch"], cfg["optimizer"],
                                                      args.dtype, dev.type, args.meter, args.hardware) not in done]
            status["skipped_existing"] += [
                run_key(r[0], model_name, r[1], r[2], cfg["batch"], cfg["optimizer"], args.dtype, dev.type,
                        args.meter, args.hardware) for r in cfg["runs"] if r not in todo]
            if not todo:
                continue
            if budget.exhausted():
                status["skipped_budget"] += [run_key(r[0], model_name, r[1], r[2], cfg["batch"], cfg["optimizer"],
                                                     args.dtype, dev.type, args.meter, args.hardware) for r in todo]
                continue
            x_all, y_all = L.make_dataset(spec, cfg["fixed_size"], dev, seed=args.seed)
            try:
                for kind, n, e in todo:
                    key = run_key(kind, model_name, n, e, cfg["batch"], cfg["optimizer"], args.dtype, dev.type,
                                  args.meter, args.hardware)
                    if budget.exhausted():
                        status["skipped_budget"].append(key)
                        print(f"time budget spent: not starting {key}")
                        continue
                    xs, ys = x_all[:n], y_all[:n]
                    row = L.attempt(status, key, functools.partial(measure, sess, args, cfg, spec, key, kind, n, e,
                                                                    xs, ys, warm, budget))
                    if row is None:
                        continue
                    tab.append([row])
                    status["measured"].append(key)
                    print(f"{kind} {model_name} N={n} {'E' if kind == 'train' else 'passes'}={e}: "
                          f"{row['energy_j']:.4g} J in {row['time_s']:.2f} s; predicted "
                          + (L.fmt(row["pred_energy_j"]) + " J" if row["prediction_status"] == "ok"
                             else row["prediction_status"]))
            finally:
                xs = ys = None  # views of x_all/y_all: drop them too so the device memory is freed
                del x_all, y_all
                L.free(dev)
                torch.manual_seed(args.seed)
    finally:
        sess.close()
        status["finished"] = L.now_iso()
        status["elapsed_s"] = budget.elapsed()
        L.write_status(args.out, STATUS, status)
    return L.post_analysis(analyse, args.out, cfg)


def measure(sess, args, cfg, spec, key, kind, n, e, x, y, warm, budget) -> dict | None:
    import torch

    dev = sess.device
    b, opt = cfg["batch"], cfg["optimizer"]
    pred = predict(args, spec, kind, n, e, b, opt, args.dtype)
    L.record_prediction(args.out, key, pred)
    torch.manual_seed(args.seed)
    model = spec.build().to(dev)
    full, last = L.steps_per_epoch(n, b)
    calls = (full + (1 if last else 0)) * e
    t_step = L.warm_up(spec, model, x, y, batch=b, optimizer=opt, dtype=args.dtype, steps=warm, last_batch=last,
                       inference=(kind == "inference"))
    est = 1.15 * t_step * calls + 0.5
    if not budget.fits(est):
        print(f"time budget: skipping {key} (about {est:.0f} s; {budget.elapsed():.0f} s used of "
              f"{budget.limit_s:.0f} s)")
        return None
    if kind == "train":
        m = sess.metered(lambda mark: L.train(model, x, y, spec=spec, epochs=e, batch=b, optimizer=opt,
                                              dtype=args.dtype, on_epoch=mark))
    else:
        m = sess.metered(lambda mark: L.infer(model, x, passes=e, batch=b, dtype=args.dtype, on_pass=mark))
    en, t = m["energy_j"], m["time_s"]
    c = L.compare(en, pred["pred_energy_j"], pred["pred_energy_j_low"], pred["pred_energy_j_high"])
    row = {
        "run_key": key, "experiment": "linearity", "kind": kind, "model": spec.name, "family": spec.family,
        "model_ref": spec.model_ref, "params": L.n_params(model), "input_shape": "x".join(map(str, spec.input_shape)),
        "loss": spec.loss if kind == "train" else None, "dataset_size": n,
        "epochs": e if kind == "train" else None, "passes": e if kind == "inference" else None, "batch": b,
        "optimizer": opt if kind == "train" else None, "dtype": args.dtype, "steps": int(m["result"]),
        "samples": n * e, "warmup_step_s": t_step, "time_s": t, "energy_j": en,
        "energy_dynamic_j": en - sess.idle_power_w * t, "power_w": en / t, "energy_per_sample_j": en / (n * e),
        "epoch_marks_json": L.dumps(m["marks"]),
        **{k: pred[k] for k in L.PREDICTION_COLUMNS},
        **{k: pred[k] for k in ("pred_inference_energy_j", "pred_inference_energy_j_low",
                                "pred_inference_energy_j_high", "pred_inference_call_energy_j")},
        "pred_ratio": c["ratio"], "pred_error_pct": c["error_pct"], "in_interval": c["in_interval"],
        **sess.provenance(),
    }
    return row


def predict(args, spec, kind, n, e, b, opt, dtype) -> dict:
    """The run's prediction; for an inference run the serving stage's numbers go to pred_*."""
    if kind == "train":
        return L.predict_run(spec, hardware=args.hardware, artifact_dir=args.artifact_dir, epochs=e,
                             dataset_size=n, batch=b, optimizer=opt, dtype=dtype)
    pred = L.predict_run(spec, hardware=args.hardware, artifact_dir=args.artifact_dir, epochs=None,
                         dataset_size=n, batch=b, optimizer=opt, dtype=dtype, inference_requests=n * e,
                         inference_batch=b)
    if pred["prediction_status"] == "ok":
        pred.update(pred_energy_j=pred["pred_inference_energy_j"], pred_energy_j_low=pred[
            "pred_inference_energy_j_low"], pred_energy_j_high=pred["pred_inference_energy_j_high"],
            pred_time_s=pred["pred_inference_time_s"], pred_step_energy_j=pred["pred_inference_call_energy_j"])
    return pred


def _repredict_row(args, r: dict) -> dict:
    kind = r["kind"]
    e = int(r["epochs"] if kind == "train" else r["passes"])
    return predict(args, L.get_spec(r["model"]), kind, int(r["dataset_size"]), e, int(r["batch"]),
                   r["optimizer"] or "adam", r["dtype"])


# --------------------------------------------------------------------------- analysis


def linfit(x, y) -> dict:
    """Least-squares line y = a x + b: slope, intercept, R², largest |residual| / y."""
    import numpy as np

    x = np.asarray(x, float)
    y = np.asarray(y, float)
    ok = np.isfinite(x) & np.isfinite(y)
    x, y = x[ok], y[ok]
    out = {"n": int(len(x)), "slope": None, "intercept": None, "r2": None, "max_abs_rel_residual": None}
    if len(x) < 2 or np.ptp(x) == 0:
        return out
    a, b = np.polyfit(x, y, 1)
    res = y - (a * x + b)
    ss_tot = float(((y - y.mean()) ** 2).sum())
    out.update(slope=float(a), intercept=float(b), r2=(1.0 - float((res ** 2).sum()) / ss_tot) if ss_tot > 0 else None,
               max_abs_rel_residual=float(np.max(np.abs(res) / np.where(y != 0, np.abs(y), np.nan))))
    return out


def _num(v):
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None


def analyse(out_dir: str, cfg: dict, runs: str = RUNS, suffix: str = "") -> dict:
    """Fits and θ from every row of ``runs`` (linearity_runs.csv) matching the plan's sweeps
    (grouped by model, batch, optimizer, dtype, meter, device, hardware); writes FITS, THETA,
    the markdown summary and the plot (names + ``suffix``). Returns {"fits", "theta"}."""
    df = L.read_rows(os.path.join(out_dir, runs))
    fits, thetas = [], []
    if len(df):
        tr = df[df["kind"] == "train"]
        inf = df[df["kind"] == "inference"]
        gcols = ["model", "batch", "dtype", "meter", "device", "hardware"]
        for gk, g in tr.groupby(gcols + ["optimizer"], dropna=False):
            base = dict(zip(gcols + ["optimizer"], gk, strict=True))
            for sweep, xcol, sel, fixed in (
                    ("dataset_size", "dataset_size", g[(g["epochs"] == cfg["fixed_epochs"])
                                                      & g["dataset_size"].isin(cfg["sizes"])], cfg["fixed_epochs"]),
                    ("epochs", "epochs", g[(g["dataset_size"] == cfg["fixed_size"])
                                          & g["epochs"].isin(cfg["epoch_list"])], cfg["fixed_size"])):
                if not len(sel):
                    continue
                sel = sel.sort_values(xcol)
                mf = linfit(sel[xcol], sel["energy_j"])
                dyn = linfit(sel[xcol], sel["energy_dynamic_j"])
                ps = sel[sel["prediction_status"] == "ok"]
                pf = linfit(ps[xcol], ps["pred_energy_j"]) if len(ps) else linfit([], [])
                fits.append({**base, "sweep": sweep, "x": "samples in the dataset" if sweep == "dataset_size"
                             else "epochs", "fixed": (f"epochs={fixed}" if sweep == "dataset_size" else f"N={fixed}"),
                             "n_points": mf["n"], "x_values": L.dumps([int(v) for v in sel[xcol]]),
                             "slope_j": mf["slope"], "intercept_j": mf["intercept"], "r2": mf["r2"],
                             "max_abs_rel_residual": mf["max_abs_rel_residual"], "dyn_slope_j": dyn["slope"],
                             "dyn_r2": dyn["r2"], "pred_n_points": pf["n"], "pred_slope_j": pf["slope"],
                             "pred_intercept_j": pf["intercept"], "pred_r2": pf["r2"],
                             "slope_ratio_pred_over_measured": (pf["slope"] / mf["slope"]) if (
                                 pf["slope"] is not None and mf["slope"]) else None})
            # θ: the most-epochs training run at the fixed size vs the inference passes over it
            t_rows = g[g["dataset_size"] == cfg["fixed_size"]].sort_values("epochs")
            keys = {k: base[k] for k in gcols}
            i_rows = inf
            for k, v in keys.items():
                i_rows = i_rows[i_rows[k] == v]
            i_rows = i_rows[i_rows["dataset_size"] == cfg["fixed_size"]].sort_values("passes")
            if len(t_rows) and len(i_rows):
                t, i = t_rows.iloc[-1], i_rows.iloc[-1]
                ts, is_ = float(t["samples"]), float(i["samples"])
                tps, ips = float(t["energy_j"]) / ts, float(i["energy_j"]) / is_
                tdyn, idyn = float(t["energy_dynamic_j"]) / ts, float(i["energy_dynamic_j"]) / is_
                theta = tps / ips if ips > 0 else None
                pt, pi = _num(t["pred_energy_j"]), _num(i["pred_energy_j"])
                thetas.append({**base, "dataset_size": cfg["fixed_size"], "train_epochs": int(t["epochs"]),
                               "inference_passes": int(i["passes"]), "train_energy_per_sample_j": tps,
                               "inference_energy_per_sample_j": ips, "theta": theta,
                               "theta_dynamic": (tdyn / idyn) if idyn > 0 else None,
                               "overhead_pct": (100.0 * (1 - 1 / theta)) if theta else None,
                               "pred_theta_step": _num(t["pred_theta"]),
                               "pred_theta_per_sample": (pt / ts) / (pi / is_) if pt and pi else None})
    def name(base):
        root, ext = os.path.splitext(base)
        return os.path.join(out_dir, root + suffix + ext)

    _rewrite(L.schema.CsvTable(name(FITS), FIT_COLUMNS, key_columns=("model",)), fits)
    _rewrite(L.schema.CsvTable(name(THETA), THETA_COLUMNS, key_columns=("model",)), thetas)
    _markdown(name("linearity.md"), fits, thetas, df, repredicted=bool(suffix))
    _plot(name("linearity.png"), df, cfg)
    return {"fits": fits, "theta": thetas}


def _rewrite(tab, rows) -> None:
    """Derived tables are rebuilt from the runs each time (atomic replace)."""
    enc = tab.encode([{c: L.nan_to_none(r.get(c)) for c in tab.columns} for r in rows], with_header=True)
    write_atomic_chunks(tab.path, [enc])


def _markdown(path, fits, thetas, df, repredicted: bool = False) -> None:
    lines = ["# Linearity of training energy in dataset size and epochs; training overhead θ\n",
             f"Runs measured: {len(df)}. Energy = total GPU board energy of the run (J). A line y = slope·x + "
             "intercept is fitted to measured and, separately, to predicted energies.\n"]
    if fits:
        lines.append(L.markdown_table(
            ("model", "sweep", "fixed", "points", "slope J", "intercept J", "R²", "max |rel resid|",
             "pred slope J", "pred R²", "slope pred/meas", "meter"),
            [(f["model"], f["sweep"], f["fixed"], f["n_points"], L.fmt(f["slope_j"]), L.fmt(f["intercept_j"]),
              L.fmt(f["r2"], ".5f"), L.fmt(f["max_abs_rel_residual"], ".3f"), L.fmt(f["pred_slope_j"]),
              L.fmt(f["pred_r2"], ".5f"), L.fmt(f["slope_ratio_pred_over_measured"], ".3f"), f["meter"])
             for f in fits]))
    if thetas:
        lines.append("\nθ = training energy per sample / inference energy per sample (seed 004 §4.4); "
                     "overhead = 1 - 1/θ.\n")
        lines.append(L.markdown_table(
            ("model", "N", "batch", "optimizer", "θ", "θ (dynamic)", "overhead %", "pred θ (step)",
             "pred θ (per sample)", "meter"),
            [(t["model"], t["dataset_size"], t["batch"], t["optimizer"], L.fmt(t["theta"], ".3f"),
              L.fmt(t["theta_dynamic"], ".3f"), L.fmt(t["overhead_pct"], ".1f"), L.fmt(t["pred_theta_step"], ".3f"),
              L.fmt(t["pred_theta_per_sample"], ".3f"), t["meter"]) for t in thetas]))
    if len(df) and not (df["prediction_status"] == "ok").any():
        lines.append("\nNo prediction: no fitted artifact for this hardware; measurements only.\n")
    if repredicted:
        lines.append("\nPredictions in this file were made AFTER the measurement (--repredict).\n")
    write_atomic_chunks(path, ["\n".join(lines).encode()])


def _plot(path, df, cfg) -> None:
    if not len(df):
        return
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return
    tr = df[df["kind"] == "train"]
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for ax, (sweep, xcol, sel) in zip(axes, (
            ("dataset size", "dataset_size", tr[tr["epochs"] == cfg["fixed_epochs"]]),
            ("epochs", "epochs", tr[tr["dataset_size"] == cfg["fixed_size"]])), strict=True):
        for (model, meter), g in sel.groupby(["model", "meter"]):
            g = g.sort_values(xcol)
            ax.plot(g[xcol], g["energy_j"], "o-", label=f"{model} measured ({meter})")
            ok = g[g["prediction_status"] == "ok"]
            if len(ok):
                ax.plot(ok[xcol], ok["pred_energy_j"], "s--", mfc="none", label=f"{model} predicted")
        ax.set_xlabel(sweep + (f" (epochs = {cfg['fixed_epochs']})" if xcol == "dataset_size"
                               else f" (N = {cfg['fixed_size']})"))
        ax.set_ylabel("training energy (J, GPU board)")
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


if __name__ == "__main__":
    sys.exit(main())
