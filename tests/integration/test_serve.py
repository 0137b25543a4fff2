"""``exante serve``: forms (POST and GET), every estimate field, the breakdown chart, readable
400s, escaping, and the MODEL_REF gate (zoo and generator references only)."""

import json
import re
import urllib.error
import urllib.request
from urllib.parse import urlencode

import pytest

from predictor.cli.serve import CALC_FIELDS, ESTIMATE_FIELDS, HOST, serve_in_thread


class _Pred:
    def __init__(self, e, t):
        self.energy_j, self.energy_j_low, self.energy_j_high = e, 0.9 * e, 1.1 * e
        self.time_s, self.time_s_low, self.time_s_high = t, 0.9 * t, 1.1 * t


CALLS = []


def stub_predict(model, inputs, mode, dtype, hardware, optimizer):
    CALLS.append((mode, tuple(inputs.shape), dtype, hardware, optimizer))
    b = inputs.shape[0]
    return _Pred((3.0 if mode == "train_step" else 1.0) * (1 + b), 1e-3 * (1 + b))


@pytest.fixture(scope="module")
def base():
    server, url = serve_in_thread(0, predict_fn=stub_predict)
    yield url
    server.shutdown()
    server.server_close()


def _open(req):
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, r.headers.get("Content-Type"), r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.headers.get("Content-Type"), e.read().decode()


def get(url):
    return _open(url)


def post(url, fields: dict):
    return _open(urllib.request.Request(url, data=urlencode(fields).encode(), method="POST"))


def test_binds_loopback_and_serves_post_forms(base):
    assert base.startswith(f"http://{HOST}:")
    status, ctype, body = get(base + "/")
    assert status == 200 and ctype.startswith("text/html")
    assert "action='/calc' method=post" in body and "action='/estimate' method=post" in body
    for name in ESTIMATE_FIELDS:                       # every estimate field is on the form
        assert f"name={name}>" in body or f"name={name} " in body, name
    assert "<script" not in body
    gpus = re.search(r"<datalist id=gpus>(.*?)</datalist>", body).group(1)   # suggestions
    assert "list=gpus" in body and '"h100"' in gpus and '"a100-80gb"' in gpus
    assert "list=regions" in body and '"aws:us-east-1"' in body


def test_calculator_post_get_and_api_agree(base):
    fields = {"device": "v100", "count": 8, "hours": 36, "region": "aws:us-east-1", "pue": 1}
    status, _, body = post(f"{base}/calc", fields)
    assert status == 200 and "<svg" in body and "86.40 kWh" in body and "seed 001" in body
    assert body.index("<svg") < body.index("<table")           # the chart comes first
    assert get(f"{base}/calc?{urlencode(fields)}")[0] == 200
    status, ctype, body = post(f"{base}/api/calc", fields)
    d = json.loads(body)
    assert status == 200 and ctype.startswith("application/json")
    assert d["energy_kwh"] == pytest.approx(86.4) and d["co2_kg"] == pytest.approx(86.4 * .3678)


@pytest.mark.parametrize("query,fragment", [
    ({"device": "nonsense", "hours": 1}, "unknown device"),
    ({"device": "v100", "hours": "abc"}, "hours must be a number"),
    ({"device": "v100", "hours": 1, "pue": "0.5"}, "pue must be &gt;= 1"),
    ({"device": "v100", "hours": 1, "evil": "<script>"}, "unknown field(s) evil"),
])
def test_bad_calculator_input_is_a_readable_400(base, query, fragment):
    status, _, body = post(f"{base}/calc", query)
    assert status == 400 and fragment in body and "<script>" not in body


def test_overflowing_inputs_are_refused_not_shown_as_inf(base):
    from predictor.cli.serve.forms import check_finite

    status, _, body = post(f"{base}/api/calc", {"device": "v100", "hours": "1e308",
                                                "count": "1e308"})
    assert status == 400 and "inf" not in json.loads(body)["error"].split()

    class Fake:
        def to_dict(self):
            return {"energy_kwh": 1.0, "stages": {"training": {"co2_kg": float("inf")}}}

    with pytest.raises(Exception, match="non-finite co2_kg"):
        check_finite(Fake())


ALL_FIELDS = {"model": "mlp:in=100,depth=2,width=16,out=1", "input": "100",
              "input_dtype": "float32", "epochs": 2, "dataset_size": 1000, "batch": 32,
              "optimizer": "sgd", "dtype": "bf16", "trials": 3, "inferences": 100,
              "inference_batch": 4, "pue": "1.1", "region": "france", "gpus": 2,
              "hardware": "h100"}


def test_estimate_uses_every_field_and_leads_with_the_chart(base):
    # the alternatives not used here: tokens (for dataset_size), intensity (for region)
    assert set(ALL_FIELDS) | {"tokens", "intensity"} == set(ESTIMATE_FIELDS)
    CALLS.clear()
    status, _, body = post(f"{base}/estimate", ALL_FIELDS)
    assert status == 200, body
    assert body.index("<svg") < body.index("<table id=result>")
    for stage in ("search", "training", "inference"):
        assert f">{stage}</text>" in body                      # a bar per stage
    assert body.count("<path d=") == 3                        # each with its interval
    # per-GPU batch 32/2 = 16, sgd, bf16; serving batch 4 bf16
    assert ("train_step", (16, 100), "bf16", "h100", "sgd") in CALLS
    assert ("inference", (4, 100), "bf16", "h100", None) in CALLS
    d = json.loads(post(f"{base}/api/estimate", ALL_FIELDS)[2])
    assert d["pue"] == pytest.approx(1.1) and "france" in d["grid_label"]
    assert len(d["stages"]["search"]["items"]) == 3
    shown = dict(re.findall(r'data-key=([\w.]+) data-value="([^"]+)"', body))
    assert float(shown["total_energy_kwh"]) == pytest.approx(d["total_energy_kwh"])
    assert float(shown["training.energy_kwh_high"]) == pytest.approx(
        d["stages"]["training"]["energy_kwh_high"])
    # the same fields by GET (links) answer the same numbers
    d_get = json.loads(get(f"{base}/api/estimate?{urlencode(ALL_FIELDS)}")[2])
    assert d_get["total_energy_kwh"] == pytest.approx(d["total_energy_kwh"])


@pytest.mark.parametrize("query,fragment", [
    ({"input": "100"}, "field model is required"),
    ({"model": "mlp:in=100,depth=2,width=16,out=1", "input": "100", "epochs": 1}, "missing"),
    ({"model": "mlp:in=100,depth=2,width=16,out=1", "input": "100", "batch": 2, "epochs": 1,
      "dataset_size": 10, "region": "atlantis"}, "unknown grid region"),
    ({"model": "mlp:in=100,depth=2,width=16,out=1", "input": "100", "inferences": 5,
      "gpus": "0"}, "gpus must be a positive integer"),
    ({"model": "mlp:in=100,depth=2,width=16,out=1", "input": "100", "inferences": 5,
      "dtype": "fp64"}, "unknown dtype 'fp64'; accepted: fp32, bf16"),
    ({"model": "mlp:in=100,depth=2,width=16,out=1", "input": "100", "inferences": 5,
      "region": "france", "intensity": "50"}, "not both"),
    ({"model": "nosuchzoo:x", "input": "100", "batch": 2, "epochs": 1, "dataset_size": 10},
     "not accepted by the page"),
])
def test_bad_estimate_input_is_a_readable_400(base, query, fragment):
    status, ctype, body = post(f"{base}/api/estimate", query)
    assert status == 400 and fragment in json.loads(body)["error"]


@pytest.mark.parametrize("ref", [
    "{file}:f", "os:getpid", "_thread:interrupt_main", "json:loads", "predictor.cli.main:main",
    "mlp:../{file}:f", "torchvision:../../x", "timm:hf-hub:org/model", "hf:bert,auto_map=x",
    "hf:bert,trust_remote_code=true", "hf:bert,_name_or_path=evil", "resnet18", "",
    "TORCHVISION:resnet18", "mlp:in=1 ,depth=1", "torchvision:resnet18;x"])
def test_page_never_imports_a_file_or_module(base, tmp_path, monkeypatch, ref):
    from profiling import model_refs

    marker = tmp_path / "ran"
    script = tmp_path / "evil.py"
    script.write_text(f"open({str(marker)!r}, 'w').close()\ndef f():\n    return None\n")
    resolved = []
    for name in ("resolve_model", "resolve_model_on_meta", "_builder"):
        monkeypatch.setattr(model_refs, name, lambda *a, _n=name: resolved.append(_n))
    ref = ref.format(file=script)
    for send in (post, lambda u, f: get(f"{u}?{urlencode(f)}")):
        status, _, body = send(f"{base}/api/estimate", {"model": ref, "input": "1",
                                                        "inferences": 1})
        assert status == 400, (ref, body)
        msg = json.loads(body)["error"]
        assert "\n" not in msg and ("torchvision:NAME" in msg or "hf: setting" in msg
                                    or "field model is required" in msg)
    assert not marker.exists() and resolved == []


def test_generator_and_zoo_refs_pass_the_gate():
    from predictor.cli.serve import check_page_model_ref

    for ref in ("torchvision:resnet18", "timm:vit_tiny_patch16_224.augreg_in21k", "hf:gpt2",
                "hf:llama,num_hidden_layers=2,hidden_act=silu", "mlpseq:in=10,sizes=8-4-1",
                "convstack:in=3x32x32,filters=16-32,kernel=3,out=10",
                "encoder:d=64,heads=4,layers=2", "mlp:in=100,depth=10,width=100,out=1"):
        assert check_page_model_ref(ref) == ref


def test_every_echoed_input_is_escaped(base):
    evil = "<script>alert(1)</script>\"'><img src=x onerror=alert(2)>"
    for path in ("/calc", "/estimate"):
        fields = {"model": evil, "input": evil} if path == "/estimate" else {"device": evil}
        names = ESTIMATE_FIELDS if path == "/estimate" else CALC_FIELDS
        for name in names:
            status, _, body = post(f"{base}{path}", {**fields, name: evil})
            assert status == 400
            assert "<script>" not in body and "<img" not in body and "onerror=alert" not in \
                body.replace("onerror=alert(2)&gt;", "")
            assert "&lt;script&gt;" in body                 # echoed back, escaped
    status, _, body = get(f"{base}/<script>x</script>")
    assert status == 404 and "<script>" not in body


def test_unknown_page_is_404_and_post_to_index_too(base):
    assert get(base + "/nope")[0] == 404
    assert post(base + "/", {"a": 1})[0] == 404
