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
``runner`` (run_sweep), ``dataset_card``. This package re-exports their names.
"""

from __future__ import annotations

from profiling.sweeps.builders import (
    BasicBlock,
    EncoderBlock,
    TokenClassifier,
    _act,
    _AttnOnly,
    _build_cnn,
    _build_layer,
    _build_mixed,
    _build_refset,
    _build_transformer,
    _FunctionalHost,
    _LayerHost,
    _norm2d,
    _randint,
    _randn,
    _Residual,
    _SeqConv,
    _SeqMLP,
    build_from_spec,
)
from profiling.sweeps.dataset_card import (
    COUNTS_BEGIN,
    COUNTS_END,
    _fmt_q,
    _quantiles,
    _template_text,
    counts_markdown,
    dataset_card_stats,
    write_dataset_card,
)
from profiling.sweeps.design_space import (
    DTYPE_CHOICES,
    FWD_BWD,
    INFER,
    MODEL_MODES,
    SEED,
    TRAIN_ADAM,
    TRAIN_MODES,
    TRAIN_SGD,
    _choice,
    _logint,
    _pow2,
    _round_to,
    _shrink_batch,
    lhs,
)
from profiling.sweeps.execution import (
    _WHOLE_CACHE,
    _WORKER,
    TORCH_FLAGS,
    _cuda_context_error,
    _execute_whole,
    _finish_task,
    _free_memory,
    _whole_model,
    _worker_execute,
    execute_task,
    make_meter,
    torch_flags,
)
from profiling.sweeps.gpu_designs import (
    _EFF_SHAPES,
    _HOST_BF16,
    _HOST_SMALL,
    _HOST_TINY,
    _TF32_TYPES,
    GPU_EFF_PROTOCOL,
    HOST_PROTOCOL,
    REFSET_PROTOCOL,
    TORCH_DEFAULT_FLAGS,
    gpu_eff_design,
    host_launch_design,
    refset_design,
)
from profiling.sweeps.layer_designs import (
    _ACTS,
    _CAPTURED_TYPE,
    LAYER_TYPE_WEIGHTS,
    LIMIT_NUMEL,
    _act_shape,
    _anchor_layers,
    _batch,
    _interleave,
    _layer_spec,
    _numel,
    _registry_types,
    _shrink_shape,
    layer_design,
    supported_layer_types,
)
from profiling.sweeps.model_designs import (
    SEED004_BATCH,
    SEED004_TABLE4_DEPTHS,
    SEED004_TABLE4_WIDTHS,
    SEED004_TABLE6,
    _mlp_spec,
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
    _main,
    estimate_sweep,
    get_sweep,
    register,
)
from profiling.sweeps.runner import (
    SweepSummary,
    _execute,
    _make_client,
    _now_iso,
    _run_dask,
    _run_sweep,
    _Writer,
    run_sweep,
)
from profiling.sweeps.tasks import (
    REFERENCE_EVERY,
    SweepDefinition,
    SweepTask,
    _canon,
    _model_ref,
    _spec_label,
    make_task,
)

__all__ = [
    "SweepTask", "SweepDefinition", "SweepSummary", "SWEEPS", "run_sweep", "estimate_sweep",
    "build_from_spec", "make_meter", "dataset_card_stats", "write_dataset_card", "SECONDS_PER_CONFIG",
]
