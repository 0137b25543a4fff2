"""Bad input on the command line: one line on stderr, exit code 2, nothing written (issue 11).

Every case runs in a fresh folder holding a few fixture files; the folder's tree (names,
sizes, modes) must be the same after the command as before, whatever the command was asked to
write (``--out`` is pointed inside it).
"""

import io
import os
import stat
import sys
import textwrap
import types

import pytest
import torch

from predictor.cli.main import main
from profiling.errors import ExanteError

MLP = "mlp:in=4,depth=1,width=8,out=2"
DRY = ["--meter", "estimated", "--rated-power-w", "100", "--device", "cpu"]

FIXTURES = {
    "bad_import.py": "import torch\nraise RuntimeError('boom at import')\n",
    "bad_syntax.py": "def build(:\n    pass\n",
    "factories.py": textwrap.dedent("""\
        import torch
        def raises():
            print("factory called")
            raise ValueError("width must be even")
        def not_a_module():
            return 42
        def embedding():
            return torch.nn.Embedding(100, 8)
        """),
    "plan.toml": 'model = "%s"\ninput = "4"\n[inference]\nrequests = 10\n' % MLP,
    "bad_input.toml": 'model = "%s"\ninput = "3xq"\n[inference]\nrequests = 10\n' % MLP,
    "batch0.toml": ('model = "%s"\ninput = "4"\n[[training]]\nepochs = 1\ndataset_size = 10\n'
                    'batch = 0\n' % MLP),
    "a_file": "not a folder\n",
}


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    for name, text in FIXTURES.items():
        (tmp_path / name).write_text(text)
    (tmp_path / "a_folder").mkdir()
    monkeypatch.chdir(tmp_path)
    return tmp_path


def tree(root):
    out = {}
    for folder, dirs, files in os.walk(root):
        dirs[:] = [d for d in dirs if d != "__pycache__"]
        for name in dirs + files:
            p = os.path.join(folder, name)
            st = os.lstat(p)
            size = st.st_size if name in files else 0
            out[os.path.relpath(p, root)] = (stat.S_IMODE(st.st_mode), size)
    return out


NO_GPU = pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without a GPU")
HAS_PROC = pytest.mark.skipif(not os.path.isdir("/proc/self"), reason="needs Linux /proc")

CASES = [
    # user code: import failure, syntax error, a factory that raises (called once), wrong return
    (["features", "bad_import.py:build", "--input", "4", "--batch", "2"],
     "'bad_import.py' failed to import: RuntimeError: boom at import (bad_import.py, line 2)"),
    (["features", "bad_syntax.py:build", "--input", "4", "--batch", "2"],
     "'bad_syntax.py' has a syntax error at line 1"),
    (["predict", "factories.py:raises", "--input", "4", "--batch", "2"],
     "raises() raised ValueError: width must be even (factories.py, line 4)"),
    (["features", "factories.py:not_a_module", "--input", "4", "--batch", "2"],
     "expected a torch.nn.Module"),
    (["features", "no_such_pkg.models:build", "--input", "4", "--batch", "2"],
     "cannot import 'no_such_pkg.models'"),
    # --out: a file, inside a file, an unwritable place -- before anything is measured
    (["profile", MLP, "--input", "4", "--batch", "2", *DRY, "--out", "a_file"], "is a file"),
    (["profile", MLP, "--input", "4", "--batch", "2", *DRY, "--out", "a_file/rows"],
     "which is a file"),
    pytest.param(["profile", MLP, "--input", "4", "--batch", "2", *DRY, "--out",
                  "/proc/exante-test/rows"], "cannot write to --out", marks=HAS_PROC),
    (["sweep", "layers-smoke", "--out", "a_file", "--meter", "replay"], "is a file"),
    (["fit", "--hardware", "h100", "--out", "a_file"], "is a file"),
    # devices, scenario paths, sizes that overflow a tensor
    (["estimate", "--scenario", "a_folder"], "is a folder"),
    (["profile", MLP, "--input", "4", "--batch", "2", "--meter", "estimated", "--rated-power-w",
      "100", "--device", "tpu"], "unknown --device 'tpu'"),
    pytest.param(["profile", MLP, "--input", "4", "--batch", "2", "--meter", "estimated",
                  "--rated-power-w", "100", "--device", "cuda"], "none is visible", marks=NO_GPU),
    pytest.param(["sweep", "layers-smoke", "--out", "new_dataset"], "no energy meter available",
                 marks=NO_GPU),
    (["features", MLP, "--input", "4", "--batch", "99999999999999999999999"],
     "more than a torch tensor can hold"),
    (["predict", MLP, "--input", "99999999999999999999x4", "--batch", "2"],
     "more than a torch tensor can hold"),
    # no silent coercion
    (["estimate", MLP, "--input", "4", "--inferences", "10", "--gpus", "0"],
     "--gpus: must be a positive integer, got '0'"),
    (["estimate", MLP, "--input", "4", "--inferences", "10", "--inference-batch", "0"],
     "--inference-batch: must be a positive integer"),
    (["sweep", "layers-smoke", "--out", "new_dataset", "--limit", "0"],
     "--limit: must be a positive integer"),
    (["sweep", "layers-smoke", "--out", "new_dataset", "--time-budget-s", "-1"],
     "--time-budget-s: must be a finite number > 0"),
    (["estimate", "--scenario", "plan.toml", "--epochs", "3"], "cannot be combined with --scenario"),
    (["estimate", "--scenario", "plan.toml", "--inference-batch", "8"],
     "--inference-batch cannot be combined"),
    # a TOML key's error names the key (and the file), not the CLI flag
    (["estimate", "--scenario", "bad_input.toml"], "the top level in bad_input.toml: input must be"),
    (["estimate", "--scenario", "batch0.toml"],
     "[[training]] #1 in batch0.toml: batch must be a positive integer, got 0"),
    (["sweep", "layers-smoke", "--out", "new_dataset", "--backend", "dask", "--scheduler",
      "tcp://127.0.0.1:1"], "dask"),
    (["features", MLP, "--input", "4", "--batch", "2", "--vocab", "10", "--input-dtype",
      "float32"], "--vocab gives int64 token ids"),
    (["features", "--input", "4", "--batch", "2"], "the following arguments are required"),
]


@pytest.mark.parametrize("argv,needle", CASES)
def test_bad_input_one_line_exit_2_nothing_written(workdir, capsys, argv, needle):
    before = tree(workdir)
    code = main(list(argv))
    out, err = capsys.readouterr()
    assert code == 2, (code, err)
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("exante: error:") and needle in lines[0], lines[0]
    assert "Traceback" not in err
    assert tree(workdir) == before, "the command wrote into the folder"


def test_failing_factory_is_called_once(workdir, capsys):
    assert main(["features", "factories.py:raises", "--input", "4", "--batch", "2"]) == 2
    assert capsys.readouterr().out.count("factory called") == 1


def test_debug_shows_the_traceback_anywhere_on_the_line(workdir, capsys):
    assert main(["features", "bad_import.py:build", "--input", "4", "--batch", "2",
                 "--debug"]) == 2
    err = capsys.readouterr().err
    assert "Traceback" in err and "boom at import" in err
    assert err.strip().splitlines()[-1].startswith("exante: error:")


def test_internal_error_is_one_line_exit_1(workdir, capsys, monkeypatch):
    import predictor.cli.main as cli

    def broken(args):
        raise TypeError("a bug\nwith a second line")

    monkeypatch.setattr(cli, "cmd_features", broken)
    assert main(["features", MLP, "--input", "4", "--batch", "2"]) == 1
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("exante: internal error: TypeError: a bug")


def test_closed_pipe_is_quiet(workdir, capsys, monkeypatch):
    class Closed(io.StringIO):
        def write(self, text):
            raise BrokenPipeError(32, "Broken pipe")

    monkeypatch.setattr(sys, "stdout", Closed())
    code = main(["features", MLP, "--input", "4", "--batch", "2", "--json"])
    assert code == 141 and capsys.readouterr().err == ""


def test_module_factory_found_in_the_current_folder(workdir, capsys, monkeypatch):
    pkg = workdir / "exante_cwd_models"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "net.py").write_text("import torch\ndef build():\n    return torch.nn.Linear(4, 3)\n")
    # a console script has its own folder first on sys.path, not the current one
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p not in ("", ".", str(workdir))])
    try:
        assert main(["features", "exante_cwd_models.net:build", "--input", "4", "--batch", "2",
                     "--json"]) == 0
        assert '"Linear"' in capsys.readouterr().out
    finally:
        for name in [m for m in sys.modules if m.startswith("exante_cwd_models")]:
            del sys.modules[name]


def test_token_id_inputs(workdir, capsys):
    ref = "factories.py:embedding"
    assert main(["features", ref, "--input", "16", "--batch", "2"]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "--input-dtype int64" in err
    for extra in (["--input-dtype", "int64"], ["--vocab", "100"]):
        assert main(["features", ref, "--input", "16", "--batch", "2", "--json", *extra]) == 0
        assert '"Embedding"' in capsys.readouterr().out


def test_estimate_takes_token_ids_from_toml_and_flag(workdir):
    from predictor.carbon import lifecycle

    seen = []

    def stub(model, inputs, **kw):
        seen.append(inputs.dtype)
        return types.SimpleNamespace(time_s=1e-3, energy_j=0.1)

    (workdir / "tokens.toml").write_text(
        'model = "factories.py:embedding"\ninput = "16"\ninput_dtype = "int64"\n'
        '[inference]\nrequests = 10\n')
    # a code ref runs only when the user types it as MODEL_REF (it replaces the file's model)
    own = {"model": "factories.py:embedding"}
    lifecycle.estimate(lifecycle.load_scenario("tokens.toml", own), predict_fn=stub)
    assert seen == [torch.int64]
    from predictor.cli.main import build_parser

    args = build_parser().parse_args(
        ["estimate", "factories.py:embedding", "--scenario", "tokens.toml", "--input-dtype",
         "int32"])
    sc = lifecycle.load_scenario("tokens.toml", lifecycle.scenario_overrides(args, "tokens.toml"))
    assert sc.input_dtype == "int32"
    with pytest.raises(ExanteError, match="input_dtype"):
        lifecycle.load_scenario("tokens.toml", {**own, "input_dtype": "int8"})


def test_a_scenario_file_or_runs_file_never_makes_exante_run_code_it_names(workdir, capsys):
    """A file.py:factory / package.module:factory named by a scenario TOML or a calibrate runs
    CSV is refused before anything is resolved; typed as MODEL_REF it runs (above)."""
    marker = workdir / "ran"
    (workdir / "evil.py").write_text(f"open({str(marker)!r}, 'w').close()\n"
                                     "def f():\n    return None\n")
    for ref in ("evil.py:f", "os:getpid", "evil:f"):
        (workdir / "s.toml").write_text(f'model = "{ref}"\ninput = "4"\n[inference]\n'
                                        'requests = 10\n')
        assert main(["estimate", "--scenario", "s.toml"]) == 2
        err = capsys.readouterr().err
        assert "not accepted from scenario file" in err and "MODEL_REF" in err
        (workdir / "runs.csv").write_text(
            "model,input,batch,mode,dtype,optimizer,time_s,energy_j\n"
            f"{ref},4,8,inference,fp32,,0.01,1.0\n")
        assert main(["calibrate", "--hardware", "h100", "--runs", "runs.csv", "--out",
                     str(workdir / "out")]) == 2
        assert "not accepted from a runs file" in capsys.readouterr().err
    assert not marker.exists()


def test_scenario_flags_override_top_level_keys(workdir, capsys):
    assert main(["estimate", "--scenario", "plan.toml", "--hardware", "no-such-gpu"]) == 2
    assert "no-such-gpu" in capsys.readouterr().err     # the flag replaced the file's default


def test_predict_refuses_a_batch_of_zero():
    from predictor import predict

    with pytest.raises(ExanteError, match="batch"):
        predict(torch.nn.Linear(4, 2), torch.zeros(0, 4))


def test_data_files_are_0644_and_no_lock_is_left(tmp_path):
    from profiling.dataset import schema

    ds = tmp_path / "new" / "dataset"          # created by the first append
    old = os.umask(0o022)
    try:
        schema.layer_table(ds).append([{c: None for c in schema.LAYER_COLUMNS}])
        schema.update_meta(ds, lambda meta: meta.update(note="x"))
    finally:
        os.umask(old)
    names = sorted(os.listdir(ds))
    assert names == ["layers.csv", "meta.json"]
    assert {stat.S_IMODE(os.stat(ds / n).st_mode) for n in names} == {0o644}
