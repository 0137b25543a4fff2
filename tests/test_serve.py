"""``exante serve``: the local page answers on loopback (real HTTP client: urllib)."""

import json
import shutil
import subprocess
import urllib.error
import urllib.request
from urllib.parse import urlencode

import pytest

from predictor.serve import HOST, serve_in_thread


class _Pred:
    def __init__(self, e, t):
        self.energy_j, self.energy_j_low, self.energy_j_high = e, 0.9 * e, 1.1 * e
        self.time_s, self.time_s_low, self.time_s_high = t, 0.9 * t, 1.1 * t


def stub_predict(model, inputs, mode, dtype, hardware, optimizer):
    b = inputs.shape[0]
    return _Pred((3.0 if mode == "train_step" else 1.0) * (1 + b), 1e-3 * (1 + b))


@pytest.fixture(scope="module")
def base():
    server, url = serve_in_thread(0, predict_fn=stub_predict)
    yield url
    server.shutdown()
    server.server_close()


def get(url):
    try:
        with urllib.request.urlopen(url, timeout=10) as r:
            return r.status, r.headers.get("Content-Type"), r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.headers.get("Content-Type"), e.read().decode()


def test_binds_loopback_and_serves_forms(base):
    assert base.startswith(f"http://{HOST}:")
    status, ctype, body = get(base + "/")
    assert status == 200 and ctype.startswith("text/html")
    assert "action='/calc'" in body and "action='/estimate'" in body and "name=region" in body


def test_calculator_page_and_api(base):
    q = urlencode({"device": "v100", "count": 8, "hours": 36, "region": "aws:us-east-1"})
    status, _, body = get(f"{base}/calc?{q}")
    assert status == 200 and "<svg" in body and "86.40 kWh" in body and "seed 001" in body
    status, ctype, body = get(f"{base}/api/calc?{q}")
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
    status, _, body = get(f"{base}/calc?{urlencode(query)}")
    assert status == 400 and fragment in body and "<script>" not in body


def test_estimate_page_with_breakdown(base):
    q = urlencode({"model": "mlp:in=100,depth=2,width=16,out=1", "input": "100",
                   "batch": 32, "epochs": 2, "dataset_size": 1000, "inferences": 100,
                   "region": "france", "pue": "1.1"})
    status, _, body = get(f"{base}/estimate?{q}")
    assert status == 200 and "<svg" in body and "training" in body and "inference" in body
    status, _, body = get(f"{base}/api/estimate?{q}")
    d = json.loads(body)
    assert status == 200 and d["stages"]["training"]["energy_kwh"] > 0


@pytest.mark.parametrize("query,fragment", [
    ({"input": "100"}, "field model is required"),
    ({"model": "mlp:in=100,depth=2,width=16,out=1", "input": "100", "epochs": 1}, "missing"),
    ({"model": "mlp:in=100,depth=2,width=16,out=1", "input": "100", "batch": 2, "epochs": 1,
      "dataset_size": 10, "region": "atlantis"}, "unknown grid region"),
    ({"model": "nosuchzoo:x", "input": "100", "batch": 2, "epochs": 1, "dataset_size": 10},
     "nosuchzoo"),
])
def test_bad_estimate_input_is_a_readable_400(base, query, fragment):
    status, ctype, body = get(f"{base}/api/estimate?{urlencode(query)}")
    assert status == 400 and fragment in json.loads(body)["error"]


def test_unknown_page_is_404(base):
    assert get(base + "/nope")[0] == 404


@pytest.mark.skipif(not (shutil.which("chromium") or shutil.which("chromium-browser")),
                    reason="headless Chromium not installed (Debian package 'chromium')")
def test_headless_chromium_screenshot(base, tmp_path):
    exe = shutil.which("chromium") or shutil.which("chromium-browser")
    shot = tmp_path / "calc.png"
    q = urlencode({"device": "v100", "count": 8, "hours": 36, "region": "aws:us-east-1"})
    subprocess.run([exe, "--headless", "--no-sandbox", "--disable-gpu",
                    f"--screenshot={shot}", "--window-size=1000,900", f"{base}/calc?{q}"],
                   check=True, timeout=60, capture_output=True)
    assert shot.exists() and shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
