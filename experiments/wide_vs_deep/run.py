"""Seed 004 §4.5.2 / Table 6 on our hardware: wide vs deep MLPs, measured and predicted.

The grid is seed 004's Table 6 (/work/shared/seeds/004_ee68596bbb593c7f.txt, header line 358,
rows lines 359-377; 18 MLPs with input size 100, ``Layers`` hidden Linear layers of ``Layer
Size`` units and one output, trained on 100'000 samples for 10 epochs): our parameter count
of ``mlp:in=100,depth=Layers,width=Layer Size,out=1`` (ReLU between layers) equals the
table's "Train. Params" for every row (checked at import).

For each MLP the WHOLE model is measured with the protocol (``profiling.measure.protocol.measure``
through a ``profiling.measure.profiler.ProfileSession`` on ``profiling.measure.replay.build_model_workload``;
no per-layer replay, to keep it cheap): one ``train_step`` (DESIGN §4: zero_grad(set_to_none)
-> forward -> MSE loss -> backward -> optimizer step) and one ``inference`` call at the batch
(default 32: Keras' default, the seed does not state its batch), and predicted with
``predictor.engine.predict`` when a fitted artifact exists (else ``no prediction``). The per-step
energy is also extrapolated to the seed's run (ceil(100'000 / batch) x 10 steps) beside the
seed's kWh -- a different GPU (RTX 2080 Ti), framework (Keras) and meter, so compare shapes
and ranks, not values.

Writes ``wide_vs_deep.csv`` (one row per (config, mode), appended atomically; resumable),
``wide_vs_deep_models.csv`` (the same measurements as dataset model rows,
``profiling.dataset.schema.MODEL_COLUMNS``),
``table.md`` and ``wide_vs_deep.png`` (energy vs parameters and vs nodes, wide and deep).

    python experiments/wide_vs_deep/run.py --hardware h100 --out OUT/wide_vs_deep
    python experiments/wide_vs_deep/run.py --out /tmp/wvd --smoke --device cpu --meter replay
"""

from __future__ import annotations

import argparse
import functools
import math
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
LIFECYCLE = os.path.join(os.path.dirname(HERE), "lifecycle")
if LIFECYCLE not in sys.path:
    sys.path.insert(0, LIFECYCLE)

import lcbench as L  # noqa: E402

from profiling.dataset.atomic import write_atomic_chunks  # noqa: E402

SEED_FILE = "/work/shared/seeds/004_ee68596bbb593c7f.txt"
SEED_SAMPLES, SEED_EPOCHS, SEED_INPUT = 100_000, 10, 100
# (seed line, Layers, Layer Size, Nodes, Train. Params, Energy kWh) -- seed 004 Table 6, verbatim
# (lines 375-377 read "0,00166 2", "0,00239 1", "0,00329 2" in the text: a split digit)
SEED_GRID = (
    (359, 100, 10, 1000, 11911, 0.000599),
    (360, 10, 100, 1000, 101101, 0.000241),
    (361, 200, 10, 2000, 22911, 0.001125),
    (362, 100, 20, 2000, 43621, 0.000674),
    (363, 20, 100, 2000, 202101, 0.000353),
    (364, 10, 200, 2000, 382201, 0.000434),
    (365, 300, 10, 3000, 33911, 0.001678),
    (366, 100, 30, 3000, 95131, 0.000761),
    (367, 30, 100, 3000, 303101, 0.000475),
    (368, 10, 300, 3000, 843301, 0.000806),
    (369, 200, 20, 4000, 85621, 0.001228),
    (370, 20, 200, 4000, 784201, 0.000797),
    (371, 300, 20, 6000, 127621, 0.002269),
    (372, 200, 30, 6000, 188131, 0.001512),
    (373, 30, 200, 6000, 1186201, 0.001273),
    (375, 20, 300, 6000, 1746301, 0.001662),
    (376, 300, 30, 9000, 281131, 0.002391),
    (377, 30, 300, 9000, 2649301, 0.003292),
)
# CPU smoke grid: the same wide/deep pairing, tiny (input 16)
SMOKE_GRID = tuple((None, d, w, d * w, None, None) for d, w in ((8, 4), (4, 8), (12, 4), (4, 12)))
SMOKE_INPUT = 16


def mlp_params(in_f: int, depth: int, width: int, out_f: int = 1) -> int:
    return in_f * width + width + (depth - 1) * (width * width + width) + width * out_f + out_f


for _line, _d, _w, _nodes, _p, _kwh in SEED_GRID:  # our MLP is the seed's MLP
    assert mlp_params(SEED_INPUT, _d, _w) == _p and _d * _w == _nodes, _line

# default --time-budget-s outside --smoke: the three scripts together stay within ~10 min of H100 time
DEFAULT_BUDGET_S = 210
RESULTS = "wide_vs_deep.csv"
COLUMNS = (
    "run_key", "experiment", "seed_line", "layers", "layer_size", "nodes", "shape", "input_size", "model_ref",
    "params", "params_seed", "mode", "batch", "optimizer", "dtype",
    "time_s", "energy_j", "energy_dynamic_j", "power_w", "spread", "n_windows", "calls_per_window", "remeasured",
    "energy_per_sample_j", "seed_run_steps", "run_energy_j", "run_energy_kwh", "seed_energy_kwh",
    "prediction_status", "prediction_note", "artifact_id", "predicted_at", "pred_energy_j", "pred_energy_j_low",
    "pred_energy_j_high", "pred_time_s", "pred_ratio", "pred_error_pct", "in_interval",
) + L.PROVENANCE_COLUMNS


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    L.common_args(p)
    p.add_argument("--batch", type=int, default=32, help="batch of the measured calls (default 32, Keras' default)")
    p.add_argument("--optimizer", default="adam", choices=("sgd", "adam", "adamw"))
    p.add_argument("--modes", default="train_step,inference")
    p.add_argument("--configs", default=None, help="subset, e.g. '100x10,10x100' (Layers x Layer Size)")
    p.add_argument("--min-window-s", type=float, default=None, help="protocol window (default 1.5 s)")
    p.add_argument("--max-rounds", type=int, default=2, help="protocol re-measure rounds (default 2)")
    return p.parse_args(argv)


def run_key(d, w, in_f, mode, batch, opt, dtype, device, meter, hardware) -> str:
    return (f"wvd|L{d}|W{w}|in{in_f}|{mode}|b{batch}|{opt if mode == 'train_step' else '-'}|{dtype}|{device}|"
            f"{meter}|{hardware}")


def protocol_kwargs(args) -> dict:
    if args.smoke:
        return dict(min_window_s=args.min_window_s or 0.02, n_windows=2, max_rounds=1, warmup_s=0.0,
                    warmup_calls=1, calibrate_s=0.005, jitter_s=(0.0, 0.0), max_total_s=60.0)
    return dict(min_window_s=args.min_window_s or 1.5, n_windows=2, max_rounds=max(1, args.max_rounds))


MODELS = "wide_vs_deep_models.csv"
STATUS = "wide_vs_deep_status.json"


def own_files(repredicted: bool = False) -> tuple[str, ...]:
    """This script's outputs in --out (what --export copies)."""
    if repredicted:
        return (L.repredicted_name(RESULTS), "table_repredicted.md", "wide_vs_deep_repredicted.png",
                "wide_vs_deep_summary_repredicted.json")
    return (RESULTS, MODELS, "table.md", "wide_vs_deep.png", "wide_vs_deep_summary.json", STATUS)


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.analyse_only:
        rc = L.post_analysis(analyse, args.out)
    elif args.repredict:
        rc = repredict(args)
    else:
        rc = run(args)
    L.finish_files(args.out, own_files(args.repredict), args.export)
    return rc


def run(args) -> int:
    from profiling.dataset import schema
    from profiling.measure.profiler import ProfileSession

    grid = SMOKE_GRID if args.smoke else SEED_GRID
    in_f = SMOKE_INPUT if args.smoke else SEED_INPUT
    if args.configs:
        want = {tuple(int(v) for v in c.lower().split("x")) for c in args.configs.split(",") if c.strip()}
        grid = tuple(g for g in grid if (g[1], g[2]) in want)
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    for m in modes:
        schema.check_choice("mode", m, ("train_step", "inference"))
    os.makedirs(args.out, exist_ok=True)
    tab = L.table(os.path.join(args.out, RESULTS), COLUMNS)
    models_tab = L.schema.CsvTable(os.path.join(args.out, MODELS), schema.MODEL_COLUMNS)
    done = tab.keys()
    budget = L.Budget.from_args(args, DEFAULT_BUDGET_S)
    try:
        sess = L.open_session(args)
    except L.ExanteError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    pk = protocol_kwargs(args)
    psess = ProfileSession(sess.meter, device=sess.device, hardware=args.hardware, sweep_id="wide_vs_deep",
                           idle_power_w=sess.idle_power_w, protocol_kwargs=pk, session_id=sess.session_id)
    have_art, art_note, art_id = L.artifact_status(args.hardware, args.artifact_dir)
    status = {"script": "wide_vs_deep", "started": L.now_iso(), "session": sess.describe(), "protocol_kwargs": pk,
              "artifact": art_id or art_note, "measured": [], "skipped_existing": [], "skipped_budget": [],
              "failed": []}
    per_measure_s = 1.0 + pk["n_windows"] * (pk["min_window_s"] + 0.1) + (0.0 if args.smoke else 0.5)
    print(f"session {sess.session_id}: meter {args.meter}, device {sess.device}, idle {sess.idle_power_w:.1f} W; "
          f"{len(grid)} configs x {len(modes)} modes; artifact: {art_id or 'none (no prediction)'}")
    try:
        for mode in modes:                  # every train_step first: the seed's Table 6 is training energy
            for line, d, w, nodes, p_seed, kwh in grid:
                key = run_key(d, w, in_f, mode, args.batch, args.optimizer, args.dtype, sess.device.type, args.meter,
                              args.hardware)
                if key in done:
                    status["skipped_existing"].append(key)
                    continue
                if not budget.fits(per_measure_s):
                    status["skipped_budget"].append(key)
                    continue
                rows = L.attempt(status, key, functools.partial(measure_one, args, sess, psess, key, line, d, w, nodes,
                                                                     p_seed, kwh, in_f, mode, have_art, art_note,
                                                                     art_id),
                                 cleanup=lambda: L.free(sess.device))
                if rows is None:
                    continue
                row, mrow = rows
                models_tab.append([mrow])
                tab.append([row])           # the resume key goes in last
                status["measured"].append(key)
                print(f"{mode} {d}x{w} ({row['params']} params): {row['energy_j'] * 1e3:.4g} mJ/call, "
                      f"{row['time_s'] * 1e3:.3g} ms, spread {100 * (row['spread'] or 0):.1f} %; predicted "
                      + (f"{row['pred_energy_j'] * 1e3:.4g} mJ" if row["prediction_status"] == "ok"
                         else row["prediction_status"]))
    finally:
        psess.close()
        sess.close()
        status["finished"] = L.now_iso()
        status["elapsed_s"] = budget.elapsed()
        L.write_status(args.out, STATUS, status)
    return L.post_analysis(analyse, args.out)


def _layer_totals(model, xs, dtype, train) -> tuple[dict, dict]:
    """(layer_counts, totals) for a dataset model row, from one captured forward."""
    from profiling.capture.core import capture
    from profiling.features.api import layer_features

    cap = capture(model, xs, dtype=dtype, train=train)
    counts: dict = {}
    totals = {"params": L.n_params(model), "macs": 0, "flops": 0, "bytes_read": 0, "bytes_written": 0}
    unsupported = set()
    for layer in cap.layers:
        try:
            f = layer_features(layer.config) if layer.supported else None
        except Exception:  # noqa: BLE001 - a feature rule that fails: its type is listed below
            f = None
        if f is None:
            unsupported.add(layer.config.type)
            continue
        k = layer.config.key()
        counts[k] = counts.get(k, 0) + layer.count
        for fld in ("macs", "flops", "bytes_read", "bytes_written"):
            totals[fld] += layer.count * int(f.get(fld) or 0)
    totals.update(n_unsupported=len(unsupported), unsupported_types=sorted(unsupported), layers_reused=0)
    return counts, totals


def predict_one(args, model, b, in_f, mode, opt, dtype, have_art, art_note, art_id) -> dict:
    """``predictor.engine.predict`` of one call (``no prediction`` without an artifact)."""
    pred = {"prediction_status": L.NO_PREDICTION, "prediction_note": art_note or None, "artifact_id": art_id,
            "predicted_at": L.now_iso(), "pred_energy_j": None, "pred_energy_j_low": None, "pred_energy_j_high": None,
            "pred_time_s": None}
    if not have_art:
        return pred
    try:
        from predictor.engine.predict import predict

        p, notes = L.quiet_warnings(lambda: predict(model, (b, in_f), mode=mode, dtype=dtype, hardware=args.hardware,
                                            optimizer=opt, artifact_dir=args.artifact_dir))
        pred.update(prediction_status="ok", prediction_note="; ".join(notes)[:500] or None, pred_energy_j=p.energy_j,
                    pred_energy_j_low=p.energy_j_low, pred_energy_j_high=p.energy_j_high, pred_time_s=p.time_s)
    except Exception as exc:  # noqa: BLE001 - a predictor failure must not cost the measurement
        pred.update(prediction_status="failed", prediction_note=L.describe(exc))
    return pred


def repredict(args) -> int:
    from profiling.model_refs import build_mlp

    have_art, art_note, art_id = L.artifact_status(args.hardware, args.artifact_dir)

    def row_pred(r):
        d, w, in_f = int(r["layers"]), int(r["layer_size"]), int(r["input_size"])
        return predict_one(args, build_mlp(in_f, d, w, 1), int(r["batch"]), in_f, r["mode"], r["optimizer"] or None,
                           r["dtype"], have_art, art_note, art_id)

    dst = L.repredict_table(os.path.join(args.out, RESULTS), COLUMNS, row_pred)
    return L.post_analysis(analyse, args.out, os.path.basename(dst), "_repredicted")


def measure_one(args, sess, psess, key, line, d, w, nodes, p_seed, kwh, in_f, mode, have_art, art_note, art_id):
    import torch

    from profiling.dataset import schema
    from profiling.measure import replay
    from profiling.model_refs import build_mlp

    dev = sess.device
    b = args.batch
    opt = args.optimizer if mode == "train_step" else None
    ref = f"mlp:in={in_f},depth={d},width={w},out=1"
    torch.manual_seed(args.seed)
    model = build_mlp(in_f, d, w, 1)
    # the prediction first (ex ante), then the measurement
    pred = predict_one(args, model, b, in_f, mode, opt, args.dtype, have_art, art_note, art_id)
    wl = replay.build_model_workload(model, (b, in_f), mode=mode, dtype=args.dtype, optimizer=opt, device=dev)
    try:
        meas = psess.measure(wl)
    finally:
        wl.close()
    xs = replay.prepare_inputs((b, in_f), dev)
    try:
        counts, totals = _layer_totals(model, xs, args.dtype, mode != "inference")
    except Exception as exc:  # noqa: BLE001 - bookkeeping only; the measurement stands
        counts, totals = {}, {"params": L.n_params(model), "unsupported_types": [f"capture failed: {exc}"[:200]]}
    mrow = schema.model_row(
        key=key, model_ref=ref, family="wide_vs_deep_mlp", spec={"in": in_f, "depth": d, "width": w, "out": 1},
        input_shape=[[b, in_f]], batch=b, mode=mode, dtype=args.dtype, optimizer=opt, measurement=meas,
        env={**psess._row_env(), "cpu_name": sess.env.get("cpu_name")}, hardware=args.hardware,
        layer_counts=counts, totals=totals, exec="eager", sweep_id="wide_vs_deep", task_key=key)
    e, t = float(meas["energy_j"]), float(meas["time_s"])
    steps = math.ceil(SEED_SAMPLES / b) * (SEED_EPOCHS if mode == "train_step" else 1)
    c = L.compare(e, pred["pred_energy_j"], pred["pred_energy_j_low"], pred["pred_energy_j_high"])
    row = {
        "run_key": key, "experiment": "wide_vs_deep", "seed_line": line, "layers": d, "layer_size": w,
        "nodes": nodes, "shape": "deep" if d > w else ("wide" if d < w else "square"), "input_size": in_f,
        "model_ref": ref, "params": totals["params"], "params_seed": p_seed, "mode": mode, "batch": b,
        "optimizer": opt, "dtype": args.dtype, "time_s": t, "energy_j": e,
        "energy_dynamic_j": float(meas["energy_dynamic_j"]), "power_w": float(meas["power_w"]),
        "spread": meas.get("spread"), "n_windows": sum(1 for x in meas["windows"] if x.used),
        "calls_per_window": meas.get("calls_per_window"), "remeasured": meas.get("remeasured"),
        "energy_per_sample_j": e / b, "seed_run_steps": steps, "run_energy_j": e * steps,
        "run_energy_kwh": e * steps / 3.6e6, "seed_energy_kwh": kwh if mode == "train_step" else None,
        **pred, "pred_ratio": c["ratio"], "pred_error_pct": c["error_pct"], "in_interval": c["in_interval"],
        **sess.provenance(),
    }
    return row, mrow


# --------------------------------------------------------------------------- analysis


def _loglog_slope(x, y):
    import numpy as np

    x, y = np.asarray(x, float), np.asarray(y, float)
    ok = (x > 0) & (y > 0) & np.isfinite(x) & np.isfinite(y)
    if ok.sum() < 2 or np.ptp(np.log(x[ok])) == 0:
        return None
    return float(np.polyfit(np.log(x[ok]), np.log(y[ok]), 1)[0])


def analyse(out_dir: str, results: str = RESULTS, suffix: str = "") -> dict:
    """table.md, wide_vs_deep.png and wide_vs_deep_summary.json (names + ``suffix``) from
    every row of ``results`` (wide_vs_deep.csv; the last row per config and mode)."""
    df = L.read_rows(os.path.join(out_dir, results))
    summary: dict = {"rows": int(len(df))}
    lines = ["# Wide vs deep MLPs (seed 004 Table 6 grid): measured and predicted\n",
             f"Rows: {len(df)}. Energy per call of the whole batch, total GPU board energy; `run kWh` extrapolates "
             f"the train step to the seed's run ({SEED_SAMPLES} samples x {SEED_EPOCHS} epochs). `seed kWh` is the "
             "value printed in seed 004 Table 6 (RTX 2080 Ti, Keras, its own meter) for reference only.\n"]
    if len(df):
        piv = {}
        for r in df.itertuples(index=False):
            piv.setdefault((r.layers, r.layer_size, r.meter), {})[r.mode] = r
        rows = []
        for (d, w, meter), modes in sorted(piv.items(), key=lambda kv: (kv[0][0] * kv[0][1], -kv[0][0])):
            tr, inf = modes.get("train_step"), modes.get("inference")
            any_ = tr or inf
            theta = (tr.energy_j / inf.energy_j) if tr is not None and inf is not None else None
            rows.append((d, w, any_.nodes, any_.shape, any_.params,
                         L.fmt(tr.energy_j * 1e3 if tr is not None else None),
                         L.fmt(tr.pred_energy_j * 1e3 if tr is not None and tr.prediction_status == "ok" else None),
                         L.fmt(inf.energy_j * 1e3 if inf is not None else None),
                         L.fmt(inf.pred_energy_j * 1e3 if inf is not None and inf.prediction_status == "ok" else None),
                         L.fmt(theta, ".2f"), L.fmt(tr.run_energy_kwh if tr is not None else None),
                         L.fmt(tr.seed_energy_kwh if tr is not None else None), meter))
        lines.append(L.markdown_table(
            ("layers", "size", "nodes", "shape", "params", "train step mJ", "pred mJ", "inference mJ", "pred mJ",
             "θ (step)", "run kWh", "seed kWh", "meter"), rows))
        tr = df[df["mode"] == "train_step"]
        for shape in ("wide", "deep"):
            s = tr[tr["shape"] == shape]
            summary[f"loglog_slope_{shape}"] = _loglog_slope(s["params"], s["energy_j"])
        if len(tr) >= 3 and tr["seed_energy_kwh"].notna().sum() >= 3:
            t = tr.dropna(subset=["seed_energy_kwh"])
            summary["spearman_measured_vs_seed"] = float(t["run_energy_kwh"].rank().corr(t["seed_energy_kwh"].rank()))
        ok = df[df["prediction_status"] == "ok"]
        if len(ok):
            summary["mean_abs_error_pct"] = float(ok["pred_error_pct"].abs().mean())
            summary["n_predicted"] = int(len(ok))
        lines.append("\nTrain-step energy vs parameters, log-log slope: wide "
                     f"{L.fmt(summary.get('loglog_slope_wide'), '.3f')}, deep "
                     f"{L.fmt(summary.get('loglog_slope_deep'), '.3f')} (seed 004: deep grows faster than wide).")
        if "spearman_measured_vs_seed" in summary:
            lines.append(f"Rank correlation (Spearman) of our extrapolated run energy with the seed's kWh: "
                         f"{summary['spearman_measured_vs_seed']:.3f}.")
        if "mean_abs_error_pct" in summary:
            lines.append(f"Predictions: {summary['n_predicted']} rows, mean |error| "
                         f"{summary['mean_abs_error_pct']:.1f} %.")
        else:
            lines.append("No prediction: no fitted artifact for this hardware; measurements only.")
        if suffix:
            lines.append("Predictions in this file were made AFTER the measurement (--repredict).")
        _plot(os.path.join(out_dir, f"wide_vs_deep{suffix}.png"), df)
    write_atomic_chunks(os.path.join(out_dir, f"table{suffix}.md"), ["\n".join(lines).encode() + b"\n"])
    L.schema.write_json_atomic(os.path.join(out_dir, f"wide_vs_deep_summary{suffix}.json"), summary)
    return summary


def _plot(path: str, df) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        from matplotlib.ticker import NullFormatter
    except ImportError:
        return
    tr = df[df["mode"] == "train_step"]
    if not len(tr):
        return
    has_seed = tr["seed_energy_kwh"].notna().any()
    fig, axes = plt.subplots(1, 3 if has_seed else 2, figsize=(15 if has_seed else 10, 4))
    colors = {"wide": "tab:blue", "deep": "tab:red", "square": "tab:gray"}
    for ax, xcol in zip(axes, ("params", "nodes"), strict=False):  # a third (seed) panel is drawn below
        for shape, g in tr.groupby("shape"):
            g = g.sort_values(xcol)
            ax.plot(g[xcol], g["energy_j"] * 1e3, "o-", color=colors.get(shape), label=f"{shape}: measured")
            ok = g[g["prediction_status"] == "ok"]
            if len(ok):
                ax.plot(ok[xcol], ok["pred_energy_j"] * 1e3, "s", mfc="none", color=colors.get(shape),
                        label=f"{shape}: predicted")
        ax.set_xscale("log")
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.set_xlabel("trainable parameters" if xcol == "params" else "nodes (layers x layer size)")
        ax.set_ylabel(f"energy per train step (mJ), batch {int(tr['batch'].iloc[0])}")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    if has_seed:
        ax = axes[2]
        for shape, g in tr.dropna(subset=["seed_energy_kwh"]).groupby("shape"):
            g = g.sort_values("params")
            ax.plot(g["params"], g["seed_energy_kwh"], "^-", color=colors.get(shape), label=f"{shape}: seed 004")
        ax.set_xscale("log")
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.set_xlabel("trainable parameters")
        ax.set_ylabel("seed 004 Table 6 training energy (kWh)")
        ax.set_title("reference: seed 004 (RTX 2080 Ti, Keras)", fontsize=8)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


if __name__ == "__main__":
    sys.exit(main())
