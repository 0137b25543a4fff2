"""Lent-GPU designs (issue 13): the H100 reference-set workloads, tiny host-bound layers
(per-op host cost) and heavy GPU-efficiency kernels, each with its measurement protocol."""

from __future__ import annotations

from profiling.dataset.reference_set import reference_workloads
from profiling.sweeps.design_space import FWD_BWD, INFER, TRAIN_ADAM, TRAIN_SGD
from profiling.sweeps.layer_designs import _interleave, supported_layer_types
from profiling.sweeps.tasks import SweepTask, make_task

# --------------------------------------------------------------------------- lent-GPU designs (issue 13)

# protocol settings per sweep (protocol.measure kwargs; protocol v2 takes window energy from the
# counter's changes when the meter is a *-changes meter, so short windows stay accurate)
REFSET_PROTOCOL = {  # the H100 reference set's README: 0.3 s warm-up, two windows >= 1.2 s, sync every 8 calls
    "warmup_s": 0.3, "warmup_calls": 1, "min_window_s": 1.2, "n_windows": 2, "max_rounds": 1, "sync_every": 8,
    "jitter_s": (0.0, 0.0), "max_total_s": 30.0}
HOST_PROTOCOL = {  # tiny host-bound layers: power ~ flat active idle; time per call is what matters
    "warmup_s": 0.1, "min_window_s": 0.5, "n_windows": 2, "max_rounds": 2, "calibrate_s": 0.02,
    "jitter_s": (0.0, 0.0), "max_total_s": 15.0}
GPU_EFF_PROTOCOL = {  # heavy kernels: 0.3 s warm-up for the power ramp, 1 s windows (DESIGN §2: ~1 % repeat)
    "warmup_s": 0.3, "min_window_s": 1.0, "n_windows": 2, "max_rounds": 2, "jitter_s": (0.0, 0.0),
    "max_total_s": 20.0}
# torch's default precision settings (what the reference set and exante's "fp32" mean)
TORCH_DEFAULT_FLAGS = {"allow_tf32_matmul": False, "allow_tf32_cudnn": True, "cudnn_benchmark": False}


def refset_design() -> list[SweepTask]:
    """The 95 workloads of the H100 reference set (profiling.dataset.reference_set), whole model only,
    in its own order per model; models interleaved vision / transformer / mlp."""
    tasks = []
    for w in reference_workloads():
        spec = {"family": "refset", "name": w["name"], "kind": w["kind"], "model_ref": w["model_ref"],
                "arch": w["arch"], "input": list(w["input"]), "batch": int(w["batch"])}
        tasks.append(make_task("whole", spec, w["mode"], w["dtype"], w["optimizer"], execs=("eager",)))
    return tasks


# tiny configs (batch 1-2): the host's per-call cost dominates; (spec, has parameters)
_HOST_TINY = [
    ({"type": "Linear", "batch": 1, "in": 64, "out": 64, "seq": None}, True),
    ({"type": "Conv2d", "batch": 1, "cin": 8, "cout": 8, "k": 3, "stride": 1, "res": 8, "groups": 1}, True),
    ({"type": "Conv1d", "batch": 1, "cin": 8, "cout": 8, "k": 3, "stride": 1, "length": 16, "groups": 1}, True),
    ({"type": "ConvTranspose2d", "batch": 1, "cin": 8, "cout": 8, "k": 2, "stride": 2, "res": 4}, True),
    ({"type": "BatchNorm2d", "batch": 2, "c": 8, "res": 8}, True),
    ({"type": "BatchNorm1d", "batch": 2, "c": 64}, True),
    ({"type": "LayerNorm", "batch": 1, "d": 64, "seq": 8}, True),
    ({"type": "GroupNorm", "batch": 1, "groups": 8, "c": 32, "res": 8}, True),
    ({"type": "MultiheadAttention", "batch": 1, "d": 64, "heads": 4, "seq": 8}, True),
    ({"type": "Embedding", "batch": 1, "vocab": 1000, "d": 64, "seq": 8}, True),
    ({"type": "ReLU", "batch": 1, "shape": [1, 256]}, False),
    ({"type": "GELU", "batch": 1, "shape": [1, 256]}, False),
    ({"type": "SiLU", "batch": 1, "shape": [1, 256]}, False),
    ({"type": "Hardswish", "batch": 1, "shape": [1, 256]}, False),
    ({"type": "Sigmoid", "batch": 1, "shape": [1, 256]}, False),
    ({"type": "Tanh", "batch": 1, "shape": [1, 256]}, False),
    ({"type": "LeakyReLU", "batch": 1, "shape": [1, 256]}, False),
    ({"type": "Dropout", "batch": 1, "shape": [1, 256]}, False),
    ({"type": "Softmax", "batch": 1, "shape": [1, 1, 8, 8]}, False),
    ({"type": "MaxPool2d", "batch": 1, "c": 8, "res": 8, "k": 2, "stride": 2}, False),
    ({"type": "AvgPool2d", "batch": 1, "c": 8, "res": 8, "k": 2, "stride": 2}, False),
    ({"type": "AdaptiveAvgPool2d", "batch": 1, "c": 64, "res": 4}, False),
    ({"type": "sdpa", "batch": 1, "heads": 2, "head_dim": 32, "seq": 8, "causal": False}, False),
    ({"type": "add", "batch": 1, "shape": [1, 8, 64]}, False),
    ({"type": "matmul", "batch": 1, "m": 16, "k": 16, "n": 16}, False),
    ({"type": "mean", "batch": 1, "seq": 8, "d": 64}, False),
]
# autocast adds casts and dispatch per op: the bf16 host cost of the common compute layers
_HOST_BF16 = ("Linear", "Conv2d", "LayerNorm", "MultiheadAttention", "sdpa")
# "small" configs (batch 32): still mostly host-bound on an H100/H200, the slope above the floor
_HOST_SMALL = [
    {"type": "Linear", "batch": 32, "in": 256, "out": 256, "seq": None},
    {"type": "Conv2d", "batch": 32, "cin": 16, "cout": 16, "k": 3, "stride": 1, "res": 16, "groups": 1},
    {"type": "BatchNorm2d", "batch": 32, "c": 16, "res": 16},
    {"type": "LayerNorm", "batch": 32, "d": 256, "seq": 16},
    {"type": "ReLU", "batch": 32, "shape": [32, 16, 16, 16]},
    {"type": "MultiheadAttention", "batch": 32, "d": 128, "heads": 4, "seq": 16},
    {"type": "sdpa", "batch": 32, "heads": 4, "head_dim": 32, "seq": 16, "causal": False},
    {"type": "add", "batch": 32, "shape": [32, 16, 128]},
]


def host_launch_design() -> list[SweepTask]:
    """Per-op host cost: tiny configs of every layer family in inference, forward_backward and
    train_step (sgd, adam: the optimizer step's own cost), fp32 (+ bf16 autocast for the common
    compute layers); first eager, then the same in CUDA graphs (the GPU-side floor: eager minus
    graph is the host's share), then small batch-32 configs eager (the slope above the floor)."""
    reg = set(supported_layer_types())
    tiny = [({"family": "layer", **s}, p) for s, p in _HOST_TINY if s["type"] in reg]
    out: list[SweepTask] = []
    for ex in ("eager", "graph"):
        tier = []
        for spec, has_params in tiny:
            modes = (INFER, FWD_BWD, TRAIN_SGD, TRAIN_ADAM) if has_params else (INFER, FWD_BWD)
            for mode, opt in modes:
                tier.append(make_task("layer", spec, mode, "fp32", opt, execs=(ex,)))
            if spec["type"] in _HOST_BF16:
                for mode, opt in (INFER, FWD_BWD):
                    tier.append(make_task("layer", spec, mode, "bf16", opt, execs=(ex,)))
        out += _interleave(tier)
    small = []
    for s in _HOST_SMALL:
        if s["type"] in reg:
            for mode, opt in (INFER, FWD_BWD, TRAIN_ADAM):
                small.append(make_task("layer", {"family": "layer", **s}, mode, "fp32", opt, execs=("eager",)))
    return out + _interleave(small)


# GPU-bound shapes (BERT/ResNet/ViT-like and larger): efficiency by precision
_EFF_SHAPES = [
    {"type": "Linear", "batch": 32, "in": 768, "out": 3072, "seq": 128},
    {"type": "Linear", "batch": 8, "in": 4096, "out": 4096, "seq": 512},
    {"type": "Linear", "batch": 64, "in": 1024, "out": 1024, "seq": None},
    {"type": "Linear", "batch": 16, "in": 1024, "out": 4096, "seq": 1024},
    {"type": "Conv2d", "batch": 32, "cin": 64, "cout": 64, "k": 3, "stride": 1, "res": 56, "groups": 1},
    {"type": "Conv2d", "batch": 32, "cin": 256, "cout": 256, "k": 3, "stride": 1, "res": 14, "groups": 1},
    {"type": "Conv2d", "batch": 32, "cin": 3, "cout": 64, "k": 7, "stride": 2, "res": 224, "groups": 1},
    {"type": "Conv2d", "batch": 32, "cin": 384, "cout": 384, "k": 3, "stride": 1, "res": 28, "groups": 384},
    {"type": "Conv2d", "batch": 32, "cin": 1024, "cout": 256, "k": 1, "stride": 1, "res": 14, "groups": 1},
    {"type": "sdpa", "batch": 32, "heads": 12, "head_dim": 64, "seq": 128, "causal": False},
    {"type": "sdpa", "batch": 8, "heads": 16, "head_dim": 64, "seq": 1024, "causal": False},
    {"type": "sdpa", "batch": 8, "heads": 16, "head_dim": 64, "seq": 1024, "causal": True},
    {"type": "LayerNorm", "batch": 32, "d": 768, "seq": 128},
    {"type": "LayerNorm", "batch": 8, "d": 4096, "seq": 1024},
    {"type": "BatchNorm2d", "batch": 32, "c": 64, "res": 56},
    {"type": "BatchNorm2d", "batch": 32, "c": 256, "res": 14},
]
_TF32_TYPES = ("Linear", "Conv2d", "sdpa")  # the precision flags change only these kernels


def gpu_eff_design(tf32: bool = False) -> list[SweepTask]:
    """GPU efficiency of matmul (Linear), conv, attention and norm shapes, inference and
    forward_backward, eager. ``tf32=False``: strict fp32 (the sweep turns TF32 off for matmuls
    and cuDNN) and bf16 autocast; ``tf32=True``: fp32 with TF32 on (its own sweep, so the rows'
    allow_tf32_* columns say which)."""
    reg = set(supported_layer_types())
    dtypes = ("fp32",) if tf32 else ("fp32", "bf16")
    tasks = []
    for mode, opt in (INFER, FWD_BWD):
        for s in _EFF_SHAPES:
            if s["type"] not in reg or (tf32 and s["type"] not in _TF32_TYPES):
                continue
            for dt in dtypes:
                tasks.append(make_task("layer", {"family": "layer", **s}, mode, dt, opt, execs=("eager",)))
    return _interleave(tasks)
