"""Life-cycle arithmetic (predictor/lifecycle.py) with a stub predict_fn."""

import json
import sys
import types

import pytest
import torch

from predictor.carbon import regions as carbon
from predictor.carbon.lifecycle import (
    InferencePlan,
    LifecycleReport,
    Scenario,
    SearchPlan,
    TrainingRun,
    dump_scenario,
    estimate,
    load_scenario,
    scenario_from_args,
)
from profiling.errors import ExanteError

MODEL = "mlp:in=100,depth=2,width=16,out=1"


def e_inf(b):
    return 2.0 + 0.5 * b


def e_train(b, optimizer="adam"):
    return 3.0 * e_inf(b) + (1.0 if optimizer == "adam" else 0.5)


def t_call(b):
    return 1e-3 * (b + 1)


class Pred:
    def __init__(self, e, t):
        self.energy_j, self.energy_j_low, self.energy_j_high = e, 0.9 * e, 1.2 * e
        self.time_s, self.time_s_low, self.time_s_high = t, 0.8 * t, 1.5 * t


class Stub:
    """Deterministic function of (mode, batch, optimizer); records its calls."""

    def __init__(self):
        self.calls = []

    def __call__(self, model, inputs, mode, dtype, hardware, optimizer):
        assert isinstance(model, torch.nn.Module)
        assert inputs.device.type == "meta" and tuple(inputs.shape[1:]) == (100,)
        assert hardware == "h100" and dtype in ("fp32", "bf16")
        b = inputs.shape[0]
        self.calls.append((mode, b, dtype, optimizer))
        if mode == "inference":
            assert optimizer is None
            return Pred(e_inf(b), t_call(b))
        assert mode == "train_step"
        return Pred(e_train(b, optimizer), 3 * t_call(b))


def scenario(**kw):
    base = dict(model=MODEL, input_shape="100",
                training=TrainingRun(epochs=3, dataset_size=100, batch_size=32),
                search=SearchPlan.from_trials(4, TrainingRun(1, 100, 32), epochs_range=(1, 4)),
                inference=InferencePlan(requests=10, batch_size=4),
                pue=1.2, intensity_g_per_kwh=100.0)
    base.update(kw)
    return Scenario(**base)


def test_life_cycle_energy_is_ct_plus_t_plus_ie_with_pue_and_intensity():
    stub = Stub()
    r = estimate(scenario(), predict_fn=stub)
    per_epoch = 3 * e_train(32) + e_train(4)           # 100 = 3 x 32 + 4 (partial batch)
    T = 3 * per_epoch
    CT = (1 + 2 + 3 + 4) * per_epoch                    # trials at 1, 2, 3, 4 epochs
    Ie = 2 * e_inf(4) + e_inf(2)                        # 10 requests = 2 x 4 + 2
    assert r.stages["training"].energy_j == pytest.approx(T)
    assert r.stages["search"].energy_j == pytest.approx(CT)
    assert r.stages["inference"].energy_j == pytest.approx(Ie)
    kwh = (CT + T + Ie) * 1.2 / 3.6e6
    assert r.total_energy_kwh == pytest.approx(kwh, rel=1e-12)
    assert r.co2_kg == pytest.approx(kwh * 100.0 / 1000.0, rel=1e-12)
    assert r.stages["training"].co2_kg == pytest.approx(T * 1.2 / 3.6e6 * 0.1)
    # steps and times
    assert r.stages["training"].calls == 3 * 4
    assert r.stages["inference"].calls == 3
    assert r.stages["training"].time_s == pytest.approx(3 * (3 * 3 * t_call(32) + 3 * t_call(4)))
    assert r.stages["inference"].items[0]["energy_per_request_j"] == pytest.approx(Ie / 10)


def test_interval_propagation_is_linear():
    r = estimate(scenario(), predict_fn=Stub())
    for s in r.stages.values():
        assert s.energy_j_low == pytest.approx(0.9 * s.energy_j)
        assert s.energy_j_high == pytest.approx(1.2 * s.energy_j)
        assert s.co2_kg_low == pytest.approx(0.9 * s.co2_kg)
        assert s.time_s_high == pytest.approx(1.5 * s.time_s)
    assert r.total_energy_kwh_low == pytest.approx(0.9 * r.total_energy_kwh)
    assert r.total_energy_kwh_high == pytest.approx(1.2 * r.total_energy_kwh)
    assert r.co2_kg_low == pytest.approx(0.9 * r.co2_kg)
    assert r.co2_kg_high == pytest.approx(1.2 * r.co2_kg)
    assert any("fully correlated" in n for n in r.notes)


def test_theta_at_training_batch():
    stub = Stub()
    r = estimate(scenario(), predict_fn=stub)
    assert r.theta == pytest.approx(e_train(32) / e_inf(32))
    assert r.theta_detail["batch"] == 32 and r.theta_detail["run"] == "final"
    assert ("inference", 32, "fp32", None) in stub.calls   # predicted just for theta
    sgd = estimate(scenario(training=TrainingRun(3, 100, 32, optimizer="sgd")), predict_fn=Stub())
    assert sgd.theta == pytest.approx(e_train(32, "sgd") / e_inf(32))


def test_predict_calls_are_cached_per_distinct_key():
    stub = Stub()
    search = SearchPlan.from_trials(20, TrainingRun(1, 320, 32), epochs_range=(1, 10))
    r = estimate(scenario(training=TrainingRun(5, 640, 32), search=search, inference=None),
                 predict_fn=stub)
    assert len(search.runs) == 20
    assert sorted(stub.calls) == [("inference", 32, "fp32", None),
                                  ("train_step", 32, "fp32", "adam")]
    assert r.predict_calls == 2
    # bf16 and a different optimizer are distinct keys
    stub2 = Stub()
    estimate(scenario(training=TrainingRun(5, 640, 32, dtype="bf16", optimizer="sgd"),
                      search=search, inference=None), predict_fn=stub2)
    assert len(set(stub2.calls)) == len(stub2.calls) == 3   # search, training, theta


def test_search_from_trials_spreads_evenly_and_deterministically():
    base = TrainingRun(epochs=5, dataset_size=1000, batch_size=10)
    s = SearchPlan.from_trials(4, base, epochs_range=(1, 10))
    assert [r.epochs for r in s.runs] == [1, 4, 7, 10]
    assert [r.label for r in s.runs] == ["trial-01", "trial-02", "trial-03", "trial-04"]
    f = SearchPlan.from_trials(5, base, dataset_fraction_range=(0.2, 1.0))
    assert [r.dataset_size for r in f.runs] == [200, 400, 600, 800, 1000]
    assert all(r.epochs == 5 for r in f.runs)
    both = SearchPlan.from_trials(5, base, epochs_range=(1, 5), dataset_fraction_range=(0.2, 1.0),
                                  seed=3)
    assert both == SearchPlan.from_trials(5, base, epochs_range=(1, 5),
                                          dataset_fraction_range=(0.2, 1.0), seed=3)
    assert sorted(r.dataset_size for r in both.runs) == [200, 400, 600, 800, 1000]
    assert [r.epochs for r in both.runs] == [1, 2, 3, 4, 5]
    assert SearchPlan.from_trials(1, base, epochs_range=(2, 4)).runs[0].epochs == 3
    with pytest.raises(ExanteError, match="fewer than batch_size"):
        SearchPlan.from_trials(3, base, dataset_fraction_range=(0.001, 1.0))


def test_data_parallel_gpus_and_drop_last():
    stub = Stub()
    # 2 GPUs, global batch 32 -> 16 per GPU; 100 samples -> 50 per GPU = 3 x 16 + 2
    r = estimate(scenario(training=TrainingRun(2, 100, 32, gpus=2), search=None, inference=None),
                 predict_fn=stub)
    assert r.stages["training"].energy_j == pytest.approx(2 * 2 * (3 * e_train(16) + e_train(2)))
    assert r.stages["training"].gpu_hours == pytest.approx(
        2 * 2 * (3 * 3 * t_call(16) + 3 * t_call(2)) / 3600)
    assert r.theta_detail["batch"] == 16
    assert any("all-reduce" in n for n in r.notes)
    d = estimate(scenario(training=TrainingRun(2, 100, 32, drop_last=True), search=None,
                          inference=None), predict_fn=Stub())
    assert d.stages["training"].energy_j == pytest.approx(2 * 3 * e_train(32))
    # Scenario.gpus is the default GPU count of runs that do not say
    sc = scenario(gpus=4, training=TrainingRun(1, 100, 32), search=None, inference=None)
    assert sc.training[0].gpus == 4

def test_uneven_global_batch_is_split_like_array_split():
    # 100 samples, global batch 32 on 3 GPUs: 3 full steps of 11+11+10, then 4 = 2+1+1
    run = TrainingRun(1, 100, 32, gpus=3)
    plan = run.plan()
    assert not plan["even"]
    assert plan["groups"] == [(11, 2, 3, True), (10, 1, 3, False), (2, 1, 1, True),
                              (1, 2, 1, False)]
    assert sum(b * n * k for b, n, k, _ in plan["groups"]) == 100     # every sample once
    r = estimate(scenario(training=run, search=None, inference=None), predict_fn=Stub())
    tr = r.stages["training"]
    assert tr.energy_j == pytest.approx(3 * (2 * e_train(11) + e_train(10))
                                        + e_train(2) + 2 * e_train(1))
    assert tr.time_s == pytest.approx(3 * (3 * t_call(11) + t_call(2)))  # slowest share sets it
    assert any("array_split" in n for n in r.notes)
    # batch smaller than the GPU count: idle GPUs are not charged
    small = TrainingRun(1, 10, 2, gpus=4, drop_last=True).plan()
    assert small["groups"] == [(1, 2, 5, True)]


def test_embodied_and_server_share():
    r = estimate(scenario(embodied_kg=1000.0, hardware_lifetime_h=10.0, gpus=1), predict_fn=Stub())
    gpu_h = sum(s.gpu_hours for s in r.stages.values())
    assert r.embodied["co2_kg"] == pytest.approx(1000.0 * gpu_h / 10.0)
    assert r.co2_kg == pytest.approx(r.operational_co2_kg + r.embodied["co2_kg"])
    assert r.embodied["co2_kg_high"] == pytest.approx(1.5 * r.embodied["co2_kg"])
    assert 0 < r.embodied["share_of_total"] < 1
    plain = estimate(scenario(), predict_fn=Stub())
    shared = estimate(scenario(gpu_share_of_server=carbon.GPU_SHARE_OF_SERVER), predict_fn=Stub())
    assert shared.total_energy_kwh == pytest.approx(plain.total_energy_kwh / 0.74)
    assert shared.total_energy_j == pytest.approx(plain.total_energy_j)


def test_region_default_and_report_dict():
    r = estimate(scenario(intensity_g_per_kwh=None, region="aws:us-east-1"), predict_fn=Stub())
    d = r.to_dict()
    json.dumps(d)
    for stage in ("training", "search", "inference"):
        for sfx in ("", "_low", "_high"):
            assert isinstance(d[f"{stage}_energy_j{sfx}"], float)
    for key in ("total_energy_kwh", "total_energy_kwh_low", "total_energy_kwh_high", "co2_kg",
                "co2_kg_low", "co2_kg_high", "theta", "pue", "grid_intensity_g_per_kwh",
                "grid_source", "hardware"):
        assert key in d
    assert d["grid_intensity_g_per_kwh"] == 367.8 and "seed 001" in d["grid_source"]
    assert d["pue"] == 1.2 and d["hardware"] == "h100"
    assert d["equivalents"] and all(e["source"] for e in d["equivalents"])
    text = r.to_text()
    assert "training" in text and "theta" in text and "367.8" in text
    # absent stages are reported as 0
    only_inf = estimate(scenario(training=None, search=None), predict_fn=Stub()).to_dict()
    assert only_inf["training_energy_j"] == 0.0 and only_inf["theta"] is None
    world = estimate(scenario(intensity_g_per_kwh=None), predict_fn=Stub())
    assert world.grid.value_g_per_kwh == 475 and any("world-average" in n for n in world.notes)


def test_default_predict_fn_is_imported_lazily(monkeypatch):
    fake = types.ModuleType("predictor.engine.predict")
    stub = Stub()
    fake.predict = stub
    monkeypatch.setitem(sys.modules, "predictor.engine.predict", fake)
    r = estimate(scenario())
    assert isinstance(r, LifecycleReport) and stub.calls


def test_accepts_an_nn_module():
    model = torch.nn.Sequential(torch.nn.Linear(100, 4))
    r = estimate(scenario(model=model), predict_fn=Stub())
    assert r.model == "Sequential"


@pytest.mark.parametrize("make, match", [
    (lambda: TrainingRun(0, 100, 10), "epochs must be a positive integer"),
    (lambda: TrainingRun(1, -5, 10), "dataset_size must be a positive integer"),
    (lambda: TrainingRun(1, 100, 0), "batch_size must be a positive integer"),
    (lambda: TrainingRun(1.5, 100, 10), "epochs must be a positive integer"),
    (lambda: TrainingRun(1, 100, 200), "larger than dataset_size"),
    (lambda: TrainingRun(1, 100, 10, optimizer="lion"), "unknown optimizer 'lion'; accepted: sgd, adam, adamw"),
    (lambda: TrainingRun(1, 100, 10, dtype="fp8"), "unknown dtype 'fp8'; accepted: fp32, bf16, fp16"),
    (lambda: TrainingRun(1, 100, 10, gpus=0), "gpus must be a positive integer"),
    (lambda: InferencePlan(0), "requests must be a positive integer"),
    (lambda: InferencePlan(10, batch_size=-1), "batch_size must be a positive integer"),
    (lambda: InferencePlan(10, dtype="int8"), "unknown dtype"),
    (lambda: SearchPlan.from_trials(0, TrainingRun(1, 100, 10)), "trials must be a positive"),
    (lambda: SearchPlan.from_trials(3, TrainingRun(1, 100, 10), epochs_range=(5, 2)), "low <= high"),
    (lambda: SearchPlan([]), "non-empty"),
    (lambda: scenario(pue=0.9), "pue must be a finite number >= 1"),
    (lambda: scenario(region="aws:nowhere-1", intensity_g_per_kwh=None), "unknown grid region"),
    (lambda: scenario(region="aws:us-east-1"), "either region or intensity_g_per_kwh"),
    (lambda: scenario(intensity_g_per_kwh=-3), "gCO2eq/kWh"),
    (lambda: scenario(input_shape="3xx4"), "input must be a per-sample shape"),
    (lambda: scenario(embodied_kg=100.0), "hardware_lifetime_h"),
    (lambda: scenario(gpu_share_of_server=1.5), r"\(0, 1\]"),
    (lambda: scenario(training=None, search=None, inference=None), "nothing to estimate"),
    (lambda: scenario(model=42), "MODEL_REF string or a torch.nn.Module"),
])
def test_validation_errors(make, match):
    with pytest.raises(ExanteError, match=match) as exc:
        make()
    assert "\n" not in str(exc.value)


def test_integral_floats_are_accepted():
    assert InferencePlan(1e6).requests == 1_000_000
    assert TrainingRun(2.0, 1e5, 32).dataset_size == 100_000


TOML = """
model = "mlp:in=100,depth=2,width=16,out=1"
input = "100"
hardware = "h100"
pue = 1.58
region = "aws:us-east-1"

[[training]]
epochs = 10
dataset_size = 1000
batch = 32
optimizer = "adam"

[[training]]
epochs = 2
dataset_size = 500
batch = 32
label = "fine-tune"

[search]
trials = 20
epochs = [1, 10]
batch = 32
dataset_size = 1000

[inference]
requests = 1e6
batch = 1
"""


def test_toml_scenario_round_trip(tmp_path):
    p = tmp_path / "plan.toml"
    p.write_text(TOML)
    sc = load_scenario(p)
    assert sc.model == MODEL and sc.input_shape == (100,) and sc.region == "aws:us-east-1"
    assert [r.label for r in sc.training] == ["final", "fine-tune"]
    assert sc.training[1].optimizer == "adam" and sc.training[0].gpus == 1
    assert len(sc.search.runs) == 20
    assert sc.search.runs[0].epochs == 1 and sc.search.runs[-1].epochs == 10
    assert sc.inference == InferencePlan(1_000_000, 1, "fp32")
    q = tmp_path / "again.toml"
    q.write_text(dump_scenario(sc))
    assert load_scenario(q) == sc
    stub = Stub()
    r = estimate(sc, predict_fn=stub)
    assert r.stages["search"].items[-1]["epochs"] == 10
    # 1000 = 31 x 32 + 8 and 500 = 15 x 32 + 20: train steps at 32, 8, 20; inference at 1, 32
    assert len(stub.calls) == 5


def test_toml_search_inherits_from_training(tmp_path):
    p = tmp_path / "plan.toml"
    p.write_text('model = "mlp:in=100,depth=2,width=16,out=1"\ninput = 100\n'
                 '[[training]]\nepochs = 4\ndataset_size = 640\nbatch = 64\noptimizer = "sgd"\n'
                 '[search]\ntrials = 3\ndataset_fraction = [0.5, 1.0]\n')
    sc = load_scenario(p)
    assert [r.dataset_size for r in sc.search.runs] == [320, 480, 640]
    assert all(r.optimizer == "sgd" and r.epochs == 4 and r.batch_size == 64
               for r in sc.search.runs)


@pytest.mark.parametrize("text, match", [
    ('model = "mlp:in=1,depth=1,width=1"\ninput = "1"\nregoin = "x"\n[inference]\nrequests = 1\n',
     "unknown key 'regoin' in the top level .*did you mean 'region'"),
    ('model = "mlp:in=1,depth=1,width=1"\ninput = "1"\n[[training]]\nepoch = 1\n',
     "unknown key 'epoch' in \\[\\[training\\]\\] #1.*did you mean 'epochs'"),
    ('model = "mlp:in=1,depth=1,width=1"\ninput = "1"\n[inference]\nrequests = 5\nbatchsize = 2\n',
     "unknown key 'batchsize' in \\[inference\\]"),
    ('model = "mlp:in=1,depth=1,width=1"\ninput = "1"\n[search]\ntrials = 2\n',
     "needs 'epochs'"),
    ('input = "1"\n[inference]\nrequests = 1\n', "needs 'model'"),
    ('model = "x"\ninput = [1\n', "not valid TOML"),
])
def test_toml_errors(tmp_path, text, match):
    p = tmp_path / "bad.toml"
    p.write_text(text)
    with pytest.raises(ExanteError, match=match):
        load_scenario(p)


def test_missing_scenario_file(tmp_path):
    with pytest.raises(ExanteError, match="does not exist"):
        load_scenario(tmp_path / "nope.toml")


def test_scenario_from_cli_args():
    args = types.SimpleNamespace(
        model_ref=MODEL, input="100", epochs=3.0, dataset_size=1000.0, batch=32,
        optimizer="adam", dtype="fp32", trials=5, inferences=1e4, inference_batch=8, pue=None,
        region=None, intensity=200.0, gpus=1, hardware="h100")
    sc = scenario_from_args(args)
    assert sc.pue == carbon.DEFAULT_PUE and sc.intensity_g_per_kwh == 200.0
    assert len(sc.search.runs) == 5 and all(r.epochs == 3 for r in sc.search.runs)
    assert sc.inference == InferencePlan(10_000, 8)
    args.batch = None
    with pytest.raises(ExanteError, match="missing --batch"):
        scenario_from_args(args)


def test_tokens_instead_of_samples():
    from predictor.carbon.lifecycle import samples_from_tokens, scenario_from_dict
    assert samples_from_tokens(1_000_000, "512") == 1954           # ceil(1e6 / 512)
    assert samples_from_tokens(2048, [4, 512]) == 1
    doc = {"model": "mlp:in=8,depth=1,width=8,out=1", "input": "512",
           "training": {"epochs": 1, "dataset_tokens": 5120, "batch": 2}}
    assert scenario_from_dict(doc).training[0].dataset_size == 10
    doc["training"]["dataset_size"] = 10
    with pytest.raises(ExanteError, match="not both"):
        scenario_from_dict(doc)


def test_estimate_cli_tokens_and_pue_note(capsys):
    from predictor.cli.main import main
    rc = main(["estimate", "mlp:in=8,depth=1,width=8,out=1", "--input", "8", "--epochs", "1",
               "--tokens", "80", "--dataset-size", "10", "--batch", "2"])
    assert rc == 2 and "not both" in capsys.readouterr().err


def test_default_pue_is_stated_in_the_notes():
    r = estimate(scenario(pue=carbon.DEFAULT_PUE), predict_fn=Stub())
    assert any("PUE 1.58 is estimate's default" in n for n in r.notes)
    r = estimate(scenario(pue=1.1), predict_fn=Stub())
    assert not any("estimate's default" in n for n in r.notes)


def test_stages_and_totals_hold_one_interval_type():
    """Issue 19: a stage's quantities are predictor.engine.interval.Interval; the flat
    attributes and the JSON keys read them."""
    from predictor.engine.interval import Interval

    r = estimate(scenario(), predict_fn=Stub())
    for s in r.stages.values():
        for iv in (s.energy, s.time, s.gpu_time, s.facility_energy, s.co2):
            assert isinstance(iv, Interval) and iv.low <= iv.value <= iv.high
        assert (s.energy_j, s.energy_j_low, s.energy_j_high) == (s.energy.value, s.energy.low,
                                                                 s.energy.high)
        assert s.co2_kg_high == s.co2.high and s.gpu_hours == s.gpu_time.value
        d = s.to_dict()
        assert list(d)[:4] == ["stage", "energy_j", "energy_j_low", "energy_j_high"]
        assert d["energy_kwh_high"] == s.facility_energy.high and d["calls"] == s.calls
    assert isinstance(r.total_facility_energy, Interval) and isinstance(r.co2, Interval)
    assert r.to_dict()["total_energy_kwh_low"] == r.total_facility_energy.low
    assert r.co2.level == 0.9            # a predict_fn without a coverage: the default level


def test_a_predictor_interval_that_does_not_hold_its_value_is_one_error():
    class Backwards(Stub):
        def __call__(self, *a, **k):
            p = super().__call__(*a, **k)
            p.energy_j_low = 2 * p.energy_j       # low above the value
            return p

    with pytest.raises(ExanteError, match="predict_fn's energy_j"):
        estimate(scenario(), predict_fn=Backwards())
