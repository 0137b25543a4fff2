"""H100 -> H200: the H100-fitted physics model's error on the H200 reference workloads.

    python experiments/transfer/h100_to_h200.py [--datasets datasets]

Reads ``datasets/h200/`` (models.csv + workloads.jsonl, written by the lent-H200 measuring
script) and predicts every whole-model row with (a) the H100 model transferred to the H200 by
datasheet (:mod:`predictor.engine.transfer`: same efficiencies and host costs, H200 bandwidth, powers
scaled by TDP and idle) and (b) the H100 model as is; prints MAPE of time and energy overall
and per mode, and the share inside the transferred 90 % interval.  Where no H200 row exists
yet it says so and exits 0.
"""

from __future__ import annotations

import argparse
import json
import sys
import warnings
from pathlib import Path

import numpy as np


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--datasets", default="datasets")
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args(argv)
    folder = Path(a.datasets) / "h200"
    if not (folder / "models.csv").is_file() or not (folder / "workloads.jsonl").is_file():
        print(f"no H200 reference rows yet: {folder}/models.csv and workloads.jsonl are not there "
              "(they come from the lent-H200 measuring script, issue 13 item 1); nothing to compare")
        return 0
    warnings.simplefilter("ignore")
    from predictor.artifacts import load_artifact
    from predictor.engine.transfer import transfer
    from predictor.fit.datasets import load_whole_model_data

    data = load_whole_model_data(folder)
    if not len(data.frame):
        print(f"no eager whole-model rows in {folder}; nothing to compare")
        return 0
    h100 = load_artifact("h100").model
    th = transfer(h100, "h200")
    y = data.y
    out = {"n": int(len(y)), "folder": str(folder)}
    for name, model in (("transferred", th), ("h100_as_is", h100)):
        res = [model.predict_workload(w) for w in data.workloads]
        p = np.array([[r.time_s.value, r.energy_j.value] for r in res])
        ape = np.abs(p / y - 1) * 100
        d = {"time_mape_pct": float(ape[:, 0].mean()), "energy_mape_pct": float(ape[:, 1].mean())}
        for mode in sorted(set(data.frame["mode"])):
            m = (data.frame["mode"] == mode).to_numpy()
            d[f"{mode}_time_mape_pct"] = float(ape[m, 0].mean())
            d[f"{mode}_energy_mape_pct"] = float(ape[m, 1].mean())
        d["energy_inside_interval_pct"] = float(np.mean(
            [r.energy_j.contains(e) for r, e in zip(res, y[:, 1], strict=True)]) * 100)
        out[name] = d
    print(json.dumps(out, indent=2) if a.json else "\n".join(
        f"{k}: {v}" for k, v in out.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
