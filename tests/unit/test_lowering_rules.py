"""predictor.engine.rules: the lowering-rule registry, named fallbacks, the MoE grouped GEMM,
and the rules' contract that sizes may be arrays (the vectorised NAS scorer relies on it)."""

from __future__ import annotations

import numpy as np
import pytest

from predictor.engine.lowering import CLASSES, HOST_FEATURES, lower
from predictor.engine.rules import (
    LayerCtx,
    assign_layer_types,
    family_of,
    fwd,
    layer_families,
    lower_layer,
    lowering_rule,
    register_lowering_rule,
    unregister_lowering_rule,
)
from predictor.engine.rules.step import lower_optimizer
from predictor.engine.rules.types import BUILTIN_TYPES
from predictor.engine.workload import WLayer, Workload
from profiling.capture.records import LayerConfig
from profiling.errors import ExanteError
from profiling.features.api import FEATURE_REGISTRY

MEM = CLASSES.index("mem")


def _w(*layers, mode="inference", dtype="fp32", **kw) -> Workload:
    return Workload(tuple(layers), mode, dtype, 8, "adam" if mode == "train_step" else None,
                    (64, 8) if mode == "train_step" else (), **kw)


def _linear(fin=16, fout=32, rows=8, dtype="fp32", **wl) -> WLayer:
    cfg = LayerConfig("Linear", (("bias", True), ("in_features", fin), ("out_features", fout)),
                      ((rows, fin),), ((rows, fout),), dtype)
    return WLayer(cfg, 1, ("fc",), **wl)


# ----------------------------------------------------------------------------- registry
def test_every_feature_type_has_a_family_with_a_rule():
    assert set(FEATURE_REGISTRY) == {t for ts in BUILTIN_TYPES.values() for t in ts}
    fams = layer_families()
    for fam in BUILTIN_TYPES:
        assert fam in fams, fam
    assert family_of("Linear") == "gemm" and family_of("ReLU") == "ew"
    assert family_of("grouped_mm") == "grouped_mm"
    assert family_of("NoSuchLayer") is None


def test_duplicate_registration_is_an_error():
    with pytest.raises(ExanteError, match="already registered"):
        register_lowering_rule("gemm")(lambda ctx, e: None)
    with pytest.raises(ExanteError, match="already belongs to family 'gemm'"):
        assign_layer_types("ew", "Linear")
    with pytest.raises(ExanteError, match="autocast must be"):
        register_lowering_rule("x", autocast="fp8")


def test_a_user_rule_prices_a_new_layer_type(monkeypatch):
    cfg = LayerConfig("MyScan", (), ((8, 1000),), ((8, 1000),), "fp32")
    monkeypatch.setitem(FEATURE_REGISTRY, "MyScan",
                        lambda c: {"flops": 3 * 8000, "bytes_read": 32000, "bytes_written": 32000})
    w = _w(WLayer(cfg, 2, ("scan",)), mode="train_step")
    before = lower(w)
    assert before.unknown == ["MyScan"]             # no family: the named fallback
    assert [u.type for u in before.unpriced] == ["MyScan"]

    @register_lowering_rule("my_scan")
    def _scan(ctx, e):
        fwd(ctx, e, "mem", ctx.flops, ctx.nbytes, k=3)

    try:
        assign_layer_types("my_scan", "MyScan")
        lw = lower(w)
        assert lw.unknown == [] and lw.unpriced == ()
        m = lw.layer == 0
        assert lw.kern[m].sum() == 3 and lw.flops[m].sum() == 24000
        assert lw.bytes[m].sum() == 64000 and lw.mult[m].sum() == 2
        assert lw.host[HOST_FEATURES.index("kern")] >= 6
    finally:
        unregister_lowering_rule("my_scan")
    assert family_of("MyScan") is None and lowering_rule("my_scan") is None


# --------------------------------------------------------------- named, never silent zero
def test_unknown_type_is_named_and_priced_as_memory():
    cfg = LayerConfig("MyOp", (), ((8, 100),), ((8, 100),), "fp32")
    lw = lower(_w(WLayer(cfg, 3, ("a.op", "b.op", "c.op"))))
    (u,) = lw.unpriced
    assert (u.type, u.family, u.names, u.calls, u.layer) == ("MyOp", None, ("a.op", "b.op",
                                                                            "c.op"), 3.0, 0)
    assert u.bytes == 2 * 800 * 4 and "no lowering family" in u.reason
    assert lw.unknown == ["MyOp"]
    assert (lw.cls == MEM).all() and lw.bytes.sum() == u.bytes and (lw.mult == 3).all()


def test_unsupported_module_is_named():
    cfg = LayerConfig("WeirdModule", (), ((8, 10),), ((8, 10),), "fp32")
    lw = lower(_w(WLayer(cfg, 1, ("weird",), supported=False, module_params=7)))
    assert lw.unpriced[0].reason.startswith("not captured")
    assert lw.unknown == ["WeirdModule"]


def test_a_feature_function_that_raises_is_named_not_zeroed():
    # a Linear whose recorded input has no shapes: its feature function raises
    bad = LayerConfig("Linear", (("bias", True),), (), ((8, 32),), "fp32")
    lw = lower(_w(_linear(), WLayer(bad, 1, ("broken",))))
    (u,) = lw.unpriced
    assert u.layer == 1 and u.names == ("broken",) and u.family == "gemm"
    assert "feature function raised" in u.reason and "Error" in u.reason
    assert lw.unknown == []                 # it has a rule; its features failed
    m = lw.layer == 1
    assert lw.bytes[m].sum() == 8 * 32 * 4 > 0 and (lw.cls[m] == MEM).all()


# ------------------------------------------------------------------ MoE grouped GEMM
@pytest.mark.parametrize("dtype,cls", [("fp32", "mm_fp32"), ("bf16", "mm_bf16")])
def test_grouped_mm_is_priced_as_matmul_compute(dtype, cls):
    tokens, k, n, groups = 512, 256, 1024, 8
    cfg = LayerConfig("grouped_mm", (), ((tokens, k), (groups, k, n), (groups,)),
                      ((tokens, n),), dtype)
    for mode in ("inference", "train_step"):
        lw = lower(_w(WLayer(cfg, 1, ("moe.experts",)), mode=mode, dtype=dtype))
        m = lw.layer == 0
        assert lw.unpriced == ()
        assert set(lw.cls[m]) == {CLASSES.index(cls)}       # compute, not an "ew" memory kernel
        flops = 2.0 * tokens * n * k
        want = flops * (3 if mode == "train_step" else 1)  # forward + 2 grouped GEMMs backward
        assert lw.flops[m].sum() == pytest.approx(want)
        assert (lw.par[m] > 0).all()


# ------------------------------------------------------------ rules accept array sizes
class _Rec:
    """Records totals per (class) and host counts, for scalar or array sizes."""

    def __init__(self):
        self.gpu_tot: dict = {}
        self.host_tot: dict = {}

    def gpu(self, mult, cls, flops, nbytes, kern=1, conv=0, par=0.0, ndim=0.0):
        kern = np.asarray(kern, float)
        mult = np.where(kern > 0, np.asarray(mult, float), 0.0)
        t = self.gpu_tot.setdefault(cls, np.zeros(3))
        t += [np.sum(mult * flops), np.sum(mult * nbytes), np.sum(mult * kern)]

    def host(self, name, count):
        self.host_tot[name] = self.host_tot.get(name, 0.0) + float(np.sum(count))


def _ctx(i, arrays, **flags):
    """Layer ``i`` of a 3-slot group (``arrays``: field -> 3 values), or the group at once
    (``i`` None)."""
    vals = {k: (np.asarray(v, float) if i is None else float(v[i])) for k, v in arrays.items()}
    return LayerCtx(**vals, **flags)


@pytest.mark.parametrize("family", sorted(BUILTIN_TYPES))
@pytest.mark.parametrize("train,autocast", [(False, False), (True, False), (True, True)])
def test_rules_on_arrays_equal_the_sum_over_scalars(family, train, autocast):
    arrays = {"n": [1, 2, 3], "flops": [1e6, 2e6, 5e5], "nbytes": [4e4, 1e5, 3e3],
              "params": [100, 0, 30], "out_el": [1000, 2000, 300], "in_el": [500, 900, 30],
              "in_el_all": [500, 1800, 60], "cin": [16, 32, 3], "cout": [32, 64, 10],
              "rows": [8, 1, 4], "modules": [1, 2, 3], "fused_enc": [0, 0.5, 1],
              "fused_mha": [0, 0, 0.5], "in32": [1, 0, 1]}
    flags = dict(type=BUILTIN_TYPES[family][0], db=2 if autocast else 4, low=autocast,
                 train=train, autocast=autocast, hp={"bias": True},
                 feat={"proj_macs": 1e5, "training": train, "p": 0.1})
    rule = lowering_rule(family)
    together, apart = _Rec(), _Rec()
    lower_layer(_ctx(None, arrays, **flags), together, rule)
    for i in range(3):
        lower_layer(_ctx(i, arrays, **flags), apart, rule)
    assert together.gpu_tot.keys() == apart.gpu_tot.keys()
    for cls, t in together.gpu_tot.items():
        np.testing.assert_allclose(t, apart.gpu_tot[cls], rtol=1e-12)
    assert together.host_tot.keys() == apart.host_tot.keys()
    for k, v in together.host_tot.items():
        assert v == pytest.approx(apart.host_tot[k], rel=1e-12), k


def test_unknown_optimizer_is_a_clear_error():
    with pytest.raises(ExanteError, match="unknown optimizer 'lion'; accepted: sgd, adam, adamw"):
        lower_optimizer(_Rec(), "lion", 1.0, 1.0, 10.0)
