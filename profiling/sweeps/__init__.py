"""Measurement sweeps: what to measure (space-filling designs) and a resumable runner.

A :class:`SweepDefinition` yields :class:`SweepTask` s. A task is one small network to build
from a JSON spec (so it can travel to a dask worker): a single layer (``kind="layer"``; its
distinct layer config(s) are replayed alone) or a whole model (``kind="model"``: every
distinct layer config alone *and* the whole model, giving the additivity ratio rho).

Designs are space-filling: a Latin hypercube (``scipy.stats.qmc.LatinHypercube``, optimised
for centred discrepancy, fixed seed) over log-scaled ranges, plus grid anchor points
(e.g. seed 004's wide-vs-deep MLPs). Model families group configurations that share their
layers (e.g. one MLP width/batch at several depths), so the per-session layer deduplication
(key = LayerConfig.key + mode + exec + dtype + optimizer) keeps a sweep affordable.

Expected H100 durations assume ~4 s per measured configuration (warm-up + calibration + 2
windows x 1.5 s + jitter; see ``SECONDS_PER_CONFIG``) plus a reference re-measurement every
20 configurations; :func:`estimate_sweep` counts the distinct configurations exactly by
capturing every task on the ``meta`` device. ``python -m profiling.sweeps`` prints the table.

Runner: :func:`run_sweep` appends rows atomically as each task finishes (a crash loses at
most the task in flight), skips finished tasks on resume (``tasks.csv``), writes
``meta.json`` (sweeps, sessions, environments), shows a tqdm bar with ETA, stops cleanly at a
time budget, and can fan tasks out to a dask.distributed cluster through joblib (one worker
per GPU; each task runs entirely on one worker, which opens its own meter and measures its
idle power; results stream back and the driver writes them).

Modules (imports flow down this list): ``design_space`` (LHS, modes, dtypes), ``builders``
(spec -> model), ``tasks`` (SweepTask, SweepDefinition), ``layer_designs``, ``model_designs``,
``gpu_designs`` (lent-GPU), ``registry`` (SWEEPS, estimate_sweep), ``execution`` (one task),
``runner`` (run_sweep), ``dataset_card``. This package re-exports their public names (``__all__``);
``python -m profiling.sweeps`` (``__main__``) prints the table.
"""

from __future__ import annotations

from profiling.sweeps.builders import build_from_spec
from profiling.sweeps.dataset_card import (
    COUNTS_BEGIN,
    COUNTS_END,
    counts_markdown,
    dataset_card_stats,
    write_dataset_card,
)
from profiling.sweeps.design_space import DTYPE_CHOICES, MODEL_MODES, SEED, TRAIN_MODES, lhs
from profiling.sweeps.execution import TORCH_FLAGS, execute_task, make_meter, torch_flags
from profiling.sweeps.gpu_designs import (
    GPU_EFF_PROTOCOL,
    HOST_PROTOCOL,
    REFSET_PROTOCOL,
    TORCH_DEFAULT_FLAGS,
    gpu_eff_design,
    host_launch_design,
    refset_design,
)
from profiling.sweeps.layer_designs import (
    LAYER_TYPE_WEIGHTS,
    LIMIT_NUMEL,
    layer_design,
    supported_layer_types,
)
from profiling.sweeps.model_designs import (
    SEED004_BATCH,
    SEED004_TABLE4_DEPTHS,
    SEED004_TABLE4_WIDTHS,
    SEED004_TABLE6,
    cnn_design,
    layers_smoke_design,
    mixed_design,
    mlp_design,
    mlp_seed004_design,
    models_smoke_design,
    reference_design,
    transformer_design,
)
from profiling.sweeps.registry import (
    EXPECTED_DURATION_S,
    GRAPH_EXTRA_S,
    SECONDS_PER_CONFIG,
    SWEEPS,
    estimate_sweep,
    get_sweep,
    register,
)
from profiling.sweeps.runner import SweepSummary, run_sweep
from profiling.sweeps.tasks import REFERENCE_EVERY, SweepDefinition, SweepTask, make_task

__all__ = [
    # what to measure
    "SweepTask", "SweepDefinition", "make_task", "SWEEPS", "get_sweep", "register", "estimate_sweep",
    "SECONDS_PER_CONFIG", "GRAPH_EXTRA_S", "EXPECTED_DURATION_S", "REFERENCE_EVERY",
    # designs
    "lhs", "SEED", "DTYPE_CHOICES", "MODEL_MODES", "TRAIN_MODES", "LAYER_TYPE_WEIGHTS", "LIMIT_NUMEL",
    "supported_layer_types", "layer_design", "cnn_design", "layers_smoke_design", "mixed_design", "mlp_design",
    "mlp_seed004_design", "models_smoke_design", "reference_design", "transformer_design", "gpu_eff_design",
    "host_launch_design", "refset_design", "GPU_EFF_PROTOCOL", "HOST_PROTOCOL", "REFSET_PROTOCOL",
    "TORCH_DEFAULT_FLAGS",
    "SEED004_TABLE6", "SEED004_TABLE4_DEPTHS", "SEED004_TABLE4_WIDTHS", "SEED004_BATCH",
    # running
    "build_from_spec", "execute_task", "make_meter", "torch_flags", "TORCH_FLAGS", "run_sweep", "SweepSummary",
    # the dataset card
    "dataset_card_stats", "write_dataset_card", "counts_markdown", "COUNTS_BEGIN", "COUNTS_END",
]
