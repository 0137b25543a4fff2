"""Features of loss layers.
"""

from __future__ import annotations

from profiling.capture.records import LayerConfig
from profiling.features.families.common import _feat, _prod, _x
from profiling.features.families.registry import register

# --------------------------------------------------------------------------------------
# losses (rarely inside a model, but cheap to cover)


@register("MSELoss", "L1Loss", "SmoothL1Loss", "HuberLoss", "F.mse_loss", "F.l1_loss",
          "F.smooth_l1_loss", "F.huber_loss")
def _regression_loss(cfg: LayerConfig) -> dict:
    return _feat(cfg, flops=3 * _prod(_x(cfg)))


@register("CrossEntropyLoss", "NLLLoss", "BCEWithLogitsLoss", "BCELoss", "KLDivLoss",
          "F.cross_entropy", "F.nll_loss", "F.binary_cross_entropy_with_logits",
          "F.binary_cross_entropy", "F.kl_div")
def _class_loss(cfg: LayerConfig) -> dict:
    per = 6 if cfg.type in ("CrossEntropyLoss", "F.cross_entropy") else 3
    return _feat(cfg, flops=per * _prod(_x(cfg)))


