"""GPU self-test sections ``env``, ``nvml``, ``changes`` and ``matmul`` (the energy meters and the
protocol on the reference workload); see experiments/device/gpu_selftest.py."""

from __future__ import annotations

import json
import os
import platform
import statistics
import time
import warnings

from experiments.device.selftest_common import (
    Report,
    error_line,
    free_memory,
    short_traceback,
    sync_device,
)


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
            from importlib.metadata import PackageNotFoundError, version

            env[f"pkg_{pkg}"] = version(pkg)
        except PackageNotFoundError:
            env[f"pkg_{pkg}"] = None
    try:
        import importlib

        importlib.import_module("fvcore.nn")  # the features need it

        fv = "importable"
    except Exception as exc:
        fv = error_line(exc)
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
    steps = [b - a for a, b in zip(changes, changes[1:], strict=False)]  # pairwise
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
        rep.add("nvml", "counter advances at idle", "FAIL", detail=error_line(exc), traceback=short_traceback())
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
        rep.add("nvml", "counter under load", "FAIL", detail=error_line(exc), traceback=short_traceback())
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
        rep.add("nvml", "measure_idle_power", "FAIL", detail=error_line(exc), traceback=short_traceback())
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
        rep.add("nvml", "nvml-power vs counter", "FAIL", detail=error_line(exc), traceback=short_traceback())
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
        sync_device(dev)
        t0 = time.perf_counter()
        for _ in range(n):
            x.add_(1.0)
        sync_device(dev)
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
            sync_device(dev)
            e0, t0 = inner.energy_j(), cm.clock()
            while cm.clock() - t0 < args.change_window_s:
                for _ in range(8):
                    a @ b
                sync_device(dev)
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
        free_memory(dev)


def section_matmul(rep: Report, dev, meter, idle_w: float, args) -> None:
    import torch

    from profiling.measure.protocol import measure
    from profiling.measure.replay import ReplayCall, reference_workload

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
        rep.add("matmul", wl.description, "FAIL", seconds=time.perf_counter() - t, detail=error_line(exc), traceback=short_traceback())
    finally:
        wl.close()
    t = time.perf_counter()
    try:
        n = 8192 if dev.type == "cuda" else 256
        a = torch.randn(n, n, device=dev, dtype=torch.bfloat16)
        b = torch.randn(n, n, device=dev, dtype=torch.bfloat16)
        c = torch.empty(n, n, device=dev, dtype=torch.bfloat16)
        wl2 = ReplayCall(fn=lambda: torch.mm(a, b, out=c), description=f"bf16 matmul {n}", device=str(dev))
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
        rep.add("matmul", "bf16 matmul", "FAIL", seconds=time.perf_counter() - t, detail=error_line(exc), traceback=short_traceback())
    free_memory(dev)
