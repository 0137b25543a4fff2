"""experiments/external/run.py's README section: a Zeus GPU whose shipped model was fitted on
the Zeus traces is labelled in-sample, never shown as a held-out datasheet number."""

import importlib.util
import json
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _load():
    spec = importlib.util.spec_from_file_location(
        "external_run", ROOT / "experiments" / "external" / "run.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _zeus(notes):
    net = {"datasheet_mape_pct": 20.0, "calibrated_mape_pct": 9.0}
    gpu = {"hardware": "a40", "datasheet_mape_pct": 10.2, "calibrated_mape_pct": 7.2,
           "tdp_proxy_mape_pct": 49.2, "flops_proxy_mape_pct": 226.4, "n": 25,
           "per_network": {"resnet50": net}}
    return {"zeus": {"per_gpu": {"a40": gpu, "v100": dict(gpu, hardware="v100-pcie")},
                     "notes": notes, "skipped_networks": {}, "command": "exante bench zeus X",
                     "command_wall_s": 1.0}}


def test_in_sample_gpus_are_labelled():
    run = _load()
    note = ("a40: the shipped a40 model was fitted on these traces, so its 'datasheet' numbers "
            "are in-sample; leave-one-GPU-out numbers are in experiments/multigpu/results")
    text = run.readme_section(_zeus([note]))
    assert "| a40 (a40) | 10.2 % (in-sample) |" in text
    assert "| v100 (v100-pcie) | 10.2 % |" in text          # no note: no label
    assert "not a held-out number" in text
    plain = run.readme_section(_zeus([]))
    assert "in-sample" not in plain


def test_tracked_results_render():
    run = _load()
    res = json.loads((ROOT / "experiments" / "external" / "results.json").read_text())
    text = run.readme_section(res)
    assert text.startswith(run.BEGIN) and text.endswith(run.END)
