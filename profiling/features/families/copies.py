"""Features of dropout, identity, copies and tensor factories.
"""

from __future__ import annotations

from profiling.capture.records import LayerConfig
from profiling.features.families.common import _arg, _feat, _prod, _y
from profiling.features.families.registry import register

# --------------------------------------------------------------------------------------
# dropout, identity, copies, factories


@register("Dropout", "Dropout1d", "Dropout2d", "Dropout3d", "AlphaDropout",
          "FeatureAlphaDropout", "F.dropout", "F.dropout1d", "F.dropout2d", "F.dropout3d",
          "F.alpha_dropout", "F.feature_alpha_dropout")
def _dropout(cfg: LayerConfig) -> dict:
    """Eval: identity (0 flops); training: mask + scale, 1 flop per element."""
    hp = cfg.hparams_dict()
    if cfg.type.startswith("F."):
        training = bool(_arg(hp, "training", 2, True))
        p = _arg(hp, "p", 1, 0.5)
    else:
        training = bool(hp.get("training", False))
        p = hp.get("p", 0.5)
    flops = _prod(_y(cfg)) if training else 0
    return _feat(cfg, flops=flops, p=float(p if isinstance(p, (int, float)) else 0.5),
                 training=int(training))


@register("Identity", "Flatten", "Unflatten", "flatten", "unflatten", "ravel")
def _identity(cfg: LayerConfig) -> dict:
    """No compute (a view or identity); bytes are the tensor sizes."""
    return _feat(cfg)


@register("cat", "stack", "hstack", "vstack", "dstack", "contiguous", "clone", "to",
          "float", "half", "bfloat16", "double", "int", "long", "bool", "type", "type_as",
          "cpu", "cuda", "copy", "setitem", "F.pad", "repeat", "tile", "roll", "flip",
          "index_select", "gather", "scatter", "scatter_add", "masked_select",
          "repeat_interleave", "tril", "triu", "F.pixel_shuffle", "F.pixel_unshuffle",
          "PixelShuffle", "PixelUnshuffle", "ChannelShuffle", "ZeroPad1d", "ZeroPad2d",
          "ZeroPad3d", "ConstantPad1d", "ConstantPad2d", "ConstantPad3d", "ReflectionPad1d",
          "ReflectionPad2d", "ReflectionPad3d", "ReplicationPad1d", "ReplicationPad2d",
          "ReplicationPad3d", "CircularPad1d", "CircularPad2d", "CircularPad3d", "index_copy",
          "index_put", "index_add", "index", "take", "take_along_dim", "narrow_copy", "F.unfold",
          "F.fold", "Unfold", "Fold", "sort", "topk", "nonzero", "unique", "masked_scatter")
def _copy(cfg: LayerConfig) -> dict:
    """Data movement, no arithmetic: flops 0; bytes are what is read and written."""
    return _feat(cfg)


@register("zeros", "ones", "empty", "full", "arange", "rand", "randn", "randint",
          "randperm", "zeros_like", "ones_like", "empty_like", "full_like", "rand_like",
          "randn_like", "randint_like", "linspace", "logspace", "eye", "tensor", "as_tensor",
          "new_zeros", "new_ones", "new_empty", "new_full", "new_tensor", "fill", "zero",
          "F.one_hot", "triu_indices", "tril_indices", "normal", "uniform", "bernoulli")
def _factory(cfg: LayerConfig) -> dict:
    """Writes its output, reads nothing."""
    return _feat(cfg, bytes_read=0)


