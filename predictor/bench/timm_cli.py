"""``exante bench timm DIR``: the sub-command (parser and printer; the work is in
:mod:`predictor.bench.timm`, imported when it runs)."""

from __future__ import annotations

import json
import sys


def cmd_bench_timm(args) -> int:
    """Run ``exante bench timm``: predicted vs measured step time (s) of timm's benchmark files, as
    a table (errors in %) or ``--json``; progress on stderr. Returns exit status 0."""
    from predictor.bench.timm import run_timm_bench

    prog = None if args.quiet else (     # stderr, so --json output stays clean
        lambda m: print(f"exante bench: {m}", file=sys.stderr, flush=True))
    r = run_timm_bench(args.dir, files=args.files, limit=args.limit, sample=args.sample,
                       seed=args.seed, cache_dir=args.cache, artifact_dir=args.artifact_dir,
                       progress=prog, rows_out=args.rows_out, jobs=args.jobs)
    if args.json:
        print(json.dumps(r, indent=2, default=str))
        return 0

    def f(v, w=6, p=1):
        return f"{v:{w}.{p}f}" if isinstance(v, (int, float)) else f"{'-':>{w}}"

    print(f"timm benchmark step time, {r['dir']} (rows: {r['rows']})")
    print(f"  {'file':52s} {'gpu':8s} {'n':>5s} {'MAPE':>6s} {'med':>6s} {'<=25%':>6s} "
          f"{'tau':>5s} {'GMACs':>6s} {'1-c':>6s} {'fail':>5s}")
    for name, v in r["files"].items():
        print(f"  {name:52s} {v['hardware']:8s} {v['n']:5d} {f(v.get('mape_pct'))} "
              f"{f(v.get('median_ape_pct'))} {f(v.get('within_25_pct'))} "
              f"{f(v.get('kendall_tau'), 5, 2)} {f(v.get('gmacs_linear_mape_pct'))} "
              f"{f(v.get('one_constant_mape_pct'))} {v['n_failed_models']:5d}")
    for hw, v in r["per_gpu"].items():
        print(f"  {'all files of ' + hw:52s} {hw:8s} {v['n']:5d} {f(v.get('mape_pct'))} "
              f"{f(v.get('median_ape_pct'))} {f(v.get('within_25_pct'))} "
              f"{f(v.get('kendall_tau'), 5, 2)}")
    print("  MAPE/med: % error of exante; GMACs, 1-c: baselines fitted on the same file "
          "(optimistic); fail: models not built/predicted (--json lists them)")
    for name, why in r["skipped_files"].items():
        print(f"  skipped {name}: {why}")
    return 0


def add_timm_parser(bsub) -> None:
    """Add ``timm`` to ``exante bench``'s sub-commands."""
    q = bsub.add_parser("timm", help="timm's published step times (RTX 3090/4090 ...): "
                                     "predicted vs measured per file, GPU from the file name")
    q.add_argument("dir", metavar="DIR", help="folder with timm benchmark-*.csv files")
    q.add_argument("--files", metavar="GLOB", help="only files whose name matches GLOB")
    q.add_argument("--limit", type=int, metavar="N", help="first N rows of each file")
    q.add_argument("--sample", type=int, metavar="N", help="N rows of each file, drawn at random")
    q.add_argument("--seed", type=int, default=0, help="seed of --sample (default 0)")
    q.add_argument("--cache", metavar="DIR", help="workload cache (default ~/.cache/exante/timm "
                                                  "or $EXANTE_TIMM_CACHE)")
    q.add_argument("--artifact-dir", metavar="DIR", help="folder with fitted artifacts")
    q.add_argument("--rows-out", metavar="CSV", help="write every scored row (measured and "
                                                     "predicted seconds) to CSV")
    q.add_argument("--jobs", type=int, default=1, metavar="N",
                   help="processes capturing the models missing from the cache (default 1)")
    q.add_argument("--json", action="store_true", help="print one JSON object")
    q.add_argument("--quiet", action="store_true", help="no progress on stderr")
    q.set_defaults(func=cmd_bench_timm)
