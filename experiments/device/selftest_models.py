"""GPU self-test sections ``models`` (every sweep model family through profile_model, fast
replay meter) and ``mlp`` (a tiny MLP with the real meter); see experiments/device/gpu_selftest.py."""

from __future__ import annotations

import statistics
import tempfile
import time
import warnings

from experiments.device.selftest_common import (
    DTYPES,
    FAST_PROTOCOL,
    MODEL_MODES,
    Report,
    cuda_healthy,
    error_line,
    free_memory,
    short_traceback,
    small_model_specs,
    stream_ok,
    sync_device,
)


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
                        status, detail = "FAIL", error_line(exc)
                        results.append({"model": label, "mode": mode, "dtype": dtype, "optimizer": opt,
                                        "error": detail, "traceback": short_traceback()})
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
                            sync_device(dev)
                            rep.add("models", label + " (whole-model graph)", "OK", seconds=time.perf_counter() - t1,
                                    exec="graph", mode=mode, dtype=dtype, optimizer=opt,
                                    detail=f"n={wl.calls_per_invocation}")
                        except Exception as exc:
                            rep.add("models", label + " (whole-model graph)", "WARN", seconds=time.perf_counter() - t1,
                                    exec="graph", mode=mode, dtype=dtype, optimizer=opt,
                                    detail="not used by sweeps: " + error_line(exc))
                            stream_ok(dev)
                        finally:
                            if wl is not None:
                                wl.close()
                    del model, inputs
                    free_memory(dev, collect=status == "FAIL")
                    healthy, why = cuda_healthy(dev)
                    if not healthy:
                        rep.add("models", "CUDA context", "FAIL", detail=f"poisoned after {label} {mode} {dtype}: {why}")
                        return
    finally:
        session.close()
        free_memory(dev)


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
            status, detail = "FAIL", error_line(exc)
            results.append({"mode": mode, "error": detail, "traceback": short_traceback()})
        rep.add("mlp", "profile_model mlp(32,3,64,10) b64", status, seconds=time.perf_counter() - t0, detail=detail,
                exec="+".join(execs), mode=mode, optimizer=opt, dtype="fp32")
        print(f"  {status} {mode}: {detail}")
        free_memory(dev)
