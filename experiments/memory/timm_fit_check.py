"""Check exante's peak-memory estimate against runs that are known to fit.

timm's published benchmark CSVs (``../shared/extdata/timm_benchmarks``, Apache-2.0, see its
SOURCE.md) list, per model, the batch at which a training (or inference) step ran on a 24 GB
RTX 3090/4090: timm's ``benchmark.py`` lowers the batch on CUDA out-of-memory, so each
listed batch fitted.  For each sampled row this script captures the workload (timm model
built on ``meta``, fp16 autocast, SGD for training as timm's benchmark uses), estimates its
peak memory with :func:`predictor.engine.memory.estimate_memory` and counts the rows whose
estimate exceeds the GPU's memory (a refusal of a run that fits).

    python experiments/memory/timm_fit_check.py CSV [--every 5] [--out DIR]

Writes ``<out>/<csv stem>.json`` (per-row estimates and the summary); prints the summary.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import sys
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from experiments.outputs import add_output_args, output_dir  # noqa: E402
from profiling.dataset.schema import write_bytes_atomic  # noqa: E402

TRACKED = Path(__file__).resolve().parent / "results"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("csv")
    ap.add_argument("--every", type=int, default=5, help="every n-th row (default 5)")
    ap.add_argument("--memory-gb", type=float, default=24.0,
                    help="memory of the GPU the rows ran on (default 24: RTX 3090/4090)")
    add_output_args(ap, TRACKED)
    args = ap.parse_args(argv)
    warnings.simplefilter("ignore")
    from predictor.engine.memory import GIB, estimate_memory
    from predictor.engine.predict import capture_workload
    from profiling.model_refs import resolve_model_on_meta

    name = os.path.basename(args.csv)
    train = "-train-" in name
    pre = "train" if train else "infer"
    rows = list(csv.DictReader(open(args.csv, newline="")))[::args.every]
    out, failures = [], {}
    for r in rows:
        model, b, s = r["model"], int(r[f"{pre}_batch_size"]), int(r[f"{pre}_img_size"])
        try:
            m = resolve_model_on_meta("timm:" + model)
            w = capture_workload(m, (b, 3, s, s), "train_step" if train else "inference",
                                 "fp16", "sgd" if train else None,
                                 memory_format="channels_last" if "-nhwc-" in name
                                 else "contiguous", cache=False)
        except Exception as exc:          # report, never hide, the models it cannot build
            failures[model] = f"{type(exc).__name__}: {str(exc).splitlines()[0][:200]}"
            continue
        seen = {id(t): t for t in list(m.parameters()) + list(m.buffers())}
        wb = sum(t.numel() * t.element_size() for t in seen.values())
        n = sum(p.numel() for p in m.parameters() if p.requires_grad)
        e = estimate_memory(w, weights_bytes=wb, trainable_numel=n,
                            inputs_bytes=b * 3 * s * s * 4)
        out.append({"model": model, "batch": b, "img_size": s, "estimate_gb": e.total_gb,
                    "activations_gb": e.activations_bytes / GIB})
    est = sorted(x["estimate_gb"] for x in out)
    over = [x for x in out if x["estimate_gb"] > args.memory_gb]
    summary = {"csv": name, "n": len(out), "memory_gb": args.memory_gb,
               "refused_though_measured": len(over),
               "median_estimate_gb": est[len(est) // 2] if est else None,
               "max_estimate_gb": est[-1] if est else None,
               "over": [(x["model"], x["batch"], round(x["estimate_gb"], 2)) for x in over],
               "failures": failures}
    folder = output_dir(args, TRACKED, "memory")
    path = Path(folder, Path(name).stem + ".json")
    write_bytes_atomic(path, json.dumps({"summary": summary, "rows": out}, indent=1).encode())
    print(json.dumps(summary, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
