"""Fill a timm workload cache with every (model, image size, batch, mode) of timm benchmark files.

Reads ``benchmark-{infer,train}-*.csv`` files laid out like ``shared/extdata/timm_benchmarks``
and captures each distinct shape once, fp16 autocast (the ``amp`` of the file names), through
:func:`predictor.bench.timm_workloads.timm_workload` (memory format does not change a capture,
so one pass serves the nchw and nhwc files).  Progress goes to ``<cache>/capture.log``;
failures (model -> error) to ``<cache>/failures.json``; a summary (models/s) to
``<cache>/capture_summary.json``.  Re-runnable: cached shapes are skipped.

    OMP_NUM_THREADS=1 python experiments/import/timm_capture.py FILE.csv [...] --cache /work/cache/timm
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from predictor.bench.timm_results import read_benchmark_file  # noqa: E402
from predictor.bench.timm_workloads import TimmBuildError, timm_workload  # noqa: E402


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("files", nargs="+", type=Path)
    ap.add_argument("--cache", type=Path, required=True)
    ap.add_argument("--retry-failed", action="store_true")
    ap.add_argument("--first", type=int, default=2,
                    help="capture the shapes of the first N files before the others")
    a = ap.parse_args(argv)
    torch.set_num_threads(1)
    rank = {}
    for i, f in enumerate(a.files):
        bf = read_benchmark_file(f)
        for r in bf.rows:
            rank.setdefault((r.model, r.img_size, r.batch, bf.mode), min(i, a.first))
    # the shapes of the first --first files first; within, one model after the other (a
    # built model is reused for its other shapes)
    todo = sorted(rank, key=lambda k: (rank[k], k[0], k[3], k[1], k[2]))
    a.cache.mkdir(parents=True, exist_ok=True)
    logf = open(a.cache / "capture.log", "a", encoding="utf-8")
    fail_path = a.cache / "failures.json"
    failures = json.loads(fail_path.read_text()) if fail_path.is_file() else {}
    t0 = time.time()
    n_ok = 0
    for i, (model, img, batch, mode) in enumerate(todo, 1):
        key = f"{model}|{img}|b{batch}|{mode}|fp16"
        t = time.time()
        try:
            timm_workload(model, img, batch, mode, "fp16", cache_dir=a.cache,
                          retry_failed=a.retry_failed)
            n_ok += 1
            failures.pop(key, None)
            status = "ok"
        except TimmBuildError as exc:
            failures[key] = str(exc)
            status = f"FAILED {str(exc)[:200]}"
        logf.write(f"{time.strftime('%H:%M:%S')} {i}/{len(todo)} {key} {time.time() - t:.2f}s "
                   f"{status}\n")
        logf.flush()
        if i % 25 == 0 or i == len(todo):
            tmp = fail_path.with_suffix(".tmp")
            tmp.write_text(json.dumps(failures, indent=1, sort_keys=True))
            os.replace(tmp, fail_path)
    dt = time.time() - t0
    summary = {"files": [f.name for f in a.files], "shapes": len(todo), "captured_or_cached": n_ok,
               "failed": len(todo) - n_ok, "seconds": round(dt, 1),
               "shapes_per_s": round(len(todo) / dt, 3) if dt else None}
    (a.cache / "capture_summary.json").write_text(json.dumps(summary, indent=1))
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
