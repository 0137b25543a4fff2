"""Features of linear / matmul-like layers (Linear, Bilinear, matmul, addmm, einsum ...).
"""

from __future__ import annotations

from profiling.capture.records import LayerConfig
from profiling.features.families.common import _arg, _feat, _prod, _x, _y
from profiling.features.families.registry import register

# --------------------------------------------------------------------------------------
# matmul / linear


@register("Linear", "NonDynamicallyQuantizableLinear", "LazyLinear")
def _linear(cfg: LayerConfig) -> dict:
    """y = x W^T + b on inputs of any rank: macs = numel(x) · out_features (fvcore)."""
    hp = cfg.hparams_dict()
    x = _x(cfg)
    fin, fout = int(hp["in_features"]), int(hp["out_features"])
    bias = bool(hp.get("bias", True))
    macs = _prod(x) * fout
    params = fin * fout + (fout if bias else 0)
    rows = _prod(x[:-1]) if len(x) > 1 else 1
    return _feat(cfg, macs=macs, flops=2 * macs, params=params, in_features=fin,
                 out_features=fout, rows=rows, has_bias=int(bias))


@register("Bilinear")
def _bilinear(cfg: LayerConfig) -> dict:
    hp = cfg.hparams_dict()
    f1, f2, fo = int(hp["in1_features"]), int(hp["in2_features"]), int(hp["out_features"])
    rows = _prod(_x(cfg)[:-1])
    macs = rows * fo * (f1 * f2 + f2)          # x1^T A x2 per output feature
    params = fo * f1 * f2 + (fo if hp.get("bias", True) else 0)
    return _feat(cfg, macs=macs, flops=2 * macs, params=params, rows=rows,
                 in_features=f1 + f2, out_features=fo)


@register("F.linear")
def _f_linear(cfg: LayerConfig) -> dict:
    x = _x(cfg)
    w: tuple = cfg.input_shapes[1] if len(cfg.input_shapes) > 1 else ()
    fout = int(w[0]) if len(w) == 2 else 1
    macs = _prod(x) * fout
    return _feat(cfg, macs=macs, flops=2 * macs, in_features=int(x[-1]) if x else 1,
                 out_features=fout, rows=_prod(x[:-1]) if len(x) > 1 else 1,
                 has_bias=int(len(cfg.input_shapes) > 2))


@register("matmul", "mm", "bmm", "mv", "dot", "vdot", "inner")
def _matmul(cfg: LayerConfig) -> dict:
    """a @ b with broadcasting: macs = numel(out) · k (k = a.shape[-1])."""
    a = cfg.input_shapes[0]
    b = cfg.input_shapes[1] if len(cfg.input_shapes) > 1 else a
    k = int(a[-1]) if a else 1
    out_n = _prod(_y(cfg))
    macs = out_n * k
    m = int(a[-2]) if len(a) >= 2 else 1
    n = int(b[-1]) if len(b) >= 2 else 1
    return _feat(cfg, macs=macs, flops=2 * macs, m=m, n=n, k=k,
                 matmul_batch=out_n // max(m * n, 1))


@register("grouped_mm", "F.grouped_mm")
def _grouped_mm(cfg: LayerConfig) -> dict:
    """Mixture-of-experts grouped matmul (``torch._grouped_mm(a, b, offs=...)``): every row
    of ``a`` meets one group of ``b``, so macs = numel(out) · k whatever the routing
    (2-d × 3-d: rows·n·k; 3-d × 3-d: groups·m·n·k)."""
    a, b = cfg.input_shapes[0], cfg.input_shapes[1]
    k = int(a[-1]) if a else 1
    y = _y(cfg)
    macs = (int(a[0]) * int(b[-1]) * k) if len(a) == 2 and len(b) == 2 else _prod(y) * k
    return _feat(cfg, macs=macs, flops=2 * macs, k=k, n=int(b[-1]) if b else 1,
                 groups=int(b[0]) if len(b) == 3 else 1)


@register("addmm", "baddbmm", "addmv")
def _addmm(cfg: LayerConfig) -> dict:
    """beta·input + a @ b: macs = numel(out) · k (the add is ignored, as in fvcore)."""
    a = cfg.input_shapes[1]
    k = int(a[-1])
    macs = _prod(_y(cfg)) * k
    return _feat(cfg, macs=macs, flops=2 * macs, k=k)


@register("addbmm")
def _addbmm(cfg: LayerConfig) -> dict:
    a, b = cfg.input_shapes[1], cfg.input_shapes[2]
    macs = _prod(a) * int(b[-1])
    return _feat(cfg, macs=macs, flops=2 * macs, k=int(a[-1]))


@register("einsum")
def _einsum(cfg: LayerConfig) -> dict:
    """macs = product of the sizes of all distinct indices (exact for two operands)."""
    hp = cfg.hparams_dict()
    eq = str(_arg(hp, "equation", 0, "")).replace(" ", "")
    lhs = eq.split("->")[0]
    sizes: dict = {}
    for term, shape in zip(lhs.split(","), cfg.input_shapes, strict=False):
        if "..." in term:
            n_ell = len(shape) - (len(term) - 3)
            term = term.replace("...", "".join(chr(0x100 + i) for i in range(max(n_ell, 0))))
        for letter, dim in zip(term, shape, strict=False):
            sizes[letter] = max(sizes.get(letter, 1), int(dim))
    macs = _prod(sizes.values()) if sizes else 0
    return _feat(cfg, macs=macs, flops=2 * macs)


