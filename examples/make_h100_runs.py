"""Write ``examples/h100_runs.csv``: three measured runs of the H100 reference set, in the
CSV layout ``exante calibrate --runs`` reads (model, input, batch, mode, dtype, optimizer,
time_s, energy_j), for the README's calibrate example.

The rows are copied, not edited, from ``datasets/h100/models.csv`` (session
``h100-reference-s1``, eager): the smallest MLP call (host-bound), the MLP call with the
highest average power (the most GPU-bound MLP row) and the first MLP Adam train step.

    python examples/make_h100_runs.py
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
COLUMNS = ("model", "input", "batch", "mode", "dtype", "optimizer", "time_s", "energy_j")


def pick(models_csv: Path) -> pd.DataFrame:
    f = pd.read_csv(models_csv)
    f = f[(f["exec"] == "eager") & (f["session_id"] == "h100-reference-s1")
          & f["model_ref"].str.startswith("mlp:")]
    host = f[f["mode"] == "inference"].sort_values("time_s").iloc[[0]]
    gpu = f.assign(p=f["energy_j"] / f["time_s"]).sort_values("p").iloc[[-1]]
    step = f[(f["mode"] == "train_step") & (f["optimizer"] == "adam")].iloc[[0]]
    return pd.concat([host, gpu, step])


def main() -> int:
    rows = pick(ROOT / "datasets/h100/models.csv")
    out = ROOT / "examples/h100_runs.csv"
    with open(out, "w", newline="") as fh:
        w = csv.writer(fh, lineterminator="\n")
        w.writerow(COLUMNS)
        for _, r in rows.iterrows():
            shape = "x".join(str(d) for d in json.loads(r["input_shape"]))
            w.writerow([r["model_ref"], shape, int(r["batch"]), r["mode"], r["dtype"],
                        "" if pd.isna(r["optimizer"]) else r["optimizer"],
                        repr(float(r["time_s"])), repr(float(r["energy_j"]))])
    print(f"wrote {out.relative_to(ROOT)} ({len(rows)} runs)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
