"""An energy objective for neural architecture search, with a vectorised path.

``EnergyObjective(hardware="h100", mode="train_step", batch=32, dtype="fp32", optimizer="adam")``
is callable on an ``nn.Module`` (with ``input_shape``) or on a spec of
:mod:`predictor.search.generators` and returns an :class:`EnergyScore` (J per call of the whole batch,
with the predictor's nominal-90 % interval, and time).  ``score_many(specs)`` scores many specs
of one family at once *without building modules*:

* the work counts of each spec (host events, GPU kernels with FLOPs/bytes per compute class,
  the optimizer's foreach launches) are derived in closed form, vectorised over specs, from
  what :func:`predictor.engine.lowering.lower` does for the layers the family's module would capture
  (the helpers below mirror ``lower``'s branches one for one);
* they are stacked into a :class:`predictor.engine.physics.Stack` and priced by
  :func:`predictor.engine.physics.evaluate` with the artifact's fitted ``theta_``; the interval
  follows :meth:`predictor.engine.calibrated.CalibratedHardware.predict_workload` (regime half-width,
  dtype and batch widening, with the library's own constants).

The result equals ``predict(spec.build(), ...)`` to rounding; ``tests/test_nas.py`` checks this
on random specs of every family and mode, so a change to the lowering or the capture fails
there loudly.  Families: MLP (:class:`~predictor.search.generators.MLPSpec`), CNN stack
(:class:`~predictor.search.generators.ConvStackSpec`), transformer encoder
(:class:`~predictor.search.generators.EncoderSpec`; fp32 only), NAS-Bench-101 cell
(:class:`NB101Spec`: ops + adjacency, the CIFAR-10 network of
:func:`predictor.bench.nasbench101.build_network`; fp32 only, bf16 goes through the general
path because autocast changes the dtype layer by layer; ``score_nb101`` takes padded arrays).

The artifact must be a physics model (:class:`~predictor.engine.calibrated.CalibratedHardware`, e.g.
the shipped ``h100``); a family whose layer families the artifact never saw is scored through
the general path, whose interval widening needs the per-layer split.

``optuna_objective(objective, suggest, accuracy)`` turns it into a two-value Optuna objective
(accuracy, predicted energy) for ``optuna.create_study(directions=["maximize", "minimize"])``
(``pip install 'exante[nas]'``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from predictor.engine.calibrated import (
    _OOD_BATCH_WIDEN,
    _OOD_DTYPE_WIDEN,
    CalibratedHardware,
    regime_of,
)
from predictor.engine.lowering import (
    _BN_BWD,
    _BN_FWD_TRAIN,
    _CHUNK,
    _EW_BWD,
    _EW_BWD_UNARY,
    _FOREACH_CHUNKS,
    _FOREACH_TENSORS,
    _NCHW_SHARE,
    _OPT,
    CLASSES,
    HOST_FEATURES,
)
from predictor.engine.physics import Stack, evaluate
from predictor.search.generators import ConvStackSpec, EncoderSpec, MLPSpec
from profiling.errors import ExanteError
from profiling.features.api import DTYPE_BYTES

__all__ = ["EnergyObjective", "EnergyScore", "NB101Spec", "random_nb101_cells",
           "optuna_objective", "FAMILY_LAYER_FAMILIES"]

_HI = {name: i for i, name in enumerate(HOST_FEATURES)}
_CI = {name: i for i, name in enumerate(CLASSES)}
# layer families (predictor.engine.lowering.family_of) each spec family's modules contain
FAMILY_LAYER_FAMILIES = {MLPSpec: ("gemm", "ew"), ConvStackSpec: ("conv", "ew", "view", "gemm"),
                         EncoderSpec: ("mha", "dropout", "ew", "ln", "gemm")}


@dataclass
class EnergyScore:
    """Predicted energy (J, GPU board, per call of the whole batch) with its interval, time (s)."""

    energy_j: float
    energy_j_low: float
    energy_j_high: float
    time_s: float
    time_s_low: float
    time_s_high: float

    def __float__(self) -> float:
        return float(self.energy_j)


# ----------------------------------------------------------------- work-count accumulator
class _Work:
    """Host event counts (n_specs x HOST_FEATURES) and GPU entries, built with arrays.

    ``gpu`` and ``h`` are :class:`predictor.engine.lowering._Acc`'s methods over arrays of slots
    (one slot = one layer of one spec; ``s`` its spec index).  Entries without a partial-wave
    ramp (``par`` False) whose FLOPs:bytes ratio is the same on every slot of a call are summed
    per spec at once: the roofline time ``smax(F/r, B/bw)`` is homogeneous of degree 1, so the
    sum of such entries prices exactly (to rounding) like the entries one by one."""

    def __init__(self, n: int):
        self.n = n
        self.H = np.zeros((n, len(HOST_FEATURES)))
        self.rows: list = []
        self._all = np.arange(n)
        self._per_spec: dict = {}

    def h(self, s, name, count):
        s = np.asarray(s)
        if s is self._all or (s.ndim == 1 and len(s) == self.n and s.base is self._all):
            self.H[:, _HI[name]] += count
            return
        if np.ndim(count) == 0:                     # slots per spec, counted once per s
            hit = self._per_spec.get(id(s))
            if hit is None or hit[0] is not s:
                hit = self._per_spec[id(s)] = (s, np.bincount(s, minlength=self.n))
            self.H[:, _HI[name]] += float(count) * hit[1]
            return
        s, count = np.broadcast_arrays(s, np.asarray(count, float))
        self.H[:, _HI[name]] += np.bincount(s.ravel(), count.ravel(), minlength=self.n)

    def gpu(self, s, mult, cls, flops, nbytes, kern=1, conv=0, par=False, ndim=0.0):
        s, mult, flops, nbytes, kern, conv, ndim = np.broadcast_arrays(
            np.asarray(s), *(np.asarray(v, float) for v in (mult, flops, nbytes, kern, conv,
                                                              ndim)))
        s = s.ravel()
        fl, by, kn, cv = (np.ravel(a * mult) for a in (flops, nbytes, kern, conv))
        if par:
            self.rows.append((s, int(cls), np.ravel(flops / kern), fl, by, kn, cv, mult.ravel(),
                              ndim.ravel()))
            return
        f0, b0 = flops.ravel(), nbytes.ravel()
        i = int(np.argmax(b0)) if len(b0) else 0
        if len(s) > self.n and (not f0.any() or np.allclose(f0 * b0[i], f0[i] * b0,
                                                            rtol=1e-12, atol=0)):
            agg = [np.bincount(s, a, minlength=self.n) for a in (fl, by, kn, cv)]
            s = self._all
            fl, by, kn, cv = agg
            mult = (kn > 0).astype(float)
        self.rows.append((s, int(cls), np.zeros(len(s)), fl, by, kn, cv, mult.ravel(),
                          np.zeros(len(s))))

    def stack(self) -> Stack:
        if not self.rows:
            z = np.zeros(0)
            return Stack(self.H, z.astype(int), z.astype(int), z, z, z, z, z, z, self.n, z)
        rows, zero = [], {}
        for r in self.rows:             # per-spec memory entries without FLOPs: one per class
            if r[0] is self._all and not r[3].any():
                z = zero.get(r[1])
                zero[r[1]] = r if z is None else (
                    self._all, r[1], z[2], z[3], z[4] + r[4], z[5] + r[5], z[6] + r[6],
                    np.maximum(z[7], r[7]), z[8])
            else:
                rows.append(r)
        self.rows = rows + list(zero.values())
        s = np.concatenate([r[0] for r in self.rows])
        cls = np.concatenate([np.full(len(r[0]), r[1]) for r in self.rows])
        par, fl, by, kn, cv, mult, nd = (np.concatenate([r[i] for r in self.rows])
                                         for i in range(2, 9))
        keep = (mult > 0) & (kn > 0)
        if keep.all():
            return Stack(self.H, s, cls, par, fl, by, kn, cv, mult, self.n, nd)
        return Stack(self.H, s[keep], cls[keep], par[keep], fl[keep], by[keep], kn[keep],
                     cv[keep], mult[keep], self.n, nd[keep])


# ------------------------------------------------------------ layer lowerings (as lower())
class _Lower:
    """Vectorised counterparts of ``lower``'s branches for one mode and dtype."""

    def __init__(self, work: _Work, mode: str, dtype: str):
        self.w = work
        self.train = mode == "train_step"
        self.low = dtype in ("bf16", "fp16")
        self.db = DTYPE_BYTES["bf16"] if self.low else DTYPE_BYTES["fp32"]
        self.mm = _CI["mm_bf16" if self.low else "mm_fp32"]
        self.attn = _CI["attn_bf16" if self.low else "attn_fp32"]

    def _call(self, s, n_py):
        self.w.h(s, "disp", n_py)
        if self.train:
            self.w.h(s, "disp_train", n_py)

    def _fwd(self, s, n, cls, fl, by, k=1, conv=0, par=False):
        self.w.gpu(s, n, cls, fl, by, k, conv, par)
        self.w.h(s, "kern", np.asarray(n, float) * k)

    def _bwd(self, s, n, cls, fl, by, k=1, conv=0, nodes=1, par=False):
        if self.train:
            self.w.gpu(s, n, cls, fl, by, k, conv, par)
            self.w.h(s, "kern", np.asarray(n, float) * k)
            self.w.h(s, "bnode", np.asarray(n, float) * nodes)

    def _fwd_bwd_mm(self, s, n, cls, fl, by, conv, n_in=0.0, n_out=0.0):
        """``lower``'s forward GEMM/conv kernel and, in training, its dX and dW kernels
        (``bwd_mm``): the same FLOPs and bytes, output widths ``n_out`` (forward), ``n_in``
        (dX) and none (dW, no tile quantisation)."""
        n = np.asarray(n, float)
        self.w.gpu(s, n, cls, fl, by, 1, conv, par=True, ndim=n_out)
        if self.train:
            self.w.gpu(s, n, cls, fl, by, 1, conv, par=True, ndim=n_in)
            self.w.gpu(s, n, cls, fl, by, 1, conv, par=True)
        self.w.h(s, "kern", n * (3.0 if self.train else 1.0))
        if self.train:
            self.w.h(s, "bnode", n)

    def _cast_lowp(self, s, n, in_el, params, in32):
        """autocast casts as :func:`predictor.engine.lowering._autocast_casts` counts them: the
        wrapper checks the input and the weight on the host; a cast kernel runs for an fp32
        input (``in32``: the model input, not a 16-bit activation inside the chain) and for
        the weight (once per forward), each with its backward in training."""
        if not self.low:
            return
        kb = 2.0 if self.train else 1.0
        has_p = (np.asarray(params) > 0).astype(float)
        n = np.asarray(n, float)
        self.w.h(s, "cast", n * (1.0 + has_p))
        k = kb * (np.asarray(in32, float) + has_p)
        by = kb * (np.asarray(in32, float) * in_el * 2 * 3 + params * 6.0)
        self.w.gpu(s, n, _CI["mem"], 0.0, by, k)
        self.w.h(s, "kern", n * k)

    def _fwd_k(self, s, n, cls, fl, by, k):
        self.w.gpu(s, n, cls, fl, by, k)
        self.w.h(s, "kern", np.asarray(n, float) * k)

    def linear(self, s, n, rows, fin, fout, fused=0.0, in32=False):
        """``nn.Linear(fin, fout)`` (bias) on an input of ``rows`` x ``fin`` elements;
        ``in32``: its input is fp32 under autocast (the model input)."""
        in_el, out_el = rows * fin, rows * fout
        params = fin * fout + fout
        flops = 2.0 * in_el * fout
        nbytes = (in_el + params + out_el) * float(self.db)
        self._call(s, n * (1.0 - fused))
        self._cast_lowp(s, n, in_el, params, in32)
        self.w.h(s, "lt", n * (rows > 1))
        self._fwd_bwd_mm(s, n, self.mm, flops, nbytes, 0, fin, fout)
        self._bwd(s, n, _CI["mem"], 0.0, out_el * float(self.db), nodes=0)

    def elementwise(self, s, n, flops, nbytes, fused=0.0, bwd=_EW_BWD_UNARY, fwd_train=1.0):
        """ew / bn / softmax families: one kernel forward (x ``fwd_train`` bytes in
        training), one backward (``bwd`` x bytes) -- with the traffic factors of
        :func:`predictor.engine.lowering.lower` (``_EW_BWD``, ``_BN_FWD_TRAIN``, ``_BN_BWD``)."""
        self._call(s, n * (1.0 - fused))
        self._fwd(s, n, _CI["mem"], flops, (fwd_train if self.train else 1.0) * nbytes)
        self._bwd(s, n, _CI["mem"], flops, bwd * nbytes)

    def view(self, s, n):
        self._call(s, n)
        if self.train:
            self.w.h(s, "bnode", n)

    def layernorm(self, s, n, numel, d, fused=0.0):
        if self.low:
            raise ExanteError("the vectorised path has no bf16 LayerNorm; score such specs "
                              "with the general path (EnergyObjective on the built module)")
        flops = 5.0 * numel
        nbytes = (2.0 * numel + 2.0 * d) * self.db
        self._call(s, n * (1.0 - fused))
        self._fwd(s, n, _CI["mem"], flops, nbytes)
        self._bwd(s, n, _CI["mem"], 2 * flops, 2 * nbytes, 2)

    def dropout(self, s, n, numel, fused=0.0):
        """``nn.Dropout(p>0)``: kernels only in training mode."""
        self._call(s, n * (1.0 - fused))
        if self.train:
            nbytes = 2.0 * numel * self.db
            self._fwd(s, n, _CI["mem"], numel, nbytes * 1.25)
            self._bwd(s, n, _CI["mem"], numel, nbytes * 1.25)

    def conv2d(self, s, n, batch, cin, cout, hw, k, in32=False):
        """``nn.Conv2d(cin, cout, k, padding=k//2)`` (bias, groups 1) on hw pixels;
        ``in32``: its input is fp32 under autocast (the model input)."""
        in_el, out_el = batch * cin * hw, batch * cout * hw
        params = cout * cin * k * k + cout
        flops = 2.0 * batch * cout * hw * cin * k * k
        nbytes = (in_el + params + out_el) * float(self.db)
        cls = _CI["conv_bf16" if self.low else "conv_tf32"]
        self._call(s, n)
        self._cast_lowp(s, n, in_el, params, in32)
        self.w.h(s, "conv", n)
        if self.low:        # NCHW 16-bit conv: cuDNN's NHWC transposes (lowering's rule)
            tb = _NCHW_SHARE * 2.0 * (in_el + out_el) * 2.0
            self._fwd(s, n, _CI["mem"], 0.0, tb, 1)
            self._bwd(s, n, _CI["mem"], 0.0, tb, 1, nodes=0)
        self._fwd_bwd_mm(s, n, cls, flops, nbytes, 1, cin, cout)
        self._fwd(s, n, _CI["mem"], 0.0, 2.0 * out_el * self.db)
        self._bwd(s, n, _CI["mem"], 0.0, out_el * float(self.db), nodes=0)

    def mha(self, s, n, batch, seq, d, heads, fused):
        """Self-attention ``nn.MultiheadAttention(d, heads, batch_first=True)``;
        ``fused``: 1 where the call runs inside a fused encoder layer (inference fast path)."""
        if self.low:
            raise ExanteError("the vectorised path has no bf16 attention; score such specs "
                              "with the general path (EnergyObjective on the built module)")
        proj = 2.0 * (4.0 * batch * seq * d * d)
        macs = 4.0 * batch * seq * d * d + 2.0 * batch * seq * seq * d
        flops = 2.0 * macs + 5.0 * batch * heads * seq * seq
        att = flops - proj
        params = 4.0 * d * d + 4.0 * d
        out_el = batch * seq * d
        nbytes = (3.0 * out_el + params + out_el) * self.db
        self._call(s, n * (1.0 - fused))
        m_f, m_u = n * fused, n * (1.0 - fused)
        for m in (m_f, m_u):
            self.w.gpu(s, m, self.mm, proj, nbytes, 2, par=True)
            self.w.gpu(s, m, self.attn, att, 3 * nbytes / 4, 1, par=True)
            self.w.gpu(s, m, _CI["mem"], 0.0, nbytes, 2)
            self.w.h(s, "kern", m * 5)
        self.w.h(s, "mha", m_u)
        if self.train:
            self.w.gpu(s, m_u, self.mm, 2 * proj, 2 * nbytes, 4, par=True)
            self.w.gpu(s, m_u, self.attn, 2.5 * att, 1.5 * nbytes, 2, par=True)
            self.w.gpu(s, m_u, _CI["mem"], 0.0, 2 * nbytes, 4)
            self.w.h(s, "kern", m_u * 10)
            self.w.h(s, "bnode", m_u * 8)

    def optimizer(self, s, numels_per_spec, opt: str):
        """``torch.optim`` foreach kernels over each spec's parameter tensors.
        ``numels_per_spec``: (n_specs, max_tensors) array, 0 = no tensor."""
        if not self.train:
            return
        numels = np.asarray(numels_per_spec, float)
        self.optimizer_totals(s, (numels > 0).sum(axis=1).astype(float),
                              np.ceil(numels / _CHUNK).sum(axis=1), numels.sum(axis=1), opt)

    def optimizer_totals(self, s, nt, chunks, total, opt: str):
        """As :meth:`optimizer` from per-spec totals: parameter tensors ``nt``, 65536-element
        chunks ``chunks`` (summed per tensor) and elements ``total``."""
        if not self.train:
            return
        ops, per_param = _OPT[opt]
        nt, chunks, total = (np.asarray(x, float) for x in (nt, chunks, total))
        launches = np.maximum(np.ceil(nt / _FOREACH_TENSORS), np.ceil(chunks / _FOREACH_CHUNKS))
        has = nt > 0
        self.w.h(s[has], "opt_tensor", nt[has])
        self.w.h(s[has], "opt_op", float(ops))
        self.w.h(s[has], "opt_launch", ops * launches[has])
        self.w.gpu(s[has], 1.0, _CI["mem"], 0.0, per_param * total[has], ops * launches[has])


# ----------------------------------------------------------------------- the families
def _left_aligned(a: np.ndarray, what: str) -> np.ndarray:
    a = np.asarray(a)
    if a.ndim != 2 or a.shape[1] == 0:
        raise ExanteError(f"{what} must be a 2-d array (specs x layers), 0 = no layer")
    a = a.astype(np.int64)
    mask = a > 0
    if (a < 0).any() or not mask[:, 0].all() or (mask[:, 1:] & ~mask[:, :-1]).any():
        raise ExanteError(f"{what}: each row needs >= 1 positive size, zeros only at the end")
    return a


def _col(v, n: int, what: str) -> np.ndarray:
    a = np.broadcast_to(np.asarray(v, dtype=np.int64), (n,)).copy()
    if (a < 1).any():
        raise ExanteError(f"{what} must be positive integers")
    return a


def _mlp(L: _Lower, batch: int, widths, fin, fout):
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
    L.elementwise(si, 1.0, B * fo, 2.0 * B * fo * L.db)              # ReLU
    last = widths[s, depth - 1].astype(float)
    L.linear(s, 1.0, B, last, fout.astype(float))
    numels = np.zeros((n, 2 * D + 2))
    numels[si, 2 * sj] = fi * fo
    numels[si, 2 * sj + 1] = fo
    numels[:, -2], numels[:, -1] = last * fout, fout
    return s, numels, np.zeros(n), np.zeros(n)          # containers, view ops


def _convstack(L: _Lower, batch: int, filters, c0: int, hw: int, kernel, fout):
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
    L.elementwise(si, 1.0, B * co * HW, 2.0 * B * co * HW * L.db)     # ReLU
    last = filters[s, depth - 1].astype(float)
    L.elementwise(s, 1.0, B * last * HW, (B * last * HW + B * last) * L.db)   # avg pool
    L.view(s, 1.0)                                                    # Flatten
    L.linear(s, 1.0, B, last, fout.astype(float))
    numels = np.zeros((n, 2 * D + 2))
    numels[si, 2 * sj] = co * ci * k * k
    numels[si, 2 * sj + 1] = co
    numels[:, -2], numels[:, -1] = last * fout, fout
    return s, numels, np.zeros(n), np.zeros(n)


def _encoder(L: _Lower, batch: int, d, heads, layers, ffn, seq, fout, fast_path: bool):
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
    L.elementwise(s, 2 * nl, nd, 3.0 * nd * L.db, fused, bwd=_EW_BWD["add2"])  # residual adds
    L.layernorm(s, 2 * nl, nd, d, fused)
    L.linear(s, nl, B * sq, d, f, fused)
    L.elementwise(s, nl, nf, 2.0 * nf * L.db, fused)                   # F.gelu
    L.dropout(s, nl, nf, fused)
    L.linear(s, nl, B * sq, f, d, fused)
    L.linear(s, 1.0, B, d, fo)
    L.w.h(s, "disp", nl * fused)                                       # fused layer calls
    L.w.h(s, "fused", nl * fused)
    per_block = np.stack([3 * d * d, 3 * d, d * d, d, d * f, f, f * d, d, d, d, d, d], axis=1)
    nmax = int(nl.max())
    blocks = np.where(np.arange(nmax)[None, :, None] < nl[:, None, None],
                      per_block[:, None, :], 0.0).reshape(n, -1)
    numels = np.concatenate([blocks, (d * fo)[:, None], fo[:, None]], axis=1)
    # module containers: encoder, encoder.layers, encoder.layers.<i>; view/metadata ops per
    # forward as the capture counts them (tests/test_nas.py checks both against the capture)
    views = 5 + (4 if L.train is False else 3) * nl
    return s, numels, 2 + nl, views


# ------------------------------------------------------------------- NAS-Bench-101 cells
_NB_OPS = {"conv3x3-bn-relu": 1, "conv1x1-bn-relu": 2, "maxpool3x3": 3}
_NB_V = 7                       # vertices of the padded form (input 0, interior 1..5, output 6)


@dataclass(frozen=True)
class NB101Spec:
    """A NAS-Bench-101 cell (``ops`` from ``input`` to ``output``, 0/1 ``adjacency``); its
    network is :func:`predictor.bench.nasbench101.build_network` on CIFAR-10 (3x32x32)."""

    ops: tuple
    adjacency: tuple

    def __post_init__(self):
        from predictor.bench.nasbench101 import parse_cell

        ops, m = parse_cell(self.ops, self.adjacency)
        object.__setattr__(self, "ops", tuple(ops))
        object.__setattr__(self, "adjacency", tuple(tuple(int(x) for x in r) for r in m))

    @property
    def input_shape(self) -> tuple:
        from predictor.bench.nasbench101 import INPUT_SHAPE
        return tuple(INPUT_SHAPE)

    @property
    def ref(self) -> str:
        return f"nb101:ops={list(self.ops)},adjacency={[list(r) for r in self.adjacency]}"

    def build(self):
        """The network on ``meta`` (no memory), each block its own parameters."""
        from predictor.bench.nasbench101 import build_network
        return build_network(list(self.ops), [list(r) for r in self.adjacency])

    def padded(self) -> tuple[np.ndarray, np.ndarray]:
        """``(codes (7,), adjacency (7, 7))`` in the padded form of :meth:`EnergyObjective.
        score_nb101`: interior vertices kept in order at 1.., the output moved to 6."""
        k = len(self.ops)
        idx = list(range(k - 1)) + [_NB_V - 1]
        codes = np.zeros(_NB_V, np.int64)
        codes[idx[1:-1]] = [_NB_OPS[o] for o in self.ops[1:-1]]
        m = np.zeros((_NB_V, _NB_V), np.int64)
        m[np.ix_(idx, idx)] = np.asarray(self.adjacency)
        return codes, m


FAMILY_LAYER_FAMILIES[NB101Spec] = ("conv", "bn", "ew", "copy", "gemm")


def random_nb101_cells(rng, n: int) -> list:
    """``n`` random valid cells: a random DAG on 3..7 vertices (edge density 0.3-0.7),
    pruned to the vertices on an input->output path as NAS-Bench-101 does, <= 9 edges;
    ``rng`` a ``numpy.random.Generator``."""
    from predictor.bench.nasbench101 import MAX_EDGES, OPS

    out = []
    while len(out) < n:
        k = int(rng.integers(3, _NB_V + 1))
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


def _check_nb101(codes, adjacency) -> tuple[np.ndarray, np.ndarray]:
    c = np.asarray(codes)
    m = np.asarray(adjacency)
    if c.ndim != 2 or c.shape[1] != _NB_V or m.shape != (len(c), _NB_V, _NB_V):
        raise ExanteError(f"NAS-Bench-101 cells must be codes (n x {_NB_V}) and adjacency "
                          f"(n x {_NB_V} x {_NB_V}), got {c.shape} and {m.shape}")
    c, m = c.astype(np.int64), m.astype(np.int64)
    bad = []
    if ((c < 0) | (c > 3)).any() or (c[:, [0, -1]] != 0).any():
        bad.append("codes must be 0 (absent), 1 conv3x3, 2 conv1x1, 3 maxpool3x3 on vertices "
                   "1..5 and 0 on input/output")
    if not np.isin(m, (0, 1)).all() or (m * np.tril(np.ones((_NB_V, _NB_V), np.int64))).any():
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
    ch = np.zeros((n, _NB_V), np.int64)
    ch[:, 1:-1] = np.where(feeds, interior[:, None] + (rank < corr[:, None]), 0)
    ch[:, -1] = c_out
    for v in range(_NB_V - 3, 0, -1):
        succ = np.where(m[:, v, v + 1:_NB_V - 1] > 0, ch[:, v + 1:_NB_V - 1], 0).max(axis=1)
        ch[:, v] = np.where(feeds[:, v - 1], ch[:, v], np.maximum(ch[:, v], succ))
    return ch


def _nb101(L: _Lower, batch: int, codes: np.ndarray, m: np.ndarray):
    """Work of the NAS-Bench-101 network of each cell (``NB101Network``: stem conv-bn-relu,
    3 stacks of 3 cells with 2x2 max-pools between, mean over pixels, Linear to 10).
    Per stack the three cells share vertex channels; only the input projections of the
    first cell see the previous stack's channels."""
    from predictor.bench.nasbench101 import (
        CELLS_PER_STACK,
        INPUT_SHAPE,
        NUM_CLASSES,
        NUM_STACKS,
        STEM_CHANNELS,
    )

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
    L._call(s, k_)
    L.w.h(s, "conv", k_)
    L._fwd_bwd_mm(s, k_, _CI["conv_tf32"], 2.0 * numel * cin * k * k,
                  (B * cin * hw + cout * cin * k * k + numel) * db, 1, cin, cout)
    bn_per = 5.0 if L.train else 2.0                                   # BatchNorm2d
    L.elementwise(s, k_, numel * bn_per, (2.0 * numel + 4.0 * cout) * db, bwd=_BN_BWD,
                  fwd_train=_BN_FWD_TRAIN)
    L.elementwise(s, k_, numel, 2.0 * numel * db)                      # ReLU
    s3, k3, e3 = join(pool3)
    L.elementwise(s3, k3, 9.0 * e3, 2.0 * e3 * db)                     # MaxPool2d(3, 1, 1)
    sa, ka, ea = join(adds)
    L.elementwise(sa, ka, ea, 3.0 * ea * db, bwd=_EW_BWD["add2"])      # add
    sc, kc, ec = join(cats)                                             # torch.cat: copy
    L._call(sc, kc)
    L._fwd(sc, kc, _CI["mem"], 0.0, 2.0 * ec * db)
    L._bwd(sc, kc, _CI["mem"], 0.0, 2.0 * ec * db)
    s2, k2, e2 = join(pool2)
    L.elementwise(s2, k2, e2, 1.25 * e2 * db)                          # MaxPool2d(2, 2)
    c_last, hw_last = float(STEM_CHANNELS << (NUM_STACKS - 1)), float(hw0 >> 2 * (NUM_STACKS - 1))
    el = B * c_last * hw_last
    L.elementwise(s_all, 1.0, el, (el + B * c_last) * db)              # x.mean(dim=(2, 3))
    L.linear(s_all, 1.0, B, c_last, float(NUM_CLASSES))
    # optimizer tensors: conv weight, BN gamma and beta per block; Linear weight and bias
    wnum = cout * cin * k * k
    nt = np.bincount(s, 3.0 * k_, minlength=n) + 2
    chunks = np.bincount(s, k_ * (np.ceil(wnum / _CHUNK) + 2 * np.ceil(cout / _CHUNK)),
                         minlength=n) + np.ceil(c_last * NUM_CLASSES / _CHUNK) + 1
    total = np.bincount(s, k_ * (wnum + 2 * cout), minlength=n) + c_last * NUM_CLASSES \
        + NUM_CLASSES
    # module containers (stem, layers, the root's mean; per cell: the cell, its ops and
    # proj dicts, each conv-bn-relu block); view ops: the channel slices of interior edges
    n_proj = m[:, 0, 1:].sum(axis=1)
    per_cell = (1 + interior.any(axis=1) + conv_v.sum(axis=1) + (n_proj > 0) + n_proj)
    containers = 3 + NUM_STACKS * cells * per_cell
    views = NUM_STACKS * cells * m[:, 1:-1, 1:-1].sum(axis=(1, 2))
    return s_all, (nt, chunks, total), containers.astype(float), views.astype(float)


def _finish(L: _Lower, s, numels, containers, views, optimizer) -> Stack:
    """Per-call host events; ``numels``: (n_specs x tensors) array, or a tuple of per-spec
    (tensors, chunks, elements) totals."""
    L.w.h(s, "call", 1.0)
    L.w.h(s, "container", containers)
    L.w.h(s, "view", views)
    if L.train:
        L.w.h(s, "step", 1.0)
        if isinstance(numels, tuple):
            L.optimizer_totals(s, *numels, optimizer)
        else:
            L.optimizer(s, numels, optimizer)
    return L.w.stack()


# ----------------------------------------------------------------------- the objective
class EnergyObjective:
    """Predicted energy of a design, as a NAS objective (see the module docstring).

    ``mode``: "inference" | "train_step"; ``batch``: per call; ``dtype``: "fp32" | "bf16" |
    "fp16"; ``optimizer``: for train_step (default "sgd", as :func:`predictor.engine.predict`);
    ``input_shape``: per-sample shape for ``nn.Module`` designs (specs carry their own);
    ``memory_format``, ``grad_scaler``, ``torch_version``: as :func:`predictor.engine.predict`
    (fp16, channels_last and a scaler are priced by build + predict, not vectorised).
    """

    def __init__(self, hardware: str = "h100", mode: str = "train_step", batch: int = 32,
                 dtype: str = "fp32", optimizer: str | None = None, input_shape=None, *,
                 artifact_dir=None, memory_format: str = "contiguous",
                 grad_scaler: bool = False, torch_version: str | None = None):
        from predictor.artifacts import load_artifact
        from predictor.engine.model_capture import check_args
        from predictor.engine.predict import DEFAULT_TRAIN_OPTIMIZER, DTYPES, MODES, OPTIMIZERS
        from profiling.model_refs import check_batch

        if mode not in MODES:
            raise ExanteError(f"unknown mode {mode!r}; accepted: {', '.join(MODES)}")
        if dtype not in DTYPES:
            raise ExanteError(f"unknown dtype {dtype!r}; accepted: {', '.join(DTYPES)}")
        if optimizer is not None and optimizer not in OPTIMIZERS:
            raise ExanteError(f"unknown optimizer {optimizer!r}; accepted: "
                              f"{', '.join(OPTIMIZERS)}")
        check_args(mode, dtype, optimizer, memory_format, grad_scaler, torch_version)
        self.hardware, self.mode, self.dtype = hardware, mode, dtype
        self.conditions = {"memory_format": memory_format, "grad_scaler": grad_scaler,
                           "torch_version": torch_version}
        self.batch = check_batch(batch)
        self.optimizer = None if mode == "inference" else (optimizer or DEFAULT_TRAIN_OPTIMIZER)
        self.input_shape = None if input_shape is None else tuple(int(x) for x in input_shape)
        self.artifact_dir = artifact_dir
        self._art = load_artifact(hardware, artifact_dir)
        self.model = self._art.model
        self.calls = {"vectorised": 0, "general": 0}

    # ------------------------------------------------------------- general path
    def general(self, model, input_shape=None) -> EnergyScore:
        """Build nothing new: ``predict`` the module (or a spec's built module)."""
        import torch

        from predictor.engine.predict import predict

        if hasattr(model, "build") and hasattr(model, "input_shape"):
            shape = model.input_shape
            with torch.device("meta"):
                model = model.build()
        else:
            shape = input_shape or self.input_shape
            if shape is None:
                raise ExanteError("an nn.Module design needs input_shape (per sample), given to "
                                  "EnergyObjective(...) or to the call")
        p = predict(model, torch.zeros((self.batch, *shape), device="meta"), mode=self.mode,
                    dtype=self.dtype, hardware=self.hardware, optimizer=self.optimizer,
                    artifact_dir=self.artifact_dir, **self.conditions)
        self.calls["general"] += 1
        return EnergyScore(p.energy_j, p.energy_j_low, p.energy_j_high, p.time_s,
                           p.time_s_low, p.time_s_high)

    def __call__(self, design, input_shape=None) -> EnergyScore:
        if type(design) in FAMILY_LAYER_FAMILIES and self._vectorisable(type(design)):
            r = self.score_many([design])
            return EnergyScore(*(float(r[k][0]) for k in (
                "energy_j", "energy_j_low", "energy_j_high", "time_s", "time_s_low",
                "time_s_high")))
        return self.general(design, input_shape)

    # ------------------------------------------------------------- vectorised path
    def _vectorisable(self, family) -> bool:
        if not isinstance(self.model, CalibratedHardware):
            return False
        c = self.conditions
        if self.dtype == "fp16" or c["memory_format"] != "contiguous" or c["grad_scaler"]:
            return False                # priced by build + predict (the general path)
        seen = set(self.model.domain.get("families", ()))
        if not set(FAMILY_LAYER_FAMILIES[family]) <= seen:
            return False
        return not (family in (EncoderSpec, NB101Spec) and self.dtype != "fp32")

    def _need_vectorisable(self, family):
        if not isinstance(self.model, CalibratedHardware):
            raise ExanteError(f"the {self.hardware} artifact is not a physics model "
                              "(CalibratedHardware); use the general path (call on modules)")
        if not self._vectorisable(family):
            raise ExanteError(f"{family.__name__} specs at dtype {self.dtype} on "
                              f"{self.hardware} have no vectorised path (fp16, channels_last, a "
                              "grad scaler, bf16 encoder, or layer families the artifact never "
                              "measured, bf16 NAS-Bench-101); "
                              "call the objective on "
                              "each spec instead")

    def _price(self, stack: Stack) -> dict:
        ch: CalibratedHardware = self.model
        t, e, parts = evaluate(ch.model.theta_, stack, ch.datasheet, parts=True)
        power = e / np.maximum(t, 1e-15)
        # the regime as predict_workload decides it: the model's GPU vs host time on this GPU
        gpu = regime_of(parts["time_host_s"], parts["time_gpu_s"]) == "gpu"
        widen = 1.0
        dom = ch.domain
        if self.dtype not in dom.get("dtypes", ()):
            widen *= _OOD_DTYPE_WIDEN
        lo, hi = dom.get("batch_range", (self.batch, self.batch))
        if self.batch > hi or self.batch < lo:
            widen *= 1.0 + _OOD_BATCH_WIDEN * abs(math.log2(self.batch / (hi if self.batch > hi
                                                                          else lo)))
        out = {"time_s": t, "energy_j": e, "power_w": power}
        for target, v in (("time", t), ("energy", e)):
            h_all = ch.halfwidth[(target, "all")]
            h = np.where(gpu, ch.halfwidth.get((target, "gpu"), h_all),
                         ch.halfwidth.get((target, "host"), h_all)) * widen
            lo_key = "energy_j_low" if target == "energy" else "time_s_low"
            out[lo_key], out[lo_key.replace("low", "high")] = v * np.exp(-h), v * np.exp(h)
        self.calls["vectorised"] += len(t)
        return out

    def score_mlp(self, widths, in_features, out_features=1) -> dict:
        """Vectorised: ``widths`` (n_specs x max_depth, hidden widths, 0-padded at the end)."""
        self._need_vectorisable(MLPSpec)
        w = _left_aligned(widths, "widths")
        n = len(w)
        L = _Lower(_Work(n), self.mode, self.dtype)
        parts = _mlp(L, self.batch, w, _col(in_features, n, "in_features"),
                     _col(out_features, n, "out_features"))
        return self._price(_finish(L, *parts, self.optimizer))

    def score_convstack(self, filters, in_shape, kernel=3, out_features=1) -> dict:
        """Vectorised: ``filters`` (n_specs x max_depth, 0-padded); ``in_shape`` (C, H, W)
        shared; ``kernel`` odd, per spec or shared."""
        self._need_vectorisable(ConvStackSpec)
        f = _left_aligned(filters, "filters")
        n = len(f)
        k = _col(kernel, n, "kernel")
        if (k % 2 == 0).any():
            raise ExanteError("convstack kernels must be odd (same padding)")
        c, h, wd = (int(x) for x in in_shape)
        L = _Lower(_Work(n), self.mode, self.dtype)
        parts = _convstack(L, self.batch, f, c, h * wd, k, _col(out_features, n, "out"))
        return self._price(_finish(L, *parts, self.optimizer))

    def score_encoder(self, d, heads, layers, ffn, seq, out_features=2) -> dict:
        """Vectorised transformer encoders (fp32); arguments per spec or shared."""
        self._need_vectorisable(EncoderSpec)
        n = max(np.size(x) for x in (d, heads, layers, ffn, seq, out_features))
        cols = [_col(x, n, name) for x, name in ((d, "d"), (heads, "heads"),
                                                 (layers, "layers"), (ffn, "ffn"),
                                                 (seq, "seq"), (out_features, "out"))]
        if (cols[0] % cols[1]).any():
            raise ExanteError("encoder d must be divisible by heads")
        L = _Lower(_Work(n), self.mode, self.dtype)
        parts = _encoder(L, self.batch, *cols, fast_path=(self.mode == "inference"))
        return self._price(_finish(L, *parts, self.optimizer))

    def score_nb101(self, codes, adjacency) -> dict:
        """Vectorised NAS-Bench-101 networks (fp32): ``codes`` (n_specs x 7: 0 absent,
        1 conv3x3-bn-relu, 2 conv1x1-bn-relu, 3 maxpool3x3 on interior vertices 1..5; input 0,
        output 6) and ``adjacency`` (n_specs x 7 x 7), as :meth:`NB101Spec.padded` gives."""
        self._need_vectorisable(NB101Spec)
        c, m = _check_nb101(codes, adjacency)
        L = _Lower(_Work(len(c)), self.mode, self.dtype)
        return self._price(_finish(L, *_nb101(L, self.batch, c, m), self.optimizer))

    def score_many(self, specs) -> dict:
        """Score specs of :mod:`predictor.search.generators` (any mix of families; each family
        vectorised where it can be, else the general path), results in the order given:
        arrays ``energy_j, energy_j_low, energy_j_high, time_s, time_s_low, time_s_high``."""
        specs = list(specs)
        keys = ("energy_j", "energy_j_low", "energy_j_high", "time_s", "time_s_low",
                "time_s_high")
        out = {k: np.zeros(len(specs)) for k in keys}
        groups: dict = {}
        for i, sp in enumerate(specs):
            groups.setdefault(type(sp), []).append(i)
        for fam, idx in groups.items():
            items = [specs[i] for i in idx]
            if fam in FAMILY_LAYER_FAMILIES and self._vectorisable(fam):
                r = self._score_family(fam, items)
            else:
                rs = [self.general(sp) for sp in items]
                r = {k: np.array([getattr(x, k) for x in rs]) for k in keys}
            for k in keys:
                out[k][idx] = r[k]
        return out

    def _score_family(self, fam, items) -> dict:
        if fam is MLPSpec:
            w = _pad([sp.widths for sp in items])
            return self.score_mlp(w, [sp.in_features for sp in items],
                                  [sp.out_features for sp in items])
        if fam is ConvStackSpec:
            r = {}
            by_shape: dict = {}
            for j, sp in enumerate(items):
                by_shape.setdefault(sp.in_shape, []).append(j)
            for shape, js in by_shape.items():
                part = self.score_convstack(_pad([items[j].filters for j in js]), shape,
                                            [items[j].kernel for j in js],
                                            [items[j].out_features for j in js])
                for k, v in part.items():
                    r.setdefault(k, np.zeros(len(items)))[js] = v
            return r
        if fam is NB101Spec:
            return self.score_nb101(*_pad_nb101(items))
        cols = np.array([(sp.d, sp.heads, sp.layers, sp.ffn, sp.seq, sp.out_features)
                         for sp in items]).T
        return self.score_encoder(*cols)


def _pad_nb101(specs) -> tuple[np.ndarray, np.ndarray]:
    """Padded codes (n x 7) and adjacency (n x 7 x 7) of NB101Specs (see ``padded``)."""
    codes = np.zeros((len(specs), _NB_V), np.int64)
    adj = np.zeros((len(specs), _NB_V, _NB_V), np.int64)
    for i, sp in enumerate(specs):
        k = len(sp.ops)
        idx = list(range(k - 1)) + [_NB_V - 1]
        codes[i, 1:k - 1] = [_NB_OPS[o] for o in sp.ops[1:-1]]
        adj[i][np.ix_(idx, idx)] = sp.adjacency
    return codes, adj


def _pad(rows) -> np.ndarray:
    m = max(len(r) for r in rows)
    a = np.zeros((len(rows), m), dtype=np.int64)
    for i, r in enumerate(rows):
        a[i, :len(r)] = r
    return a


# ----------------------------------------------------------------------------- Optuna
def optuna_objective(objective: EnergyObjective, suggest, accuracy):
    """A two-value Optuna objective ``trial -> (accuracy, predicted energy J)``.

    ``suggest(trial)`` returns a design (a spec or an ``nn.Module``); ``accuracy(design,
    trial)`` trains/evaluates it and returns the score to maximise.  The predicted energy,
    its interval and time are stored as trial user attributes.  Use with
    ``optuna.create_study(directions=["maximize", "minimize"])``."""

    def run(trial):
        design = suggest(trial)
        e = objective(design)
        for k, v in vars(e).items():
            trial.set_user_attr(k, float(v))
        if hasattr(design, "ref"):
            trial.set_user_attr("ref", design.ref)
        return float(accuracy(design, trial)), float(e.energy_j)

    return run
