"""Repository contracts: CI runs the README's test command; the README's main command is real."""

import os
import re
import shlex

from predictor.cli.main import build_parser

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _read(*parts):
    with open(os.path.join(ROOT, *parts), encoding="utf-8") as fh:
        return fh.read()


def _readme_commands():
    block = re.search(r"```bash\n(.*?)```", _read("README.md"), re.S).group(1)
    return [line for line in block.splitlines() if line.strip() and not line.startswith("#")]


def test_ci_runs_the_readme_test_command():
    main_cmd, test_cmd = _readme_commands()[:2]
    assert "pytest" in test_cmd
    assert test_cmd in _read(".ci", "run") or "readme_commands.py README.md" in _read(".ci", "run")


def test_ci_types_both_readme_commands_in_order_as_written():
    """.ci/run runs exactly the lines that .ci/readme_commands.py reads from the README."""
    import subprocess
    import sys
    out = subprocess.run([sys.executable, os.path.join(ROOT, ".ci", "readme_commands.py"),
                          os.path.join(ROOT, "README.md")], capture_output=True, text=True,
                         check=True).stdout.splitlines()
    assert out == _readme_commands()
    assert len(out) == 2 and "exante " in out[0] and "pytest" in out[1]
    ci = _read(".ci", "run")
    assert "readme_commands.py README.md" in ci and 'bash -euo pipefail -c "${README_COMMANDS[$i]}"' in ci


def test_readme_main_command_parses_with_the_cli():
    main_cmd = _readme_commands()[0]
    exante_part = main_cmd.split("&&", 1)[1].split()
    assert exante_part[0] == "exante"
    args = build_parser().parse_args(shlex.split(" ".join(exante_part[1:])))
    assert args.command == "estimate" and args.model_ref and args.epochs > 0


def test_ci_runs_ruff_and_mypy_installed_by_the_test_extra():
    """The lint and type checks run after the README's commands, from the [test] extra."""
    try:
        import tomllib
    except ModuleNotFoundError:
        import tomli as tomllib
    ci = _read(".ci", "run").splitlines()
    steps = [line.strip() for line in ci if line.strip() and not line.lstrip().startswith("#")]
    readme_loop = next(i for i, s in enumerate(steps) if "README_COMMANDS[$i]" in s)
    assert "ruff check ." in steps[readme_loop:] and "mypy" in steps[readme_loop:]
    extra = tomllib.loads(_read("pyproject.toml"))["project"]["optional-dependencies"]["test"]
    assert any(d.startswith("ruff") for d in extra) and any(d.startswith("mypy") for d in extra)
    assert "[test]" in _readme_commands()[1]


def test_tests_are_split_into_unit_and_integration():
    top = {n for n in os.listdir(os.path.join(ROOT, "tests")) if n.startswith("test_")}
    assert not top, f"tests belong in tests/unit or tests/integration: {sorted(top)}"
    for part in ("unit", "integration"):
        assert any(n.startswith("test_") for n in os.listdir(os.path.join(ROOT, "tests", part)))
