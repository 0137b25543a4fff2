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
import gc
import json
import os
import platform
import statistics
import sys
import tempfile
import time
import traceback
import warnings

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

LAYER_MODES = (("inference", None), ("forward_backward", None), ("train_step", "sgd"), ("train_step", "adam"))
MODEL_MODES = (("inference", None), ("train_step", "sgd"), ("train_step", "adam"))
DTYPES = ("fp32", "bf16")
SECTIONS = ("env", "nvml", "changes", "matmul", "layers", "models", "mlp")

# protocol settings that only exercise the code path (replay meter: nothing is measured)
FAST_PROTOCOL = {"min_window_s": 0.004, "n_windows": 1, "max_rounds": 1, "warmup_s": 0.0, "warmup_calls": 1,
                 "calibrate_s": 0.002, "jitter_s": (0.0, 0.0), "max_total_s": 30.0}

# extra shapes beyond one small config per type: paths the sweeps reach at other sizes
EXTRA_LAYER_SPECS = [
    {"family": "layer", "type": "Linear", "batch": 2, "in": 64, "out": 48, "seq": 8},
    {"family": "layer", "type": "Conv2d", "batch": 2, "cin": 16, "cout": 16, "k": 3, "stride": 2, "res": 16,
     "groups": 16},
    {"family": "layer", "type": "ReLU", "batch": 2, "shape": [2, 8, 6, 6]},
    {"family": "layer", "type": "sdpa", "batch": 2, "heads": 4, "head_dim": 64, "seq": 128, "causal": False},
    # > 3072 indices: embedding backward sorts (pytorch#82886: may not be graph-capturable)
    {"family": "layer", "type": "Embedding", "batch": 64, "vocab": 1000, "d": 32, "seq": 64},
]


def small_model_specs() -> list[dict]:
    """One small model per sweep family / kind (the shapes of profiling.sweeps' designs)."""
    return [
        {"family": "mlp", "in": 16, "depth": 3, "width": 32, "out": 10, "batch": 8},
        {"family": "cnn", "residual": False, "res": 16, "in_ch": 3, "base": 8, "stages": 2, "blocks": 1, "kernel": 3,
         "classes": 10, "batch": 2},
        {"family": "cnn", "residual": True, "res": 16, "in_ch": 3, "base": 8, "stages": 2, "blocks": 2, "kernel": 3,
         "classes": 10, "batch": 2},
        {"family": "transformer", "vocab": 50, "seq": 16, "d_model": 32, "heads": 2, "layers": 1, "ff_mult": 2,
         "classes": 4, "act": "gelu", "causal": True, "batch": 2},
        {"family": "mixed", "kind": "vector", "in": 24, "out": 10, "batch": 4,
         "blocks": [{"out": 32, "act": "gelu", "norm": "ln", "dropout": 0.1},
                    {"out": 16, "act": "hardswish", "norm": "bn", "dropout": 0.0},
                    {"out": 16, "act": "tanh", "norm": "none", "dropout": 0.0}]},
        {"family": "mixed", "kind": "image", "res": 16, "in_ch": 3, "stem": 8, "stem_act": "relu", "dropout": 0.2,
         "classes": 10, "batch": 2,
         "blocks": [{"op": "conv", "k": 3, "stride": 1, "cout": 8, "act": "silu", "groups": "dw", "norm": "gn"},
                    {"op": "dwsep", "k": 3, "stride": 2, "cout": 16, "act": "relu"},
                    {"op": "res", "k": 3, "act": "gelu", "norm": "bn"},
                    {"op": "conv", "k": 1, "stride": 1, "cout": 16, "act": "relu", "groups": "1", "norm": "none"},
                    {"op": "pool", "pool": "avg"}, {"op": "pool", "pool": "max"}]},
        {"family": "mixed", "kind": "sequence", "vocab": 50, "seq": 12, "d_model": 32, "classes": 4, "batch": 2,
         "blocks": [{"op": "attn", "heads": 2}, {"op": "mlp", "mult": 2, "act": "silu"},
                    {"op": "conv", "k": 3, "act": "gelu"}]},
    ]


# --------------------------------------------------------------------------- report


class Report:
    """Rows (one per check) + sections, written to JSON/TSV after every section."""

    TSV_COLUMNS = ("section", "name", "exec", "mode", "dtype", "optimizer", "status", "seconds", "detail")

    def __init__(self, out_dir: str):
        self.out_dir = out_dir
        self.rows: list[dict] = []
        self.data: dict = {"started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "sections": {}}
        self.t0 = time.perf_counter()

    def add(self, section: str, name: str, status: str, *, seconds: float | None = None, detail: str = "",
            exec: str = "", mode: str = "", dtype: str = "", optimizer: str | None = None, **extra) -> dict:
        row = {"section": section, "name": name, "exec": exec, "mode": mode, "dtype": dtype,
               "optimizer": optimizer or "", "status": status,
               "seconds": None if seconds is None else round(float(seconds), 4), "detail": str(detail or "")}
        row.update(extra)
        self.rows.append(row)
        return row

    def counts(self) -> dict:
        c: dict = {}
        for r in self.rows:
            c[r["status"]] = c.get(r["status"], 0) + 1
        return c

    def write(self) -> None:
        try:
            os.makedirs(self.out_dir, exist_ok=True)
            self.data["elapsed_s"] = round(time.perf_counter() - self.t0, 2)
            self.data["counts"] = self.counts()
            self.data["rows"] = self.rows
            _write_atomic(os.path.join(self.out_dir, "selftest.json"),
                          json.dumps(self.data, indent=1, default=_json_default))
            lines = ["\t".join(self.TSV_COLUMNS)]
            for r in self.rows:
                lines.append("\t".join(_tsv(r.get(c)) for c in self.TSV_COLUMNS))
            _write_atomic(os.path.join(self.out_dir, "selftest.tsv"), "\n".join(lines) + "\n")
        except OSError as exc:  # a report that cannot be written must not stop the test
            print(f"selftest: cannot write the report to {self.out_dir}: {exc}", file=sys.stderr)


def _write_atomic(path: str, text: str) -> None:
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
    os.replace(tmp, path)


def _tsv(v) -> str:
    return "" if v is None else str(v).replace("\t", " ").replace("\n", " | ")


def _json_default(o):
    try:
        return float(o)
    except Exception:
        return str(o)


def _err(exc: BaseException) -> str:
    msg = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {msg[0] if msg else ''}"[:400]


def _tb(limit: int = 6) -> str:
    return traceback.format_exc(limit=limit)[-1500:]


# --------------------------------------------------------------------------- device helpers


def _sync(dev) -> None:
    import torch

    if dev.type == "cuda":
        torch.cuda.synchronize(dev)


def _free(dev, collect: bool = True) -> None:
    import torch

    if collect:
        gc.collect()
    if dev.type == "cuda":
        with contextlib.suppress(Exception):
            torch.cuda.synchronize(dev)
            torch.cuda.empty_cache()


def cuda_healthy(dev) -> tuple[bool, str]:
    """A tiny op + sync: False once the CUDA context is poisoned (sticky error)."""
    import torch

    if dev.type != "cuda":
        return True, ""
    try:
        x = torch.full((16,), 2.0, device=dev)
        y = float((x * x).sum())
        torch.cuda.synchronize(dev)
        return (y == 64.0), ("" if y == 64.0 else f"wrong result {y}")
    except Exception as exc:
        return False, _err(exc)


def stream_ok(dev) -> bool:
    """The current stream is the default one (a failed capture must not leave its side stream set)."""
    import torch

    if dev.type != "cuda":
        return True
    cur = torch.cuda.current_stream(dev)
    if cur == torch.cuda.default_stream(dev):
        return True
    torch.cuda.set_stream(torch.cuda.default_stream(dev))
    return False


def mem(dev) -> dict:
    import torch

    if dev.type != "cuda":
        return {}
    return {"allocated_mb": torch.cuda.memory_allocated(dev) / 2**20, "reserved_mb": torch.cuda.memory_reserved(dev) / 2**20,
            "max_allocated_mb": torch.cuda.max_memory_allocated(dev) / 2**20}


# --------------------------------------------------------------------------- sections


def section_env(rep: Report, dev, meter) -> None:
    import torch

    from profiling.measure.protocol import environment_info

    t = time.perf_counter()
    env = dict(environment_info(meter))
    env["device"] = str(dev)
    env["torch_cuda_available"] = torch.cuda.is_available()
    env["CUDA_VISIBLE_DEVICES"] = os.environ.get("CUDA_VISIBLE_DEVICES")
    env["python"] = platform.python_version()
    if dev.type == "cuda":
        p = torch.cuda.get_device_properties(dev)
        env.update({"cuda_device_name": p.name, "capability": f"{p.major}.{p.minor}",
                    "total_memory_gb": round(p.total_memory / 2**30, 1), "multi_processors": p.multi_processor_count,
                    "cuda_device_count": torch.cuda.device_count()})
    for pkg in ("nvidia-ml-py", "fvcore", "iopath", "numpy", "scikit-learn", "scipy", "pandas", "joblib", "tqdm"):
        try:
            from importlib.metadata import version

            env[f"pkg_{pkg}"] = version(pkg)
        except Exception:
            env[f"pkg_{pkg}"] = None
    try:
        import importlib

        importlib.import_module("fvcore.nn")  # the features need it

        fv = "importable"
    except Exception as exc:
        fv = _err(exc)
    env["fvcore_import"] = fv
    rep.data["sections"]["env"] = env
    print("== environment")
    for k, v in env.items():
        print(f"  {k:24s} {v}")
    rep.add("env", "environment_info", "OK", seconds=time.perf_counter() - t)
    rep.add("env", "fvcore import", "OK" if fv == "importable" else "FAIL", detail="" if fv == "importable" else fv)


def _poll_counter(meter, duration_s: float, each=None) -> dict:
    """Read the energy counter in a loop: when does it change, how much does a read cost.
    ``each()`` runs before every read (keeps the GPU's queue full under load)."""
    ts, es = [], []
    t_end = time.perf_counter() + duration_s
    while time.perf_counter() < t_end:
        if each is not None:
            each()
        e = meter.energy_j()
        ts.append(time.perf_counter())
        es.append(e)
    changes = [ts[i] for i in range(1, len(es)) if es[i] != es[i - 1]]
    steps = [b - a for a, b in zip(changes, changes[1:])]
    read_cost = (ts[-1] - ts[0]) / max(1, len(ts) - 1)
    de = es[-1] - es[0]
    dt = ts[-1] - ts[0]
    return {"reads": len(ts), "read_cost_s": read_cost, "n_changes": len(changes),
            "period_s_median": statistics.median(steps) if steps else None,
            "period_s_min": min(steps) if steps else None, "period_s_max": max(steps) if steps else None,
            "delta_j": de, "seconds": dt, "rate_w": de / dt if dt > 0 else None}


def section_nvml(rep: Report, dev, meter, args) -> float | None:
    """Counter period, read cost, idle and loaded rates; idle power; the polling fallback."""
    import torch

    out: dict = {"meter_info": meter.info()}
    rep.data["sections"]["nvml"] = out
    print("== NVML energy counter")
    print(f"  meter info: {out['meter_info']}")
    t = time.perf_counter()
    try:
        idle = _poll_counter(meter, args.poll_s)
        out["idle_poll"] = idle
        ok = idle["delta_j"] > 0 and idle["n_changes"] >= 2
        rep.add("nvml", "counter advances at idle", "OK" if ok else "FAIL", seconds=time.perf_counter() - t,
                detail=f"{idle['n_changes']} steps in {idle['seconds']:.2f} s, period ~{idle['period_s_median']} s, "
                       f"read {idle['read_cost_s'] * 1e3:.2f} ms, {idle['rate_w']:.1f} W" if ok else json.dumps(idle))
        print(f"  idle: {idle}")
    except Exception as exc:
        rep.add("nvml", "counter advances at idle", "FAIL", detail=_err(exc), traceback=_tb())
    # under load: queue bf16 matmuls for ~poll_s seconds, poll meanwhile
    t = time.perf_counter()
    try:
        n = 8192 if dev.type == "cuda" else 256
        a = torch.randn(n, n, device=dev, dtype=torch.bfloat16)
        b = torch.randn(n, n, device=dev, dtype=torch.bfloat16)
        for _ in range(3):
            a @ b
        torch.cuda.synchronize(dev)
        t1 = time.perf_counter()
        for _ in range(10):
            a @ b
        torch.cuda.synchronize(dev)
        per = (time.perf_counter() - t1) / 10
        queued = {"until": time.perf_counter()}

        def feed():  # keep ~0.2 s of matmuls queued ahead of the wall clock, whatever a read costs
            now = time.perf_counter()
            while queued["until"] < now + 0.2:
                a @ b
                queued["until"] = max(queued["until"], now) + per

        feed()
        busy = _poll_counter(meter, args.poll_s, each=feed)
        p_samples = [meter.power_w() for _ in range(5)]
        torch.cuda.synchronize(dev)
        busy["matmul_s"] = per
        busy["matmul_tflops"] = 2 * n ** 3 / per / 1e12
        busy["power_w_samples"] = p_samples
        out["busy_poll"] = busy
        ok = busy["delta_j"] > 0 and (busy["rate_w"] or 0) > (out.get("idle_poll", {}).get("rate_w") or 0)
        rep.add("nvml", "counter under load", "OK" if ok else "FAIL", seconds=time.perf_counter() - t,
                detail=f"{busy['rate_w']:.0f} W by counter, power_w {p_samples[0]}, period ~{busy['period_s_median']} s, "
                       f"bf16 matmul {busy['matmul_tflops']:.0f} TFLOP/s")
        print(f"  busy: {busy}")
    except Exception as exc:
        rep.add("nvml", "counter under load", "FAIL", detail=_err(exc), traceback=_tb())
    # idle power as the protocol measures it
    idle_w = None
    t = time.perf_counter()
    try:
        from profiling.measure.protocol import measure_idle_power

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            idle_w = float(measure_idle_power(meter, duration_s=args.idle_s, settle_s=args.settle_s))
        out["idle_power_w"] = idle_w
        ok = 20.0 < idle_w < 400.0
        rep.add("nvml", "measure_idle_power", "OK" if ok else "FAIL", seconds=time.perf_counter() - t,
                detail=f"{idle_w:.1f} W (DESIGN: ~75 W deep idle, ~120 W active idle on H100)")
        print(f"  idle power: {idle_w:.1f} W")
    except Exception as exc:
        rep.add("nvml", "measure_idle_power", "FAIL", detail=_err(exc), traceback=_tb())
    # the polling fallback against the counter, same window
    t = time.perf_counter()
    try:
        from profiling.meters import NVMLPowerPollingMeter

        with NVMLPowerPollingMeter(getattr(meter, "device_index", 0)) as pm:
            x = torch.randn(4096, 4096, device=dev)
            torch.cuda.synchronize(dev)
            e0c, e0p, t0 = meter.energy_j(), pm.energy_j(), time.perf_counter()
            while time.perf_counter() - t0 < args.poll_s:
                for _ in range(20):
                    x @ x
                torch.cuda.synchronize(dev)
            e1c, e1p, t1 = meter.energy_j(), pm.energy_j(), time.perf_counter()
            del x
        dc, dp = e1c - e0c, e1p - e0p
        ratio = dp / dc if dc > 0 else None
        out["power_polling"] = {"counter_j": dc, "polling_j": dp, "ratio": ratio, "seconds": t1 - t0}
        ok = ratio is not None and 0.8 < ratio < 1.2
        rep.add("nvml", "nvml-power vs counter", "OK" if ok else "WARN", seconds=time.perf_counter() - t,
                detail=f"polling/counter = {ratio if ratio is None else round(ratio, 3)} over {t1 - t0:.2f} s")
        print(f"  nvml-power: {out['power_polling']}")
    except Exception as exc:
        rep.add("nvml", "nvml-power vs counter", "FAIL", detail=_err(exc), traceback=_tb())
    return idle_w


def section_changes(rep: Report, dev, args) -> None:
    """Counter-change energy (protocol v2) vs two edge reads over the same windows; host cost of
    the polling thread on a loop of tiny kernels."""
    import torch

    from profiling.measure.profiler import open_meter
    from profiling.meters import CounterChangeMeter

    out: dict = {}
    rep.data["sections"]["changes"] = out
    print("== counter changes (protocol v2) vs edge reads")
    inner = open_meter(args.meter if dev.type == "cuda" else "replay", device=dev)
    x = torch.ones(16, device=dev)

    def loop(n: int = 2000) -> float:
        _sync(dev)
        t0 = time.perf_counter()
        for _ in range(n):
            x.add_(1.0)
        _sync(dev)
        return (time.perf_counter() - t0) / n

    loop(200)
    t = time.perf_counter()
    t_off = min(loop() for _ in range(3))
    cm = CounterChangeMeter(inner)
    try:
        t_on = min(loop() for _ in range(3))
        slow = t_on / t_off - 1.0
        out["host_loop"] = {"s_per_call_without_thread": t_off, "s_per_call_with_thread": t_on, "slowdown": slow}
        rep.add("changes", "polling thread vs host-bound loop", "OK" if slow < 0.05 else "WARN",
                seconds=time.perf_counter() - t,
                detail=f"{t_off * 1e6:.2f} -> {t_on * 1e6:.2f} us per tiny kernel ({100 * slow:+.1f} %)")
        n = 8192 if dev.type == "cuda" else 256
        dt = torch.bfloat16 if dev.type == "cuda" else torch.float32
        a = torch.randn(n, n, device=dev, dtype=dt)
        b = torch.randn(n, n, device=dev, dtype=dt)
        for _ in range(3):
            a @ b
        windows = []
        t = time.perf_counter()
        for _ in range(2):
            _sync(dev)
            e0, t0 = inner.energy_j(), cm.clock()
            while cm.clock() - t0 < args.change_window_s:
                for _ in range(8):
                    a @ b
                _sync(dev)
            t1, e1 = cm.clock(), inner.energy_j()
            windows.append({"seconds": t1 - t0, "edge_j": e1 - e0, "changes_j": cm.interval_energy_j(t0, t1),
                            **cm.last_interval})
        out["windows"] = windows
        ratios = [w["changes_j"] / w["edge_j"] for w in windows if w["edge_j"] > 0]
        ok = len(ratios) == len(windows) and all(abs(r - 1) < 0.15 for r in ratios) and all(
            w["n_changes"] >= 3 for w in windows)
        rep.add("changes", "counter-change energy vs edge reads", "OK" if ok else "FAIL",
                seconds=time.perf_counter() - t,
                detail=", ".join(f"{w['changes_j'] / w['seconds']:.0f} W vs {w['edge_j'] / w['seconds']:.0f} W "
                                 f"({w['n_changes']} changes over {w['span_s']:.2f} s)" for w in windows))
        print(f"  host loop: {out['host_loop']}")
        for w in windows:
            print(f"  window: {w}")
        del a, b
    finally:
        cm.close()
        _free(dev)


def section_matmul(rep: Report, dev, meter, idle_w: float, args) -> None:
    import torch

    from profiling.measure.protocol import measure
    from profiling.measure.replay import Workload, reference_workload

    out: dict = {}
    rep.data["sections"]["matmul"] = out
    print("== protocol on a heavy matmul (short windows)")
    kw = {"min_window_s": args.window_s, "n_windows": 2, "max_rounds": 2, "warmup_s": 0.3,
          "jitter_s": (0.0, 0.05)}
    wl = reference_workload(dev)
    reps = []
    t = time.perf_counter()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            for _ in range(args.repeats):
                m = measure(wl.fn, meter, idle_power_w=idle_w, **kw)
                reps.append({"energy_j": m.energy_j, "time_s": m.time_s, "power_w": m.power_w, "spread": m.spread,
                             "k": m.calls_per_window, "remeasured": m.remeasured,
                             "energy_dynamic_j": m.energy_dynamic_j, "sm_clock_mhz": m.sm_clock_mhz})
                print(f"  {wl.description}: {m.energy_j * 1e3:.2f} mJ/call, {m.time_s * 1e3:.3f} ms, "
                      f"{m.power_w:.0f} W, spread {100 * m.spread:.1f} %, k={m.calls_per_window}")
        es = [r["energy_j"] for r in reps]
        across = (max(es) - min(es)) / statistics.median(es) if len(es) > 1 else 0.0
        out["reference"] = {"repeats": reps, "across_spread": across}
        ok = all(r["energy_j"] > 0 and r["power_w"] > idle_w for r in reps)
        rep.add("matmul", f"{wl.description} x{args.repeats}", "OK" if ok else "FAIL", seconds=time.perf_counter() - t,
                detail=f"across-repeat spread {100 * across:.1f} % ({args.window_s:g} s windows; DESIGN: 1 s windows "
                       f"~1 %), {statistics.median([r['power_w'] for r in reps]):.0f} W")
    except Exception as exc:
        rep.add("matmul", wl.description, "FAIL", seconds=time.perf_counter() - t, detail=_err(exc), traceback=_tb())
    finally:
        wl.close()
    t = time.perf_counter()
    try:
        n = 8192 if dev.type == "cuda" else 256
        a = torch.randn(n, n, device=dev, dtype=torch.bfloat16)
        b = torch.randn(n, n, device=dev, dtype=torch.bfloat16)
        c = torch.empty(n, n, device=dev, dtype=torch.bfloat16)
        wl2 = Workload(fn=lambda: torch.mm(a, b, out=c), description=f"bf16 matmul {n}", device=str(dev))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            m = measure(wl2.fn, meter, idle_power_w=idle_w, **dict(kw, min_window_s=max(args.window_s, 1.0)))
        out["bf16_matmul"] = {"energy_j": m.energy_j, "time_s": m.time_s, "power_w": m.power_w, "spread": m.spread,
                            "tflops": 2 * n ** 3 / m.time_s / 1e12, "j_per_tflop": m.energy_j / (2 * n ** 3 / 1e12)}
        print(f"  bf16 matmul {n}: {m.energy_j:.3f} J/call, {m.time_s * 1e3:.3f} ms "
              f"({out['bf16_matmul']['tflops']:.0f} TFLOP/s), {m.power_w:.0f} W, spread {100 * m.spread:.1f} %")
        rep.add("matmul", f"bf16 matmul {n}", "OK", seconds=time.perf_counter() - t,
                detail=f"{m.power_w:.0f} W, {out['bf16_matmul']['tflops']:.0f} TFLOP/s, spread {100 * m.spread:.1f} %")
    except Exception as exc:
        rep.add("matmul", "bf16 matmul", "FAIL", seconds=time.perf_counter() - t, detail=_err(exc), traceback=_tb())
    _free(dev)


def layer_specs(types, extras: bool) -> list[dict]:
    from profiling import sweeps

    specs = [sweeps._layer_spec(t, [0.2] * 10, 4) for t in types]
    if extras:
        specs += [dict(s) for s in EXTRA_LAYER_SPECS if s["type"] in types]
    return specs


def _spec_name(spec: dict) -> str:
    keys = [k for k in spec if k not in ("family", "type")]
    return spec["type"] + "(" + ",".join(f"{k}={spec[k]}" for k in keys) + ")"


def section_layers(rep: Report, dev, args, deadline: float) -> None:
    """Every layer type: build and run its workload in every exec x mode x dtype."""
    from profiling import sweeps
    from profiling.capture.core import capture
    from profiling.features.api import layer_features
    from profiling.measure.replay import build_layer_workload

    all_types = list(sweeps.LAYER_TYPE_WEIGHTS)
    supported = set(sweeps.supported_layer_types())
    types = [t for t in all_types if not args.types or t in args.types]
    for t in types:
        if t not in supported:
            rep.add("layers", t, "FAIL", detail="no feature function: the sweeps skip this type")
    types = [t for t in types if t in supported]
    execs = ("eager",) if args.eager_only else ("eager", "graph")
    info: dict = {"types": types, "execs": list(execs), "memory_before": None}
    rep.data["sections"]["layers"] = info
    _free(dev)
    info["memory_before"] = mem(dev)
    grid: dict = {}  # (spec name) -> {(exec, mode, opt, dtype): status}
    failures: list = []
    poisoned = None
    print(f"== layer workloads: {len(types)} types x {len(execs)} exec x {len(LAYER_MODES)} modes x {len(DTYPES)} dtypes")
    # build + capture every spec first (tiny models), then run exec by exec: if the budget runs
    # out, what is left is the graph pass of the last specs (the extra shapes come last)
    built: list = []  # (name, caps)
    for spec in layer_specs(types, not args.no_extras):
        name = _spec_name(spec)
        grid.setdefault(name, {})
        if time.perf_counter() > deadline:
            rep.add("layers", name, "SKIP", detail="selftest time budget (layers section)")
            continue
        try:
            model, inputs = sweeps.build_from_spec(spec, device=dev)
        except Exception as exc:
            rep.add("layers", name, "FAIL", detail="build_from_spec: " + _err(exc), traceback=_tb())
            failures.append((name, "build", _err(exc)))
            continue
        caps: dict = {}
        for dtype in DTYPES:
            for train in (False, True):
                try:
                    cap = capture(model, inputs, dtype=dtype, train=train)
                    caps[(dtype, train)] = cap
                    for layer in cap.layers:
                        if layer.supported:
                            layer_features(layer.config)
                    bad = [l.config.type for l in cap.layers if not l.supported]
                    if bad:
                        rep.add("layers", name, "FAIL", dtype=dtype, mode="train" if train else "eval",
                                detail=f"captured unsupported types {bad}")
                except Exception as exc:
                    caps[(dtype, train)] = exc
                    rep.add("layers", name, "FAIL", dtype=dtype, mode="capture/features", detail=_err(exc),
                            traceback=_tb())
                    failures.append((name, f"capture {dtype}", _err(exc)))
        built.append((name, caps))
        del model, inputs
    for ex in execs:
        for name, caps in built:
            cells = grid[name]
            for mode, opt in LAYER_MODES:
                for dtype in DTYPES:
                    key = (ex, mode, opt, dtype)
                    if poisoned:
                        break
                    if time.perf_counter() > deadline:
                        cells[key] = "skip"
                        rep.add("layers", name, "SKIP", exec=ex, mode=mode, dtype=dtype, optimizer=opt,
                                detail="selftest time budget")
                        continue
                    cap = caps.get((dtype, mode != "inference"))
                    if not hasattr(cap, "layers"):
                        cells[key] = "FAIL"
                        continue
                    for layer in cap.layers:
                        if not layer.supported:
                            continue
                        t0 = time.perf_counter()
                        wl = None
                        status, detail, extra = "OK", "", {}
                        try:
                            wl = build_layer_workload(layer, mode=mode, dtype=dtype, device=dev, exec=ex, optimizer=opt,
                                                      graph_max_calls=args.graph_max_calls)
                            t_build = time.perf_counter() - t0
                            _sync(dev)
                            t1 = time.perf_counter()
                            for _ in range(args.calls):
                                wl.fn()
                            _sync(dev)
                            t_run = (time.perf_counter() - t1) / args.calls
                            extra = {"build_s": round(t_build, 4), "call_s": t_run,
                                     "calls_per_invocation": wl.calls_per_invocation,
                                     "note": wl.info.get("note"), "layer": layer.config.type}
                            detail = f"n={wl.calls_per_invocation}" + (f"; {wl.info['note']}" if wl.info.get("note") else "")
                        except Exception as exc:
                            status, detail = "FAIL", _err(exc)
                            extra = {"traceback": _tb(), "layer": layer.config.type}
                        finally:
                            if wl is not None:
                                wl.close()
                            wl = None
                        if status == "FAIL":
                            failures.append((name, f"{ex}/{mode}{'/' + opt if opt else ''}/{dtype}", detail))
                            healthy, why = cuda_healthy(dev)
                            if not healthy:
                                poisoned = f"after {name} {ex}/{mode}/{dtype}: {why}"
                                detail += f" [CUDA CONTEXT POISONED: {why}]"
                            if not stream_ok(dev):
                                detail += " [current stream was left on a capture side stream]"
                            _free(dev)
                        elif ex == "graph":
                            _free(dev, collect=False)
                        rep.add("layers", name, status, seconds=time.perf_counter() - t0, detail=detail, exec=ex,
                                mode=mode, dtype=dtype, optimizer=opt, **extra)
                        prev = cells.get(key)
                        cells[key] = "FAIL" if (status == "FAIL" or prev == "FAIL") else "ok"
                        if poisoned:
                            break
        _free(dev)
    del built
    # leak check: everything above was closed and collected
    _free(dev)
    info["memory_after"] = mem(dev)
    if dev.type == "cuda":
        grow = info["memory_after"]["allocated_mb"] - info["memory_before"]["allocated_mb"]
        # bounded growth is expected: cuBLAS keeps a workspace per (handle, stream) and capture side
        # streams come from torch's pool of 32; a leak grows with every workload
        rep.add("layers", "memory after all layer workloads", "OK" if grow < 512 else "WARN",
                detail=f"allocated {grow:+.1f} MiB over {sum(1 for r in rep.rows if r['section'] == 'layers')} "
                       f"checks, reserved {info['memory_after']['reserved_mb']:.0f} MiB, "
                       f"peak {info['memory_after']['max_allocated_mb']:.0f} MiB")
    if poisoned:
        rep.add("layers", "CUDA context", "FAIL", detail=f"poisoned {poisoned}; remaining layer checks not run")
    info["poisoned"] = poisoned
    # table
    cols = [(ex, m, o, d) for ex in execs for m, o in LAYER_MODES for d in DTYPES]
    short = {"inference": "inf", "forward_backward": "fb", "train_step": "ts"}
    heads = [f"{ex[0]}.{o or short[m]}.{'32' if d == 'fp32' else 'bf'}" for ex, m, o, d in cols]
    width = max(len(n) for n in grid) if grid else 10
    width = min(width, 48)
    print("  " + "type".ljust(width) + " " + " ".join(h.rjust(max(4, len(h))) for h in heads))
    for name, cells in grid.items():
        print("  " + name[:width].ljust(width) + " " + " ".join(
            cells.get(c, "-").rjust(max(4, len(h))) for c, h in zip(cols, heads)))
    if failures:
        print(f"  {len(failures)} failure(s):")
        seen = set()
        for name, where, msg in failures:
            k = (name.split("(")[0], where.split("/")[0], msg[:120])
            if k in seen:
                continue
            seen.add(k)
            print(f"   FAIL {name[:60]} [{where}]: {msg}")
    # how large graphs get at the sweeps' default target (1 ms per replay, <= 4096 calls)
    if "graph" in execs and not poisoned:
        _graph_scale(rep, dev, deadline)


def _graph_scale(rep: Report, dev, deadline: float) -> None:
    from profiling import sweeps
    from profiling.capture.core import capture
    from profiling.measure.replay import build_layer_workload

    for spec, mode, opt in (({"family": "layer", "type": "ReLU", "batch": 1, "shape": [1, 256]}, "inference", None),
                            ({"family": "layer", "type": "Linear", "batch": 8, "in": 64, "out": 64, "seq": None},
                             "train_step", "adam")):
        if time.perf_counter() > deadline:
            break
        t0 = time.perf_counter()
        try:
            model, inputs = sweeps.build_from_spec(spec, device=dev)
            layer = capture(model, inputs, train=mode != "inference").layers[0]
            wl = build_layer_workload(layer, mode=mode, device=dev, exec="graph", optimizer=opt)
            i = dict(wl.info)
            wl.close()
            rep.add("layers", f"graph size at defaults: {spec['type']} {mode}", "OK", seconds=time.perf_counter() - t0,
                    exec="graph", mode=mode, optimizer=opt,
                    detail=f"n={i.get('graph_calls')} calls, replay {1e3 * i.get('graph_replay_s', 0):.2f} ms, "
                           f"eager {1e6 * i.get('eager_call_s', 0):.1f} us/call, build {time.perf_counter() - t0:.2f} s")
        except Exception as exc:
            rep.add("layers", f"graph size at defaults: {spec['type']} {mode}", "FAIL", exec="graph", mode=mode,
                    optimizer=opt, seconds=time.perf_counter() - t0, detail=_err(exc), traceback=_tb())
        _free(dev)


def _fast_session(dev, idle_w: float | None = None):
    from profiling.measure.profiler import ProfileSession

    return ProfileSession("replay", device=dev, hardware="selftest", sweep_id="selftest",
                          idle_power_w=100.0 if idle_w is None else idle_w, protocol_kwargs=dict(FAST_PROTOCOL),
                          reference=None)


def section_models(rep: Report, dev, args, deadline: float) -> None:
    """Every sweep model family through profile_model as a sweep task runs it (fast replay meter)."""
    from profiling import sweeps
    from profiling.measure.profiler import profile_model
    from profiling.measure.replay import build_model_workload

    print("== model families through profile_model (replay meter: code paths only, no measurement)")
    session = _fast_session(dev)
    results: list = []
    rep.data["sections"]["models"] = results
    try:
        for spec in small_model_specs():
            label = spec["family"] + ("/" + spec["kind"] if spec.get("kind") else "") + (
                "/res" if spec.get("residual") else ("/plain" if spec["family"] == "cnn" else ""))
            for mode, opt in MODEL_MODES:
                for dtype in DTYPES:
                    if time.perf_counter() > deadline:
                        rep.add("models", label, "SKIP", mode=mode, dtype=dtype, optimizer=opt, exec="eager",
                                detail="selftest time budget")
                        continue
                    t0 = time.perf_counter()
                    task = sweeps.make_task("model", dict(spec), mode, dtype, opt, execs=("eager",))
                    session.known.clear()  # every layer replayed again (no dedup across checks)
                    model = inputs = None
                    try:
                        model, inputs = task.build(device=dev)
                        with warnings.catch_warnings():
                            warnings.simplefilter("ignore")
                            res = profile_model(model, inputs, mode=mode, dtype=dtype, optimizer=opt, session=session,
                                                execs=task.execs, measure_model=True, task_key=task.key,
                                                family=task.family, model_ref=task.model_ref, spec=task.spec,
                                                progress=False)
                        problems = [f"{s['type']} [{s['exec']}]: {s['reason']}" for s in res.skipped]
                        unsup = [f"{u['type']} x{u['count']}" for u in res.unsupported]
                        status = "FAIL" if problems or res.model_row is None else ("WARN" if unsup else "OK")
                        detail = (f"{len(res.layer_rows)} layer rows, model row {'ok' if res.model_row else 'MISSING'}"
                                  + (f"; not replayable: {'; '.join(problems)}" if problems else "")
                                  + (f"; unsupported (no feature fn): {', '.join(unsup)}" if unsup else ""))
                        results.append({"model": label, "mode": mode, "dtype": dtype, "optimizer": opt,
                                        "layer_rows": len(res.layer_rows), "skipped": res.skipped,
                                        "unsupported": res.unsupported, "notes": res.notes})
                    except Exception as exc:
                        status, detail = "FAIL", _err(exc)
                        results.append({"model": label, "mode": mode, "dtype": dtype, "optimizer": opt,
                                        "error": detail, "traceback": _tb()})
                    rep.add("models", label, status, seconds=time.perf_counter() - t0, detail=detail, exec="eager",
                            mode=mode, dtype=dtype, optimizer=opt)
                    print(f"  {status:4s} {label:18s} {mode:16s} {opt or '-':4s} {dtype}: {detail[:160]}")
                    # the whole model in a CUDA graph: not used by the sweeps (informational: WARN)
                    if dev.type == "cuda" and not args.eager_only and model is not None and time.perf_counter() < deadline:
                        t1 = time.perf_counter()
                        wl = None
                        try:
                            wl = build_model_workload(model, inputs, mode=mode, dtype=dtype, optimizer=opt, device=dev,
                                                      exec="graph", graph_max_calls=args.graph_max_calls)
                            for _ in range(args.calls):
                                wl.fn()
                            _sync(dev)
                            rep.add("models", label + " (whole-model graph)", "OK", seconds=time.perf_counter() - t1,
                                    exec="graph", mode=mode, dtype=dtype, optimizer=opt,
                                    detail=f"n={wl.calls_per_invocation}")
                        except Exception as exc:
                            rep.add("models", label + " (whole-model graph)", "WARN", seconds=time.perf_counter() - t1,
                                    exec="graph", mode=mode, dtype=dtype, optimizer=opt,
                                    detail="not used by sweeps: " + _err(exc))
                            stream_ok(dev)
                        finally:
                            if wl is not None:
                                wl.close()
                    del model, inputs
                    _free(dev, collect=status == "FAIL")
                    healthy, why = cuda_healthy(dev)
                    if not healthy:
                        rep.add("models", "CUDA context", "FAIL", detail=f"poisoned after {label} {mode} {dtype}: {why}")
                        return
    finally:
        session.close()
        _free(dev)


def section_mlp(rep: Report, dev, meter, idle_w: float | None, args) -> None:
    """A tiny MLP through profile_model with the real meter, three modes, eager + graph layers."""
    import torch

    from profiling.measure.profiler import profile_model
    from profiling.model_refs import build_mlp

    print(f"== profile_model: tiny MLP, meter {meter.name}, {args.window_s:g} s windows")
    results: list = []
    rep.data["sections"]["mlp"] = results
    kw = {"min_window_s": args.window_s, "n_windows": 2, "max_rounds": 1, "warmup_s": 0.1,
          "jitter_s": (0.0, 0.05)}
    execs = ("eager",) if args.eager_only else ("eager", "graph")
    scratch = tempfile.mkdtemp(prefix="exante-selftest-")
    for i, (mode, opt) in enumerate((("inference", None), ("forward_backward", None), ("train_step", "sgd"))):
        t0 = time.perf_counter()
        try:
            torch.manual_seed(0)
            model = build_mlp(32, 3, 64, 10)
            x = torch.randn(64, 32, device=dev)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                res = profile_model(model, x, mode=mode, optimizer=opt, meter=meter, device=dev, execs=execs,
                                    idle_power_w=idle_w if idle_w is not None else 100.0, protocol_kwargs=kw,
                                    reference=(i == 0), progress=False, model_ref="selftest:mlp-32-3-64-10",
                                    hardware="selftest", sweep_id="selftest")
            written = res.write(scratch)
            print("  " + res.to_text().replace("\n", "\n  "))
            m = res.model_row or {}
            eager = {r["config_key"]: r["energy_j"] for r in res.layer_rows if r["exec"] == "eager"}
            graph = {r["config_key"]: r["energy_j"] for r in res.layer_rows if r["exec"] == "graph"}
            ratios = [graph[k] / eager[k] for k in graph if k in eager and eager[k]]
            problems = [f"{s['type']} [{s['exec']}]: {s['reason']}" for s in res.skipped]
            status = "FAIL" if (problems or res.model_row is None or not written.get("layers")) else "OK"
            detail = (f"model {m.get('energy_j', 0) * 1e3:.3f} mJ/call, {m.get('time_s', 0) * 1e6:.1f} us, "
                      f"{m.get('power_w') or 0:.0f} W, spread {100 * (m.get('spread') or 0):.1f} %, "
                      f"rho {m.get('additivity_ratio')}, graph/eager layer energy "
                      f"{statistics.median(ratios) if ratios else None}, rows written {written}"
                      + (f"; not measured: {'; '.join(problems)}" if problems else ""))
            results.append({"mode": mode, "optimizer": res.optimizer, "model_row": res.model_row,
                            "layer_rows": res.layer_rows, "reference_rows": res.reference_rows,
                            "skipped": res.skipped, "notes": res.notes, "graph_over_eager": ratios})
        except Exception as exc:
            status, detail = "FAIL", _err(exc)
            results.append({"mode": mode, "error": detail, "traceback": _tb()})
        rep.add("mlp", "profile_model mlp(32,3,64,10) b64", status, seconds=time.perf_counter() - t0, detail=detail,
                exec="+".join(execs), mode=mode, optimizer=opt, dtype="fp32")
        print(f"  {status} {mode}: {detail}")
        _free(dev)


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
        rep.add("env", f"open meter {args.meter}", "FAIL", detail=_err(exc), traceback=_tb())
        print(f"  FAIL opening meter {args.meter!r}: {_err(exc)}")

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
            rep.add(name, "section crashed", "FAIL", detail=_err(exc), traceback=_tb())
            print(f"  FAIL section {name} crashed: {_err(exc)}")
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
        with contextlib.suppress(Exception):
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
