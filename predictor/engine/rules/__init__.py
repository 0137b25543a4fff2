"""Lowering rules: one per layer family, registered like torch's ``register_flop_formula``.

See :mod:`predictor.engine.rules.core` for the registry and how to add a rule;
:mod:`~predictor.engine.rules.dense` (GEMM, conv, attention, RNN, MoE grouped GEMM) and
:mod:`~predictor.engine.rules.memory_bound` (norms, elementwise, copies, embeddings, losses)
hold the built-in rules, :mod:`~predictor.engine.rules.step` the optimizer and GradScaler,
:mod:`~predictor.engine.rules.types` the layer type -> family table.  Both
:func:`predictor.engine.lowering.lower` (one workload) and the vectorised NAS scorer
(:mod:`predictor.search.nas_vectorised`, many designs at once) lower through these rules.
"""

from __future__ import annotations

from predictor.engine.rules import dense, memory_bound, types  # noqa: F401  (register rules)
from predictor.engine.rules.core import (
    CLASSES,
    HOST_FEATURES,
    Emitter,
    LayerCtx,
    LoweringRule,
    UnpricedLayer,
    assign_layer_types,
    bwd,
    bwd_mm,
    fallback_rule,
    family_of,
    fwd,
    layer_families,
    lower_layer,
    lowering_rule,
    register_lowering_rule,
    rules_with_autocast,
    unregister_lowering_rule,
)

__all__ = ["CLASSES", "HOST_FEATURES", "Emitter", "LayerCtx", "LoweringRule", "UnpricedLayer",
           "assign_layer_types", "bwd", "bwd_mm", "fallback_rule", "family_of", "fwd",
           "layer_families", "lower_layer", "lowering_rule", "register_lowering_rule",
           "rules_with_autocast", "unregister_lowering_rule"]
