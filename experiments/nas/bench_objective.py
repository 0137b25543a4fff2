"""Speed of the vectorised EnergyObjective vs building + predicting each module (same run).

For each family (MLP, CNN stack, transformer encoder, NAS-Bench-101 cell) and mode, random specs are scored by
``EnergyObjective.score_many`` (closed-form work counts + ``physics.evaluate``), and a
sample of the same specs by the general path (build on ``meta`` + ``predictor.engine.predict``,
capture cache off so every spec pays its capture, as a NAS loop over new modules would).
The best of ``--repeats`` timings is kept for each.  Writes ``bench_objective.csv`` and
``bench_objective.md`` in ``--out``.  The goals (issue 12): >= 100 000 MLP specs/s and
>= 10 000 CNN / transformer / NAS-Bench-101 cell specs/s on the project's 2-core CPU.
NAS-Bench-101 cells are random valid cells (``predictor.search.nas.random_nb101_cells``: 3..7
vertices, pruned, <= 9 edges), each the full CIFAR-10 network (stem, 3x3 cells, 512-ch head).

    python experiments/nas/bench_objective.py --write-results     # or --out DIR
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import torch

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from experiments.outputs import add_output_args, output_dir  # noqa: E402
from predictor.engine.predict import predict  # noqa: E402
from predictor.search.generators import ConvStackSpec, EncoderSpec, MLPSpec  # noqa: E402
from predictor.search.nas import EnergyObjective, random_nb101_cells  # noqa: E402

GOALS = {"mlp": 100_000, "convstack": 10_000, "encoder": 10_000, "nb101": 10_000}


def random_specs(family: str, n: int, rng) -> list:
    if family == "mlp":
        return [MLPSpec(784, tuple(int(w) for w in rng.integers(16, 1025, rng.integers(1, 9))), 10)
                for _ in range(n)]
    if family == "convstack":
        return [ConvStackSpec((3, 32, 32), tuple(int(f) for f in rng.integers(8, 257,
                                                                          rng.integers(1, 7))),
                              int(rng.choice([1, 3, 5])), 10) for _ in range(n)]
    if family == "nb101":
        return random_nb101_cells(rng, n)
    out = []
    for _ in range(n):
        h = int(rng.choice([2, 4, 8]))
        d = h * int(rng.integers(8, 65))
        out.append(EncoderSpec(d, h, int(rng.integers(1, 13)), int(rng.choice([2, 4])) * d,
                               int(rng.choice([64, 128, 256])), 2))
    return out


def best_time(fn, repeats: int) -> float:
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    add_output_args(ap, ROOT / "experiments/nas/results")
    ap.add_argument("--n-mlp", type=int, default=100_000)
    ap.add_argument("--n-other", type=int, default=20_000)
    ap.add_argument("--n-general", type=int, default=30, help="specs built + predicted")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    args.out = output_dir(args, ROOT / "experiments/nas/results", "nas")
    warnings.simplefilter("ignore")
    rng = np.random.default_rng(args.seed)
    rows = []
    for mode, opt in (("train_step", "adam"), ("inference", None)):
        obj = EnergyObjective("h100", mode=mode, batch=args.batch, optimizer=opt)
        for family in ("mlp", "convstack", "encoder", "nb101"):
            n = args.n_mlp if family == "mlp" else args.n_other
            specs = random_specs(family, n, rng)
            obj.score_many(specs[:100])                       # warm-up
            t_vec = best_time(lambda obj=obj, specs=specs: obj.score_many(specs), args.repeats)
            sample = specs[:args.n_general]
            vec = obj.score_many(sample)["energy_j"]

            def general(sample=sample, mode=mode, opt=opt):
                out = []
                for s in sample:
                    with torch.device("meta"):
                        m = s.build()
                    out.append(predict(m, torch.zeros((args.batch, *s.input_shape),
                                                      device="meta"), mode=mode,
                                       optimizer=opt, cache=False).energy_j)
                return out

            general()                                         # warm-up (imports, meta)
            t0 = time.perf_counter()
            gen = general()
            t_gen = time.perf_counter() - t0
            rate_vec, rate_gen = n / t_vec, len(sample) / t_gen
            rows.append({"family": family, "mode": mode, "batch": args.batch,
                         "n_vectorised": n, "vectorised_s": t_vec,
                         "vectorised_specs_per_s": rate_vec,
                         "n_general": len(sample), "general_s": t_gen,
                         "general_specs_per_s": rate_gen, "speedup": rate_vec / rate_gen,
                         "goal_specs_per_s": GOALS[family],
                         "meets_goal": bool(rate_vec >= GOALS[family]),
                         "max_rel_diff": float(np.max(np.abs(vec / np.array(gen) - 1)))})
            print(f"{family:9s} {mode:10s} vectorised {rate_vec:12,.0f} specs/s  build+predict "
                  f"{rate_gen:8,.1f} specs/s  x{rate_vec / rate_gen:,.0f}  "
                  f"max rel diff {rows[-1]['max_rel_diff']:.1e}", flush=True)
    df = pd.DataFrame(rows)
    df.to_csv(os.path.join(args.out, "bench_objective.csv"), index=False)
    with open(os.path.join(args.out, "bench_objective.md"), "w") as fh:
        fh.write(f"# EnergyObjective speed (h100 artifact, batch {args.batch})\n\n"
                 f"Machine: {platform.processor() or platform.machine()}, "
                 f"{os.cpu_count()} CPUs visible, torch {torch.__version__}; best of "
                 f"{args.repeats} for the vectorised path; build+predict on {args.n_general} "
                 "of the same specs, capture cache off.\n\n")
        fh.write("| family | mode | vectorised specs/s | build+predict specs/s | ratio | goal | "
                 "meets | max rel. diff |\n|---|---|---|---|---|---|---|---|\n")
        for r in rows:
            fh.write(f"| {r['family']} | {r['mode']} | {r['vectorised_specs_per_s']:,.0f} | "
                     f"{r['general_specs_per_s']:,.1f} | {r['speedup']:,.0f}x | "
                     f"{r['goal_specs_per_s']:,} | {'yes' if r['meets_goal'] else 'no'} | "
                     f"{r['max_rel_diff']:.1e} |\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
