"""Features of convolutions (modules and ``F.conv*``), counted with fvcore's ``conv_flop_count``.
"""

from __future__ import annotations

import warnings

from profiling.capture.records import LayerConfig
from profiling.features.families.common import _arg, _feat, _nd_from_type, _ntuple, _prod, _x, _y
from profiling.features.families.registry import register

with warnings.catch_warnings():     # fvcore.nn's __init__ triggers torch.jit.script deprecations
    warnings.simplefilter("ignore", DeprecationWarning)
    from fvcore.nn.jit_handles import conv_flop_count


# --------------------------------------------------------------------------------------
# convolutions


def _pad_numeric(padding, k: tuple, dilation: tuple) -> tuple:
    if isinstance(padding, str):
        if padding == "valid":
            return (0,) * len(k)
        return tuple(d * (kk - 1) // 2 for kk, d in zip(k, dilation, strict=False))      # "same"
    return _ntuple(padding, len(k))


def _conv_common(cfg, nd, transposed, x, w, y, groups, params, stride, padding, dilation):
    if len(x) == nd + 1:                      # unbatched input
        x, y = (1,) + tuple(x), (1,) + tuple(y)
    macs = conv_flop_count(list(x), list(w), list(y), transposed=transposed)
    k = tuple(int(v) for v in w[2:])
    cin = int(x[1])
    cout = int(y[1])
    stride, dilation = _ntuple(stride, nd), _ntuple(dilation, nd)
    padding = _pad_numeric(padding, k, dilation)
    return _feat(
        cfg, macs=macs, flops=2 * macs, params=params, batch=int(x[0]),
        in_channels=cin, out_channels=cout, groups=int(groups), kernel_numel=_prod(k),
        kernel_size=max(k) if k else 1, stride=max(stride), padding=max(padding),
        dilation=max(dilation), in_spatial=_prod(x[2:]), out_spatial=_prod(y[2:]),
        depthwise=int(groups > 1 and groups == cin), transposed=int(transposed),
    )


@register("Conv1d", "Conv2d", "Conv3d", "ConvTranspose1d", "ConvTranspose2d",
          "ConvTranspose3d", "LazyConv1d", "LazyConv2d", "LazyConv3d")
def _conv(cfg: LayerConfig) -> dict:
    """fvcore ``conv_flop_count``: macs = N·prod(w)·prod(out spatial) (transposed: input
    spatial), i.e. N·Cout·Hout·Wout·(Cin/groups)·kh·kw for a 2-d convolution."""
    hp = cfg.hparams_dict()
    nd = _nd_from_type(cfg.type)
    transposed = bool(hp.get("transposed", cfg.type.startswith("ConvTranspose")))
    cin, cout, g = int(hp["in_channels"]), int(hp["out_channels"]), int(hp.get("groups", 1))
    k = tuple(int(v) for v in _ntuple(hp["kernel_size"], nd))
    w = (cin, cout // g, *k) if transposed else (cout, cin // g, *k)
    params = _prod(w) + (cout if hp.get("bias", True) else 0)
    return _conv_common(cfg, nd, transposed, _x(cfg), w, _y(cfg), g, params,
                        hp.get("stride", 1), hp.get("padding", 0), hp.get("dilation", 1))


@register("F.conv1d", "F.conv2d", "F.conv3d", "F.conv_transpose1d", "F.conv_transpose2d",
          "F.conv_transpose3d")
def _f_conv(cfg: LayerConfig) -> dict:
    hp = cfg.hparams_dict()
    nd = _nd_from_type(cfg.type)
    transposed = "transpose" in cfg.type
    g = int(_arg(hp, "groups", 6, 1))
    dil_pos = 7 if transposed else 5
    return _conv_common(cfg, nd, transposed, _x(cfg), cfg.input_shapes[1], _y(cfg), g, 0,
                        _arg(hp, "stride", 3, 1), _arg(hp, "padding", 4, 0),
                        _arg(hp, "dilation", dil_pos, 1))


