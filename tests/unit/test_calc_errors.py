"""Nonsense LLM keywords beside hours are refused with their range (issue 20 follow-up), the
serving inputs are checked, and 'no fitted model' names close catalogue matches."""

import json

import pytest

from predictor.artifacts import load_artifact
from predictor.carbon.calc import calc, serving
from predictor.cli.main import main
from profiling.errors import ExanteError

RANGES = {"tp": "an integer in 1..8", "pp": "an integer in 1..8", "dp": "an integer in 1..8",
          "mfu": "a number in (0, 1]"}


@pytest.mark.parametrize("name", ["tp", "pp", "dp", "mfu"])
@pytest.mark.parametrize("value", ["abc", "0", "-1", "1e308", "nan", "inf", "2.5"])
def test_nonsense_parallel_and_mfu_refused_with_hours(name, value):
    if name == "mfu" and value == "2.5":
        value = "1.5"
    with pytest.raises(ExanteError) as ei:
        calc("h100", count=8, hours=10, **{name: value})
    msg = str(ei.value)
    assert msg.startswith(f"{name} must be {RANGES[name]}") and repr(value) in msg
    assert "\n" not in msg
    with pytest.raises(ExanteError, match=RANGES[name].replace("(", r"\(").replace("]", r"\]")):
        calc("h100", count=8, gpu_hours=10, **{name: value})


def test_degree_above_count_refused_in_training_mode_too():
    with pytest.raises(ExanteError, match=r"tp must be an integer in 1\.\.8"):
        calc("h100", count=8, params=1e9, tokens=1e9, tp=16)
    with pytest.raises(ExanteError, match=r"tp must be an integer in 1\.\.8 .*, got 1e\+308"):
        calc("h100", count=8, params=1e9, tokens=1e9, tp=1e308)


def test_valid_but_unused_llm_values_are_noted_not_silent():
    r = calc("h100", count=8, hours=10, tp=2, mfu=0.4)
    assert r.device_hours == 80
    assert any(n.startswith("tp, mfu unused") for n in r.notes)
    plain = calc("h100", count=8, hours=10)
    assert not any("unused" in n for n in plain.notes)


@pytest.mark.parametrize("kwargs,match", [
    (dict(layers="x"), "layers must be a whole number > 0"),
    (dict(seq_len=0), "seq_len must be a whole number > 0"),
    (dict(global_batch_tokens=-1), "global_batch_tokens must be a finite number > 0"),
    (dict(sharding="zero9"), "sharding must be one of"),
    (dict(mfu_flavour="best"), "mfu_flavour must be one of published, training"),
    (dict(interconnect="nvlink9"), "unknown interconnect 'nvlink9'"),
    (dict(interconnect="nvlink3,ib-hdr,ib-ndr"), "INTRA\\[,INTER\\]"),
    (dict(seqlen=2048), "unknown keyword\\(s\\) seqlen"),
])
def test_other_llm_keywords_checked_with_hours(kwargs, match):
    with pytest.raises(ExanteError, match=match):
        calc("h100", count=8, hours=1, **kwargs)


@pytest.mark.parametrize("flag,value,fragment", [
    ("--tp", "abc", "tp must be an integer in 1..8"), ("--pp", "0", "pp must be an integer"),
    ("--dp", "-1", "dp must be an integer in 1..8"),
    ("--mfu", "1e308", "mfu must be a number in (0, 1]"),
])
def test_cli_refuses_them_in_one_line(capsys, flag, value, fragment):
    rc = main(["calc", "--device", "h100", "--count", "8", "--hours", "10", flag, value])
    err = capsys.readouterr().err
    assert rc == 2 and err.count("\n") == 1 and err.startswith("exante: error: ")
    assert fragment in err


@pytest.mark.parametrize("kwargs,match", [
    (dict(concurrency="abc"), "concurrency must be a finite number > 0"),
    (dict(concurrency=0), "concurrency must be"),
    (dict(concurrency=32, requests="1e308"), "non-finite"),
    (dict(concurrency=32, prompt_tokens=-5), "prompt_tokens must be a finite number >= 0"),
    (dict(concurrency=32, prompt_tokens=0, output_tokens=0), "both 0"),
    (dict(concurrency=32, active_params=9e9), "at most params"),
    (dict(concurrency=32, count=0), "count must be a positive integer"),
    (dict(concurrency=32, weights="int3"), "unknown weight precision"),
    (dict(concurrency=32, pue="0.5"), "pue must be >= 1"),
])
def test_serving_inputs_checked(kwargs, match):
    with pytest.raises(ExanteError, match=match):
        serving(8e9, "h100", **kwargs)


def test_serving_cli_refuses_a_training_duration(capsys):
    rc = main(["calc", "--params", "8e9", "--device", "h100", "--concurrency", "32",
               "--hours", "3"])
    err = capsys.readouterr().err
    assert rc == 2 and "takes no --hours" in err and err.count("\n") == 1
    assert main(["calc", "--params", "8e9", "--device", "h100", "--concurrency", "32",
                 "--requests", "10", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out == json.loads(json.dumps(serving(8e9, "h100", 1, 32, requests=10), default=str))


def test_missing_fitted_model_names_close_matches(tmp_path):
    with pytest.raises(ExanteError) as ei:
        load_artifact("h1000")
    msg = str(ei.value)
    assert "no fitted model for hardware 'h1000' (did you mean h100, " in msg
    assert "exante calc --list-hardware" in msg and "\n" not in msg
    with pytest.raises(ExanteError, match=r"'xyzzy' \(no catalogue device has a close name\)"):
        load_artifact("xyzzy")
    (tmp_path / "x.json").write_text("{}")                       # a folder holding an artifact
    (tmp_path / "x.joblib").write_bytes(b"")
    with pytest.raises(ExanteError, match="a100-80gb is in the hardware catalogue but has no "
                                          "fitted model here\\); available: .*x;"):
        load_artifact("a100-80gb", tmp_path)


def test_predict_cli_hardware_typo_suggests(capsys):
    rc = main(["predict", "mlp:in=10,depth=2,width=8,out=1", "--input", "10", "--batch", "4",
               "--hardware", "h1000"])
    err = capsys.readouterr().err
    assert rc == 2 and err.count("\n") == 1 and "did you mean h100" in err
    assert "exante calc --list-hardware" in err


def test_absurd_counts_and_hours_are_refused_not_printed_as_inf():
    """1e30 devices or 1e308 hours used to print 7e59 MWh or 'inf MWh' (issue 20 fuzz)."""
    import pytest

    from predictor.carbon.calc import calc
    from profiling.errors import ExanteError
    with pytest.raises(ExanteError, match="count must be a positive integer <= 1e\\+07"):
        calc("h100", count=1e30, hours=1)
    with pytest.raises(ExanteError, match="hours must be a finite number > 0 and <= 1e\\+06"):
        calc("h100", count=8, hours=1e308)
    with pytest.raises(ExanteError, match="gpu_hours"):
        calc("h100", gpu_hours=1e300)
    assert calc("h100", count=8, hours=36).device_hours == 288
