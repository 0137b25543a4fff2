#!/usr/bin/env python3
"""GPU self-test: run it on a lent GPU machine BEFORE any sweep (< 90 s on an H100).

    python3 experiments/device/gpu_selftest.py            # CUDA + NVML; report under $OUT
    python3 experiments/device/gpu_selftest.py --device cpu --eager-only   # CPU dry run (tests)

Sections (each one guarded: a failure is recorded and the next check runs; it never stops
at the first failure):

1. ``env``     protocol.environment_info of the meter + torch/CUDA/NVML/fvcore versions.
2. ``nvml``    the NVML energy counter: read cost, step period and rate at idle and under a
               matmul load, power readings, idle power (protocol.measure_idle_power), and the
               nvml-power (polling) fallback meter against the counter.
2b. ``changes`` protocol v2's energy from counter changes (meters.CounterChangeMeter, 2 ms polling
               thread) against two edge reads on the same windows of a steady matmul load, and
               what the polling thread costs a host-bound loop (GIL contention).
3. ``matmul``  the protocol on the reference workload (fp32 matmul 4096) with short windows,
               repeated: per-call energy, within- and across-repeat spread; one bf16 8192 matmul (CUDA).
4. ``layers``  for EVERY layer type of the sweeps (profiling.sweeps.LAYER_TYPE_WEIGHTS), one
               small config (+ a few extra shapes): capture -> features -> build_layer_workload
               in exec eager|graph x mode inference|forward_backward|train_step(sgd, adam) x
               dtype fp32|bf16, each fn run a few times (no measurement); OK/FAIL table with
               the exception text; CUDA-context health and stream checked after each failure;
               memory before/after (leak check); graph size at the default 1 ms target.
5. ``models``  one small model of every sweep family (mlp, cnn plain/residual, transformer,
               mixed vector/image/sequence) through profile_model exactly as a sweep task runs
               it (build_from_spec on the device, every distinct layer replayed alone, the whole
               model), modes inference|train_step(sgd, adam) x fp32|bf16, with a fast replay
               meter (no measurement); + the whole-model CUDA-graph workload (not used by sweeps).
6. ``mlp``     profile_model of a tiny MLP with the real meter (short windows) in the three
               modes, eager+graph layers, reference on; rows appended to a scratch dataset
               (schema check on real GPU rows); additivity ratio, graph/eager energy.

Output: the tables on stdout, ``selftest.json`` (everything) and ``selftest.tsv`` (one row per
check) under ``--out`` / ``$OUT`` (default /tmp/out), rewritten after every section. Exit code:
0 when every check is OK (or the test was skipped: no CUDA and no ``--device cpu``), 1 when
some check failed (the sweeps record their own errors and can still run).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

from experiments.device.selftest_common import (  # noqa: E402
    DTYPES,
    LAYER_MODES,
    MODEL_MODES,
    Report,
    cuda_healthy,
    error_line,
    short_traceback,
)
from experiments.device.selftest_layers import (  # noqa: E402
    section_layers,
)
from experiments.device.selftest_meters import (  # noqa: E402
    section_changes,
    section_env,
    section_matmul,
    section_nvml,
)
from experiments.device.selftest_models import (  # noqa: E402
    section_mlp,
    section_models,
)

# read by tests/test_gpu_selftest.py and experiments/device/h200_measure.py
__all__ = ["DTYPES", "LAYER_MODES", "MODEL_MODES", "SECTIONS", "Report", "main", "parse_args"]

SECTIONS = ("env", "nvml", "changes", "matmul", "layers", "models", "mlp")


# --------------------------------------------------------------------------- main


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default=None, help="cuda (default when visible) or cpu (dry run: no NVML, no graphs)")
    p.add_argument("--eager-only", action="store_true", help="no CUDA graphs")
    p.add_argument("--out", default=None, help="report folder (default $OUT or /tmp/out)")
    p.add_argument("--sections", default=",".join(SECTIONS), help=f"comma list of {','.join(SECTIONS)}")
    p.add_argument("--types", default=None, help="comma list of layer types (default: every sweep type)")
    p.add_argument("--no-extras", action="store_true", help="one config per layer type only")
    p.add_argument("--budget-s", type=float, default=150.0, help="hard cap for the whole self-test")
    p.add_argument("--layers-budget-s", type=float, default=60.0,
                   help="cap for the layers section (what is left is reported SKIP; extras come last)")
    p.add_argument("--models-budget-s", type=float, default=25.0, help="cap for the models section")
    p.add_argument("--calls", type=int, default=3, help="fn() calls per workload (not measured)")
    p.add_argument("--graph-max-calls", type=int, default=64, help="calls per graph in the layer/model checks")
    p.add_argument("--window-s", type=float, default=0.25, help="protocol window in the matmul/mlp sections")
    p.add_argument("--repeats", type=int, default=3, help="protocol repeats of the reference matmul")
    p.add_argument("--poll-s", type=float, default=1.2, help="counter polling duration (idle, busy)")
    p.add_argument("--change-window-s", type=float, default=1.2, help="window of the counter-change check")
    p.add_argument("--idle-s", type=float, default=2.0, help="measure_idle_power duration")
    p.add_argument("--settle-s", type=float, default=1.0, help="measure_idle_power settle time")
    p.add_argument("--meter", default="nvml", help="meter on CUDA (nvml | nvml-power); CPU always uses 'replay'")
    args = p.parse_args(argv)
    args.sections = [s.strip() for s in args.sections.split(",") if s.strip()]
    bad = [s for s in args.sections if s not in SECTIONS]
    if bad:
        p.error(f"unknown section(s) {bad}; accepted: {', '.join(SECTIONS)}")
    args.types = [t.strip() for t in args.types.split(",")] if args.types else None
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    out_dir = args.out or os.environ.get("OUT") or "/tmp/out"
    t_start = time.perf_counter()
    deadline = t_start + args.budget_s
    import torch

    if args.device is None and not torch.cuda.is_available():
        print("gpu_selftest: SKIPPED: no CUDA device visible (run with --device cpu --eager-only for a CPU dry run)")
        return 0
    dev = torch.device(args.device or "cuda")
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            print(f"gpu_selftest: SKIPPED: --device {args.device} but CUDA is not available")
            return 0
        if dev.index is None:
            dev = torch.device("cuda", torch.cuda.current_device())
    else:
        args.eager_only = True
    rep = Report(out_dir)
    rep.data.update({"device": str(dev), "args": {k: v for k, v in vars(args).items()}})
    print(f"gpu_selftest: device {dev}, sections {','.join(args.sections)}, report -> {out_dir}")

    # the meter: the real one on CUDA, a replay meter (code paths only) on CPU
    meter = None
    try:
        from profiling.measure.profiler import open_meter

        meter = open_meter(args.meter if dev.type == "cuda" else "replay", device=dev)
        rep.add("env", f"open meter {meter.name}", "OK")
    except Exception as exc:
        rep.add("env", f"open meter {args.meter}", "FAIL", detail=error_line(exc), traceback=short_traceback())
        print(f"  FAIL opening meter {args.meter!r}: {error_line(exc)}")

    def run(name, fn, *a):
        if name not in args.sections:
            return None
        if time.perf_counter() > deadline:
            rep.add(name, "section", "SKIP", detail="selftest time budget")
            return None
        t = time.perf_counter()
        try:
            return fn(*a)
        except Exception as exc:  # a section's own crash: recorded, the next section runs
            rep.add(name, "section crashed", "FAIL", detail=error_line(exc), traceback=short_traceback())
            print(f"  FAIL section {name} crashed: {error_line(exc)}")
            return None
        finally:
            rep.data.setdefault("section_seconds", {})[name] = round(time.perf_counter() - t, 2)
            rep.write()

    idle_w = None
    if meter is not None:
        run("env", section_env, rep, dev, meter)
        if dev.type == "cuda" and meter.name in ("nvml", "nvml-power"):
            idle_w = run("nvml", section_nvml, rep, dev, meter, args)
        run("changes", section_changes, rep, dev, args)
        if idle_w is None and dev.type != "cuda":
            idle_w = 50.0  # the CPU dry run's replay meter draws a constant 100 W
        if idle_w is not None:
            run("matmul", section_matmul, rep, dev, meter, idle_w, args)
        elif "matmul" in args.sections:
            rep.add("matmul", "section", "SKIP", detail="no idle power (nvml section failed or not run)")
    # layers and models need no meter (replay meter inside); each has its own time cap so that
    # the real-meter MLP profile still runs
    run("layers", lambda: section_layers(rep, dev, args, min(deadline, time.perf_counter() + args.layers_budget_s)))
    run("models", lambda: section_models(rep, dev, args, min(deadline, time.perf_counter() + args.models_budget_s)))
    if meter is not None:
        run("mlp", section_mlp, rep, dev, meter, idle_w, args)
        with contextlib.suppress(Exception):  # the final CUDA health row below tells
            meter.close()
    healthy, why = cuda_healthy(dev)
    rep.add("final", "CUDA context healthy at the end", "OK" if healthy else "FAIL", detail=why)
    rep.write()
    counts = rep.counts()
    elapsed = time.perf_counter() - t_start
    print(f"== gpu_selftest done in {elapsed:.1f} s: " + ", ".join(f"{k} {v}" for k, v in sorted(counts.items()))
          + f"; report {os.path.join(out_dir, 'selftest.json')} / selftest.tsv")
    fails = [r for r in rep.rows if r["status"] == "FAIL"]
    for r in fails[:40]:
        print(f"  FAIL {r['section']}: {r['name'][:60]} {r['exec']} {r['mode']} {r['optimizer']} {r['dtype']}: "
              f"{r['detail'][:200]}")
    if len(fails) > 40:
        print(f"  ... {len(fails) - 40} more FAIL rows in selftest.tsv")
    return 1 if fails else 0


if __name__ == "__main__":
    sys.exit(main())
