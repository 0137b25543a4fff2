"""The page's LLM fields (issue 18 item 6): the calculator form takes every LLM keyword of
``exante calc`` and the serving form its ``--concurrency`` mode; the numbers the page shows
and ``/api/...`` answers equal ``calc()`` / ``serving()`` and ``exante calc --json``."""

import html
import json
import re
import urllib.error
import urllib.request
from urllib.parse import urlencode

import pytest

from predictor.carbon.calc import calc, serving
from predictor.cli.main import main
from predictor.cli.serve import CALC_FIELDS, SERVING_FIELDS, serve_in_thread


@pytest.fixture(scope="module")
def base():
    server, url = serve_in_thread(0)
    yield url
    server.shutdown()
    server.server_close()


def _open(req):
    try:
        with urllib.request.urlopen(req, timeout=60) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def post(url, fields):
    return _open(urllib.request.Request(url, data=urlencode(fields).encode(), method="POST"))


def cells(body: str) -> dict:
    return {k: html.unescape(v) for k, v in
            re.findall(r'data-key=([\w.]+) data-value="([^"]*)"', body)}


# (page fields, the same run as `exante calc` flags)
CASES = [
    ({"device": "a100-80gb", "count": "2048", "params": "70e9", "tokens": "2e12"},
     ["--device", "a100-80gb", "--count", "2048", "--params", "70e9", "--tokens", "2e12"]),
    ({"device": "h100", "count": "64", "params": "7e9", "tokens": "1e12", "mfu": "0.45",
      "tp": "4", "pp": "2", "dtype": "fp8", "pue": "1.1", "region": "france",
      "sharding": "zero2", "checkpointing": "full", "optimizer_dtype": "bf16",
      "mfu_flavour": "training"},
     ["--device", "h100", "--count", "64", "--params", "7e9", "--tokens", "1e12", "--mfu",
      "0.45", "--tp", "4", "--pp", "2", "--dtype", "fp8", "--pue", "1.1", "--region", "france",
      "--sharding", "zero2", "--checkpointing", "full", "--optimizer-dtype", "bf16",
      "--mfu-flavour", "training"]),
    ({"device": "h100", "count": "64", "params": "7e9", "tokens": "1e12", "mfu_mode": "physics",
      "layers": "32", "hidden": "4096", "heads": "32", "seq_len": "4096", "micro_batch": "2",
      "global_batch_tokens": "2e6", "tp": "4", "pp": "2", "flash": "off",
      "fused_optimizer": "off", "interconnect": "nvlink4,ib-ndr", "intensity": "coal"},
     ["--device", "h100", "--count", "64", "--params", "7e9", "--tokens", "1e12", "--physics",
      "--layers", "32", "--hidden", "4096", "--heads", "32", "--seq-len", "4096",
      "--micro-batch", "2", "--global-batch-tokens", "2e6", "--tp", "4", "--pp", "2",
      "--no-flash", "--unfused-optimizer", "--interconnect", "nvlink4,ib-ndr", "--intensity",
      "coal"]),
    ({"device": "tpu-v4", "count": "64", "flops": "1e22", "active_params": "1e9",
      "tpu_power": "tdp"},
     ["--device", "tpu-v4", "--count", "64", "--flops", "1e22", "--active-params", "1e9",
      "--tpu-power", "tdp"]),
]


def test_every_llm_field_is_on_the_forms(base):
    status, body = _open(base + "/")
    assert status == 200 and "action='/serving' method=post" in body
    calc_form = body[body.index("id=calc-form"):body.index("</form>", body.index("id=calc-form"))]
    for name in CALC_FIELDS:
        assert re.search(rf"name={name}[ >]", calc_form), name
    serve_form = body[body.index("id=serving-form"):]
    serve_form = serve_form[:serve_form.index("</form>")]
    for name in SERVING_FIELDS:
        assert re.search(rf"name={name}[ >]", serve_form), name


@pytest.mark.parametrize("fields,flags", CASES, ids=["default-mfu", "given-mfu", "physics", "tpu"])
def test_llm_calculator_page_equals_calc_and_the_cli(base, capsys, fields, flags):
    status, body = post(f"{base}/calc", fields)
    assert status == 200, body
    capsys.readouterr()
    assert main(["calc", *flags, "--json"]) == 0
    cli = json.loads(capsys.readouterr().out)
    status, api = post(f"{base}/api/calc", fields)
    assert status == 200 and json.loads(api) == cli            # the same object, every key
    shown = cells(body)
    for key in ("device_hours", "device_hours_low", "device_hours_high", "mfu", "mfu_low",
                "mfu_high", "energy_kwh", "co2_kg", "power_w"):
        assert float(shown[key]) == pytest.approx(cli[key], rel=1e-12), key
    assert shown["mfu_source"] == cli["mfu_source"]
    assert shown["fits"] == str(cli["fits"])
    if cli["memory_gb_per_device"] is not None:
        assert float(shown["memory_gb_per_device"]) == pytest.approx(
            cli["memory_gb_per_device"], rel=1e-12)
    assert cli["mfu_low"] <= cli["mfu"] <= cli["mfu_high"]
    assert "<details id=llm-fields open>" in body              # the fields used stay visible
    assert body.index("<svg") < body.index("<table id=result>")


def test_llm_calculator_direct_call_and_get(base):
    fields = CASES[0][0]
    r = calc("a100-80gb", count=2048, params=70e9, tokens=2e12).to_dict()
    status, api = _open(f"{base}/api/calc?{urlencode(fields)}")      # GET still answers
    d = json.loads(api)
    assert status == 200 and d["device_hours"] == pytest.approx(r["device_hours"], rel=1e-12)
    assert d["fits"] is True and d["memory_gb_per_device"] == pytest.approx(
        r["memory_gb_per_device"])
    # the chart's whisker is the device-hours interval applied to the energy
    status, body = post(f"{base}/calc", fields)
    whisker = re.search(r"device energy: ([\d.e+]+) MWh.*?\[([\d.e+,]+), ([\d.e+,]+)\] MWh",
                        body, re.S)
    assert whisker, body[:2000]
    lo, hi = (float(x.replace(",", "")) for x in whisker.group(2, 3))
    k = r["device_energy_kwh"] / 1000 / r["device_hours"]
    assert lo == pytest.approx(k * r["device_hours_low"], rel=1e-3)
    assert hi == pytest.approx(k * r["device_hours_high"], rel=1e-3)


SERVING = ({"params": "8e9", "device": "h100", "count": "2", "concurrency": "64",
            "requests": "1000", "prompt_tokens": "2000", "output_tokens": "300",
            "weights": "fp8", "pue": "1.2", "region": "france"},
           ["--params", "8e9", "--device", "h100", "--count", "2", "--concurrency", "64",
            "--requests", "1000", "--prompt-tokens", "2000", "--output-tokens", "300",
            "--weights", "fp8", "--pue", "1.2", "--region", "france"])


def test_serving_page_equals_the_cli(base, capsys):
    fields, flags = SERVING
    status, body = post(f"{base}/serving", fields)
    assert status == 200, body
    capsys.readouterr()
    assert main(["calc", *flags, "--json"]) == 0
    cli = json.loads(capsys.readouterr().out)
    assert json.loads(post(f"{base}/api/serving", fields)[1]) == cli
    assert json.loads(_open(f"{base}/api/serving?{urlencode(fields)}")[1]) == cli
    direct = serving(8e9, "h100", 2, 64, requests=1000, prompt_tokens=2000, output_tokens=300,
                     weights="fp8", pue=1.2, region="france")
    shown = cells(body)
    for key in ("energy_per_1k_prompt_tokens_j", "energy_per_1k_output_tokens_j",
                "energy_per_request_j", "energy_kwh", "co2_kg", "device_energy_kwh"):
        assert float(shown[key]) == pytest.approx(cli[key], rel=1e-12), key
        assert cli[key] == pytest.approx(direct[key], rel=1e-12), key
    assert body.index("<svg") < body.index("<table id=result>") and body.count("<rect") == 3


@pytest.mark.parametrize("path,fields,fragment", [
    ("/calc", {"device": "h100", "count": 8, "hours": 10, "tp": "abc"},
     "tp must be an integer in 1..8"),
    ("/calc", {"device": "h100", "count": 8, "hours": 10, "mfu": "1e308"},
     "mfu must be a number in (0, 1]"),
    ("/calc", {"device": "h100", "count": 8, "params": 7e9, "tokens": 1e9, "pp": "-1"},
     "pp must be an integer in 1..8"),
    ("/calc", {"device": "h100", "count": 8, "params": 7e9, "tokens": 1e9, "sharding": "zero9"},
     "unknown sharding 'zero9'; accepted: none, zero1"),
    ("/calc", {"device": "h100", "count": 8, "params": 7e9, "tokens": 1e9, "flash": "maybe"},
     "unknown flash 'maybe'; accepted: on, off"),
    ("/calc", {"device": "h100", "count": 8, "params": 7e9, "tokens": 1e9, "layers": "4"},
     "all of layers, hidden and heads"),
    ("/serving", {"params": "8e9", "device": "h100", "concurrency": "abc"},
     "concurrency must be a finite number > 0"),
    ("/serving", {"params": "8e9", "device": "h100"}, "needs params, device and concurrency"),
    ("/serving", {"params": "8e9", "device": "h100", "concurrency": 8, "weights": "int3"},
     "unknown weights 'int3'"),
    ("/serving", {"params": "8e9", "device": "h100", "concurrency": 8, "requests": "1e308"},
     "non-finite"),
    ("/serving", {"params": "8e9", "device": "h100", "concurrency": 8, "hours": 1},
     "unknown field(s) hours"),
])
def test_bad_llm_input_is_a_readable_400(base, path, fields, fragment):
    status, body = post(f"{base}/api{path}", fields)
    msg = json.loads(body)["error"]
    assert status == 400 and fragment in msg and "\n" not in msg
    status, page = post(f"{base}{path}", fields)
    assert status == 400 and html.escape(fragment) in page


def test_serving_echoes_are_escaped(base):
    evil = "<script>alert(1)</script>\"'><img src=x onerror=alert(2)>"
    for name in SERVING_FIELDS:
        fields = {"params": "8e9", "device": "h100", "concurrency": "8", name: evil}
        status, body = post(f"{base}/serving", fields)
        assert status == 400, name
        assert "<script>" not in body and "<img" not in body
        assert "&lt;script&gt;" in body, name                 # echoed back in the form, escaped
