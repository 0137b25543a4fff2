"""H100 architectures never shown, with and without the other GPUs' rows in the fit.

Five grouped folds over the H100 reference set's model families (GroupKFold; every batch,
dtype and mode of a family in one fold): for each, fit (a) the single-GPU
:class:`predictor.engine.physics.PhysicsModel` on the other H100 families and (b) the
:class:`predictor.engine.joint.JointPhysicsModel` on the other H100 families *plus* every other GPU's
rows (Zeus datasets, timm sample), then predict the held-out families on the H100.  MAPE of
time and energy, all rows and inference only.  (The leave-one-family-out table of the README
uses 40+ folds of the single-GPU model: ``experiments/accuracy/whole_model.py``.)::

    python experiments/multigpu/h100_heldout.py --per-file 60 --out experiments/multigpu/results
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
from sklearn.model_selection import GroupKFold

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[1]))
sys.path.insert(0, str(HERE))

import run as R  # noqa: E402
from rows import Rows  # noqa: E402

from predictor.artifacts import load_artifact  # noqa: E402
from predictor.engine.lowering import lower  # noqa: E402
from predictor.engine.physics import PhysicsModel  # noqa: E402
from predictor.engine.transfer import datasheet_of  # noqa: E402


def _mape(p, y):
    return float(np.mean(np.abs(p / y - 1)) * 100)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--timm", type=Path, default=R.ROOT.parent / "shared" / "extdata" /
                    "timm_benchmarks")
    ap.add_argument("--cache", type=Path, default=Path("/work/cache/timm"))
    ap.add_argument("--datasets", type=Path, default=R.ROOT / "datasets")
    ap.add_argument("--per-file", type=int, default=60)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--folds", type=int, default=5)
    ap.add_argument("--out", type=Path, default=HERE / "results")
    a = ap.parse_args(argv)
    pool, tr = R.load_all(a)
    ev = Rows.concat([pool, tr])
    low = {id(w): lower(w) for w in ev.workloads}
    art = load_artifact("h100")
    ds = art.model.datasheet
    h = np.flatnonzero(ev.gpu == "h100")
    fam = ev.model[h]
    y = ev.y[h]
    mode = np.array([w.mode for w in (ev.workloads[i] for i in h)])
    p_single, p_joint = np.zeros_like(y), np.zeros_like(y)
    for tr_i, te_i in GroupKFold(a.folds).split(h, groups=fam):
        m = PhysicsModel(ds).fit([low[id(ev.workloads[h[i]])] for i in tr_i], y[tr_i])
        p_single[te_i] = m.predict([low[id(ev.workloads[h[i]])] for i in te_i])
        keep = np.ones(len(ev), bool)
        keep[h[te_i]] = False
        jm = R.fit_joint(ev.take(keep), art.model.model.theta_, low)
        jm.datasheets = {**jm.datasheets, "h100": datasheet_of("h100")}
        p_joint[te_i] = jm.predict([low[id(ev.workloads[h[i]])] for i in te_i],
                                   np.full(len(te_i), "h100"))
    res = {}
    for name, p in (("single_gpu", p_single), ("joint", p_joint)):
        inf = mode == "inference"
        res[name] = {"time_mape_pct": _mape(p[:, 0], y[:, 0]),
                     "energy_mape_pct": _mape(p[:, 1], y[:, 1]),
                     "inference_time_mape_pct": _mape(p[inf, 0], y[inf, 0]),
                     "inference_energy_mape_pct": _mape(p[inf, 1], y[inf, 1]), "n": int(len(y))}
    res["folds"] = a.folds
    res["per_file"] = a.per_file
    a.out.mkdir(parents=True, exist_ok=True)
    (a.out / "h100_heldout.json").write_text(json.dumps(res, indent=1))
    print(json.dumps(res, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
