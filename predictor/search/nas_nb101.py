"""NAS-Bench-101 cells for the NAS objective: the spec, random valid cells, and the work of
each cell's CIFAR-10 network (:func:`predictor.bench.nasbench101.build_network`) in closed
form for many cells at once, through the registered lowering rules
(:class:`~predictor.search.nas_vectorised.VectorLowering`).  Units as
:mod:`predictor.search.nas_families`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from predictor.bench.nasbench101 import (
    CELLS_PER_STACK,
    INPUT_SHAPE,
    MAX_EDGES,
    NUM_CLASSES,
    NUM_STACKS,
    OPS,
    STEM_CHANNELS,
    build_network,
    parse_cell,
)
from predictor.engine.rules.step import CHUNK
from predictor.search.nas_vectorised import VectorLowering
from profiling.errors import ExanteError

__all__ = ["NB101Spec", "NB_OPS", "NB_V", "check_nb101", "nb101_work", "pad_nb101",
           "random_nb101_cells"]

NB_OPS = {"conv3x3-bn-relu": 1, "conv1x1-bn-relu": 2, "maxpool3x3": 3}
NB_V = 7                       # vertices of the padded form (input 0, interior 1..5, output 6)


@dataclass(frozen=True)
class NB101Spec:
    """A NAS-Bench-101 cell (``ops`` from ``input`` to ``output``, 0/1 ``adjacency``); its
    network is :func:`predictor.bench.nasbench101.build_network` on CIFAR-10 (3x32x32)."""

    ops: tuple
    adjacency: tuple

    def __post_init__(self):
        ops, m = parse_cell(self.ops, self.adjacency)
        object.__setattr__(self, "ops", tuple(ops))
        object.__setattr__(self, "adjacency", tuple(tuple(int(x) for x in r) for r in m))

    @property
    def input_shape(self) -> tuple:
        return tuple(INPUT_SHAPE)

    @property
    def ref(self) -> str:
        return f"nb101:ops={list(self.ops)},adjacency={[list(r) for r in self.adjacency]}"

    def build(self):
        """The network on ``meta`` (no memory), each block its own parameters."""
        return build_network(list(self.ops), [list(r) for r in self.adjacency])

    def padded(self) -> tuple[np.ndarray, np.ndarray]:
        """``(codes (7,), adjacency (7, 7))`` in the padded form of :meth:`EnergyObjective.
        score_nb101`: interior vertices kept in order at 1.., the output moved to 6."""
        k = len(self.ops)
        idx = list(range(k - 1)) + [NB_V - 1]
        codes = np.zeros(NB_V, np.int64)
        codes[idx[1:-1]] = [NB_OPS[o] for o in self.ops[1:-1]]
        m = np.zeros((NB_V, NB_V), np.int64)
        m[np.ix_(idx, idx)] = np.asarray(self.adjacency)
        return codes, m



def random_nb101_cells(rng, n: int) -> list:
    """``n`` random valid cells: a random DAG on 3..7 vertices (edge density 0.3-0.7),
    pruned to the vertices on an input->output path as NAS-Bench-101 does, <= 9 edges;
    ``rng`` a ``numpy.random.Generator``."""
    out: list = []
    while len(out) < n:
        k = int(rng.integers(3, NB_V + 1))
        m = np.triu(rng.random((k, k)) < rng.uniform(0.3, 0.7), 1).astype(int)
        fwd, bwd = np.zeros(k, bool), np.zeros(k, bool)
        fwd[0] = bwd[-1] = True
        for v in range(k):
            fwd |= fwd[v] & m[v].astype(bool)
        for v in range(k - 1, -1, -1):
            bwd |= bwd[v] & m[:, v].astype(bool)
        keep = np.nonzero(fwd & bwd)[0]
        if not fwd[-1]:
            continue
        m = m[np.ix_(keep, keep)]
        if m.sum() > MAX_EDGES:
            continue
        ops = ["input"] + [OPS[i] for i in rng.integers(0, 3, len(keep) - 2)] + ["output"]
        out.append(NB101Spec(tuple(ops), tuple(map(tuple, m))))
    return out


def check_nb101(codes, adjacency) -> tuple[np.ndarray, np.ndarray]:
    """Checked NAS-Bench-101 cells as int64 ``(codes (n x 7), adjacency (n x 7 x 7))``: op codes
    0..3 (0 on input/output), 0/1 upper-triangular edges, every vertex on an input->output path, at
    most 9 edges; else one ExanteError listing the rules broken."""
    c = np.asarray(codes)
    m = np.asarray(adjacency)
    if c.ndim != 2 or c.shape[1] != NB_V or m.shape != (len(c), NB_V, NB_V):
        raise ExanteError(f"NAS-Bench-101 cells must be codes (n x {NB_V}) and adjacency "
                          f"(n x {NB_V} x {NB_V}), got {c.shape} and {m.shape}")
    c, m = c.astype(np.int64), m.astype(np.int64)
    bad = []
    if ((c < 0) | (c > 3)).any() or (c[:, [0, -1]] != 0).any():
        bad.append("codes must be 0 (absent), 1 conv3x3, 2 conv1x1, 3 maxpool3x3 on vertices "
                   "1..5 and 0 on input/output")
    if not np.isin(m, (0, 1)).all() or (m * np.tril(np.ones((NB_V, NB_V), np.int64))).any():
        bad.append("adjacency must be 0/1 and strictly upper-triangular")
    present = c > 0
    present[:, 0] = present[:, -1] = True
    ins, outs = m.sum(axis=1), m.sum(axis=2)
    if ((~present) & ((ins > 0) | (outs > 0))).any():
        bad.append("absent vertices (code 0) must have no edges")
    if (present[:, 1:-1] & ((ins[:, 1:-1] == 0) | (outs[:, 1:-1] == 0))).any() \
            or (ins[:, -1] == 0).any():
        bad.append("every vertex must lie on an input->output path")
    if (m.sum(axis=(1, 2)) > 9).any():
        bad.append("a cell has at most 9 edges")
    if bad:
        raise ExanteError("bad NAS-Bench-101 cells: " + "; ".join(bad))
    return c, m


def _nb101_channels(m: np.ndarray, c_out: int) -> np.ndarray:
    """Vertex channels (n x 7) of cells ``m`` for ``c_out`` output channels, as
    :func:`predictor.bench.nasbench101.vertex_channels` (input column left 0)."""
    n = len(m)
    feeds = m[:, 1:-1, -1].astype(bool)                      # interior vertex -> output
    fan = feeds.sum(axis=1)
    interior = np.where(fan > 0, c_out // np.maximum(fan, 1), 0)
    corr = np.where(fan > 0, c_out % np.maximum(fan, 1), 0)
    rank = np.cumsum(feeds, axis=1) - 1
    ch = np.zeros((n, NB_V), np.int64)
    ch[:, 1:-1] = np.where(feeds, interior[:, None] + (rank < corr[:, None]), 0)
    ch[:, -1] = c_out
    for v in range(NB_V - 3, 0, -1):
        succ = np.where(m[:, v, v + 1:NB_V - 1] > 0, ch[:, v + 1:NB_V - 1], 0).max(axis=1)
        ch[:, v] = np.where(feeds[:, v - 1], ch[:, v], np.maximum(ch[:, v], succ))
    return ch


def nb101_work(L: VectorLowering, batch: int, codes: np.ndarray, m: np.ndarray):
    """Work of the NAS-Bench-101 network of each cell (``NB101Network``: stem conv-bn-relu,
    3 stacks of 3 cells with 2x2 max-pools between, mean over pixels, Linear to 10).
    Per stack the three cells share vertex channels; only the input projections of the
    first cell see the previous stack's channels."""
    n = len(codes)
    s_all = np.arange(n)
    B, db = float(batch), float(L.db)
    cells = float(CELLS_PER_STACK)
    hw0 = INPUT_SHAPE[1] * INPUT_SHAPE[2]
    interior = codes[:, 1:-1] > 0
    conv_v = (codes == 1) | (codes == 2)
    # (slot spec, calls, c_in, c_out, pixels, kernel) of every conv-bn-relu block
    cbr = [(s_all, np.ones(n), np.full(n, INPUT_SHAPE[0]), np.full(n, STEM_CHANNELS),
            np.full(n, hw0), np.full(n, 3))]
    pool3, adds, cats = [], [], []          # (spec, calls, elements)
    pool2 = []
    c_prev = STEM_CHANNELS
    for st in range(NUM_STACKS):
        c_out, hw = STEM_CHANNELS << st, hw0 >> (2 * st)
        ch = _nb101_channels(m, c_out)
        if st > 0:
            pool2.append((s_all, np.ones(n), np.full(n, B * c_prev * (hw * 4))))
        # projections of the input (interior targets and the output): first cell from
        # c_prev, the other cells from c_out
        ps, pv = np.nonzero(m[:, 0, 1:] > 0)
        pv = pv + 1
        for calls, cin in ((1.0, c_prev), (cells - 1, c_out)):
            cbr.append((ps, np.full(len(ps), calls), np.full(len(ps), cin), ch[ps, pv],
                        np.full(len(ps), hw), np.ones(len(ps), np.int64)))
        # vertex ops
        vs, vv = np.nonzero(conv_v)
        cbr.append((vs, np.full(len(vs), cells), ch[vs, vv], ch[vs, vv], np.full(len(vs), hw),
                    np.where(codes[vs, vv] == 1, 3, 1)))
        qs, qv = np.nonzero(codes == 3)
        pool3.append((qs, np.full(len(qs), cells), B * ch[qs, qv] * hw))
        # sums at each interior vertex: (inputs - 1) adds
        n_in = m[:, :, 1:-1].sum(axis=1)                      # (n, 5)
        a_s, a_v = np.nonzero(interior & (n_in > 1))
        adds.append((a_s, cells * (n_in[a_s, a_v] - 1), B * ch[a_s, a_v + 1] * hw))
        fan = m[:, 1:-1, -1].sum(axis=1)
        cs = np.nonzero(fan > 1)[0]
        cats.append((cs, np.full(len(cs), cells), np.full(len(cs), B * c_out * hw)))
        os_ = np.nonzero((fan > 0) & (m[:, 0, -1] > 0))[0]
        adds.append((os_, np.full(len(os_), cells), np.full(len(os_), B * c_out * hw)))
        c_prev = c_out

    def join(parts):
        return [np.concatenate([np.asarray(p[i], float) if i else p[i] for p in parts])
                for i in range(len(parts[0]))]

    s, k_, cin, cout, hw, k = join(cbr)
    numel = B * cout * hw                                              # block output
    L.conv2d(s, k_, B, cin, cout, hw, k, bias=False)                  # Conv2d, no bias
    bn_per = 5.0 if L.train else 2.0                                   # BatchNorm2d
    L.elementwise(s, k_, numel * bn_per, (2.0 * numel + 4.0 * cout) * db, numel,
                  family="bn")
    L.elementwise(s, k_, numel, 2.0 * numel * db, numel)               # ReLU
    s3, k3, e3 = join(pool3)
    L.elementwise(s3, k3, 9.0 * e3, 2.0 * e3 * db, e3)                 # MaxPool2d(3, 1, 1)
    sa, ka, ea = join(adds)
    L.elementwise(sa, ka, ea, 3.0 * ea * db, ea, arity="add2")         # add
    sc, kc, ec = join(cats)                                             # torch.cat: copy
    L.copy(sc, kc, ec)
    s2, k2, e2 = join(pool2)
    L.elementwise(s2, k2, e2, 1.25 * e2 * db, e2 / 4)                  # MaxPool2d(2, 2)
    c_last, hw_last = float(STEM_CHANNELS << (NUM_STACKS - 1)), float(hw0 >> 2 * (NUM_STACKS - 1))
    el = B * c_last * hw_last
    L.elementwise(s_all, 1.0, el, (el + B * c_last) * db, B * c_last)  # x.mean(dim=(2, 3))
    L.linear(s_all, 1.0, B, c_last, float(NUM_CLASSES))
    # optimizer tensors: conv weight, BN gamma and beta per block; Linear weight and bias
    wnum = cout * cin * k * k
    nt = np.bincount(s, 3.0 * k_, minlength=n) + 2
    chunks = np.bincount(s, k_ * (np.ceil(wnum / CHUNK) + 2 * np.ceil(cout / CHUNK)),
                         minlength=n) + np.ceil(c_last * NUM_CLASSES / CHUNK) + 1
    total = np.bincount(s, k_ * (wnum + 2 * cout), minlength=n) + c_last * NUM_CLASSES \
        + NUM_CLASSES
    # module containers (stem, layers, the root's mean; per cell: the cell, its ops and
    # proj dicts, each conv-bn-relu block); view ops: the channel slices of interior edges
    n_proj = m[:, 0, 1:].sum(axis=1)
    per_cell = (1 + interior.any(axis=1) + conv_v.sum(axis=1) + (n_proj > 0) + n_proj)
    containers = 3 + NUM_STACKS * cells * per_cell
    views = NUM_STACKS * cells * m[:, 1:-1, 1:-1].sum(axis=(1, 2))
    return s_all, (nt, chunks, total), containers.astype(float), views.astype(float), 0.0


def pad_nb101(specs) -> tuple[np.ndarray, np.ndarray]:
    """Padded codes (n x 7) and adjacency (n x 7 x 7) of NB101Specs (see ``padded``)."""
    codes = np.zeros((len(specs), NB_V), np.int64)
    adj = np.zeros((len(specs), NB_V, NB_V), np.int64)
    for i, sp in enumerate(specs):
        k = len(sp.ops)
        idx = list(range(k - 1)) + [NB_V - 1]
        codes[i, 1:k - 1] = [NB_OPS[o] for o in sp.ops[1:-1]]
        adj[i][np.ix_(idx, idx)] = sp.adjacency
    return codes, adj


