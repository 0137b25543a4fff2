"""Malformed input found by the fuzz run of issue 20: each is one `exante: error:` line,
never an internal error, and nothing is written."""

from __future__ import annotations

import os

import pytest

from predictor.cli.main import main
from predictor.fit.calibrate import worse_warnings


def _run(argv, capsys):
    rc = main([str(a) for a in argv])
    err = capsys.readouterr().err.strip().splitlines()
    return rc, err


@pytest.fixture
def files(tmp_path):
    (tmp_path / "empty.csv").write_bytes(b"")
    (tmp_path / "binary.csv").write_bytes(bytes(range(256)) * 8)
    (tmp_path / "zeus").mkdir()
    (tmp_path / "zeus" / "summary_power_a40.csv").write_bytes(b"")
    (tmp_path / "deep.toml").write_text("a = " + "[" * 3000 + "]" * 3000 + "\n")
    (tmp_path / "tiny.csv").write_text(
        "model,input,batch,mode,dtype,optimizer,time_s,energy_j\n"
        '"mlp:in=10,depth=1,width=10",10,32,inference,fp32,,1e-30,1e-28\n')
    return tmp_path


MLP = ["mlp:in=10,depth=1,width=10", "--input", "10"]


@pytest.mark.parametrize("argv, says", [
    (["calibrate", "--hardware", "a100", "--runs", "{d}/binary.csv", "--out", "{d}/o"],
     "cannot read"),
    (["calibrate", "--hardware", "a100", "--runs", "{d}/empty.csv", "--out", "{d}/o"],
     "has no rows"),
    (["calibrate", "--hardware", "a100", "--runs", "{d}/tiny.csv", "--out", "{d}/o"],
     "implausible"),
    (["calibrate", "--hardware", "a100", "--runs", "{d}/tiny.csv", "--out", "/proc/no/o"],
     "cannot write to --out"),
    (["bench", "zeus", "{d}/zeus"], "cannot read"),
    (["bench", "ecnas", "--train", "{d}/binary.csv", "--test", "{d}/binary.csv"],
     "lacks column"),
    (["estimate", "--scenario", "{d}/deep.toml"], "too deeply"),
    (["estimate", *MLP, "--epochs", "1e300", "--dataset-size", "1e6", "--batch", "32"],
     "accepted: 1 to 1e+06"),
    (["estimate", *MLP, "--epochs", "1e200", "--dataset-size", "1e200", "--batch", "32"],
     "accepted"),
    (["estimate", *MLP, "--inferences", "1e308"], "accepted: 1 to 1e+18"),
    (["estimate", *MLP, "--inferences", "10", "--pue", "1e308"], "accepted: 1 (GPU energy only) to 3"),
    (["estimate", *MLP, "--inferences", "10", "--intensity", "1e308"], "accepted: 0 to 2000"),
])
def test_fuzz_inputs_are_one_line_errors(files, capsys, argv, says):
    rc, err = _run([a.format(d=files) for a in argv], capsys)
    assert rc == 2, err
    assert len(err) == 1 and err[0].startswith("exante: error: ") and says in err[0], err
    assert not (files / "o").exists()


def test_calibrate_says_when_it_made_the_error_worse():
    assert worse_warnings({"time": 27.0, "energy": 26.0}, {"time": 20.0, "energy": 25.0}) == []
    assert worse_warnings({"time": 10.5, "energy": 11.1}, {"time": 10.6, "energy": 10.5}) == []
    (line,) = worse_warnings({"time": 27.0, "energy": 26.0}, {"time": 31.0, "energy": 37.0})
    assert "worse" in line and "time 27.0 % -> 31.0 %" in line and "energy 26.0 % -> 37.0 %" in line


def test_profile_write_leaves_no_partial_layers_csv(tmp_path):
    from profiling.dataset import schema
    from profiling.errors import ExanteError
    from profiling.measure.profiler import ProfileResult

    def result(model_row):
        return ProfileResult(layer_rows=[dict.fromkeys(schema.LAYER_COLUMNS, 1)],
                             model_row=model_row, reference_rows=[], unsupported=[], skipped=[],
                             reused_keys=[], env={}, session_id="s1", mode="inference",
                             dtype="fp32", optimizer=None, hardware="cpu-test")

    good = dict.fromkeys(schema.MODEL_COLUMNS, 1)
    bad = {**good, "not_a_column": 1}                 # refused by models.csv, after layers.csv
    with pytest.raises(ExanteError):
        result(bad).write(tmp_path)
    assert sorted(os.listdir(tmp_path)) == []        # nothing half-written
    assert result(good).write(tmp_path) == {"layers": 1, "models": 1}
    before = (tmp_path / "layers.csv").read_bytes()
    with pytest.raises(ExanteError):
        result(bad).write(tmp_path)
    assert (tmp_path / "layers.csv").read_bytes() == before     # the old rows, unchanged
    assert len(schema.model_table(tmp_path).read(raw=True)) == 1


def test_profile_out_with_a_foreign_table_is_refused_before_measuring(tmp_path, capsys):
    (tmp_path / "models.csv").write_text("foo,bar\n")
    rc, err = _run(["profile", "mlp:in=4,depth=1,width=4", "--input", "4", "--batch", "2",
                    "--meter", "estimated", "--rated-power-w", "100", "--device", "cpu",
                    "--out", tmp_path], capsys)
    assert rc == 2 and len(err) == 1 and "different header" in err[0], err
    assert sorted(os.listdir(tmp_path)) == ["models.csv"]


def test_fit_never_writes_the_shipped_artifact_unless_asked(tmp_path, monkeypatch, capsys):
    import predictor.fit.hardware_fit as fit

    seen = []
    monkeypatch.setattr(fit, "fit_hardware",
                        lambda hw, datasets_dir, out_dir, quick: seen.append(out_dir) or {})
    monkeypatch.chdir(tmp_path)
    assert main(["fit", "--hardware", "h100", "--quick"]) == 0
    assert main(["fit", "--hardware", "h100", "--write-package"]) == 0
    assert seen == ["exante-artifacts", None]          # None: the package's folder
    assert "into exante-artifacts" in capsys.readouterr().err    # says where (progress on)
    rc, err = _run(["fit", "--out", "x", "--write-package"], capsys)
    assert rc == 2 and "not both" in err[0]
