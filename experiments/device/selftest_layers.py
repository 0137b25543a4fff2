"""GPU self-test section ``layers``: every sweep layer type's workload in every exec x mode x
dtype, and the graph size at the default target; see experiments/device/gpu_selftest.py."""

from __future__ import annotations

import time

from experiments.device.selftest_common import (
    DTYPES,
    EXTRA_LAYER_SPECS,
    LAYER_MODES,
    Report,
    cuda_healthy,
    error_line,
    free_memory,
    mem,
    short_traceback,
    stream_ok,
    sync_device,
)


def layer_specs(types, extras: bool) -> list[dict]:
    from profiling.sweeps.layer_designs import _layer_spec  # the sweeps' own small-config rule

    specs = [_layer_spec(t, [0.2] * 10, 4) for t in types]
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
    free_memory(dev)
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
            rep.add("layers", name, "FAIL", detail="build_from_spec: " + error_line(exc), traceback=short_traceback())
            failures.append((name, "build", error_line(exc)))
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
                    rep.add("layers", name, "FAIL", dtype=dtype, mode="capture/features", detail=error_line(exc),
                            traceback=short_traceback())
                    failures.append((name, f"capture {dtype}", error_line(exc)))
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
                            sync_device(dev)
                            t1 = time.perf_counter()
                            for _ in range(args.calls):
                                wl.fn()
                            sync_device(dev)
                            t_run = (time.perf_counter() - t1) / args.calls
                            extra = {"build_s": round(t_build, 4), "call_s": t_run,
                                     "calls_per_invocation": wl.calls_per_invocation,
                                     "note": wl.info.get("note"), "layer": layer.config.type}
                            detail = f"n={wl.calls_per_invocation}" + (f"; {wl.info['note']}" if wl.info.get("note") else "")
                        except Exception as exc:
                            status, detail = "FAIL", error_line(exc)
                            extra = {"traceback": short_traceback(), "layer": layer.config.type}
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
                            free_memory(dev)
                        elif ex == "graph":
                            free_memory(dev, collect=False)
                        rep.add("layers", name, status, seconds=time.perf_counter() - t0, detail=detail, exec=ex,
                                mode=mode, dtype=dtype, optimizer=opt, **extra)
                        prev = cells.get(key)
                        cells[key] = "FAIL" if (status == "FAIL" or prev == "FAIL") else "ok"
                        if poisoned:
                            break
        free_memory(dev)
    del built
    # leak check: everything above was closed and collected
    free_memory(dev)
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
            cells.get(c, "-").rjust(max(4, len(h))) for c, h in zip(cols, heads, strict=True)))
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
                    optimizer=opt, seconds=time.perf_counter() - t0, detail=error_line(exc), traceback=short_traceback())
        free_memory(dev)
