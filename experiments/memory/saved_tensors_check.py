"""Measure what autograd keeps for the backward and compare it with exante's estimate.

For each model (timm names, randomly initialised on the CPU, training mode, fp32), one
forward runs under ``torch.autograd.graph.saved_tensors_hooks``: the unique storages of the
tensors saved for the backward (parameters and the input excluded) are summed -- exactly the
activation memory a ``train_step`` holds at the start of the backward.  The estimate is
``predictor.engine.memory.estimate_memory(capture_workload(...)).activations_bytes`` of the same
model and input, captured on ``meta``.

    python experiments/memory/saved_tensors_check.py [--batch 2] [--size 224] [MODEL ...] [--out DIR]

Writes ``<out>/saved_tensors.json``; prints per model measured/estimated and the summary.
"""

from __future__ import annotations

import argparse
import json
import sys
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from experiments.outputs import add_output_args, output_dir  # noqa: E402
from profiling.dataset.schema import write_bytes_atomic  # noqa: E402

TRACKED = Path(__file__).resolve().parent / "results"
DEFAULT = ["resnet18", "resnet50", "resnext50_32x4d", "seresnet50", "densenet121", "vgg11",
           "mobilenetv2_100", "mobilenetv3_large_100", "efficientnet_b0", "regnety_016",
           "convnext_tiny", "repvgg_b0", "dla34", "ghostnet_100", "mixer_s16_224",
           "vit_tiny_patch16_224", "deit_small_patch16_224", "swin_tiny_patch4_window7_224",
           "poolformer_s12", "levit_128", "tf_efficientnetv2_b0", "rexnet_100", "dpn68",
           "cspresnet50", "hrnet_w18_small"]


def measured_saved_bytes(model, x) -> int:
    import torch

    params = {p.untyped_storage().data_ptr() for p in model.parameters()}
    params.add(x.untyped_storage().data_ptr())
    seen: dict = {}

    def pack(t):
        if isinstance(t, torch.Tensor) and t.device.type == "cpu":
            s = t.untyped_storage()
            if s.data_ptr() not in params:
                seen[s.data_ptr()] = s.nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        model(x)
    return int(sum(seen.values()))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("models", nargs="*", default=DEFAULT)
    ap.add_argument("--batch", type=int, default=2)
    ap.add_argument("--size", type=int, default=224)
    add_output_args(ap, TRACKED)
    args = ap.parse_args(argv)
    warnings.simplefilter("ignore")
    import torch

    from predictor.engine.memory import estimate_memory
    from predictor.engine.predict import capture_workload
    from profiling.model_refs import import_timm

    timm = import_timm()
    torch.manual_seed(0)
    rows, failures = [], {}
    for name in args.models:
        try:
            m = timm.create_model(name, pretrained=False).train()
            x = torch.randn(args.batch, 3, args.size, args.size)
            meas = measured_saved_bytes(m, x)
            w = capture_workload(m, x, "train_step", "fp32", "sgd", cache=False)
            est = estimate_memory(w).activations_bytes
        except Exception as exc:          # report, never hide, what it cannot run
            failures[name] = f"{type(exc).__name__}: {str(exc).splitlines()[0][:200]}"
            continue
        rows.append({"model": name, "measured_bytes": meas, "estimate_bytes": est,
                     "ratio": est / meas if meas else None})
        print(f"{name:32s} measured {meas / 2**20:8.1f} MiB  estimate {est / 2**20:8.1f} MiB  "
              f"ratio {est / meas:.2f}", flush=True)
    ratios = sorted(r["ratio"] for r in rows if r["ratio"])
    summary = {"n": len(rows), "batch": args.batch, "size": args.size, "dtype": "fp32",
               "ratio_median": ratios[len(ratios) // 2] if ratios else None,
               "ratio_min": ratios[0] if ratios else None,
               "ratio_max": ratios[-1] if ratios else None,
               "within_25_pct": sum(0.75 <= r <= 1.25 for r in ratios), "failures": failures}
    folder = output_dir(args, TRACKED, "memory")
    path = Path(folder, "saved_tensors.json")
    write_bytes_atomic(path, json.dumps({"summary": summary, "rows": rows}, indent=1).encode())
    print(json.dumps(summary, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
