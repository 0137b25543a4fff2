"""predictor.engine.predict end to end, with an artifact fitted in tmp on the SYNTHETIC fixture."""

from __future__ import annotations

import json
import warnings

import pytest
import torch
from synthetic_fixture import SYN, SYNTH_HW
from torch import nn

import predictor
from predictor import Prediction, available_hardware, predict
from predictor.artifacts import ARTIFACT_ENV
from predictor.engine.lowering import lower
from predictor.engine.physics import evaluate, stack
from predictor.engine.predict import capture_workload, clear_cache
from predictor.engine.prediction import METHOD
from profiling.errors import ExanteError, UnsupportedLayerError
from profiling.features.api import UnsupportedLayerWarning

HW = SYNTH_HW





@pytest.fixture(autouse=True)
def _no_env(monkeypatch):
    monkeypatch.delenv(ARTIFACT_ENV, raising=False)


def _truth(art_dir, m, shape, mode, dtype, optimizer=None):
    """(time s, energy J) the fixture's generator (the physics prior of conftest's
    datasheet) gives the workload, without its 5 % noise."""
    from predictor.artifacts import load_artifact
    from predictor.engine.physics import Datasheet

    ds: Datasheet = load_artifact(HW, art_dir).model.datasheet
    w = capture_workload(m, shape, mode, dtype, optimizer, cache=False)
    t, e = evaluate(ds.prior()[0], stack([lower(w)]), ds)
    return float(t[0]), float(e[0])


def tiny_mlp():
    torch.manual_seed(0)
    return SYN.mlp(64, 3, 512)


def _check(p: Prediction, batch, mode="inference"):
    assert isinstance(p, Prediction)
    assert p.batch == batch and p.mode == mode and p.hardware == HW
    assert 0 < p.energy_j_low <= p.energy_j <= p.energy_j_high
    assert 0 < p.time_s_low <= p.time_s <= p.time_s_high
    assert p.coverage == 0.9 and p.method == METHOD and "physics model" in METHOD
    assert p.power_w == pytest.approx(p.energy_j / p.time_s)
    assert p.energy_dynamic_j < p.energy_j
    assert p.artifact["id"].startswith(HW + "-") and len(p.artifact["sha256"]) == 64
    names = {r["type"] for r in p.layers}
    assert {"Linear", "ReLU"} <= names
    for r in p.layers:
        assert {"name", "type", "count", "time_s", "energy_j", "features"} <= set(r)
        assert r["energy_j"] > 0 and r["count"] >= 1
    json.dumps(p.to_dict())
    assert "energy" in p.to_text() and "Linear" in p.to_text()


def test_no_artifact_is_a_clear_error(tmp_path):
    if "h100" not in available_hardware():
        with pytest.raises(ExanteError) as ei:
            predict(tiny_mlp(), (8, 64), hardware="h100", artifact_dir=tmp_path)
        msg = str(ei.value)
        assert "no fitted model for hardware 'h100'" in msg
        assert "exante fit --hardware h100" in msg and "datasets/h100/" in msg
        assert "exante sweep" in msg
    with pytest.raises(ExanteError, match="available: .*; fit one with"):
        predict(tiny_mlp(), (8, 64), hardware="no-such-gpu", artifact_dir=tmp_path)


def test_input_forms_agree_and_match_truth(art_dir):
    m = tiny_mlp()
    w0 = m[0].weight.detach().clone()
    p_shape = predict(m, (32, 64), hardware=HW, artifact_dir=art_dir)
    p_meta = predict(m, torch.empty(32, 64, device="meta"), hardware=HW, artifact_dir=art_dir)
    p_cpu = predict(m, (torch.randn(32, 64),), hardware=HW, artifact_dir=art_dir)
    p_meta_model = predict(SYN.mlp(64, 3, 512).to("meta"), torch.empty(32, 64, device="meta"),
                           hardware=HW, artifact_dir=art_dir, cache=False)
    for p in (p_shape, p_meta, p_cpu, p_meta_model):
        _check(p, 32)
        assert p.energy_j == pytest.approx(p_shape.energy_j, rel=1e-9)
    T, E = _truth(art_dir, m, (32, 64), "inference", "fp32")
    assert p_shape.energy_j == pytest.approx(E, rel=0.15)
    assert p_shape.time_s == pytest.approx(T, rel=0.15)
    # the user's model is untouched: real weights, same values, no hooks, mode kept
    assert m[0].weight.device.type == "cpu" and torch.equal(m[0].weight, w0)
    assert m.training and not m[0]._forward_hooks and not m[0]._forward_pre_hooks


def test_tuple_of_tensors_two_inputs(art_dir):
    class TwoIn(nn.Module):
        def __init__(self):
            super().__init__()
            self.a = nn.Linear(64, 128)
            self.b = nn.Linear(32, 128)
            self.act = nn.ReLU()

        def forward(self, x, y):
            return self.act(self.a(x)) + self.act(self.b(y))

    p = predict(TwoIn(), (torch.zeros(16, 64), torch.zeros(16, 32, device="meta")),
                hardware=HW, artifact_dir=art_dir)
    _check(p, 16)
    assert sum(r["count"] for r in p.layers if r["type"] == "Linear") == 2


def test_train_step_theta_and_optimizers(art_dir):
    m = tiny_mlp()
    inf = predict(m, (512, 64), hardware=HW, artifact_dir=art_dir)
    sgd = predict(m, (512, 64), mode="train_step", hardware=HW, artifact_dir=art_dir)
    adam = predict(m, (512, 64), mode="train_step", optimizer="adam", hardware=HW,
                   artifact_dir=art_dir)
    _check(sgd, 512, "train_step")
    assert sgd.optimizer == "sgd"                     # documented default for train_step
    assert 1.5 < sgd.energy_j / inf.energy_j < 10
    assert adam.energy_j > sgd.energy_j
    T, E = _truth(art_dir, m, (512, 64), "train_step", "fp32", "adam")
    assert adam.energy_j == pytest.approx(E, rel=0.15)
    adamw = predict(m, (512, 64), mode="train_step", optimizer="adamw", hardware=HW,
                    artifact_dir=art_dir)
    assert any("optimizer adamw was never measured" in w for w in adamw.warnings)
    p = predict(m, (8, 64), optimizer="adam", hardware=HW, artifact_dir=art_dir)
    assert p.optimizer is None and any("ignored" in w for w in p.warnings)


def test_bf16_and_batch_dependence(art_dir):
    m = tiny_mlp()
    f32 = predict(m, (512, 64), hardware=HW, artifact_dir=art_dir)
    b16 = predict(m, (512, 64), dtype="bf16", hardware=HW, artifact_dir=art_dir)
    assert b16.dtype == "bf16" and b16.energy_j != f32.energy_j
    small = predict(m, (1, 64), hardware=HW, artifact_dir=art_dir)
    assert small.energy_j < f32.energy_j
    big = predict(m, (4096, 64), hardware=HW, artifact_dir=art_dir)
    assert any("outside the measured batches" in w for w in big.warnings)
    fp16 = predict(m, (512, 64), dtype="fp16", hardware=HW, artifact_dir=art_dir)
    assert any("dtype fp16 was never measured" in w for w in fp16.warnings)
    assert fp16.energy_j_high / fp16.energy_j_low > f32.energy_j_high / f32.energy_j_low


@pytest.mark.parametrize("kwargs, match", [
    ({"mode": "training"}, "unknown mode 'training'"),
    ({"dtype": "int8"}, "unknown dtype 'int8'"),
    ({"memory_format": "nhwc"}, "unknown memory_format 'nhwc'"),
    ({"grad_scaler": True}, "grad_scaler=True needs mode='train_step'"),
    ({"torch_version": "latest"}, "torch_version must be a version string"),
    ({"optimizer": "lamb"}, "unknown optimizer 'lamb'"),
])
def test_invalid_arguments(art_dir, kwargs, match):
    with pytest.raises(ExanteError, match=match):
        predict(tiny_mlp(), (8, 64), hardware=HW, artifact_dir=art_dir, **kwargs)


def test_invalid_inputs_and_model(art_dir):
    with pytest.raises(ExanteError, match="torch.nn.Module"):
        predict(lambda x: x, (8, 64), hardware=HW, artifact_dir=art_dir)
    with pytest.raises(ExanteError, match="inputs"):
        predict(tiny_mlp(), "8x64", hardware=HW, artifact_dir=art_dir)
    with pytest.raises(ExanteError, match="positive"):
        predict(tiny_mlp(), (0, 64), hardware=HW, artifact_dir=art_dir)
    with pytest.raises(ExanteError, match="failed during capture"):
        predict(tiny_mlp(), (8, 63), hardware=HW, artifact_dir=art_dir)


class Weird(nn.Module):
    """A leaf layer with no feature function whose work the capture cannot see (like a C
    extension: a leaf whose ops are visible is descended into and its ops are counted)."""

    def __init__(self, n):
        super().__init__()
        self.w = nn.Parameter(torch.ones(n))

    def forward(self, x):
        with torch._C.DisableTorchFunction():
            return x * self.w


def test_unsupported_layer_warns_and_widens(art_dir):
    base = tiny_mlp()
    with_weird = nn.Sequential(*list(tiny_mlp()), Weird(10))
    p0 = predict(base, (32, 64), hardware=HW, artifact_dir=art_dir)
    with pytest.warns(UnsupportedLayerWarning, match="Weird"):
        p1 = predict(with_weird, (32, 64), hardware=HW, artifact_dir=art_dir)
    assert [u["type"] for u in p1.unsupported] == ["Weird"]
    assert p1.unsupported[0]["names"] == ["7"]
    row = [r for r in p1.layers if r["type"] == "Weird"][0]
    assert row["source"] == "physics" and row["supported"] is False and row["energy_j"] > 0
    w0 = p0.energy_j_high / p0.energy_j_low
    w1 = p1.energy_j_high / p1.energy_j_low
    assert w1 > w0
    assert any("Weird" in w for w in p1.warnings)


def test_unsupported_without_any_shape_is_an_error(art_dir):
    class NoTensor(nn.Module):
        def forward(self, x):
            with torch._C.DisableTorchFunction():      # work the capture cannot see
                return (x.sum(), 3)[1]

    class Model(nn.Module):
        def __init__(self):
            super().__init__()
            self.l = nn.Linear(64, 8)
            self.n = NoTensor()

        def forward(self, x):
            self.n(x)
            return self.l(x)

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            p = predict(Model(), (4, 64), hardware=HW, artifact_dir=art_dir)
    except UnsupportedLayerError as exc:
        assert "NoTensor" in str(exc)
    else:   # the capture may record the layer's input shape: then it is predictable
        assert any(u["type"] == "NoTensor" for u in p.unsupported)


def test_cache_is_invalidated_by_structure_changes(art_dir):
    clear_cache()
    m = tiny_mlp()
    p1 = predict(m, (32, 64), hardware=HW, artifact_dir=art_dir)
    p2 = predict(m, (32, 64), hardware=HW, artifact_dir=art_dir)
    assert p2.energy_j == p1.energy_j
    m[2] = nn.Linear(512, 2048)
    m[4] = nn.Linear(2048, 512)
    p3 = predict(m, (32, 64), hardware=HW, artifact_dir=art_dir)
    p4 = predict(m, (32, 64), hardware=HW, artifact_dir=art_dir, cache=False)
    assert p3.energy_j == pytest.approx(p4.energy_j, rel=1e-12)
    assert p3.energy_j != p1.energy_j


def test_env_var_artifact_dir(art_dir, monkeypatch):
    monkeypatch.setenv(ARTIFACT_ENV, str(art_dir))
    assert HW in available_hardware()
    p = predict(tiny_mlp(), (8, 64), hardware=HW)
    _check(p, 8)


def test_package_exports():
    assert predictor.predict is predict
    assert set(predictor.__all__) == {"predict", "Prediction", "available_hardware", "calc",
                                      "CalcResult", "estimate", "compare", "EnergyObjective",
                                      "calibrate", "lookup"}
    for name in predictor.__all__:          # each resolves to a documented object
        assert getattr(predictor, name).__doc__, name
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        predictor.nope  # noqa: B018


def test_old_module_paths_import_with_a_deprecation_warning():
    import importlib
    import sys

    from predictor.engine.calibrated import CalibratedHardware
    for old in ("predictor.calibrated", "predictor.transfer", "profiling.schema"):
        sys.modules.pop(old, None)
        with pytest.warns(DeprecationWarning, match=old.replace(".", r"\.") + " moved to"):
            importlib.import_module(old)
    assert sys.modules["predictor.calibrated"].CalibratedHardware is CalibratedHardware
    with pytest.warns(DeprecationWarning, match="moved to predictor.fit.hardware_fit"):
        from predictor.fit import fit_hardware  # noqa: F401
    for gone in ("predictor.regression", "predictor.regression.design",
                 "predictor.predict_regression"):
        sys.modules.pop(gone, None)
        with pytest.raises(ModuleNotFoundError, match="regression engine was removed"):
            importlib.import_module(gone)


def test_data_dependent_forward_falls_back_to_real_device(art_dir):
    class DataDependent(nn.Module):
        def __init__(self):
            super().__init__()
            self.l = nn.Linear(64, 64)
            self.r = nn.ReLU()

        def forward(self, x):
            y = self.r(self.l(x))
            return y if float(y.sum()) >= 0 else -y      # reads a value: fails on meta

    with pytest.warns(RuntimeWarning, match="traced once on cpu"):
        p = predict(DataDependent(), (4, 64), hardware=HW, artifact_dir=art_dir, cache=False)
    assert any("meta device" in w for w in p.warnings)


# ------------------------------------------------------------------ issue 19 probes
def test_non_physics_artifact_is_a_clear_error(tmp_path):
    from predictor.artifacts import save_artifact

    save_artifact({"not": "a physics model"}, "oldstyle", tmp_path)
    with pytest.raises(ExanteError, match="not a physics model of eager PyTorch"):
        predict(tiny_mlp(), (8, 64), hardware="oldstyle", artifact_dir=tmp_path)


def test_a_module_called_with_two_shapes_shows_each_shapes_row(art_dir):
    """Rows were joined back by display name: the second shape showed the first's features."""
    class Twice(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(64, 64)

        def forward(self, x):
            return self.fc(x).sum() + self.fc(x[:, None, :].expand(-1, 10, -1)).sum()

    p = predict(Twice(), (8, 64), hardware=HW, artifact_dir=art_dir)
    rows = [r for r in p.layers if r["type"] == "Linear"]
    assert len(rows) == 2 and {r["name"] for r in rows} == {"fc"}
    assert sorted(r["features"]["input_numel"] for r in rows) == [8 * 64, 8 * 10 * 64]
    assert rows[0]["features"]["flops"] != rows[1]["features"]["flops"]


def test_a_layer_whose_features_fail_is_named_never_silent(art_dir, monkeypatch):
    """The per-layer features turned any exception into {}: the layer vanished silently."""
    from profiling.features.api import FEATURE_REGISTRY

    real = FEATURE_REGISTRY["GELU"]
    m = nn.Sequential(nn.Linear(64, 256), nn.GELU(), nn.Linear(256, 8))
    clear_cache()
    p0 = predict(m, (32, 64), hardware=HW, artifact_dir=art_dir, cache=False)
    assert not p0.unsupported

    def broken(cfg):
        raise ValueError("made-up failure for the test")

    monkeypatch.setitem(FEATURE_REGISTRY, "GELU", broken)
    clear_cache()
    try:
        with pytest.warns(UnsupportedLayerWarning, match="GELU x1 .1: .*made-up failure"):
            p = predict(m, (32, 64), hardware=HW, artifact_dir=art_dir, cache=False)
    finally:
        monkeypatch.setitem(FEATURE_REGISTRY, "GELU", real)
        clear_cache()
    (u,) = [u for u in p.unsupported if u["type"] == "GELU"]
    assert "made-up failure" in u["reason"] and u["names"] == ["1"]
    assert any("GELU" in w and "made-up failure" in w for w in p.warnings)
    assert p.energy_j_high / p.energy_j_low > p0.energy_j_high / p0.energy_j_low   # widened


def test_layers_priced_by_no_rule_are_named_and_widen_by_their_share(art_dir):
    """A layer type no lowering rule prices is named in the warnings, and the interval widens
    with its share of the work (a larger unpriced layer, a wider interval)."""
    base = tiny_mlp()
    p0 = predict(base, (32, 64), hardware=HW, artifact_dir=art_dir)
    width = {}
    for n in (20, 100_000):
        m = nn.Sequential(*list(tiny_mlp()), Weird(10), nn.Linear(10, n), Weird(n))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            p = predict(m, (32, 64), hardware=HW, artifact_dir=art_dir)
        (msg,) = [w for w in p.warnings if w.startswith("not priced by a lowering rule")]
        assert "Weird x1 (7" in msg and "Weird x1 (9" in msg and "% of the" in msg
        width[n] = p.energy_j_high / p.energy_j_low
    assert width[100_000] > width[20] > p0.energy_j_high / p0.energy_j_low
