"""``exante serve`` driven by a real headless browser (Debian's ``chromium``): the forms are
filled and submitted (POST) through the Chrome DevTools Protocol over a pipe
(``--remote-debugging-pipe``, stdlib only), and the numbers the page shows are checked against
``predictor.carbon.calc.calc`` and ``exante estimate --json`` for the same inputs. A GET result page is
also read with ``--dump-dom``. The LLM fields of the calculator and the serving form are
checked against ``exante calc --json``. Skipped when no chromium binary is installed, unless
``EXANTE_REQUIRE_BROWSER=1`` (CI installs chromium and sets it: then a missing browser fails)."""

from __future__ import annotations

import json
import os
import re
import select
import shutil
import subprocess
import time
from urllib.parse import urlencode

import pytest

from predictor.cli.serve import serve_in_thread

CHROMIUM = next((shutil.which(n) for n in ("chromium", "chromium-browser", "google-chrome")
                 if shutil.which(n)), None)
REQUIRED = os.environ.get("EXANTE_REQUIRE_BROWSER", "") not in ("", "0")   # CI sets it
pytestmark = pytest.mark.skipif(CHROMIUM is None and not REQUIRED, reason="no chromium binary "
                                "on PATH (Debian: apt-get install chromium); CI installs it")


@pytest.fixture(autouse=True)
def _chromium_present():
    if CHROMIUM is None:
        pytest.fail("EXANTE_REQUIRE_BROWSER is set but no chromium binary is on PATH")
FLAGS = ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
         "--no-first-run", "--no-default-browser-check", "--disable-extensions"]


class Browser:
    """Minimal CDP client over chromium's debugging pipe (fd 3 in, fd 4 out, NUL-framed)."""

    def __init__(self, profile_dir):
        to_chrome_r, self._to_chrome = os.pipe()
        self._from_chrome, from_chrome_w = os.pipe()

        def child():                       # chromium reads commands on 3, writes on 4
            os.dup2(to_chrome_r, 3)
            os.dup2(from_chrome_w, 4)

        self.proc = subprocess.Popen(
            [CHROMIUM, *FLAGS, "--remote-debugging-pipe", f"--user-data-dir={profile_dir}",
             "about:blank"], preexec_fn=child, close_fds=False,
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        os.close(to_chrome_r)
        os.close(from_chrome_w)
        self._buf, self._id, self.events = b"", 0, []

    def _read_message(self, deadline):
        while b"\0" not in self._buf:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self._from_chrome], [], [], left)[0]:
                raise TimeoutError("chromium did not answer in time")
            chunk = os.read(self._from_chrome, 1 << 20)
            if not chunk:
                raise ConnectionError("chromium closed the debugging pipe")
            self._buf += chunk
        msg, _, self._buf = self._buf.partition(b"\0")
        return json.loads(msg)

    def send(self, method, params=None, session=None, timeout=30):
        self._id += 1
        msg = {"id": self._id, "method": method, "params": params or {}}
        if session:
            msg["sessionId"] = session
        os.write(self._to_chrome, json.dumps(msg).encode() + b"\0")
        deadline = time.monotonic() + timeout
        while True:
            m = self._read_message(deadline)
            if m.get("id") == self._id:
                if "error" in m:
                    raise RuntimeError(f"{method}: {m['error']}")
                return m["result"]
            self.events.append(m)

    def wait_event(self, method, session, timeout=60):
        deadline = time.monotonic() + timeout
        while True:
            for i, m in enumerate(self.events):
                if m.get("method") == method and m.get("sessionId") == session:
                    return self.events.pop(i)
            self.events.append(self._read_message(deadline))

    def close(self):
        try:
            self.send("Browser.close", timeout=5)
        except (TimeoutError, ConnectionError, RuntimeError, OSError):
            pass
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        os.close(self._to_chrome)
        os.close(self._from_chrome)


@pytest.fixture(scope="module")
def page_url():
    server, url = serve_in_thread(0)          # the real predictor, as `exante serve` runs it
    yield url
    server.shutdown()
    server.server_close()


@pytest.fixture()
def browser(tmp_path):
    b = Browser(tmp_path / "profile")
    yield b
    b.close()


def fill_and_submit(browser, url, form_id, values: dict) -> dict:
    """Open ``url``, type ``values`` into form ``form_id``, submit it; returns what the result
    page shows: ``{data-key: data-value}``, the lead line and whether it holds an SVG chart."""
    target = browser.send("Target.createTarget", {"url": "about:blank"})["targetId"]
    sid = browser.send("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
    browser.send("Page.enable", session=sid)
    browser.send("Page.navigate", {"url": url}, session=sid)
    browser.wait_event("Page.loadEventFired", sid)
    fill = (f"(() => {{ const f = document.getElementById({json.dumps(form_id)});"
            f" const v = {json.dumps(values)};"
            " for (const k in v) { f.elements[k].value = v[k]; }"
            " setTimeout(() => f.querySelector('button[type=submit]').click(), 0);"
            " return f.method; })()")
    res = browser.send("Runtime.evaluate", {"expression": fill, "returnByValue": True},
                       session=sid)
    assert "exceptionDetails" not in res, res
    method = res["result"]["value"]
    assert method == "post"
    browser.wait_event("Page.loadEventFired", sid)
    read = ("JSON.stringify({cells: Object.fromEntries([...document.querySelectorAll("
            "'[data-key]')].map(e => [e.dataset.key, e.dataset.value])), lead: "
            "(document.querySelector('.big') || {}).textContent || '', title: document.title,"
            " error: (document.querySelector('.err') || {}).textContent || '',"
            " bars: document.querySelectorAll('svg rect').length})")
    out = browser.send("Runtime.evaluate", {"expression": read, "returnByValue": True},
                       session=sid)["result"]["value"]
    return json.loads(out)


def test_browser_calculator_form_matches_calc(page_url, browser):
    from predictor.carbon.calc import calc, human_energy

    values = {"device": "a100", "count": "4", "hours": "10", "region": "france", "pue": "1.1"}
    shown = fill_and_submit(browser, page_url + "/", "calc-form", values)
    assert shown["title"] == "Calculator result", shown
    r = calc("a100", count=4, hours=10, region="france", pue=1.1)
    assert float(shown["cells"]["energy_kwh"]) == pytest.approx(r.energy_kwh, rel=1e-12)
    assert float(shown["cells"]["co2_kg"]) == pytest.approx(r.co2_kg, rel=1e-12)
    assert human_energy(r.energy_kwh) in shown["lead"] and shown["bars"] == 2


def test_browser_llm_calculator_fields_match_the_cli_json(page_url, browser, capsys):
    from predictor.cli.main import main

    values = {"device": "h100", "count": "64", "hours": "", "region": "france",
              "params": "7e9", "tokens": "1e12", "tp": "4", "pp": "2", "sharding": "zero1",
              "checkpointing": "selective", "mfu_flavour": "training", "seq_len": "4096"}
    shown = fill_and_submit(browser, page_url + "/", "calc-form", values)
    assert shown["title"] == "Calculator result", shown
    capsys.readouterr()
    assert main(["calc", "--device", "h100", "--count", "64", "--region", "france", "--params",
                 "7e9", "--tokens", "1e12", "--tp", "4", "--pp", "2", "--sharding", "zero1",
                 "--checkpointing", "selective", "--mfu-flavour", "training", "--seq-len",
                 "4096", "--json"]) == 0
    cli = json.loads(capsys.readouterr().out)
    cells = shown["cells"]
    for key in ("device_hours", "device_hours_low", "device_hours_high", "mfu", "mfu_low",
                "mfu_high", "memory_gb_per_device", "energy_kwh", "co2_kg"):
        assert float(cells[key]) == pytest.approx(cli[key], rel=1e-12), key
    assert cells["mfu_source"] == cli["mfu_source"] and cells["fits"] == str(cli["fits"])


def test_browser_serving_form_matches_the_cli_json(page_url, browser, capsys):
    from predictor.cli.main import main

    values = {"params": "8e9", "device": "h100", "count": "1", "concurrency": "32",
              "requests": "500", "weights": "fp8", "region": "france"}
    shown = fill_and_submit(browser, page_url + "/", "serving-form", values)
    assert shown["title"] == "Serving estimate", shown
    capsys.readouterr()
    assert main(["calc", "--params", "8e9", "--device", "h100", "--concurrency", "32",
                 "--requests", "500", "--weights", "fp8", "--region", "france", "--json"]) == 0
    cli = json.loads(capsys.readouterr().out)
    for key in ("energy_per_1k_prompt_tokens_j", "energy_per_1k_output_tokens_j",
                "energy_per_request_j", "energy_kwh", "co2_kg"):
        assert float(shown["cells"][key]) == pytest.approx(cli[key], rel=1e-12), key
    assert shown["bars"] == 3


def test_browser_estimate_form_matches_the_cli_json(page_url, browser, capsys):
    from predictor.cli.main import main

    values = {"model": "mlp:in=100,depth=3,width=64,out=1", "input": "100", "epochs": "2",
              "dataset_size": "1000", "batch": "32", "optimizer": "sgd", "dtype": "bf16",
              "inferences": "100", "inference_batch": "4", "gpus": "2", "region": "france",
              "pue": "1.2", "hardware": "h100"}
    shown = fill_and_submit(browser, page_url + "/", "estimate-form", values)
    assert shown["title"] == "Life-cycle estimate", shown
    capsys.readouterr()
    assert main(["estimate", values["model"], "--input", "100", "--epochs", "2",
                 "--dataset-size", "1000", "--batch", "32", "--optimizer", "sgd", "--dtype",
                 "bf16", "--inferences", "100", "--inference-batch", "4", "--gpus", "2",
                 "--region", "france", "--pue", "1.2", "--hardware", "h100", "--json"]) == 0
    cli = json.loads(capsys.readouterr().out)
    cells = shown["cells"]
    for key in ("total_energy_kwh", "total_energy_kwh_low", "total_energy_kwh_high", "co2_kg",
                "co2_kg_low", "co2_kg_high"):
        assert float(cells[key]) == pytest.approx(cli[key], rel=1e-9), key
    for stage in ("training", "inference"):
        for key in ("energy_kwh", "energy_kwh_low", "energy_kwh_high", "co2_kg", "gpu_hours"):
            assert float(cells[f"{stage}.{key}"]) == pytest.approx(
                cli["stages"][stage][key], rel=1e-9), (stage, key)
    assert shown["bars"] == 2 and "CO2eq" in shown["lead"]


def test_browser_shows_a_refused_model_as_one_line(page_url, browser):
    shown = fill_and_submit(browser, page_url + "/", "estimate-form",
                            {"model": "os:getpid", "input": "1", "inferences": "1",
                             "epochs": "", "dataset_size": "", "batch": ""})
    assert shown["title"] == "Input error"
    assert "not accepted by the page" in shown["error"] and "\n" not in shown["error"]


def test_dump_dom_of_a_get_result_page(page_url, tmp_path):
    from predictor.carbon.calc import calc

    q = urlencode({"device": "v100", "count": 8, "hours": 36, "region": "aws:us-east-1"})
    dom = subprocess.run([CHROMIUM, *FLAGS, f"--user-data-dir={tmp_path / 'p'}", "--dump-dom",
                          f"{page_url}/calc?{q}"], capture_output=True, text=True, timeout=90,
                         check=True).stdout
    cells = dict(re.findall(r'data-key="?([\w.]+)"? data-value="([^"]+)"', dom))
    r = calc("v100", count=8, hours=36, region="aws:us-east-1")
    assert float(cells["energy_kwh"]) == pytest.approx(r.energy_kwh, rel=1e-12)
    assert "<svg" in dom and "Calculator result" in dom
