"""The vectorised lowering of the NAS scorer: many designs at once through the same rules.

:class:`VectorLowering` builds, for each kind of layer a spec family's module captures
(Linear, Conv2d, ReLU, LayerNorm, ...), one :class:`~predictor.engine.rules.LayerCtx` whose
sizes are numpy arrays -- one value per *slot* (one layer of one design; ``s`` the design
index of each slot) -- with the layer's features in closed form, and hands it to
:func:`predictor.engine.rules.lower_layer` with the family's registered rule, exactly as
:func:`predictor.engine.lowering.lower` does for one captured layer.  No branch of the
lowering is copied here: a change to a rule changes both paths (``tests/test_nas.py``
checks they agree with build + predict).  :class:`VectorWork` collects what the rules emit
(host counts per design, GPU entries per slot) into a :class:`predictor.engine.physics.Stack`.
Units: counts per call of the whole batch, FLOPs, bytes.
"""

from __future__ import annotations

import numpy as np

from predictor.engine.physics import Stack
from predictor.engine.rules import (
    CLASSES,
    HOST_FEATURES,
    LayerCtx,
    lower_layer,
    lowering_rule,
)
from predictor.engine.rules.step import lower_call, lower_optimizer, param_totals
from profiling.errors import ExanteError
from profiling.features.api import DTYPE_BYTES

__all__ = ["VectorLowering", "VectorWork"]

_HI = {name: i for i, name in enumerate(HOST_FEATURES)}
_CI = {name: i for i, name in enumerate(CLASSES)}


# ----------------------------------------------------------------- work-count accumulator
class VectorWork:
    """Host event counts (n_specs x HOST_FEATURES) and GPU entries, built with arrays.

    ``gpu`` and ``h`` are :class:`predictor.engine.rules.Emitter`'s methods over arrays of
    slots (one slot = one layer of one spec; ``s`` its spec index).  Entries without a
    partial-wave ramp (``par`` False) whose FLOPs:bytes ratio is the same on every slot of a
    call are summed per spec at once: the roofline time ``smax(F/r, B/bw)`` is homogeneous of
    degree 1, so the sum of such entries prices exactly (to rounding) like the entries one
    by one."""

    def __init__(self, n: int):
        self.n = n
        self.H = np.zeros((n, len(HOST_FEATURES)))
        self.rows: list = []
        self._all = np.arange(n)
        self._per_spec: dict = {}

    def slots(self, s) -> _Slots:
        """An :class:`~predictor.engine.rules.Emitter` writing for slots ``s``."""
        return _Slots(self, s)

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
            e = np.zeros(0)
            return Stack(self.H, e.astype(int), e.astype(int), e, e, e, e, e, e, self.n, e)
        rows: list = []
        zero: dict[int, tuple] = {}
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


class _Slots:
    """Emitter of a group of slots (see :class:`predictor.engine.rules.Emitter`)."""

    __slots__ = ("s", "w")

    def __init__(self, work: VectorWork, s):
        self.w, self.s = work, s

    def gpu(self, mult, cls, flops, nbytes, kern=1, conv=0, par=0.0, ndim=0.0) -> None:
        self.w.gpu(self.s, mult, _CI[cls], flops, nbytes, kern, conv, par=bool(np.any(par)),
                   ndim=ndim)

    def host(self, name, count) -> None:
        self.w.h(self.s, name, count)


# ------------------------------------------------------------- layers, through the rules
class VectorLowering:
    """Layers of one mode and dtype, many slots at a time, priced by the registered rules.

    Each method takes the slots' design indices ``s``, their calls per forward ``n``, the
    layer's sizes (arrays or floats), and ``fused``: the share of calls inside PyTorch's
    fused encoder fast path."""

    def __init__(self, work: VectorWork, mode: str, dtype: str, torch_major: int | None = None):
        self.w = work
        self.train = mode == "train_step"
        self.low = dtype in ("bf16", "fp16")
        self.db = DTYPE_BYTES["bf16"] if self.low else DTYPE_BYTES["fp32"]
        self.torch_major = torch_major

    def layer(self, family: str, s, n, *, type: str, flops, nbytes, out_el, in_el,
              params=0.0, cin=0.0, cout=0.0, rows=1.0, hp=None, feat=None, arity: str = "",
              fused=0.0, in32=False) -> None:
        """One kind of layer on slots ``s``: its context, then its family's rule."""
        ctx = LayerCtx(type=type, n=n, flops=flops, nbytes=nbytes, params=params,
                       out_el=out_el, in_el=in_el, in_el_all=in_el, cin=cin, cout=cout,
                       rows=rows, db=self.db, low=self.low, train=self.train,
                       autocast=self.low, nchw=True, hp=hp or {}, feat=feat or {},
                       arity=arity, modules=n, fused_enc=fused, in32=in32)
        lower_layer(ctx, self.w.slots(s), lowering_rule(family))

    def linear(self, s, n, rows, fin, fout, fused=0.0, in32=False):
        """``nn.Linear(fin, fout)`` (bias) on an input of ``rows`` x ``fin`` elements;
        ``in32``: its input is fp32 under autocast (the model input)."""
        in_el, out_el = rows * fin, rows * fout
        params = fin * fout + fout
        self.layer("gemm", s, n, type="Linear", flops=2.0 * in_el * fout,
                   nbytes=(in_el + params + out_el) * float(self.db), out_el=out_el,
                   in_el=in_el, params=params, cin=fin, cout=fout, rows=rows,
                   hp={"bias": True}, fused=fused, in32=in32)

    def elementwise(self, s, n, flops, nbytes, numel=0.0, fused=0.0, arity: str = "",
                    family: str = "ew"):
        """An elementwise op (``arity``: see :func:`~predictor.engine.rules.memory_bound.
        ew_arity`) or, with ``family="bn"``, a BatchNorm, of ``numel`` output elements."""
        self.layer(family, s, n, type=family, flops=flops, nbytes=nbytes, out_el=numel,
                   in_el=numel, arity=arity, fused=fused)

    def view(self, s, n):
        """Flatten and other views: no kernel."""
        self.layer("view", s, n, type="Flatten", flops=0.0, nbytes=0.0, out_el=0.0, in_el=0.0)

    def copy(self, s, n, numel):
        """``torch.cat`` of inputs totalling ``numel`` elements."""
        self.layer("copy", s, n, type="cat", flops=0.0, nbytes=2.0 * numel * self.db,
                   out_el=numel, in_el=numel)

    def layernorm(self, s, n, numel, d, fused=0.0):
        """``nn.LayerNorm(d)`` over ``numel`` elements."""
        if self.low:
            raise ExanteError("the vectorised path has no bf16 LayerNorm; score such specs "
                              "with the general path (EnergyObjective on the built module)")
        self.layer("ln", s, n, type="LayerNorm", flops=5.0 * numel,
                   nbytes=(2.0 * numel + 2.0 * d) * self.db, out_el=numel, in_el=numel,
                   params=2.0 * d, fused=fused)

    def dropout(self, s, n, numel, fused=0.0):
        """``nn.Dropout(p>0)``: kernels only in training mode."""
        self.layer("dropout", s, n, type="Dropout", flops=numel, nbytes=2.0 * numel * self.db,
                   out_el=numel, in_el=numel, feat={"training": self.train, "p": 0.1},
                   fused=fused)

    def conv2d(self, s, n, batch, cin, cout, hw, k, in32=False, bias=True):
        """``nn.Conv2d(cin, cout, k, padding=k//2)`` (groups 1) on ``hw`` pixels;
        ``in32``: its input is fp32 under autocast (the model input)."""
        in_el, out_el = batch * cin * hw, batch * cout * hw
        params = cout * cin * k * k + (cout if bias else 0.0)
        self.layer("conv", s, n, type="Conv2d", flops=2.0 * batch * cout * hw * cin * k * k,
                   nbytes=(in_el + params + out_el) * float(self.db), out_el=out_el,
                   in_el=in_el, params=params, cin=cin, cout=cout,
                   hp={"bias": bias, "groups": 1}, in32=in32)

    def mha(self, s, n, batch, seq, d, heads, fused):
        """Self-attention ``nn.MultiheadAttention(d, heads, batch_first=True)``;
        ``fused``: 1 where the call runs inside a fused encoder layer (inference fast path)."""
        if self.low:
            raise ExanteError("the vectorised path has no bf16 attention; score such specs "
                              "with the general path (EnergyObjective on the built module)")
        macs = 4.0 * batch * seq * d * d + 2.0 * batch * seq * seq * d
        params = 4.0 * d * d + 4.0 * d
        out_el = batch * seq * d
        self.layer("mha", s, n, type="MultiheadAttention",
                   flops=2.0 * macs + 5.0 * batch * heads * seq * seq,
                   nbytes=(3.0 * out_el + params + out_el) * self.db, out_el=out_el,
                   in_el=out_el, params=params, cin=d, cout=d,
                   feat={"proj_macs": 4.0 * batch * seq * d * d}, fused=fused)

    def finish(self, s, numels, containers, views, fused_layers=0.0, *,
               optimizer: str | None) -> Stack:
        """The call's own host events and the optimizer step; ``numels``: (n_specs x tensors)
        array (0 = no tensor), or a tuple of per-spec (tensors, chunks, elements) totals."""
        e = self.w.slots(s)
        lower_call(e, isolated=False, train=self.train, containers=containers, views=views,
                   fused_layers=fused_layers)
        if self.train:
            nt, chunks, total = numels if isinstance(numels, tuple) else param_totals(numels)
            lower_optimizer(e, optimizer or "sgd", nt, chunks, total,
                            torch_major=self.torch_major)
        return self.w.stack()
