"""Whole-model designs: MLP groups (+ seed 004 grids), CNN, transformer and mixed stacks, and the
smoke / reference sweeps."""

from __future__ import annotations

from profiling.sweeps.design_space import (
    DTYPE_CHOICES,
    FWD_BWD,
    INFER,
    MODEL_MODES,
    SEED,
    TRAIN_ADAM,
    TRAIN_SGD,
    _choice,
    _logint,
    _round_to,
    lhs,
)
from profiling.sweeps.layer_designs import LIMIT_NUMEL, _batch, supported_layer_types
from profiling.sweeps.tasks import SweepTask, make_task

# --------------------------------------------------------------------------- model designs

# seed 004, Table 6 (wide vs deep, input 100, one output): (hidden layers, layer size)
SEED004_TABLE6 = [(100, 10), (10, 100), (200, 10), (100, 20), (20, 100), (10, 200), (300, 10), (100, 30), (30, 100),
                  (10, 300), (200, 20), (20, 200), (300, 20), (200, 30), (30, 200), (20, 300), (300, 30), (30, 300)]
# seed 004, Table 4 (training overhead): depths 10..170 x layer sizes 25..100
SEED004_TABLE4_DEPTHS = list(range(10, 171, 10))
SEED004_TABLE4_WIDTHS = [25, 50, 75, 100]
SEED004_BATCH = 32  # Keras' default batch size (the seed's experiments do not state one)


def _mlp_spec(i, d, w, o, b):
    return {"family": "mlp", "in": int(i), "depth": int(d), "width": int(w), "out": int(o), "batch": int(b)}


def mlp_design(n_groups: int = 32, depths_per_group: int = 4, seed: int = SEED, anchors: bool = True) -> list[SweepTask]:
    """MLPs depth 1..300 x width 10..1024 x batch 1..512 (LHS over groups that share their
    layers: each group = one (in, width, out, batch, mode, dtype) at several depths), plus
    seed 004 Table 6's wide-vs-deep grid (inference and SGD train step at batch 32)."""
    tasks: list[SweepTask] = []
    if anchors:
        for mode, opt in (TRAIN_SGD, INFER):
            for depth, width in SEED004_TABLE6:
                tasks.append(make_task("model", _mlp_spec(100, depth, width, 1, SEED004_BATCH), mode, "fp32", opt,
                                       execs=("eager",)))
    pts = lhs(n_groups, 7, seed)
    for u in pts:
        width = _logint(u[0], 10, 1024)
        b = _batch(u[1])
        inp = _logint(u[2], 10, 1024)
        out = _choice(u[3], (1, 10, 100))
        mode, opt = _choice(u[4], MODEL_MODES)
        dtype = _choice(u[5], DTYPE_CHOICES)
        # depths spread log-uniformly over 1..300 with a per-group offset (u[6])
        for j in range(depths_per_group):
            v = (j + u[6]) / depths_per_group
            depth = _logint(v, 1, 300)
            tasks.append(make_task("model", _mlp_spec(inp, depth, width, out, b), mode, dtype, opt, execs=("eager",)))
    return tasks


def mlp_seed004_design() -> list[SweepTask]:
    """Seed 004 Table 4 (depth 10..170 x width 25..100, input 100, one output, batch 32):
    SGD train step and inference, fp32 — the training-overhead experiment, on our hardware."""
    tasks = []
    for mode, opt in (TRAIN_SGD, INFER):
        for w in SEED004_TABLE4_WIDTHS:
            for d in SEED004_TABLE4_DEPTHS:
                tasks.append(make_task("model", _mlp_spec(100, d, w, 1, SEED004_BATCH), mode, "fp32", opt,
                                       execs=("eager",)))
    return tasks


def cnn_design(n_groups: int = 14, seed: int = SEED + 1) -> list[SweepTask]:
    """Plain and residual CNN stacks: per group (resolution, base width, stages, kernel, batch,
    mode, dtype), plain and residual variants at 1, 2 and 3 blocks per stage."""
    tasks = []
    for u in lhs(n_groups, 7, seed):
        res = _choice(u[0], (32, 32, 64, 128, 224))
        base = _logint(u[1], 8, 128)
        stages = _choice(u[2], (1, 2, 3, 4))
        k = _choice(u[3], (3, 3, 3, 5))
        b = _batch(u[4])
        # memory guard: activations of the widest layer
        while b > 1 and b * base * (res if res < 128 else res // 2) ** 2 > LIMIT_NUMEL // 4:
            b //= 2
        mode, opt = _choice(u[5], MODEL_MODES)
        dtype = _choice(u[6], DTYPE_CHOICES)
        classes = 10 if res <= 64 else 1000
        for residual in (False, True):
            for blocks in (1, 2, 3):
                spec = {"family": "cnn", "residual": residual, "res": res, "in_ch": 3, "base": base, "stages": stages,
                        "blocks": blocks, "kernel": k, "classes": classes, "batch": b}
                tasks.append(make_task("model", spec, mode, dtype, opt, execs=("eager",)))
    return tasks


def transformer_design(n_groups: int = 17, seed: int = SEED + 2) -> list[SweepTask]:
    """Transformer encoders (token classifier): d_model 64..1024, heads, seq 32..1024, batch;
    per group, depths spread over 1..24 layers."""
    tasks = []
    for u in lhs(n_groups, 8, seed):
        heads = _choice(u[1], (1, 2, 4, 8, 16))
        d = _round_to(_logint(u[0], 64, 1024), 8 * heads)
        seq = _logint(u[2], 32, 1024)
        b = _batch(u[3])
        mode, opt = _choice(u[4], MODEL_MODES)
        dtype = _choice(u[5], DTYPE_CHOICES)
        depths = sorted({max(1, _logint((j + u[6]) / 3, 1, 24)) for j in range(3)})
        for depth in depths:
            bb = b
            # memory guard: tokens x width x layers (train keeps ~20 activations per block)
            while bb > 1 and bb * seq * d * depth * (20 if mode != "inference" else 1) > 4 * LIMIT_NUMEL:
                bb //= 2
            while bb > 1 and bb * heads * seq * seq > LIMIT_NUMEL:
                bb //= 2
            spec = {"family": "transformer", "vocab": 1000, "seq": seq, "d_model": d, "heads": heads, "layers": depth,
                    "ff_mult": 4, "classes": 10, "act": "gelu", "causal": bool(u[7] < 0.25), "batch": bb}
            tasks.append(make_task("model", spec, mode, dtype, opt, execs=("eager",)))
    return tasks


def mixed_design(n: int = 16, seed: int = SEED + 3) -> list[SweepTask]:
    """Randomly sampled mixed architectures (vector / image / sequence), fixed seed."""
    import numpy as np

    tasks = []
    kinds = ("vector", "image", "sequence")
    for i, u in enumerate(lhs(n, 4, seed)):
        rng = np.random.default_rng(seed * 1000 + i)
        kind = _choice(u[0], kinds)
        b = _batch(u[1])
        mode, opt = _choice(u[2], MODEL_MODES)
        dtype = _choice(u[3], DTYPE_CHOICES)
        acts = ["relu", "gelu", "silu", "hardswish", "tanh"]
        if kind == "vector":
            blocks = []
            width = int(np.exp(rng.uniform(np.log(16), np.log(1024))))
            for _ in range(int(rng.integers(2, 12))):
                width = int(np.clip(width * np.exp(rng.normal(0, 0.5)), 8, 2048))
                blocks.append({"out": width, "act": str(rng.choice(acts)), "norm": str(rng.choice(["none", "ln", "bn"])),
                               "dropout": float(rng.choice([0.0, 0.0, 0.1]))})
            spec = {"family": "mixed", "kind": kind, "in": int(np.exp(rng.uniform(np.log(8), np.log(2048)))),
                    "blocks": blocks, "out": int(rng.choice([1, 10, 100])), "batch": max(2, b)}
        elif kind == "image":
            res = int(rng.choice([32, 64, 96, 128]))
            c = int(rng.choice([16, 24, 32, 48, 64]))
            blocks = []
            cur, r = c, res
            for _ in range(int(rng.integers(3, 10))):
                op = str(rng.choice(["conv", "conv", "dwsep", "res", "pool"]))
                act = str(rng.choice(acts))
                if op == "pool" and r >= 8:
                    blocks.append({"op": "pool", "pool": str(rng.choice(["max", "avg"]))})
                    r //= 2
                elif op in ("conv", "dwsep"):
                    stride = 2 if (r >= 16 and rng.random() < 0.3) else 1
                    cout = int(np.clip(cur * rng.choice([1, 1, 2]), 8, 512))
                    blk = {"op": op, "k": int(rng.choice([1, 3, 3, 5])) if op == "conv" else int(rng.choice([3, 5])),
                           "stride": stride, "cout": cout, "act": act}
                    if op == "conv":
                        blk["groups"] = str(rng.choice(["1", "1", "dw"]))
                        blk["norm"] = str(rng.choice(["bn", "bn", "gn", "none"]))
                        if blk["groups"] == "dw":
                            cout = cur
                    blocks.append(blk)
                    cur, r = cout, (r + stride - 1) // stride
                else:
                    blocks.append({"op": "res", "k": 3, "act": act, "norm": str(rng.choice(["bn", "gn"]))})
            bb = b
            while bb > 1 and bb * max(c, cur) * res * res > LIMIT_NUMEL // 4:
                bb //= 2
            spec = {"family": "mixed", "kind": kind, "res": res, "in_ch": 3, "stem": c, "stem_act": "relu",
                    "blocks": blocks, "dropout": float(rng.choice([0.0, 0.2])), "classes": 10, "batch": bb}
        else:
            heads = int(rng.choice([1, 2, 4, 8]))
            d = _round_to(int(np.exp(rng.uniform(np.log(64), np.log(768)))), 8 * heads)
            seq = int(np.exp(rng.uniform(np.log(16), np.log(512))))
            blocks = []
            for _ in range(int(rng.integers(2, 9))):
                op = str(rng.choice(["attn", "mlp", "conv"]))
                if op == "attn":
                    blocks.append({"op": "attn", "heads": heads})
                elif op == "mlp":
                    blocks.append({"op": "mlp", "mult": int(rng.choice([2, 4])), "act": str(rng.choice(acts))})
                else:
                    blocks.append({"op": "conv", "k": int(rng.choice([3, 5, 7])), "act": str(rng.choice(acts))})
            bb = b
            while bb > 1 and bb * seq * d * len(blocks) * 16 > 4 * LIMIT_NUMEL:
                bb //= 2
            spec = {"family": "mixed", "kind": kind, "vocab": 1000, "seq": seq, "d_model": d, "blocks": blocks,
                    "classes": 10, "batch": bb}
        tasks.append(make_task("model", spec, mode, dtype, opt, execs=("eager",)))
    return tasks


# --------------------------------------------------------------------------- smoke / reference


def layers_smoke_design() -> list[SweepTask]:
    """The ``layers-smoke`` sweep: 8 tiny single layers over inference, forward_backward and
    train_step (sgd, adam), fp32 (sdpa bf16); types without registered features are left out."""
    specs = [
        ({"family": "layer", "type": "Linear", "batch": 8, "in": 64, "out": 32, "seq": None}, INFER, "fp32"),
        ({"family": "layer", "type": "Conv2d", "batch": 2, "cin": 3, "cout": 8, "k": 3, "stride": 1, "res": 16,
          "groups": 1}, INFER, "fp32"),
        ({"family": "layer", "type": "ReLU", "batch": 4, "shape": [4, 128]}, INFER, "fp32"),
        ({"family": "layer", "type": "LayerNorm", "batch": 2, "d": 32, "seq": 8}, FWD_BWD, "fp32"),
        ({"family": "layer", "type": "Linear", "batch": 8, "in": 32, "out": 16, "seq": None}, TRAIN_SGD, "fp32"),
        ({"family": "layer", "type": "sdpa", "batch": 2, "heads": 2, "head_dim": 16, "seq": 32, "causal": False},
         INFER, "bf16"),
        ({"family": "layer", "type": "Embedding", "batch": 2, "vocab": 100, "d": 16, "seq": 8}, TRAIN_ADAM, "fp32"),
        ({"family": "layer", "type": "BatchNorm2d", "batch": 2, "c": 8, "res": 8}, INFER, "fp32"),
    ]
    reg = set(supported_layer_types())
    return [make_task("layer", s, m, dt, o) for s, (m, o), dt in specs if s["type"] in reg]


def models_smoke_design() -> list[SweepTask]:
    """The ``models-smoke`` sweep: 5 tiny models (3 MLPs, a residual CNN, a one-layer transformer),
    inference and train_step, eager only."""
    mk = lambda spec, m, dt="fp32": make_task("model", spec, m[0], dt, m[1], execs=("eager",))  # noqa: E731
    return [
        mk(_mlp_spec(16, 2, 32, 1, 8), INFER),
        mk(_mlp_spec(16, 3, 32, 1, 8), INFER),  # shares its layers with the previous task
        mk(_mlp_spec(16, 2, 32, 10, 8), TRAIN_SGD),
        mk({"family": "cnn", "residual": True, "res": 16, "in_ch": 3, "base": 8, "stages": 2, "blocks": 1, "kernel": 3,
            "classes": 10, "batch": 2}, INFER),
        mk({"family": "transformer", "vocab": 50, "seq": 16, "d_model": 32, "heads": 2, "layers": 1, "ff_mult": 2,
            "classes": 4, "act": "gelu", "causal": False, "batch": 2}, TRAIN_ADAM),
    ]


def reference_design() -> list[SweepTask]:
    """A fixed set re-run in every session (with a ``tag``) to compare sessions and machines:
    host-bound and GPU-bound layers and models (DESIGN §2: host-bound eager energy varies
    across sessions by ~12 %, GPU-bound by ~3 %)."""
    L = lambda s, m=INFER, dt="fp32": make_task("layer", s, m[0], dt, m[1])  # noqa: E731
    M = lambda s, m=INFER, dt="fp32": make_task("model", s, m[0], dt, m[1], execs=("eager",))  # noqa: E731
    return [
        L({"family": "layer", "type": "Linear", "batch": 1, "in": 64, "out": 64, "seq": None}),
        L({"family": "layer", "type": "Linear", "batch": 4096, "in": 4096, "out": 4096, "seq": None}),
        L({"family": "layer", "type": "Conv2d", "batch": 64, "cin": 128, "cout": 128, "k": 3, "stride": 1, "res": 28,
           "groups": 1}),
        L({"family": "layer", "type": "Conv2d", "batch": 64, "cin": 128, "cout": 128, "k": 3, "stride": 1, "res": 28,
           "groups": 1}, TRAIN_SGD),
        L({"family": "layer", "type": "sdpa", "batch": 16, "heads": 16, "head_dim": 64, "seq": 1024, "causal": False},
          INFER, "bf16"),
        L({"family": "layer", "type": "ReLU", "batch": 1, "shape": [1, 256]}),
        M(_mlp_spec(100, 20, 300, 1, 256)),
        M(_mlp_spec(100, 20, 300, 1, 256), TRAIN_SGD),  # DESIGN §2: train ≈ 4.4-4.7 x forward
        M(_mlp_spec(100, 100, 10, 1, 32), TRAIN_SGD),  # seed 004's deep-narrow case: host-bound
        M({"family": "transformer", "vocab": 1000, "seq": 256, "d_model": 512, "heads": 8, "layers": 6, "ff_mult": 4,
           "classes": 10, "act": "gelu", "causal": False, "batch": 32}, INFER, "bf16"),
    ]
