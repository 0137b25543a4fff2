"""The dataset contract: columns, row builders, atomic CSV appends, resume keys."""

import json
import os
import re

import pytest
import torch
from torch import nn

from profiling.capture.core import capture
from profiling.dataset import schema
from profiling.errors import ExanteError
from profiling.features.api import layer_features

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _linear_config():
    cap = capture(nn.Sequential(nn.Linear(8, 4)), torch.zeros(2, 8))
    return cap.layers[0].config


def _measurement(**over):
    m = {"time_s": 1e-4, "energy_j": 0.02, "energy_dynamic_j": 0.01, "power_w": 200.0, "idle_power_w": 100.0,
         "spread": 0.01, "n_windows": 2, "calls_per_window": 100, "sm_clock_mhz": 1980.0, "temperature_c": 40.0,
         "meter": "replay", "protocol_version": "1", "remeasured": 0, "measured": True,
         "windows": [{"calls": 100, "time_s": 0.01, "energy_j": 2.0, "used": True}] * 2}
    m.update(over)
    return m


ENV = {"gpu_name": "NVIDIA H100 80GB HBM3", "driver": "580.159.04", "power_limit_w": 700.0, "torch_version": "2.13",
       "cuda_version": "12.8", "date": "2024-06-12T10:00:00+00:00", "protocol_version": "1", "session_id": "s1",
       "allow_tf32_matmul": False, "allow_tf32_cudnn": True, "hostname_should_not_be_copied": "x"}


def _layer_row(**over):
    cfg = _linear_config()
    kw = dict(features=layer_features(cfg), measurement=_measurement(), env=ENV, mode="inference", exec="eager",
              dtype="fp32", hardware="h100", sweep_id="layers", task_key="t1")
    kw.update(over)
    return schema.layer_row(cfg, **kw)


def test_columns_follow_the_contract():
    for cols in (schema.LAYER_COLUMNS, schema.MODEL_COLUMNS, schema.TASK_COLUMNS):
        assert len(cols) == len(set(cols))
    internals = ("hardware sweep_id key layer_type hparams input_shapes output_shapes dtype batch mode exec optimizer "
                 "time_s energy_j energy_dynamic_j power_w idle_power_w spread n_windows calls_per_window sm_clock_mhz "
                 "temperature_c meter gpu_name driver power_limit_w torch_version cuda_version date protocol_version")
    assert set(internals.split()) <= set(schema.LAYER_COLUMNS)
    from profiling.features.api import CORE_FEATURES

    assert set(CORE_FEATURES) <= set(schema.LAYER_COLUMNS)
    model_extra = "model_ref family input_shape layer_counts n_layer_calls sum_layer_energy_j additivity_ratio"
    assert set(model_extra.split()) <= set(schema.MODEL_COLUMNS)
    shared = set(internals.split()) - {"layer_type", "hparams", "input_shapes", "output_shapes"}
    assert shared <= set(schema.MODEL_COLUMNS)


def test_layer_row_is_complete_and_json_encoded():
    row = _layer_row()
    assert list(row) == list(schema.LAYER_COLUMNS)
    cfg = _linear_config()
    assert row["config_key"] == cfg.key()
    assert row["key"] == f"{cfg.key()}|inference|eager|fp32|"
    assert row["layer_type"] == "Linear" and row["batch"] == 2
    assert json.loads(row["input_shapes"]) == [[2, 8]]
    assert json.loads(row["hparams"])["in_features"] == 8
    assert row["macs"] == 2 * 8 * 4 and row["meter_measured"] is True
    assert json.loads(row["windows_json"])[0]["calls"] == 100
    assert row["gpu_name"] == ENV["gpu_name"] and row["session_id"] == "s1"
    assert "hostname_should_not_be_copied" not in row.values()


def test_row_builders_reject_unknown_fields_and_choices():
    with pytest.raises(ExanteError, match="unknown column"):
        _layer_row(extra={"not_a_column": 1})
    with pytest.raises(ExanteError, match="unknown mode"):
        _layer_row(mode="training")
    with pytest.raises(ExanteError, match="unknown optimizer"):
        _layer_row(mode="train_step", optimizer="lion")
    with pytest.raises(ExanteError, match="unknown field"):
        schema.model_row(key="m", model_ref="mlp:in=1,depth=1,width=1", family="mlp", spec=None, input_shape=[[1, 1]],
                         batch=1, mode="inference", dtype="fp32", optimizer=None, measurement=_measurement(), env=ENV,
                         hardware="h100", layer_counts={"a": 2}, totals={"bogus": 1})


def test_model_row_counts_and_optimizer_only_for_train_step():
    row = schema.model_row(key="m1", model_ref="mlp:in=4,depth=1,width=8,out=1", family="mlp", spec={"depth": 1},
                           input_shape=[[2, 4]], batch=2, mode="inference", dtype="fp32", optimizer="adam",
                           measurement=_measurement(), env=ENV, hardware="h100", layer_counts={"a": 2, "b": 1},
                           totals={"sum_layer_energy_j": 0.03, "additivity_ratio": 1.5})
    assert list(row) == list(schema.MODEL_COLUMNS)
    assert row["n_layer_calls"] == 3 and row["n_distinct_layers"] == 2
    assert json.loads(row["layer_counts"]) == {"a": 2, "b": 1}
    assert row["optimizer"] is None  # only recorded for train_step
    assert row["exec"] == "eager"


def test_append_writes_header_once_and_reads_back_typed(tmp_path):
    t = schema.layer_table(tmp_path)
    assert t.read() == [] and t.keys() == set() and not t.exists()
    r1 = _layer_row()
    r2 = _layer_row(mode="forward_backward")
    assert t.append([r1]) == 1
    assert t.append([r2]) == 1
    assert t.append([]) == 0
    text = (tmp_path / "layers.csv").read_text()
    assert text.count("hardware,sweep_id,key") == 1
    rows = t.read()
    assert [r["mode"] for r in rows] == ["inference", "forward_backward"]
    assert isinstance(rows[0]["energy_j"], float) and rows[0]["energy_j"] == pytest.approx(0.02)
    assert isinstance(rows[0]["batch"], int) and rows[0]["meter_measured"] is True
    assert rows[0]["optimizer"] is None  # empty cell
    assert t.keys() == {("layers", r1["key"]), ("layers", r2["key"])}
    assert t.keys(["key"]) == {r1["key"], r2["key"]}
    df = t.read_frame()
    assert list(df.columns) == list(schema.LAYER_COLUMNS) and len(df) == 2


def test_append_is_atomic_when_replace_fails(tmp_path, monkeypatch):
    t = schema.layer_table(tmp_path)
    t.append([_layer_row()])
    before = (tmp_path / "layers.csv").read_bytes()

    def crash(src, dst):  # the process dies between writing the temp file and renaming it
        raise OSError("simulated crash")

    monkeypatch.setattr(schema.os, "replace", crash)
    with pytest.raises(OSError, match="simulated crash"):
        t.append([_layer_row(mode="forward_backward")])
    monkeypatch.undo()
    assert (tmp_path / "layers.csv").read_bytes() == before
    leftovers = [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
    assert leftovers == []
    assert len(t.read()) == 1
    t.append([_layer_row(mode="forward_backward")])  # and the table still works
    assert len(t.read()) == 2


def test_interrupted_temp_file_does_not_corrupt(tmp_path, monkeypatch):
    """A crash while the temp file is being written (fsync never reached) leaves the old table."""
    t = schema.layer_table(tmp_path)
    t.append([_layer_row()])
    before = (tmp_path / "layers.csv").read_bytes()

    def boom(fd):
        raise KeyboardInterrupt

    monkeypatch.setattr(schema.os, "fsync", boom)
    with pytest.raises(KeyboardInterrupt):
        t.append([_layer_row(mode="train_step", optimizer="sgd")])
    monkeypatch.undo()
    assert (tmp_path / "layers.csv").read_bytes() == before
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def test_bad_rows_and_headers_are_clear_errors(tmp_path):
    t = schema.layer_table(tmp_path)
    row = _layer_row()
    bad = dict(row, surprise=1)
    with pytest.raises(ExanteError, match="unknown: \\['surprise'\\]"):
        t.append([bad])
    missing = {k: v for k, v in row.items() if k != "energy_j"}
    with pytest.raises(ExanteError, match="missing: \\['energy_j'\\]"):
        t.append([missing])
    assert not t.exists()  # nothing written by failed appends
    with pytest.raises(ExanteError, match="expected a dict"):
        t.append([["not", "a", "dict"]])
    # a file written with another layout is refused, with the differing columns named
    (tmp_path / "models.csv").write_text("hardware,key,old_column\nh100,k,1\n")
    m = schema.model_table(tmp_path)
    with pytest.raises(ExanteError, match="old_column"):
        m.read()
    with pytest.raises(ExanteError, match="different header"):
        m.keys()
    with pytest.raises(ExanteError, match="different header"):
        m.append([{c: None for c in schema.MODEL_COLUMNS}])
    with pytest.raises(ExanteError, match="not columns"):
        schema.CsvTable(tmp_path / "x.csv", ["a", "b"], key_columns=["key"])
    with pytest.raises(ExanteError, match="duplicate"):
        schema.CsvTable(tmp_path / "x.csv", ["a", "a"], key_columns=["a"])


def test_file_without_final_newline_is_repaired_on_append(tmp_path):
    t = schema.task_table(tmp_path)
    t.append([schema.task_row(**{c: None for c in schema.TASK_COLUMNS} | {"sweep_id": "s", "key": "a",
                                                                          "status": "ok"})])
    p = tmp_path / "tasks.csv"
    p.write_bytes(p.read_bytes().rstrip(b"\n"))
    t.append([schema.task_row(**{c: None for c in schema.TASK_COLUMNS} | {"sweep_id": "s", "key": "b",
                                                                          "status": "ok"})])
    assert t.keys() == {("s", "a"), ("s", "b")}


def test_write_json_atomic(tmp_path, monkeypatch):
    p = tmp_path / "meta.json"
    schema.write_json_atomic(p, {"b": 1, "a": [1.5, float("nan")], "t": (1, 2)})
    assert json.loads(p.read_text()) == {"a": [1.5, None], "b": 1, "t": [1, 2]}
    monkeypatch.setattr(schema.os, "replace", lambda s, d: (_ for _ in ()).throw(OSError("crash")))
    with pytest.raises(OSError):
        schema.write_json_atomic(p, {"new": True})
    monkeypatch.undo()
    assert json.loads(p.read_text())["b"] == 1
    schema.update_meta(tmp_path, lambda m: m.setdefault("sessions", {}).update(s1={"n": 1}))
    assert json.loads(p.read_text())["sessions"] == {"s1": {"n": 1}}
    (tmp_path / "broken.json").write_text("{")
    with pytest.raises(ExanteError, match="not valid JSON"):
        schema.read_json(tmp_path / "broken.json")


def test_dataset_card_template_documents_every_column():
    text = open(os.path.join(ROOT, "datasets", "README.md"), encoding="utf-8").read()
    documented = set(re.findall(r"`([a-z_0-9]+)`", text))
    for col in set(schema.LAYER_COLUMNS) | set(schema.MODEL_COLUMNS) | set(schema.TASK_COLUMNS):
        assert col in documented, f"column {col!r} is not described in datasets/README.md"
    assert "<!-- counts:begin" in text and "<!-- counts:end -->" in text
