"""Prediction latency for a ResNet-50-size model on this CPU (a benchmark, not a test).

Compares, in the same process and run:

* ``predictor.engine.predict`` (capture on ``meta`` + workload + lowering + physics model),
  cold (first call: nothing cached) and warm (the capture of the same model cached);
* ``profiling.capture.core.capture`` alone on the ``meta`` copy of the model (the first stage of
  predict; predict itself swaps the real weights for meta placeholders around it);
* ``torch.utils.flop_counter.FlopCounterMode`` over a forward on the ``meta`` device;
* ``fvcore.nn.FlopCountAnalysis`` (jit trace based) feature extraction -- on ``meta`` if
  it works there, else on CPU at batch 1 (said in the output).

The ResNet-50 is ``profiling.zoo.resnet50`` (torchvision's layout from ``torch.nn``;
torchvision may not import).  ``--hardware`` is any id ``predict`` accepts: a shipped
artifact, or a catalogue GPU priced by datasheet transfer (said in the output).

    python experiments/bench_predict.py [--batch 32] [--repeats 20] [--hardware h100] [--json]
"""

from __future__ import annotations

import argparse
import copy
import json
import statistics
import time
import warnings

import torch

from profiling.zoo import resnet50


# ----------------------------------------------------------------------------- timing
def _time(fn, repeats: int) -> dict:
    ts = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t0)
    return {"median_ms": 1e3 * statistics.median(ts), "min_ms": 1e3 * min(ts),
            "repeats": repeats}


def _artifact_note(hardware: str) -> str:
    from predictor.artifacts import available_hardware

    if hardware in available_hardware():
        return f"shipped artifact for {hardware!r}"
    return f"no artifact for {hardware!r}: datasheet transfer from a measured GPU"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--repeats", type=int, default=20)
    ap.add_argument("--hardware", default="h100")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    torch.set_num_threads(max(1, torch.get_num_threads()))
    from predictor import predict
    from predictor.engine.predict import clear_cache

    art_dir, art_note = None, _artifact_note(args.hardware)
    model = resnet50()
    n_params = sum(p.numel() for p in model.parameters())
    shape = (args.batch, 3, 224, 224)
    res: dict = {"model": "ResNet-50 (torch.nn re-implementation)", "params": n_params,
                 "batch": args.batch, "artifact": art_note, "cpu_threads": torch.get_num_threads(),
                 "torch": torch.__version__}

    def run_predict():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return predict(model, shape, hardware=args.hardware, artifact_dir=art_dir)

    def run_predict_cold():
        clear_cache()
        return run_predict()

    p = run_predict()   # loads the artifact (not timed: once per process)
    res["prediction"] = {"energy_j": p.energy_j, "time_s": p.time_s,
                         "n_distinct_layers": len(p.layers)}
    res["predict_cold"] = _time(run_predict_cold, args.repeats)
    res["predict_warm"] = _time(run_predict, args.repeats)
    p_train = predict(model, shape, mode="train_step", hardware=args.hardware, artifact_dir=art_dir)
    res["predict_train_step_warm"] = _time(
        lambda: predict(model, shape, mode="train_step", hardware=args.hardware,
                        artifact_dir=art_dir), args.repeats)
    res["theta_train_over_inference"] = p_train.energy_j / p.energy_j

    # FlopCounterMode on meta (model already on meta: conversion timed separately)
    from torch.utils.flop_counter import FlopCounterMode

    t0 = time.perf_counter()
    meta_model = copy.deepcopy(model).to("meta")
    res["deepcopy_to_meta_ms"] = 1e3 * (time.perf_counter() - t0)
    x_meta = torch.empty(shape, device="meta")

    def flopcounter():
        with FlopCounterMode(display=False) as fc:
            meta_model(x_meta)
        return fc.get_total_flops()

    res["flopcounter_total_flops"] = flopcounter()
    res["flopcounter_meta"] = _time(flopcounter, args.repeats)
    # the model above is in training mode (as built); predict(mode="inference") captures in
    # eval mode, where BatchNorm is cheaper on meta: FlopCounterMode in eval mode as well
    meta_model.eval()
    flopcounter()
    res["flopcounter_meta_eval"] = _time(flopcounter, args.repeats)
    meta_model.train()

    from profiling.capture.core import capture

    capture(meta_model, x_meta)
    res["capture_meta"] = _time(lambda: capture(meta_model, x_meta), args.repeats)

    # fvcore
    try:
        from fvcore.nn import FlopCountAnalysis

        def fv(m, x):
            a = FlopCountAnalysis(m, x)
            a.unsupported_ops_warnings(False)
            a.uncalled_modules_warnings(False)
            return a.total()

        try:
            res["fvcore_total_macs"] = fv(meta_model, x_meta)
            res["fvcore"] = _time(lambda: fv(meta_model, x_meta), max(3, args.repeats // 4))
            res["fvcore_device"] = "meta"
        except Exception as exc:
            x1 = torch.zeros((1, 3, 224, 224))
            res["fvcore_total_macs_batch1"] = fv(model.eval(), x1)
            res["fvcore"] = _time(lambda: fv(model, x1), max(3, args.repeats // 4))
            res["fvcore_device"] = f"cpu, batch 1 (meta failed: {type(exc).__name__})"
    except ImportError:
        res["fvcore"] = None
    pw = res["predict_warm"]["median_ms"]
    res["ratios"] = {
        "predict_warm / flopcounter_meta": pw / res["flopcounter_meta"]["median_ms"],
        "predict_cold / flopcounter_meta": res["predict_cold"]["median_ms"]
        / res["flopcounter_meta"]["median_ms"],
        "capture_meta / flopcounter_meta": res["capture_meta"]["median_ms"]
        / res["flopcounter_meta"]["median_ms"],
        "predict_cold / flopcounter_meta_eval": res["predict_cold"]["median_ms"]
        / res["flopcounter_meta_eval"]["median_ms"],
    }
    if res.get("fvcore"):
        res["ratios"]["predict_warm / fvcore"] = pw / res["fvcore"]["median_ms"]
        res["ratios"]["predict_cold / fvcore"] = res["predict_cold"]["median_ms"] / res["fvcore"]["median_ms"]
    if args.json:
        print(json.dumps(res, indent=2, default=str))
    else:
        print(f"{res['model']}, {n_params / 1e6:.1f} M params, batch {args.batch}, "
              f"{res['cpu_threads']} CPU threads, torch {torch.__version__}")
        print(f"artifact: {art_note}")
        print(f"predict (cold, nothing cached) : {res['predict_cold']['median_ms']:8.1f} ms median")
        print(f"predict (warm: same model+shape): {pw:8.1f} ms median")
        print(f"predict train_step (warm)      : {res['predict_train_step_warm']['median_ms']:8.1f} ms")
        print(f"capture alone (meta model)     : {res['capture_meta']['median_ms']:8.1f} ms median")
        print(f"FlopCounterMode on meta        : {res['flopcounter_meta']['median_ms']:8.1f} ms median "
              f"(+{res['deepcopy_to_meta_ms']:.0f} ms once for deepcopy().to('meta'))")
        print(f"FlopCounterMode on meta, eval  : {res['flopcounter_meta_eval']['median_ms']:8.1f} ms median")
        if res.get("fvcore"):
            print(f"fvcore FlopCountAnalysis       : {res['fvcore']['median_ms']:8.1f} ms median "
                  f"({res['fvcore_device']})")
        for k, v in res["ratios"].items():
            print(f"  {k}: {v:.2f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
