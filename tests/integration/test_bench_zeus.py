"""``exante bench zeus`` on FIXTURE folders shaped like extdata/zeus_nsdi23.

Every number written below is MADE UP for the test (not Zeus's measurements): the layout and
columns are Zeus's, the values are invented (epoch times, powers) or generated from the model.
"""

import json

import pytest

from predictor.artifacts import available_hardware
from predictor.bench.zeus import _pick_calibration, load_power_traces, resolve_gpu, run_zeus_bench
from predictor.cli.main import main as cli_main
from profiling.errors import ExanteError

pytestmark = pytest.mark.skipif("h100" not in available_hardware(),
                                reason="the shipped h100 artifact is needed")
pytest.importorskip("transformers")

HEADER = "dataset,network,batch_size,optimizer,power_limit,time_per_epoch,average_power\n"


def _fixture(folder, gpu="v100", pmax=250, scale=1.0):
    """MADE-UP rows: shufflenet and BERT at several batch sizes, two power limits, plus a
    skipped network (ncf) -- values invented, loosely shaped like a training trace."""
    rows = []
    for b, t, p in ((16, 120.0, 60.0), (128, 16.0, 130.0), (1024, 7.5, 190.0), (4096, 8.0, 175.0)):
        rows.append(f"cifar100,shufflenetv2,{b},adadelta,{pmax},{t * scale},{p}")
        rows.append(f"cifar100,shufflenetv2,{b},adadelta,150,{t * 1.4 * scale},{p * 0.7}")
    for b, t, p in ((8, 1600.0, 225.0), (32, 1700.0, 228.0)):
        rows.append(f"squad,bert_base_uncased,{b},adamw,{pmax},{t * scale},{p}")
    rows.append(f"movielens-1m,ncf,1024,adam,{pmax},30.0,150.0")
    (folder / f"summary_power_{gpu}.csv").write_text(HEADER + "\n".join(rows) + "\n")


def test_bench_reports_per_gpu_against_proxies(tmp_path):
    _fixture(tmp_path)
    _fixture(tmp_path, gpu="mystery9000", pmax=200)
    r = run_zeus_bench(tmp_path)
    assert set(r["per_gpu"]) == {"v100"}
    v = r["per_gpu"]["v100"]
    assert v["hardware"] == "v100-pcie"            # 250 W limit -> the PCIe variant
    assert v["n"] == 6 - 3 and v["n_all"] == 6
    for k in ("datasheet_mape_pct", "calibrated_mape_pct", "tdp_proxy_mape_pct",
              "flops_proxy_mape_pct"):
        assert v[k] >= 0
    pn = v["per_network"]
    assert set(pn) <= {"shufflenetv2", "bert_base_uncased"} and sum(x["n"] for x in pn.values()) == 3
    assert "mystery9000" in r["skipped_gpus"] and "catalogue" in r["skipped_gpus"]["mystery9000"]
    assert "movielens-1m/ncf" in r["skipped_networks"]
    rows = r["rows"]
    assert sum(x["calibration_row"] for x in rows) == 3
    # the TDP proxy is TDP x the measured time, exactly
    for x in rows:
        assert x["tdp_proxy_energy_j"] == pytest.approx(250.0 * x["time_s"])
        assert x["energy_j"] == pytest.approx(x["time_s"] * {16: 60, 128: 130, 1024: 190, 4096: 175,
                                                             8: 225, 32: 228}[x["batch_size"]])
    # bigger batches: fewer, longer steps; epoch FLOPs nearly independent of the batch size
    sh = sorted((x for x in rows if x["network"] == "shufflenetv2"), key=lambda x: x["batch_size"])
    assert sh[0]["flops"] == pytest.approx(sh[-1]["flops"], rel=0.05)
    assert sh[0]["datasheet_time_s"] > sh[-1]["datasheet_time_s"]


def test_a_gpu_file_never_seen_is_scored_like_the_others(tmp_path):
    """The held-back GPU (P100, 250 W maximum limit) resolves to the catalogue's PCIe card and
    is scored with the same columns; nothing in the bench is specific to the visible GPUs."""
    _fixture(tmp_path, gpu="p100", pmax=250)
    r = run_zeus_bench(tmp_path)
    v = r["per_gpu"]["p100"]
    assert v["hardware"] == "p100-pcie" and v["tdp_w"] == 250.0 and v["n"] == 3
    assert any("p100-pcie" in n for n in r["notes"])
    assert v["transferred_from"] == "joint" and v["in_sample"] is False


def test_calibration_follows_the_data(tmp_path):
    """Two made-up GPUs whose epochs differ only by a factor 2 in time: the calibrated
    predictions of the slower one are slower; the datasheet ones are identical."""
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir(), b.mkdir()
    _fixture(a, scale=1.0)
    _fixture(b, scale=2.0)
    ra, rb = run_zeus_bench(a), run_zeus_bench(b)
    ta = {(x["network"], x["batch_size"]): x for x in ra["rows"]}
    for x in rb["rows"]:
        y = ta[(x["network"], x["batch_size"])]
        assert x["datasheet_time_s"] == pytest.approx(y["datasheet_time_s"])
        assert x["calibrated_time_s"] > 1.3 * y["calibrated_time_s"]


def test_pick_and_errors(tmp_path):
    rows = [{"network": "a", "batch_size": b} for b in (1, 2, 3, 4, 5)] + \
           [{"network": "b", "batch_size": b} for b in (8, 16)]
    pick = _pick_calibration(rows, 3)
    assert len(pick) == 3 and 2 in pick and 6 in pick   # median of each network first
    # with the model's host/GPU ratio: the most host-bound row, the most GPU-bound row of
    # another network, then the other networks' medians, then extremes
    share = [5.0, 3.0, 1.0, 0.5, 0.2, 0.4, 0.1]
    assert _pick_calibration(rows, 3, share) == [0, 4, 6]   # + the other extreme of a
    assert _pick_calibration(rows, 2, share) == [0, 6]
    assert _pick_calibration(rows, 1, share) == [0]
    assert _pick_calibration(rows, 9, share) == list(range(7))   # no more than exist
    with pytest.raises(ExanteError, match="no summary_power"):
        load_power_traces(tmp_path)
    (tmp_path / "summary_power_v100.csv").write_text("dataset,network\ncifar100,x\n")
    with pytest.raises(ExanteError, match="lacks column"):
        load_power_traces(tmp_path)
    spec, note = resolve_gpu("v100", 300.0)
    assert spec.key == "v100" and note == ""
    assert resolve_gpu("a40", 300.0)[0].key == "a40"
    assert resolve_gpu("rtx6000", 260.0)[0].key == "quadro-rtx6000"


def test_cli_bench_zeus_json(tmp_path, capsys):
    _fixture(tmp_path)
    assert cli_main(["bench", "zeus", str(tmp_path), "--json"]) == 0
    d = json.loads(capsys.readouterr().out)
    assert set(d["per_gpu"]["v100"]) >= {"datasheet_mape_pct", "calibrated_mape_pct",
                                         "tdp_proxy_mape_pct", "flops_proxy_mape_pct", "n"}
    assert cli_main(["bench", "zeus", str(tmp_path / "nope")]) == 2
