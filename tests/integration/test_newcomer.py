"""The newcomer's path (issue 20): the zoos beside the CPU torch, quick refusals, one-line
warnings, progress only where asked for."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import warnings

import pytest

from predictor.cli import output as cli_output
from predictor.cli.main import main
from predictor.cli.progress import bar, set_enabled
from profiling.errors import ExanteError
from profiling.input_spec import check_ref_syntax, zoo_model_names

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _python(code: str, timeout: int = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                          text=True, timeout=timeout)


@pytest.mark.skipif(importlib.util.find_spec("transformers") is None,
                    reason="transformers not installed")
@pytest.mark.slow
def test_bert_builds_in_a_fresh_process_beside_whatever_torchvision():
    # a fresh interpreter: nothing imported torchvision before (PyPI's torchvision beside the
    # CPU torch fails its import with "operator torchvision::nms does not exist")
    r = _python("from predictor.bench.hf_models import build_hf_model\n"
                "m = build_hf_model('bert-base-uncased', device='meta')\n"
                "from profiling.model_refs import import_transformers\n"
                "import_transformers()\n"
                "from transformers import BertModel\n"
                "print(sum(p.numel() for p in m.parameters()))\n")
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stdout.strip() == "109482240"


@pytest.mark.parametrize("argv, says", [
    (["predict", "mlp:in=100,depth=2,width=10", "--input", "100", "--batch", "-1"],
     "--batch must be a positive integer"),
    (["predict", "mlp:in=100,depth=2,width=10", "--input", "3xa", "--batch", "2"],
     "malformed --input"),
    (["predict", "mlp:in=100,depth=0,width=10", "--input", "100", "--batch", "2"],
     "mlp needs positive"),
    (["predict", "torchvision:resnt50", "--input", "3x224x224", "--batch", "2"],
     "close matches: resnet50"),
    (["predict", "timm:resnt50", "--input", "3x224x224", "--batch", "2"],
     "close matches: resnet50"),
    (["features", "nocolon", "--input", "3", "--batch", "2"], "unknown MODEL_REF"),
    (["predict", "hf:bertt", "--input", "16", "--batch", "2"], "close matches: bert"),
    (["compare", "mlp:in=1,depth=1,width=1", "mlp:in=1,depth=2,width=1", "--input", "1",
      "--batch", "1", "--plot", ""], "--plot needs a file name"),
    (["compare", "mlp:in=1,depth=1,width=1", "mlp:in=1,depth=2,width=1", "--input", "1",
      "--batch", "1", "--plot", "/proc/no/such.svg"], "cannot write to --plot"),
    (["estimate", "mlp:in=1,depth=1,width=1", "--input", "1", "--epochs", "-10"],
     "--epochs"),
    (["bench", "zeus", "/no/such/folder"], "is not a folder"),
    (["bench", "irene", "/no/such/folder"], "is not a folder"),
    (["calibrate", "--hardware", "a100", "--runs", "/no/such.csv", "--out", "/tmp"],
     "no such file"),
])
def test_refused_in_one_line_before_torch_is_imported(argv, says):
    zoo = {"torchvision": "torchvision", "timm": "timm", "hf": "transformers"}.get(
        argv[1].split(":")[0])
    if zoo and importlib.util.find_spec(zoo) is None:
        pytest.skip("zoo not installed")
    r = _python("import sys\nfrom predictor.cli.main import main\nrc = main(sys.argv[1:])\n"
                "print('torch' in sys.modules)\nsys.exit(rc)\n"
                .replace("sys.argv[1:]", repr(argv)), timeout=60)
    assert r.returncode == 2, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("exante: error: ") and says in lines[0], lines
    assert r.stdout.strip() == "False"          # refused before torch was imported


def test_zoo_names_read_without_import_match_the_zoo():
    if importlib.util.find_spec("torchvision") is None:
        pytest.skip("torchvision not installed")
    from profiling.model_refs import import_torchvision

    tv = import_torchvision()
    assert zoo_model_names("torchvision") == frozenset(tv.models.list_models())
    if importlib.util.find_spec("timm") is not None:
        import timm

        assert set(timm.list_models()) <= zoo_model_names("timm")
        check_ref_syntax("timm:resnet50.a1_in1k")          # a pretrained tag is accepted
    with pytest.raises(ExanteError, match="close matches"):
        check_ref_syntax("torchvision:resnet5O")
    if importlib.util.find_spec("transformers") is not None:
        from profiling.input_spec import hf_model_types
        from profiling.model_refs import import_transformers

        import_transformers()
        from transformers import CONFIG_MAPPING

        assert set(CONFIG_MAPPING.keys()) <= hf_model_types()
        check_ref_syntax("hf:llama,num_hidden_layers=2")


def test_warnings_print_once_in_one_line_without_source(capsys):
    old = warnings.showwarning, warnings.formatwarning
    try:
        with warnings.catch_warnings():
            cli_output.setup()
            warnings.warn("something to know", UserWarning, stacklevel=1)
            warnings.warn("something to know", UserWarning, stacklevel=1)
            warnings.warn("`torch.jit.script` is deprecated. Please switch to `torch.compile` "
                          "or `torch.export`.", FutureWarning, stacklevel=1)
            warnings.warn("`torch.jit.script` is deprecated.", DeprecationWarning, stacklevel=1)
            with cli_output.held_warnings() as caught:
                warnings.warn("stated in the result", UserWarning, stacklevel=1)
                warnings.warn("not stated", UserWarning, stacklevel=1)
            cli_output.emit(caught, already_said="... stated in the result ...")
    finally:
        warnings.showwarning, warnings.formatwarning = old
        set_enabled(False)
    err = capsys.readouterr().err.splitlines()
    assert err == ["exante: warning: something to know", "exante: warning: not stated"]


def test_fvcore_import_prints_no_jit_deprecation():
    r = _python("from predictor import cli_output\ncli_output.setup()\n"
                "import warnings\nwarnings.simplefilter('default')\ncli_output.setup()\n"
                "import profiling.features.families\nimport fvcore.nn\n")
    assert r.returncode == 0, r.stderr
    assert "jit" not in r.stderr, r.stderr


def test_progress_bar_goes_to_stderr_only_when_on(capsys):
    try:
        set_enabled(False)
        assert list(bar(range(3), desc="x")) == [0, 1, 2]
        assert capsys.readouterr().err == ""
        set_enabled(True)
        assert list(bar(range(3), desc="counting")) == [0, 1, 2]
        out = capsys.readouterr()
        assert out.out == "" and "exante: counting" in out.err
    finally:
        set_enabled(False)


def test_global_flags_are_accepted_anywhere(capsys):
    rc = main(["predict", "mlp:in=4,depth=1,width=4", "--input", "4", "--batch", "2", "--json",
               "--quiet", "-v"])
    assert rc == 0
    out = capsys.readouterr()
    assert out.out.lstrip().startswith("{")
    assert "exante: info: building mlp:in=4,depth=1,width=4 on the meta device" in out.err
    assert main(["predict", "mlp:in=4,depth=1,width=4", "--input", "4", "--batch", "2",
                 "--json"]) == 0
    assert "exante: info" not in capsys.readouterr().err          # INFO only with -v
    set_enabled(False)


def test_help_texts_name_every_scheme_and_show_a_scenario_that_loads(capsys):
    import tomllib

    from predictor.carbon.lifecycle import scenario_from_dict

    assert main(["predict", "--help"]) == 0
    text = " ".join(capsys.readouterr().out.split())
    for word in ("torchvision:NAME", "timm:NAME", "hf:MODEL_TYPE", "mlp:", "mlpseq:",
                 "convstack:", "encoder:", "file.py:factory", "package.module:factory",
                 "train_step: zero_grad", "the GPU to predict for"):
        assert word in text, word
    assert main(["estimate", "--help"]) == 0
    out = capsys.readouterr().out
    example = out[out.index("scenario file (--scenario plan.toml)"):]
    toml = "\n".join(ln[2:] for ln in example.splitlines() if ln.startswith("  "))
    scenario = scenario_from_dict(tomllib.loads(toml))       # the example in the help runs
    assert scenario.training[0].epochs == 10 and scenario.inference.requests == 10**6
    assert "training/inference energy ratio" in out


def test_experiment_scripts_write_outside_the_repository_unless_asked(tmp_path, monkeypatch):
    import argparse
    import re
    from pathlib import Path

    sys.path.insert(0, ROOT)
    from experiments.outputs import add_output_args, output_dir

    monkeypatch.setenv("EXANTE_RESULTS", str(tmp_path / "results"))
    tracked = tmp_path / "tracked"
    ap = argparse.ArgumentParser()
    add_output_args(ap, tracked)
    assert output_dir(ap.parse_args([]), tracked, "x") == str(tmp_path / "results" / "x")
    assert output_dir(ap.parse_args(["--write-results"]), tracked, "x") == str(tracked)
    assert output_dir(ap.parse_args(["--out", str(tmp_path / "o")]), tracked, "x") == \
        str(tmp_path / "o")
    # these scripts default to a folder outside the repository (not --out ROOT/...)
    scripts = [f"experiments/seed004/{n}.py" for n in
               ("table6", "overhead", "dense_vs_conv", "linearity", "proxies")]
    scripts += ["experiments/nas/digits_search.py", "experiments/nas/bench_objective.py",
                "experiments/external/run.py"]
    for path in (Path(ROOT, s) for s in scripts):
        text = path.read_text(encoding="utf-8")
        assert "add_output_args" in text or "default_root" in text, path
        bad = re.findall(r'add_argument\(\s*"--out"[^)]*default=(?:str\()?(?:ROOT|"experiments)',
                         text)
        assert not bad, f"{path}: --out defaults into the repository"


def _readme():
    with open(os.path.join(ROOT, "README.md"), encoding="utf-8") as fh:
        return fh.read()


@pytest.mark.slow
def test_readme_python_snippet_runs_as_written():
    import re

    snippet = re.search(r"```python\n(.*?)```", _readme(), re.S).group(1)
    r = subprocess.run([sys.executable, "-c", snippet], cwd=ROOT, capture_output=True,
                       text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    assert " J [" in r.stdout and "layer configs" in r.stdout


def test_readme_command_list_names_files_that_exist_and_parses():
    import re
    import shlex

    from predictor.cli.main import build_parser

    block = re.search(r"## What you can do\n+```bash\n(.*?)```", _readme(), re.S).group(1)
    lines = [ln.split("  #")[0].strip() for ln in block.replace("\\\n", " ").splitlines()]
    for line in filter(None, lines):
        words = shlex.split(line)
        assert words[0] == "exante", line
        build_parser(words[1:]).parse_args(words[1:])          # every line is valid syntax
        for w in words:
            if w.startswith("examples/"):
                assert os.path.exists(os.path.join(ROOT, w.split(":")[0])), (line, w)


def test_readme_says_how_to_get_the_pinned_cpu_torch_elsewhere():
    import re

    text = _readme()
    block = re.search(r"```bash\n(.*?)```", text, re.S).group(1)
    pins = set(re.findall(r"torch==([\d.]+)", block))
    assert len(pins) == 1
    cpu = re.search(r"pip install torch==([\d.]+) --index-url\s+https://download\.pytorch\.org/whl/cpu",
                    text)
    assert cpu and cpu.group(1) in pins               # the same torch as the two commands


def test_ecnas_split_is_written_for_the_readme_example(tmp_path):
    import importlib.util as iu

    import pandas as pd

    spec = iu.spec_from_file_location("external_run", os.path.join(ROOT, "experiments/external/run.py"))
    mod = iu.module_from_spec(spec)
    spec.loader.exec_module(mod)
    (tmp_path / "ecnas_7v").mkdir()
    pd.DataFrame({"ops_json": ["[]"] * 20, "adjacency_json": ["[]"] * 20,
                  "energy_kWh_carbontracker": range(20)}).to_csv(
        tmp_path / "ecnas_7v" / "ecnas_7v_measured.csv", index=False)
    assert mod.main(["--extdata", str(tmp_path), "--ecnas-split", str(tmp_path / "split")]) == 0
    tr, te = (pd.read_csv(tmp_path / "split" / f) for f in ("train.csv", "test.csv"))
    assert (len(tr), len(te)) == (14, 4) and not set(tr["energy_kWh_carbontracker"]) & \
        set(te["energy_kWh_carbontracker"])
    with pytest.raises(SystemExit) as exc:
        mod.main(["--extdata", str(tmp_path / "missing")])
    assert exc.value.code == 2
