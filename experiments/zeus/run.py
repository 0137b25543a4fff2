"""Run ``exante bench zeus`` on a Zeus-shaped folder and write results.json + a results table.

    python experiments/zeus/run.py ../shared/extdata/zeus_nsdi23 [--out experiments/zeus]

Needs torchvision (ResNet-50) and transformers (BERT) importable beside torch.  Prints the
per-GPU table that experiments/zeus/README.md quotes (for-loop and foreach optimizer
implementations); with ``--out DIR`` also writes ``DIR/summary_<impl>.json`` (per-GPU
metrics only: the per-row table holds the traces' measured values, which stay out of the repo).
"""

from __future__ import annotations

import argparse
import json
import sys
import warnings
from pathlib import Path


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("dir")
    ap.add_argument("--out", default=None)
    a = ap.parse_args(argv)
    warnings.simplefilter("ignore")
    from predictor.bench.zeus import run_zeus_bench
    from profiling.errors import ExanteError

    for impl in ("for-loop", "foreach"):
        try:
            r = run_zeus_bench(a.dir, optimizer_impl=impl)
        except ExanteError as exc:                  # e.g. DIR missing: one line, no traceback
            ap.exit(2, f"error: {exc}\n")
        if a.out:
            Path(a.out).mkdir(parents=True, exist_ok=True)
            summary = {k: v for k, v in r.items() if k != "rows"}
            Path(a.out, f"summary_{impl}.json").write_text(json.dumps(summary, indent=1) + "\n")
        print(f"optimizer impl {impl}: MAPE % of epoch energy (n rows not used for calibration)")
        print("| gpu | catalogue | datasheet | calibrated (3 rows) | TDP x time | FLOPs x c | n |"
              " datasheet, all rows | datasheet time, all rows |")
        print("|---|---|---|---|---|---|---|---|---|")
        for g, v in r["per_gpu"].items():
            print(f"| {g} | {v['hardware']} | {v['datasheet_mape_pct']:.1f} | "
                  f"{v['calibrated_mape_pct']:.1f} | {v['tdp_proxy_mape_pct']:.1f} | "
                  f"{v['flops_proxy_mape_pct']:.1f} | {v['n']} | "
                  f"{v['datasheet_mape_all_rows_pct']:.1f} | "
                  f"{v['datasheet_time_mape_all_rows_pct']:.1f} |")
        rows = r["rows"]
        inside = sum(1 for x in rows if x["gpu"] in r["per_gpu"])
        print(f"rows: {inside}; skipped networks: {', '.join(r['skipped_networks'])}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
