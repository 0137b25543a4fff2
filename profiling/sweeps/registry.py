"""The named sweeps (:data:`SWEEPS`), their expected H100 durations and :func:`estimate_sweep`
(distinct configurations counted by capturing every task on ``meta``; seconds = configs x
``SECONDS_PER_CONFIG``)."""

from __future__ import annotations

import math

from profiling.capture import capture
from profiling.dataset import schema
from profiling.errors import ExanteError
from profiling.sweeps.design_space import DTYPE_CHOICES, INFER, SEED, TRAIN_MODES
from profiling.sweeps.gpu_designs import (
    GPU_EFF_PROTOCOL,
    HOST_PROTOCOL,
    REFSET_PROTOCOL,
    TORCH_DEFAULT_FLAGS,
    gpu_eff_design,
    host_launch_design,
    refset_design,
)
from profiling.sweeps.layer_designs import _anchor_layers, layer_design, supported_layer_types
from profiling.sweeps.model_designs import (
    cnn_design,
    layers_smoke_design,
    mixed_design,
    mlp_design,
    mlp_seed004_design,
    models_smoke_design,
    reference_design,
    transformer_design,
)
from profiling.sweeps.tasks import REFERENCE_EVERY, SweepDefinition

SECONDS_PER_CONFIG = 4.0  # one measured configuration on an H100 (protocol defaults)
GRAPH_EXTRA_S = 0.5  # CUDA-graph capture on top of that
# --------------------------------------------------------------------------- registry

SWEEPS: dict[str, SweepDefinition] = {}


def register(sweep: SweepDefinition) -> SweepDefinition:
    """Add ``sweep`` to :data:`SWEEPS` under its name (replacing one of that name); returns it."""
    SWEEPS[sweep.name] = sweep
    return sweep


# expected H100 durations below come from estimate_sweep() (exact distinct-config counts)
register(SweepDefinition(
    "layers-smoke", "8 tiny single layers, all modes, eager+graph: a first GPU check (~1 min)",
    layers_smoke_design, smoke=True))
register(SweepDefinition(
    "models-smoke", "5 tiny models (MLP, CNN, transformer), inference and train step (~3 min)",
    models_smoke_design, smoke=True))
register(SweepDefinition(
    "layers", "single layers of every supported type over wide shape/batch ranges (1..512), inference, fp32+bf16, "
    "eager+graph (LHS design)",
    lambda: _anchor_layers((INFER,), DTYPE_CHOICES) + layer_design(170, (INFER,), DTYPE_CHOICES, SEED + 10)))
register(SweepDefinition(
    "layers-train", "single layers of every supported type, forward_backward and train_step (sgd, adam), fp32+bf16, "
    "eager+graph (LHS design)",
    lambda: _anchor_layers(TRAIN_MODES, DTYPE_CHOICES) + layer_design(170, TRAIN_MODES, DTYPE_CHOICES, SEED + 20)))
register(SweepDefinition(
    "attention", "attention at sequence lengths 32..1024 (sdpa, MultiheadAttention) with LayerNorm/Softmax/matmul, "
    "all modes, fp32+bf16, eager+graph",
    lambda: layer_design(170, (INFER,) + TRAIN_MODES, DTYPE_CHOICES, SEED + 30,
                         types=[t for t in ("sdpa", "MultiheadAttention", "LayerNorm", "Softmax", "matmul")
                                if t in supported_layer_types()])))
register(SweepDefinition(
    "mlp", "MLPs depth 1..300 x width 10..1024 x batch 1..512 (LHS groups sharing layers) + seed 004 Table 6 "
    "wide-vs-deep grid; inference and train_step (sgd, adam)", mlp_design))
register(SweepDefinition(
    "mlp-seed004", "seed 004 Table 4 grid: depth 10..170 x width 25..100, batch 32, SGD train step and inference",
    mlp_seed004_design))
register(SweepDefinition(
    "cnn", "plain and residual CNN stacks (resolution 32..224, base width 8..128, 1..4 stages, 1..3 blocks), "
    "inference and train_step", cnn_design))
register(SweepDefinition(
    "transformer", "transformer encoders d_model 64..1024, 1..24 layers, 1..16 heads, seq 32..1024; "
    "inference and train_step", transformer_design))
register(SweepDefinition(
    "mixed", "randomly sampled mixed architectures (vector, image, sequence), fixed seed; inference and train_step",
    mixed_design))
register(SweepDefinition(
    "reference", "fixed host-bound and GPU-bound layers and models: re-run every session with tag=... to compare "
    "sessions and machines", reference_design))

register(SweepDefinition(
    "refset", "the 95 workloads of the H100 reference set (shared/reference/h100), whole model only, with its "
    "protocol (0.3 s warm-up, two windows >= 1.2 s, sync every 8 calls): H100 vs this GPU row by row",
    refset_design, protocol=REFSET_PROTOCOL, torch_flags=TORCH_DEFAULT_FLAGS, reference_every=40))
register(SweepDefinition(
    "host-launch", "per-op host cost: tiny configs of every layer family, inference / forward_backward / "
    "train_step (sgd, adam), fp32 (+ bf16), eager then CUDA graph; then batch-32 small configs",
    host_launch_design, protocol=HOST_PROTOCOL, torch_flags=TORCH_DEFAULT_FLAGS, reference_every=60))
register(SweepDefinition(
    "gpu-eff", "GPU efficiency: matmul/conv/attention/norm shapes, inference and forward_backward, strict fp32 "
    "(TF32 off) and bf16 autocast", lambda: gpu_eff_design(tf32=False), protocol=GPU_EFF_PROTOCOL,
    torch_flags={"allow_tf32_matmul": False, "allow_tf32_cudnn": False, "cudnn_benchmark": False}, reference_every=40))
register(SweepDefinition(
    "gpu-eff-tf32", "GPU efficiency of the matmul/conv/attention shapes of gpu-eff in fp32 with TF32 on "
    "(matmuls and cuDNN)", lambda: gpu_eff_design(tf32=True), protocol=GPU_EFF_PROTOCOL,
    torch_flags={"allow_tf32_matmul": True, "allow_tf32_cudnn": True, "cudnn_benchmark": False}, reference_every=40))

# Filled in from estimate_sweep() on this design (configs x SECONDS_PER_CONFIG, H100):
EXPECTED_DURATION_S = {
    "layers-smoke": 72, "models-smoke": 164, "layers": 1602, "layers-train": 1602, "attention": 1513,
    "mlp": 1420, "mlp-seed004": 700, "cnn": 1404, "transformer": 1416, "mixed": 1440, "reference": 171,
}
# the lent-GPU sweeps use their own protocols: ~3.1 s per refset workload (0.3 s warm-up + 2 x 1.2 s
# windows + build/sync tails), ~1.3 s per host-launch eager config (~1.7 s in a graph), ~2.5 s per
# gpu-eff config -- planning figures until a session's tasks.csv gives measured elapsed_s
EXPECTED_DURATION_S.update({"refset": 300, "host-launch": 280, "gpu-eff": 160, "gpu-eff-tf32": 60})
for _name, _s in EXPECTED_DURATION_S.items():
    if _name in SWEEPS:
        SWEEPS[_name].expected_duration_s = float(_s)


def get_sweep(name: str) -> SweepDefinition:
    """The registered sweep called ``name`` (a SweepDefinition is returned as is); else an
    ExanteError listing the names."""
    if isinstance(name, SweepDefinition):
        return name
    if name not in SWEEPS:
        raise ExanteError(f"unknown sweep {name!r}; accepted: {', '.join(SWEEPS)}")
    return SWEEPS[name]


# --------------------------------------------------------------------------- estimates


def estimate_sweep(name: str, *, graph: bool = True, limit: int | None = None) -> dict:
    """Distinct measured configurations of a sweep (capturing every task on ``meta``) and the
    expected H100 duration: configs x ``SECONDS_PER_CONFIG`` (+ graph capture, + references)."""
    sweep = get_sweep(name)
    seen: set = set()
    n_layer = n_graph = n_model = 0
    tasks = sweep.tasks(limit=limit)
    for t in tasks:
        if t.kind == "whole":  # the whole model only: one configuration, no layer replays
            n_model += 1
            continue
        model, inputs = t.build("meta")
        cap = capture(model, inputs, dtype=t.dtype, train=t.mode != "inference")
        for layer in cap.layers:
            if not layer.supported:
                continue
            for ex in t.execs:
                if ex == "graph" and not graph:
                    continue
                k = schema.row_key(layer.config.key(), t.mode, ex, t.dtype, t.optimizer)
                if k in seen:
                    continue
                seen.add(k)
                n_layer += 1
                n_graph += ex == "graph"
        if t.kind == "model":
            n_model += 1
    configs = n_layer + n_model
    refs = math.ceil(configs / REFERENCE_EVERY)
    seconds = (configs + refs) * SECONDS_PER_CONFIG + n_graph * GRAPH_EXTRA_S
    return {"sweep": sweep.name, "tasks": len(tasks), "layer_configs": n_layer, "graph_configs": n_graph,
            "model_configs": n_model, "reference_measurements": refs, "expected_h100_s": seconds}
