"""Features of max/avg and adaptive pooling.
"""

from __future__ import annotations

from profiling.capture.records import LayerConfig
from profiling.features.families.common import _arg, _feat, _nd_from_type, _ntuple, _prod, _x, _y
from profiling.features.families.registry import register

# --------------------------------------------------------------------------------------
# pooling


def _pool_kernel(cfg, hp, nd) -> tuple:
    k = _arg(hp, "kernel_size", 1 if cfg.type.startswith("F.") else None, 1)
    return tuple(int(v) for v in _ntuple(k, nd))


@register("MaxPool1d", "MaxPool2d", "MaxPool3d", "AvgPool1d", "AvgPool2d", "AvgPool3d",
          "LPPool1d", "LPPool2d", "F.max_pool1d", "F.max_pool2d", "F.max_pool3d",
          "F.avg_pool1d", "F.avg_pool2d", "F.avg_pool3d")
def _pool(cfg: LayerConfig) -> dict:
    """kernel_numel ops per output element; no macs (fvcore has no max/avg pool handle)."""
    hp = cfg.hparams_dict()
    nd = _nd_from_type(cfg.type)
    k = _pool_kernel(cfg, hp, nd)
    stride = _arg(hp, "stride", 2 if cfg.type.startswith("F.") else None, None) or k
    out_n = _prod(_y(cfg))
    return _feat(cfg, flops=out_n * _prod(k), kernel_numel=_prod(k), kernel_size=max(k),
                 stride=max(_ntuple(stride, nd)))


@register("AdaptiveAvgPool1d", "AdaptiveAvgPool2d", "AdaptiveAvgPool3d",
          "F.adaptive_avg_pool1d", "F.adaptive_avg_pool2d", "F.adaptive_avg_pool3d")
def _adaptive_avg(cfg: LayerConfig) -> dict:
    """fvcore: 1 per input element (macs = flops = numel(input))."""
    n = _prod(_x(cfg))
    return _feat(cfg, macs=n, flops=n, out_spatial=_prod(_y(cfg)[2:]))


@register("AdaptiveMaxPool1d", "AdaptiveMaxPool2d", "AdaptiveMaxPool3d",
          "F.adaptive_max_pool1d", "F.adaptive_max_pool2d", "F.adaptive_max_pool3d")
def _adaptive_max(cfg: LayerConfig) -> dict:
    return _feat(cfg, flops=_prod(_x(cfg)), out_spatial=_prod(_y(cfg)[2:]))


