"""The dtype each captured layer really runs in under CUDA autocast (fp16/bf16).

The capture (:mod:`profiling.capture.dtypes`) tags every op with a compute dtype by rule, and
promotes an op that mixes a 16-bit activation with an fp32 *parameter* to fp32.  That is right
for elementwise ops (``x * gamma``, ``x + pos_embed`` do run in fp32) but not for BatchNorm:
cuDNN's and the native batch norm take a 16-bit input with fp32 weight and statistics and
write a 16-bit output.  Once BatchNorm is tagged fp32, every op after it (activation, pooling,
the SE ``mean``/``mul``, residual adds) inherits fp32 and its traffic is counted twice.

:func:`autocast_flow` walks the layers in capture order (first-seen order of distinct configs;
a config shared by several positions takes its first one) and tracks whether the tensor
flowing in is fp32:

* the model input is fp32;
* low-precision ops (matmul, conv, attention: the families whose lowering rule is registered
  with ``autocast="lowp"``) write 16-bit; fp32-list ops (``autocast="fp32"``: norms, softmax,
  losses; and the capture's fp32 types: sum/exp/pow) write fp32;
* BatchNorm writes the dtype of its input;
* any other op keeps its input's dtype, unless the capture says fp32 *and* it has an operand
  that does not scale with the batch (a parameter or buffer, fp32 under autocast), which
  promotes it.
"""

from __future__ import annotations

import math

from predictor.engine.rules import rules_with_autocast
from profiling.capture.dtypes import FP32_TYPES

__all__ = ["autocast_flow"]


def _param_operand(cfg, batch: int) -> bool:
    """Whether an input beyond the first looks like a parameter/buffer (its size does not
    scale with the batch; 0-d tensors do not promote)."""
    if not cfg.output_shapes or len(cfg.input_shapes) < 2:
        return False
    out = math.prod(cfg.output_shapes[0]) or 1
    for s in cfg.input_shapes[1:]:
        if len(s) == 0:
            continue
        n = math.prod(s)
        if batch > 1 and n * batch <= out:
            return True
        if batch == 1 and n < out:
            return True
    return False


def autocast_flow(layers, families, batch: int) -> tuple[list, list]:
    """(input is fp32, output is fp32) per layer of ``layers`` (WLayer, capture order) with
    their lowering ``families`` (None: unsupported) -- see the module docstring."""
    lowp_fams, fp32_fams = rules_with_autocast("lowp"), rules_with_autocast("fp32")
    ins, outs, prev32 = [], [], True
    for wl, fam in zip(layers, families, strict=True):
        cfg = wl.config
        ins.append(prev32)
        if fam in lowp_fams and cfg.dtype in ("bf16", "fp16"):
            out32 = False
        elif fam in fp32_fams or cfg.type in FP32_TYPES:
            out32 = True
        elif fam == "bn":
            out32 = prev32
        elif cfg.dtype in ("bf16", "fp16"):
            out32 = False
        else:
            out32 = prev32 or _param_operand(cfg, batch)
        outs.append(out32)
        prev32 = out32
    return ins, outs
