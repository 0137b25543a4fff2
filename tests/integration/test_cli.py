"""The `exante` command line: user errors are one line and exit code 2."""

import json
import subprocess
import sys

import pytest

from predictor.cli.main import main


def run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize("argv,needle", [
    (["features", "nosuch:thing", "--input", "10", "--batch", "2"], "accepted forms"),
    (["features", "not a ref", "--input", "10", "--batch", "2"], "unknown MODEL_REF"),
    (["features", "mlp:in=10,depth=2,width=8", "--input", "3xq", "--batch", "2"], "malformed --input"),
    (["features", "mlp:in=10,depth=2,width=8", "--input", "10", "--batch", "0"], "positive integer"),
    (["features", "mlp:in=10,depth=2,width=8", "--input", "10", "--batch", "-4"], "positive integer"),
    (["predict", "mlp:in=10,depth=2,width=8", "--input", "10", "--batch", "abc"], "positive integer"),
    (["predict", "mlp:in=10,depth=2,width=8", "--input", "10", "--batch", "2", "--hardware", "tpu-v9"], "tpu-v9"),
    (["sweep", "no-such-sweep", "--out", "unused"], "unknown sweep"),
    (["estimate", "--epochs", "3"], "MODEL_REF"),
])
def test_user_errors_are_one_line_exit_2(capsys, argv, needle):
    code, out, err = run(capsys, *argv)
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("exante: error:") and needle in lines[0], err
    assert "Traceback" not in err


def test_missing_optional_package_exit_2(capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "torchvision", None)  # import raises ImportError
    code, _, err = run(capsys, "features", "torchvision:resnet18", "--input", "3x32x32", "--batch", "1")
    assert code == 2 and "exante[models]" in err


def test_features_table_for_mlp(capsys):
    code, out, _ = run(capsys, "features", "mlp:in=100,depth=3,width=64,out=1", "--input", "100",
                       "--batch", "32", "--json")
    assert code == 0
    table = json.loads(out)
    linear = [r for r in table["rows"] if r["type"] == "Linear"]
    # three distinct Linear shapes: 100->64, 64->64 (x2), 64->1
    assert sorted(r["count"] for r in linear) == [1, 1, 2]
    macs = sum(r["count"] * r["macs"] for r in linear)
    assert macs == 32 * (100 * 64 + 2 * 64 * 64 + 64 * 1)


def test_console_script_help_runs():
    res = subprocess.run([sys.executable, "-m", "predictor.cli.main", "--help"], capture_output=True, text=True)
    assert res.returncode == 0 and "predict" in res.stdout and "estimate" in res.stdout


@pytest.mark.parametrize("argv", [["--help"], ["predict", "--help"], ["estimate", "--help"],
                                  ["sweep", "--help"], ["calc", "--help"]])
def test_help_does_not_import_torch(argv):
    code = ("import sys\nfrom predictor.cli.main import main\n"
            f"assert main({argv!r}) == 0\n"
            "heavy = [m for m in ('torch', 'sklearn', 'scipy', 'pandas') if m in sys.modules]\n"
            "print('HEAVY', heavy)")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    assert "HEAVY []" in res.stdout


def test_listed_sub_commands_match_their_modules():
    """The help shown for a sub-command that is not imported is the module's own."""
    import argparse

    from predictor.cli.main import EXTERNAL_COMMANDS, build_parser

    full = build_parser()             # imports every sub-command module
    sub = next(a for a in full._actions if isinstance(a, argparse._SubParsersAction))
    helps = {c.dest: c.help for c in sub._choices_actions}
    for name, (_, _, listed) in EXTERNAL_COMMANDS.items():
        assert helps[name] == listed, name


def test_list_hardware_on_the_commands_that_take_a_gpu(capsys):
    """`exante predict --list-hardware` (and estimate/compare/calibrate) print the catalogue,
    like `exante calc --list-hardware`, without needing the other arguments."""
    from predictor.cli.main import main
    for cmd in ("predict", "estimate", "compare", "calibrate"):
        assert main([cmd, "--list-hardware"]) == 0
        out = capsys.readouterr().out
        assert "rtx4090" in out and "h100" in out and out.splitlines()[0].startswith("key")


def test_verbose_logs_exante_modules_at_info(capsys):
    """-v turns on INFO of exante's module loggers (named by __name__: predictor.cli.main,
    predictor.search.compare, ...); without it nothing is logged."""
    from predictor.cli.main import main

    assert main(["-v", "calc", "--device", "v100", "--hours", "1"]) == 0
    err = capsys.readouterr().err
    assert "exante: info: arguments checked; running calc" in err
    assert main(["calc", "--device", "v100", "--hours", "1"]) == 0
    assert "info:" not in capsys.readouterr().err
