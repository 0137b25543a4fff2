#!/usr/bin/env python3
"""One prepared call on a lent GPU (an H200, 15 min of device time per task, start-up included):
measure what most reduces held-out error first, resumably, inside a fixed budget.

    python3 experiments/device/h200_measure.py --budget-s 470 --out "$OUT"        # on the lent GPU
    python3 experiments/device/h200_measure.py --device cpu --meter replay-changes \\
        --hardware cpu-dryrun --budget-s 60 --out /tmp/out --plan "refset:20"      # CPU dry run

Order and budget split (``--plan``; each ``name:cap_s``, time a sweep leaves unused flows on):

1. ``refset`` (cap 300 s): the H100 reference set's 95 workloads measured whole with its own
   protocol -- whole-model rows are what held-out error is judged on, and they give the
   H100-vs-H200 comparison row by row (~3 s each: all 95 fit in one call's budget);
2. ``host-launch`` (cap 90 s): per-op host cost of every layer family, forward / backward /
   optimizer step -- most reference rows (MLPs, batch 1, small CNNs) are host-bound, where the
   per-call floor *is* the prediction;
3. ``gpu-eff`` then ``gpu-eff-tf32`` (the rest): efficiency of matmul/conv/attention/norm shapes
   by precision, for the GPU-bound rows;
4. then the broad LHS sweeps (``layers-train``, ``layers``, ``attention``, ``transformer``, ``cnn``,
   ``mlp``, ``mixed``) for later visits.

Resumable: the dataset ``datasets/<hw>/`` of the working tree (what earlier calls brought back)
is copied to ``--work`` first; finished tasks (``tasks.csv``) are skipped. After every task the
four dataset files are copied atomically to ``--out`` (a call killed at its limit still brings
back everything measured but the task in flight). One meter (``nvml-changes``: the counter read
every 2 ms by a thread, the reference set's method) and one idle-power measurement serve every
sweep; one session id names every row of the call. A sweep that fails (e.g. a broken CUDA
context) is logged; the next one runs unless CUDA itself is unusable.

Files under ``--out`` (the device tool brings back at most 8): layers.csv, models.csv,
tasks.csv, meta.json, selftest.json, selftest.tsv (+ session.log from the shell script).
Then, here: ``python experiments/device/collect.py <files_at>`` merges them into datasets/<hw>/.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
import uuid
from datetime import datetime, timezone

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

DEFAULT_PLAN = ("refset:300 host-launch:90 gpu-eff gpu-eff-tf32 layers-train layers attention transformer cnn mlp "
                "mixed")
DATA_FILES = ("layers.csv", "models.csv", "tasks.csv", "meta.json")
SELFTEST_SECTIONS = "env,nvml,changes"  # new on this GPU / this protocol; the sweeps exercise the rest


def log(msg: str) -> None:
    print(f"[{datetime.now(timezone.utc).strftime('%H:%M:%S')}] {msg}", flush=True)


def parse_plan(text: str) -> list[tuple[str, float | None]]:
    """``"name[:cap_s] ..."`` -> [(name, cap or None)]; unknown names or bad caps are an error."""
    from profiling.errors import ExanteError
    from profiling.sweeps import SWEEPS

    out = []
    for item in text.split():
        name, _, cap = item.partition(":")
        if name not in SWEEPS:
            raise ExanteError(f"unknown sweep {name!r} in --plan; accepted: {', '.join(SWEEPS)}")
        try:
            c = float(cap) if cap else None
        except ValueError:
            c = -1.0
        if c is not None and not c > 0:
            raise ExanteError(f"bad cap {cap!r} for sweep {name!r} in --plan: expected seconds > 0 (name:seconds)")
        out.append((name, c))
    if not out:
        raise ExanteError("--plan names no sweep")
    return out


def _compile(pattern: str | None):
    import re

    from profiling.errors import ExanteError

    if not pattern:
        return None
    try:
        return re.compile(pattern)
    except re.error as exc:
        raise ExanteError(f"bad --tasks regular expression {pattern!r}: {exc}") from None


def _protocol(text: str | None) -> dict | None:
    from profiling.errors import ExanteError

    if not text:
        return None
    try:
        d = json.loads(text)
    except ValueError as exc:
        raise ExanteError(f"--protocol must be a JSON object of protocol.measure kwargs, got {text!r} ({exc})") from None
    if not isinstance(d, dict):
        raise ExanteError(f"--protocol must be a JSON object of protocol.measure kwargs, got {text!r}")
    if "jitter_s" in d:
        d["jitter_s"] = tuple(d["jitter_s"])
    return d


def _subset(name: str, pattern):
    """The sweep, or a copy holding only the tasks whose key matches ``pattern``."""
    import dataclasses

    from profiling.sweeps import SWEEPS

    sweep = SWEEPS[name]
    if pattern is None:
        return sweep
    keep = [t for t in sweep.tasks() if pattern.search(t.key)]
    return dataclasses.replace(sweep, generate=lambda: keep, _cache=None)


def n_lines(path: str) -> int:
    try:
        with open(path, "rb") as f:
            return sum(1 for _ in f)
    except OSError:
        return 0


def prepare_work(dataset: str, work: str) -> str:
    """Copy the committed dataset into the work folder, unless the work folder (a warm machine's
    earlier call) already holds at least as many finished tasks."""
    if os.path.isdir(work) and n_lines(os.path.join(work, "tasks.csv")) >= n_lines(os.path.join(dataset, "tasks.csv")):
        kept = "kept (at least as long as the committed one)"
    else:
        shutil.rmtree(work, ignore_errors=True)
        os.makedirs(work)
        for f in DATA_FILES:
            if os.path.isfile(os.path.join(dataset, f)):
                shutil.copy2(os.path.join(dataset, f), os.path.join(work, f))
        kept = f"copied from {dataset}"
    for f in os.listdir(work):
        if f.endswith(".lock"):
            os.unlink(os.path.join(work, f))
    return kept


class Exporter:
    """Copies the dataset files to ``out`` atomically when they changed (write-as-you-go)."""

    def __init__(self, work: str, out: str):
        self.work, self.out = work, out
        self.seen: dict = {}
        os.makedirs(out, exist_ok=True)

    def __call__(self, _res=None) -> None:
        for f in DATA_FILES:
            src = os.path.join(self.work, f)
            try:
                st = os.stat(src)
            except OSError:
                continue
            sig = (st.st_mtime_ns, st.st_size)
            if self.seen.get(f) == sig:
                continue
            tmp = os.path.join(self.out, f + ".part")
            shutil.copyfile(src, tmp)
            os.replace(tmp, os.path.join(self.out, f))
            self.seen[f] = sig


def progress(work: str, names) -> dict:
    """Per sweep: tasks done / in the design, and the median seconds per task measured so far."""
    import statistics

    from profiling.dataset import schema
    from profiling.sweeps import SWEEPS

    rows = schema.task_table(work).read()
    out = {}
    for name in names:
        mine = [r for r in rows if r["sweep_id"] == name]
        el = [r["elapsed_s"] for r in mine if isinstance(r["elapsed_s"], (int, float))]
        n = len(SWEEPS[name].tasks())
        out[name] = {"done": len(mine), "errors": sum(r["status"] != "ok" for r in mine), "tasks": n,
                     "median_task_s": round(statistics.median(el), 2) if el else None,
                     "left_s_estimate": round(statistics.median(el) * (n - len(mine)), 0) if el else None}
    return out


def run_selftest(out: str, device: str, budget_s: float, meter: str) -> None:
    import importlib.util

    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "gpu_selftest.py")
    spec = importlib.util.spec_from_file_location("gpu_selftest", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    argv = ["--out", out, "--sections", SELFTEST_SECTIONS, "--budget-s", str(budget_s), "--poll-s", "0.6",
            "--idle-s", "1.0", "--settle-s", "0.5", "--change-window-s", "1.2" if device == "cuda" else "0.3",
            "--meter", meter]
    if device == "cpu":
        argv += ["--device", "cpu", "--eager-only"]
    rc = mod.main(argv)
    log(f"selftest exit {rc} (0 = all OK; the sweeps run anyway and record their own errors)")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--budget-s", type=float, default=470.0, help="seconds for this process, from its start")
    p.add_argument("--out", default=os.environ.get("OUT") or "/tmp/out", help="where the files to bring back go")
    p.add_argument("--plan", default=os.environ.get("PLAN") or DEFAULT_PLAN, help="sweeps in order: name[:cap_s] ...")
    p.add_argument("--meter", default="nvml-changes", help="nvml-changes (default) | nvml | replay-changes (dry run)")
    p.add_argument("--device", default=None, help="cuda (default) or cpu (dry run)")
    p.add_argument("--hardware", default=None, help="hardware id (default: from the GPU name, e.g. h200)")
    p.add_argument("--datasets", default=os.path.join(ROOT, "datasets"), help="the committed datasets root")
    p.add_argument("--work", default=None, help="working dataset folder (default /tmp/exante-<hw>)")
    p.add_argument("--selftest-s", type=float, default=40.0, help="self-test budget; 0 = no self-test")
    p.add_argument("--reserve-s", type=float, default=15.0, help="kept for the last copy and the summary")
    p.add_argument("--min-sweep-s", type=float, default=20.0, help="no sweep is started with less time left")
    p.add_argument("--idle-s", type=float, default=None, help="idle-power window after 2 s settling (default 3 s; "
                   "a CPU dry run: 0.3 s, no settling)")
    p.add_argument("--tasks", default=os.environ.get("TASKS") or None,
                   help="only tasks whose key matches this regular expression (a subset; dry runs)")
    p.add_argument("--protocol", default=os.environ.get("PROTOCOL") or None,
                   help='JSON of protocol.measure kwargs overriding every sweep\'s (dry runs), e.g. {"min_window_s": 0.2}')
    args = p.parse_args(argv)
    t0 = time.monotonic()
    left = lambda: args.budget_s - (time.monotonic() - t0)  # noqa: E731

    import torch

    from profiling.errors import ExanteError
    from profiling.measure.profiler import hardware_id, open_meter
    from profiling.measure.protocol import measure_idle_power
    from profiling.sweeps import run_sweep

    try:
        plan = parse_plan(args.plan)
        pattern = _compile(args.tasks)
        protocol = _protocol(args.protocol)
    except ExanteError as exc:
        print(f"h200_measure: error: {exc}", file=sys.stderr)
        return 2
    device = args.device or ("cuda" if torch.cuda.is_available() else None)
    if device is None:
        print("h200_measure: error: torch sees no CUDA device (for a CPU dry run: --device cpu --meter "
              "replay-changes --hardware cpu-dryrun)", file=sys.stderr)
        return 2
    dev = torch.device(device)
    if dev.type == "cuda":
        name = torch.cuda.get_device_name(dev)
        hw = args.hardware or hardware_id(name, dev)
    else:
        name, hw = "cpu", args.hardware or "cpu-dryrun"
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    session_id = f"{hw}-{stamp}-{uuid.uuid4().hex[:6]}"
    dataset = os.path.join(args.datasets, hw)
    work = args.work or f"/tmp/exante-{hw}"
    state = prepare_work(dataset, work)
    log(f"device {dev} ({name}) -> hardware id {hw!r}; dataset {dataset} -> work {work} ({state}); "
        f"session {session_id}; plan {' '.join(f'{n}:{c:g}' if c else n for n, c in plan)}; budget {args.budget_s:g} s")
    export = Exporter(work, args.out)
    export()

    if args.selftest_s > 0:
        try:
            run_selftest(args.out, dev.type, min(args.selftest_s, max(5.0, left() / 4)),
                         "nvml" if args.meter.startswith("nvml") else args.meter)
        except Exception as exc:  # noqa: BLE001 - the sweeps run anyway; the crash is logged
            log(f"selftest crashed ({type(exc).__name__}: {exc}); the sweeps run anyway")
        log(f"selftest done, {left():.0f} s left")

    meter = open_meter(args.meter, device=dev, hardware=hw)
    call = {"session_id": session_id, "started": stamp, "budget_s": args.budget_s, "plan": args.plan,
            "meter": meter.name, "device": str(dev), "gpu_name": name, "sweeps": {}}
    rc = 0
    try:
        cuda = dev.type == "cuda"
        idle = float(measure_idle_power(meter, duration_s=args.idle_s or (3.0 if cuda else 0.3),
                                        settle_s=2.0 if cuda else 0.0))
        call["idle_power_w"] = idle
        log(f"idle power {idle:.1f} W ({meter.name}), {left():.0f} s left")
        for name_, cap in plan:
            budget = left() - args.reserve_s
            if budget < args.min_sweep_s:
                log(f"budget spent ({budget:.0f} s usable): not starting {name_}")
                break
            b = min(budget, cap) if cap else budget
            log(f"== sweep {name_}: time budget {b:.0f} s ({left():.0f} s left)")
            t = time.monotonic()
            try:
                s = run_sweep(_subset(name_, pattern), work, meter=meter, idle_power_w=idle, hardware=hw,
                              device=dev, time_budget_s=b, progress=False, on_task=export, session_id=session_id,
                              protocol_kwargs=protocol)
                print(s, flush=True)
                call["sweeps"][name_] = {"run": s.n_run, "ok": s.n_ok, "errors": s.n_errors,
                                         "remaining": s.n_remaining, "seconds": round(time.monotonic() - t, 1)}
            except ExanteError as exc:  # a fatal CUDA error or too many failures in a row
                log(f"sweep {name_} stopped: {exc}")
                call["sweeps"][name_] = {"stopped": str(exc)[:300], "seconds": round(time.monotonic() - t, 1)}
                if "CUDA context unusable" in str(exc):
                    rc = 1
                    break
            export()
    except KeyboardInterrupt:
        log("interrupted (time limit): what was measured is in --out")
        rc = 130
    finally:
        try:
            meter.close()
        except Exception as exc:  # noqa: BLE001 - the rows are saved; logged
            log(f"closing the meter failed ({type(exc).__name__}: {exc})")
        call["elapsed_s"] = round(time.monotonic() - t0, 1)
        try:
            from profiling.dataset import schema

            schema.update_meta(work, lambda meta: meta.setdefault("calls", {}).__setitem__(session_id, call))
        except Exception as exc:  # noqa: BLE001 - bookkeeping only; logged
            log(f"recording this call in meta.json failed ({type(exc).__name__}: {exc})")
        export()
        try:
            prog = progress(work, [n for n, _ in plan])
            log("progress (done/tasks, median s per task, estimated s left):")
            for n, v in prog.items():
                print(f"  {n:14s} {v['done']:4d}/{v['tasks']:<4d} errors {v['errors']:3d}  "
                      f"{v['median_task_s']} s/task  ~{v['left_s_estimate']} s left", flush=True)
        except Exception as exc:  # noqa: BLE001 - a summary only; logged
            log(f"the progress summary failed ({type(exc).__name__}: {exc})")
        log(f"done in {time.monotonic() - t0:.0f} s; files in {args.out}: {' '.join(sorted(os.listdir(args.out)))}")
    return rc


if __name__ == "__main__":
    sys.exit(main())
