"""Validate exante's life-cycle training estimate against measured training runs.

For each run (a model of the zoo, a synthetic dataset held on the device, epochs, batch,
optimizer) this script

1. FIRST records the ex-ante prediction: ``predictor.carbon.lifecycle.estimate`` of a Scenario with
   that TrainingRun (``drop_last=False``), written to ``predictions.json`` before any
   training; without a fitted artifact for ``--hardware`` the row says ``no prediction``;
2. warms the device up on a copy of the model (not measured);
3. THEN trains the full epochs -- a fresh ``randperm`` on the device each epoch, mini-batches
   gathered from the device tensors, the last batch partial -- between two synced reads of
   the energy meter (total board energy; counter read again at each epoch end), and records
   wall time, the session's idle power (``protocol.measure_idle_power``) and provenance;
4. appends one row to ``training_runs.csv`` (atomic; runs already there are skipped) with
   predicted / measured (``pred_ratio``) and ``pred_error_pct``.

    python experiments/lifecycle/validate_training.py --hardware h100 --out OUT/lifecycle
    python experiments/lifecycle/validate_training.py --out /tmp/lc --smoke --device cpu --meter replay

See experiments/lifecycle/README.md for the columns.
"""

from __future__ import annotations

import argparse
import functools
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
if HERE not in sys.path:
    sys.path.insert(0, HERE)

import lcbench as L  # noqa: E402

from profiling.dataset.atomic import write_atomic_chunks  # noqa: E402

# (model, dataset_size, epochs, batch, optimizer): each run ~5-15 s on one H100 by a launch-count
# estimate (not measured yet), ~1-2 min for the script in all; see README.md
DEFAULT_RUNS = (
    ("mlp-d10-w100", 100_000, 3, 32, "sgd"),       # seed 004 Table 6 shape, seed's 100'000 samples
    ("mlp-d100-w10", 100_000, 1, 32, "adam"),      # seed 004 Table 6 deep counterpart
    ("mlp-d4-w4096", 100_000, 6, 512, "adam"),     # GPU-bound matmuls; last batch 160
    ("cnn-small", 50_000, 12, 128, "sgd"),         # last batch 80
    ("transformer-small", 50_000, 8, 64, "adam"),  # last batch 16
)
SMOKE_RUNS = (
    ("mlp-d2-w16", 200, 2, 64, "sgd"),             # last batch 8
    ("cnn-tiny", 100, 2, 32, "adam"),
    ("transformer-tiny", 100, 2, 32, "adam"),
)

# default --time-budget-s outside --smoke: the three scripts together stay within ~10 min of H100 time
DEFAULT_BUDGET_S = 120
RESULTS = "training_runs.csv"
RUN_COLUMNS = (
    "run_key", "experiment", "model", "family", "model_ref", "params", "input_shape", "out_features", "loss",
    "dataset_size", "epochs", "batch", "optimizer", "dtype", "drop_last", "steps_per_epoch", "last_batch", "steps",
    "samples", "warmup_steps", "warmup_step_s",
    "time_s", "energy_j", "energy_dynamic_j", "power_w", "energy_per_step_j", "time_per_step_s",
    "energy_per_sample_j", "epoch_marks_json",
) + L.PREDICTION_COLUMNS + (
    "pred_ratio", "pred_error_pct", "in_interval", "time_ratio", "pue", "grid_g_per_kwh", "measured_co2_kg",
) + L.PROVENANCE_COLUMNS


def run_key(model, n, epochs, batch, opt, dtype, device, meter, hardware) -> str:
    return f"train|{model}|n={n}|e={epochs}|b={batch}|{opt}|{dtype}|{device}|{meter}|{hardware}"


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    L.common_args(p)
    p.add_argument("--models", default=None, help="comma-separated subset of the run list's models")
    p.add_argument("--warmup-steps", type=int, default=None, help="warm-up steps on a copy (default 20; smoke 2)")
    p.add_argument("--no-epoch-marks", action="store_true", help="do not read the counter at epoch ends")
    return p.parse_args(argv)


STATUS = "validate_status.json"


def own_files(repredicted: bool = False) -> tuple[str, ...]:
    """This script's outputs in --out (what --export copies)."""
    if repredicted:
        return (L.repredicted_name(RESULTS), "summary_repredicted.md")
    return (RESULTS, "summary.md", STATUS, L.PREDICTIONS)


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.analyse_only:
        rc = L.post_analysis(write_summary, args.out)
    else:
        rc = run(args)
    L.finish_files(args.out, own_files(args.repredict), args.export)
    return rc


def run(args) -> int:
    from predictor.carbon import regions as carbon
    from profiling.errors import ExanteError

    runs = SMOKE_RUNS if args.smoke else DEFAULT_RUNS
    if args.models:
        generic = SMOKE_RUNS[0][1:] if args.smoke else (20_000, 2, 64, "adam")
        chosen = []
        for name in (m.strip() for m in args.models.split(",") if m.strip()):
            L.get_spec(name)  # unknown names fail here
            chosen += [r for r in runs if r[0] == name] or [(name, *generic)]
        runs = tuple(chosen)
    warm = args.warmup_steps if args.warmup_steps is not None else (2 if args.smoke else 20)
    if args.repredict:
        dst = L.repredict_table(os.path.join(args.out, RESULTS), RUN_COLUMNS, lambda r: L.predict_run(
            L.get_spec(r["model"]), hardware=args.hardware, artifact_dir=args.artifact_dir, epochs=int(r["epochs"]),
            dataset_size=int(r["dataset_size"]), batch=int(r["batch"]), optimizer=r["optimizer"], dtype=r["dtype"],
            drop_last=r["drop_last"] == "true"))
        return L.post_analysis(write_summary, args.out, os.path.basename(dst), "summary_repredicted.md")
    os.makedirs(args.out, exist_ok=True)
    tab = L.table(os.path.join(args.out, RESULTS), RUN_COLUMNS)
    done = tab.keys()
    budget = L.Budget.from_args(args, DEFAULT_BUDGET_S)
    try:
        sess = L.open_session(args)
    except ExanteError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    dev = sess.device
    grid = carbon.grid_intensity(None, None)
    status = {"script": "validate_training", "started": L.now_iso(), "session": sess.describe(), "measured": [],
              "skipped_existing": [], "skipped_budget": [], "failed": []}
    print(f"session {sess.session_id}: meter {args.meter}, device {dev}, idle {sess.idle_power_w:.1f} W, "
          f"GPU {sess.env.get('gpu_name') or '-'}")
    try:
        for model_name, n, epochs, batch, opt in runs:
            key = run_key(model_name, n, epochs, batch, opt, args.dtype, dev.type, args.meter, args.hardware)
            if key in done:
                status["skipped_existing"].append(key)
                print(f"skip (already measured): {key}")
                continue
            if budget.exhausted():
                status["skipped_budget"].append(key)
                print(f"time budget spent: not starting {key}")
                continue
            row = L.attempt(status, key, functools.partial(measure_run, sess, args, key, model_name, n, epochs,
                                                                batch, opt, warm, budget, grid))
            if row is None:
                continue
            tab.append([row])
            status["measured"].append(key)
            p = row["pred_energy_j"]
            print(f"{model_name}: N={n} E={epochs} b={batch} {opt}: measured {row['energy_j']:.4g} J in "
                  f"{row['time_s']:.2f} s; predicted "
                  + (f"{p:.4g} J ({row['pred_error_pct']:+.1f} %)" if p is not None else row["prediction_status"]))
    finally:
        sess.close()
        status["finished"] = L.now_iso()
        status["elapsed_s"] = budget.elapsed()
        L.write_status(args.out, STATUS, status)
    return L.post_analysis(write_summary, args.out)


def measure_run(sess, args, key, model_name, n, epochs, batch, opt, warm, budget, grid) -> dict | None:
    import torch

    from predictor.carbon import regions as carbon

    spec = L.get_spec(model_name)
    dev = sess.device
    # 1. the prediction, recorded before anything is trained
    pred = L.predict_run(spec, hardware=args.hardware, artifact_dir=args.artifact_dir, epochs=epochs,
                         dataset_size=n, batch=batch, optimizer=opt, dtype=args.dtype, drop_last=False)
    L.record_prediction(args.out, key, pred)
    torch.manual_seed(args.seed)
    model = spec.build().to(dev)
    x, y = L.make_dataset(spec, n, dev, seed=args.seed)
    full, last = L.steps_per_epoch(n, batch)
    steps_total = (full + (1 if last else 0)) * epochs
    try:
        # 2. warm-up on a copy; estimate the run's duration for the time budget
        t_step = L.warm_up(spec, model, x, y, batch=batch, optimizer=opt, dtype=args.dtype, steps=warm,
                           last_batch=last)
        est = 1.15 * t_step * steps_total + 0.5
        if not budget.fits(est):
            print(f"time budget: skipping {key} (about {est:.0f} s, {budget.elapsed():.0f} s used "
                  f"of {budget.limit_s:.0f} s)")
            return None
        # 3. the measured training run
        m = sess.metered(lambda mark: L.train(model, x, y, spec=spec, epochs=epochs, batch=batch, optimizer=opt,
                                              dtype=args.dtype, on_epoch=mark),
                         marks=not args.no_epoch_marks)
    finally:
        x = y = None  # free the device copies before the next run
        L.free(dev)
    steps = int(m["result"])
    e, t = m["energy_j"], m["time_s"]
    cmp_ = L.compare(e, pred["pred_energy_j"], pred["pred_energy_j_low"], pred["pred_energy_j_high"])
    t_cmp = L.compare(t, pred["pred_time_s"])
    kwh = carbon.to_kwh(e) * carbon.DEFAULT_PUE
    row = {
        "run_key": key, "experiment": "validate_training", "model": model_name, "family": spec.family,
        "model_ref": spec.model_ref, "params": L.n_params(model), "input_shape": "x".join(map(str, spec.input_shape)),
        "out_features": spec.out_features, "loss": spec.loss, "dataset_size": n, "epochs": epochs, "batch": batch,
        "optimizer": opt, "dtype": args.dtype, "drop_last": False, "steps_per_epoch": full + (1 if last else 0),
        "last_batch": last or None, "steps": steps, "samples": n * epochs, "warmup_steps": warm,
        "warmup_step_s": t_step, "time_s": t, "energy_j": e, "energy_dynamic_j": e - sess.idle_power_w * t,
        "power_w": e / t, "energy_per_step_j": e / steps, "time_per_step_s": t / steps,
        "energy_per_sample_j": e / (n * epochs), "epoch_marks_json": L.dumps(m["marks"]),
        **{k: pred[k] for k in L.PREDICTION_COLUMNS},
        "pred_ratio": cmp_["ratio"], "pred_error_pct": cmp_["error_pct"], "in_interval": cmp_["in_interval"],
        "time_ratio": t_cmp["ratio"], "pue": carbon.DEFAULT_PUE, "grid_g_per_kwh": grid.value_g_per_kwh,
        "measured_co2_kg": carbon.co2_kg(kwh, grid),
        **sess.provenance(),
    }
    return row


def write_summary(out_dir: str, results: str = RESULTS, name: str = "summary.md") -> None:
    """``summary.md``: every row of training_runs.csv, measured beside predicted."""
    df = L.read_rows(os.path.join(out_dir, results))
    lines = ["# Training runs: measured vs predicted (exante life-cycle estimate)\n",
             f"Rows: {len(df)}. Energy = total GPU board energy of the whole training run (J); "
             "predicted = `predictor.carbon.lifecycle.estimate`; error = (predicted - measured) / measured.\n"]
    if len(df):
        rows = []
        for r in df.itertuples(index=False):
            pred = (f"{L.fmt(r.pred_energy_j)} [{L.fmt(r.pred_energy_j_low)}, {L.fmt(r.pred_energy_j_high)}]"
                    if r.prediction_status == "ok" else str(r.prediction_status))
            rows.append((r.model, r.dataset_size, r.epochs, r.batch, r.optimizer, r.meter, L.fmt(r.time_s),
                         L.fmt(r.energy_j), L.fmt(r.power_w, ".1f"), pred, L.fmt(r.pred_error_pct, "+.1f"),
                         L.fmt(r.time_ratio, ".3f")))
        lines.append(L.markdown_table(
            ("model", "N", "epochs", "batch", "opt", "meter", "time s", "measured J", "mean W",
             "predicted J [low, high]", "error %", "time pred/meas"), rows))
        ok = df[df["prediction_status"] == "ok"]
        if len(ok):
            err = ok["pred_error_pct"].abs()
            lines.append(f"\nWith a prediction: {len(ok)} runs, mean |error| {err.mean():.1f} %, "
                         f"median {err.median():.1f} %, measurement inside the interval in "
                         f"{int(ok['in_interval'].astype(str).str.lower().eq('true').sum())} of {len(ok)}.\n")
        else:
            lines.append("\nNo run has a prediction (no fitted artifact for this hardware).\n")
        if df["meter_measured"].astype(str).str.lower().eq("false").any():
            lines.append("\nSome rows use the `estimated` meter: rated power x time, NOT a measurement.\n")
    if results != RESULTS:
        lines.append(f"\nPredictions in this file were made AFTER the measurement ({results}).\n")
    write_atomic_chunks(os.path.join(out_dir, name), ["\n".join(lines).encode()])


if __name__ == "__main__":
    sys.exit(main())
