"""Leave-one-GPU-out: one physics model fitted across GPUs, judged on a GPU it never saw.

For every timm benchmark file (``--timm``: GPU, torch version, mode, memory format in the
name) the :class:`predictor.engine.joint.JointPhysicsModel` is fitted on every *other* row -- the
H100 reference set, ``datasets/<gpu>`` folders, and the timm files of other GPUs --
**without the GPU under test and without its torch version**, then predicts the file from
the GPU's datasheet alone (zero per-GPU corrections).  Side by side, per file:

* ``datasheet``: today's transfer of the shipped H100 model (:mod:`predictor.engine.transfer`);
* ``one constant (oracle)``: the datasheet prediction x one factor fitted on the test file
  itself (geometric mean of measured/predicted) -- what a perfect per-GPU calibration of a
  single constant would reach; not available for a GPU never measured.

Metrics: MAPE, median APE, share within +-25 %, Kendall tau of step time.  Also written:
the leave-one-GPU-out log residuals (``logo_residuals.json``: the interval of a GPU with no
rows is calibrated on them), a predicted-vs-measured plot per GPU (``logo_<gpu>.png``), and
``table.md`` (``--readme`` puts it into README.md between the ``multigpu:begin/end`` markers)::

    python experiments/multigpu/run.py --per-file 200 --out /tmp/mg    # iterate (seeded)
    python experiments/multigpu/run.py --readme                       # all rows
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
from scipy.stats import kendalltau

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from rows import Rows, dataset_rows, timm_rows  # noqa: E402

from predictor.artifacts import load_artifact  # noqa: E402
from predictor.engine.joint import JointPhysicsModel, source_weights  # noqa: E402
from predictor.engine.lowering import lower  # noqa: E402
from predictor.engine.transfer import datasheet_of, transfer  # noqa: E402
from predictor.fit.joint_fit import EPOCH_TIME_SHARE  # noqa: E402

log = logging.getLogger("multigpu")
JOINT_KW: dict = {}
SOURCE_TOTAL: dict = {}
TIME_SHARE: dict = dict(EPOCH_TIME_SHARE)
BEGIN, END = "<!-- multigpu:begin -->", "<!-- multigpu:end -->"


def metrics(pred, true) -> dict:
    pred, true = np.asarray(pred, float), np.asarray(true, float)
    ape = np.abs(pred / true - 1.0) * 100
    return {"n": int(len(ape)), "mape_pct": float(ape.mean()),
            "median_ape_pct": float(np.median(ape)),
            "within_25_pct": float(np.mean(ape <= 25) * 100),
            "kendall_tau": float(kendalltau(pred, true)[0]) if len(ape) > 2 else float("nan"),
            "median_ratio": float(np.median(pred / true))}


def load_all(a) -> tuple[Rows, Rows]:
    """(training pool from datasets/, timm rows)."""
    folders = sorted(p for p in a.datasets.iterdir() if (p / "models.csv").is_file())
    ds = Rows.concat([dataset_rows(p) for p in folders])
    # timm rows come from the benchmark files themselves (per file, torch version, sample)
    ds = ds.take(np.array(["timm" not in s.lower() for s in ds.source.astype(str)], bool))
    files = sorted(Path(a.timm).glob("benchmark-*.csv"))
    tr = Rows.concat([timm_rows(f, a.cache, a.per_file, a.seed) for f in files])
    return ds, tr


def fit_joint(train: Rows, init, lowered: dict) -> JointPhysicsModel:
    gpus = sorted(set(train.gpu.tolist()))
    sheets = {g: datasheet_of(g) for g in gpus}
    ref = datasheet_of("h100")
    m = JointPhysicsModel(ref, sheets, init=init, **JOINT_KW)
    m.fit([lowered[id(w)] for w in train.workloads], train.y, gpu=train.gpu,
          sample_weight=row_weights(train))
    return m


def row_weights(train: Rows) -> np.ndarray:
    """(n, 2) time and energy weights: equal total per GPU x source (``--source-total``),
    time of the sources in ``TIME_SHARE`` scaled down (epoch-derived steps with data loading)."""
    w = source_weights(train.gpu, train.source, SOURCE_TOTAL)
    wt = w * np.array([next((v for k, v in TIME_SHARE.items() if k.lower() in s.lower()), 1.0)
                       for s in train.source.astype(str)])
    return np.column_stack([wt, w])


def predict_on(m: JointPhysicsModel, rows: Rows, lowered: dict) -> np.ndarray:
    g = rows.gpu[0]
    m.datasheets = {**m.datasheets, g: datasheet_of(g)}
    return m.predict([lowered[id(w)] for w in rows.workloads], rows.gpu)


def run(a) -> dict:
    t0 = time.time()
    pool, tr = load_all(a)
    everything = Rows.concat([pool, tr])
    lowered = {id(w): lower(w) for w in everything.workloads}
    art = load_artifact("h100")
    init = art.model.model.theta_
    res, resid, fits = {"files": {}}, [], {}
    plots = {}
    for f in sorted(set(tr.file.tolist())):
        test = tr.take(tr.file == f)
        g, v = test.gpu[0], test.torch[0]
        key = (g, v)
        if key not in fits:
            keep = (everything.gpu != g) & (everything.torch != v)
            log.info("fit without %s and torch %s: %d rows", g, v, int(keep.sum()))
            fits[key] = fit_joint(everything.take(keep), init, lowered)
        m = fits[key]
        y = test.y[:, 0]
        p_joint = predict_on(m, test, lowered)[:, 0]
        th = transfer(art.model, g)
        p_ds = th.model.predict([lowered[id(w)] for w in test.workloads])[:, 0]
        k = float(np.exp(np.median(np.log(y / p_ds))))
        log.info("%s: joint %.1f %% (ratio %.2f), datasheet %.1f %%", f,
                 metrics(p_joint, y)["mape_pct"], np.median(p_joint / y),
                 metrics(p_ds, y)["mape_pct"])
        res["files"][f] = {
            "gpu": g, "torch": v, "failures": len(tr.failures.get(f, {})),
            "trained_on": sorted(set(everything.take((everything.gpu != g) &
                                                     (everything.torch != v)).file.tolist())),
            "joint_logo": metrics(p_joint, y), "datasheet": metrics(p_ds, y),
            "one_constant_oracle": metrics(k * p_ds, y)}
        resid += np.log(p_joint / y).tolist()
        plots.setdefault(g, []).append((f, y, p_joint))
    res["energy_gpus"] = {}
    for g in sorted(set(pool.gpu.tolist()) - {"h100"}):
        test = pool.take(pool.gpu == g)
        if not np.isfinite(test.y[:, 1]).any():
            continue
        m = fit_joint(everything.take(everything.gpu != g), init, lowered)
        p = predict_on(m, test, lowered)
        ok = np.isfinite(test.y[:, 1])
        res["energy_gpus"][g] = {"n": int(ok.sum()),
                                 "time": metrics(p[:, 0], test.y[:, 0]),
                                 "energy": metrics(p[ok, 1], test.y[ok, 1])}
        log.info("%s held out: time %.1f %%, energy %.1f %%", g,
                 res["energy_gpus"][g]["time"]["mape_pct"],
                 res["energy_gpus"][g]["energy"]["mape_pct"])
    res["logo_abs_log_resid_q90"] = float(np.quantile(np.abs(resid), 0.9)) if resid else None
    res["seconds"] = round(time.time() - t0, 1)
    res["per_file"] = a.per_file
    res["date"] = datetime.now(timezone.utc).strftime("%Y-%m-%d")
    a.out.mkdir(parents=True, exist_ok=True)
    (a.out / "logo_residuals.json").write_text(json.dumps({"abs_log_resid": np.abs(resid).tolist()}))
    _plots(plots, a.out)
    return res


def _plots(plots: dict, out: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    for g, items in plots.items():
        fig, ax = plt.subplots(figsize=(5, 5))
        lo, hi = np.inf, 0.0
        for f, y, p in items:
            ax.scatter(y, p, s=4, alpha=0.5, label=f.replace("benchmark-", "").replace(".csv", ""))
            lo, hi = min(lo, y.min(), p.min()), max(hi, y.max(), p.max())
        ax.plot([lo, hi], [lo, hi], "k-", lw=0.8)
        for s in (0.75, 1.25):
            ax.plot([lo, hi], [lo * s, hi * s], "k:", lw=0.6)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("measured step time (s)")
        ax.set_ylabel("predicted, GPU never seen (s)")
        ax.set_title(f"{g}: leave-one-GPU-out")
        ax.legend(fontsize=6)
        fig.tight_layout()
        fig.savefig(out / f"logo_{g}.png", dpi=110)
        plt.close(fig)


def table(res: dict) -> str:
    lines = ["| file (GPU never seen in the fit) | n | failures | exante leave-one-GPU-out: "
             "MAPE / median / within ±25 % / τ | datasheet transfer (today) | one constant "
             "(oracle, fitted on the file) |", "|---|---|---|---|---|---|"]

    def cell(m):
        return (f"{m['mape_pct']:.1f} / {m['median_ape_pct']:.1f} / {m['within_25_pct']:.0f} % / "
                f"{m['kendall_tau']:.2f}")
    for f, r in res["files"].items():
        lines.append(f"| {f.replace('benchmark-', '').replace('.csv', '')} | "
                     f"{r['joint_logo']['n']} | {r['failures']} | **{cell(r['joint_logo'])}** | "
                     f"{cell(r['datasheet'])} | {cell(r['one_constant_oracle'])} |")
    if res.get("energy_gpus"):
        lines += ["", "| GPU with power data, never seen in the fit (Zeus per-step rows) | n | "
                  "time MAPE | energy MAPE |", "|---|---|---|---|"]
        for g, r in res["energy_gpus"].items():
            lines.append(f"| {g} | {r['n']} | {r['time']['mape_pct']:.1f} % | "
                         f"**{r['energy']['mape_pct']:.1f} %** |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--timm", type=Path, default=ROOT.parent / "shared" / "extdata" /
                    "timm_benchmarks")
    ap.add_argument("--cache", type=Path, default=Path("/work/cache/timm"))
    ap.add_argument("--datasets", type=Path, default=ROOT / "datasets")
    ap.add_argument("--per-file", type=int, default=None, help="seeded sample of models per file")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=ROOT / "experiments" / "multigpu" / "results")
    ap.add_argument("--readme", action="store_true")
    ap.add_argument("--source-total", default="{}", help="total weight per GPU of a source "
                    "(JSON, e.g. {\"zeus\": 100}; default 300 each)")
    ap.add_argument("--time-share", default="{}", help="time-residual weight factor per "
                    "source (JSON; default predictor.fit.joint_fit.EPOCH_TIME_SHARE)")
    ap.add_argument("--joint", default="{}", help="JointPhysicsModel keyword arguments (JSON)")
    a = ap.parse_args(argv)
    JOINT_KW.update(json.loads(a.joint))
    SOURCE_TOTAL.update(json.loads(a.source_total))
    TIME_SHARE.update(json.loads(a.time_share))
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    res = run(a)
    md = table(res)
    (a.out / "results.json").write_text(json.dumps(res, indent=1))
    (a.out / "table.md").write_text(md)
    print(md)
    if a.readme:
        readme = ROOT / "README.md"
        text = readme.read_text(encoding="utf-8")
        if BEGIN in text and END in text:
            head, rest = text.split(BEGIN, 1)
            text = head + BEGIN + "\n" + md + END + rest.split(END, 1)[1]
            readme.write_text(text, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
