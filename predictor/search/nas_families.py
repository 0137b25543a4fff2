"""Work of the generator families (:mod:`predictor.search.generators`) in closed form.

Each ``*_work`` function lowers the layers that family's module captures -- for every design
at once, one slot per layer of a design -- through :class:`~predictor.search.nas_vectorised.
VectorLowering` (the registered lowering rules) and returns ``(s, numels, containers, views,
fused_layers)`` for :meth:`~predictor.search.nas_vectorised.VectorLowering.finish`: design
indices, parameter tensors (n_designs x tensors, elements), non-leaf modules called per
forward, view/metadata ops per forward, fused encoder layer calls.
"""

from __future__ import annotations

import numpy as np

from predictor.search.nas_vectorised import VectorLowering
from profiling.errors import ExanteError

__all__ = ["col", "convstack_work", "encoder_work", "left_aligned", "mlp_work"]


def left_aligned(a: np.ndarray, what: str) -> np.ndarray:
    """``a`` as int64 (designs x layers) sizes, checked: each row has >= 1 positive size and zeros
    (no layer) only at its end; else an ExanteError naming ``what``."""
    a = np.asarray(a)
    if a.ndim != 2 or a.shape[1] == 0:
        raise ExanteError(f"{what} must be a 2-d array (specs x layers), 0 = no layer")
    a = a.astype(np.int64)
    mask = a > 0
    if (a < 0).any() or not mask[:, 0].all() or (mask[:, 1:] & ~mask[:, :-1]).any():
        raise ExanteError(f"{what}: each row needs >= 1 positive size, zeros only at the end")
    return a


def col(v, n: int, what: str) -> np.ndarray:
    """``v`` (one value, or one per design) as an int64 column of length ``n``, checked >= 1;
    else an ExanteError naming ``what``."""
    a = np.broadcast_to(np.asarray(v, dtype=np.int64), (n,)).copy()
    if (a < 1).any():
        raise ExanteError(f"{what} must be positive integers")
    return a


def mlp_work(L: VectorLowering, batch: int, widths, fin, fout):
    """Work of ``MLPSpec(fin, widths, fout)``: ``nn.Sequential`` of Linear/ReLU (no
    containers, no view ops)."""
    n, D = widths.shape
    s = np.arange(n)
    depth = (widths > 0).sum(axis=1)
    prev = np.concatenate([fin[:, None], widths[:, :-1]], axis=1)
    si, sj = np.nonzero(widths > 0)
    fi, fo = prev[si, sj].astype(float), widths[si, sj].astype(float)
    B = float(batch)
    L.linear(si, 1.0, B, fi, fo, in32=(sj == 0))     # only the first Linear sees fp32
    L.elementwise(si, 1.0, B * fo, 2.0 * B * fo * L.db, B * fo)      # ReLU
    last = widths[s, depth - 1].astype(float)
    L.linear(s, 1.0, B, last, fout.astype(float))
    numels = np.zeros((n, 2 * D + 2))
    numels[si, 2 * sj] = fi * fo
    numels[si, 2 * sj + 1] = fo
    numels[:, -2], numels[:, -1] = last * fout, fout
    return s, numels, np.zeros(n), np.zeros(n), 0.0     # containers, view ops, fused


def convstack_work(L: VectorLowering, batch: int, filters, c0: int, hw: int, kernel, fout):
    """Work of ``ConvStackSpec``: Conv2d/ReLU pairs, AdaptiveAvgPool2d(1), Flatten, Linear."""
    n, D = filters.shape
    s = np.arange(n)
    depth = (filters > 0).sum(axis=1)
    prev = np.concatenate([np.full((n, 1), c0), filters[:, :-1]], axis=1)
    si, sj = np.nonzero(filters > 0)
    ci, co = prev[si, sj].astype(float), filters[si, sj].astype(float)
    k = kernel[si].astype(float)
    B, HW = float(batch), float(hw)
    L.conv2d(si, 1.0, B, ci, co, HW, k, in32=(sj == 0))   # only the first conv sees fp32
    L.elementwise(si, 1.0, B * co * HW, 2.0 * B * co * HW * L.db, B * co * HW)   # ReLU
    last = filters[s, depth - 1].astype(float)
    L.elementwise(s, 1.0, B * last * HW, (B * last * HW + B * last) * L.db, B * last)  # pool
    L.view(s, 1.0)                                                    # Flatten
    L.linear(s, 1.0, B, last, fout.astype(float))
    numels = np.zeros((n, 2 * D + 2))
    numels[si, 2 * sj] = co * ci * k * k
    numels[si, 2 * sj + 1] = co
    numels[:, -2], numels[:, -1] = last * fout, fout
    return s, numels, np.zeros(n), np.zeros(n), 0.0


def encoder_work(L: VectorLowering, batch: int, d, heads, layers, ffn, seq, fout, fast_path: bool):
    """Work of ``EncoderSpec`` (generators.Encoder): per block MHA, 2 dropout, 2 residual
    adds, 2 LayerNorm, Linear-GELU-dropout-Linear; a Linear head on token 0.  Inference fp32
    with an even head count takes PyTorch's fused encoder fast path."""
    n = len(d)
    s = np.arange(n)
    d, heads, nl, f, sq, fo = (x.astype(float) for x in (d, heads, layers, ffn, seq, fout))
    fused = (np.asarray(heads, np.int64) % 2 == 0).astype(float) if fast_path else np.zeros(n)
    B = float(batch)
    nd, nf = B * sq * d, B * sq * f
    L.mha(s, nl, B, sq, d, heads, fused)
    L.dropout(s, 2 * nl, nd, fused)
    L.elementwise(s, 2 * nl, nd, 3.0 * nd * L.db, nd, fused, arity="add2")   # residual adds
    L.layernorm(s, 2 * nl, nd, d, fused)
    L.linear(s, nl, B * sq, d, f, fused)
    L.elementwise(s, nl, nf, 2.0 * nf * L.db, nf, fused)               # F.gelu
    L.dropout(s, nl, nf, fused)
    L.linear(s, nl, B * sq, f, d, fused)
    L.linear(s, 1.0, B, d, fo)
    per_block = np.stack([3 * d * d, 3 * d, d * d, d, d * f, f, f * d, d, d, d, d, d], axis=1)
    nmax = int(nl.max())
    blocks = np.where(np.arange(nmax)[None, :, None] < nl[:, None, None],
                      per_block[:, None, :], 0.0).reshape(n, -1)
    numels = np.concatenate([blocks, (d * fo)[:, None], fo[:, None]], axis=1)
    # module containers: encoder, encoder.layers, encoder.layers.<i>; view/metadata ops per
    # forward as the capture counts them (tests/test_nas.py checks both against the capture)
    views = 5 + (4 if L.train is False else 3) * nl
    return s, numels, 2 + nl, views, nl * fused     # fused layer calls
