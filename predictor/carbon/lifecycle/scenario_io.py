"""Scenarios in and out: from CLI arguments (:func:`scenario_from_args`, :func:`scenario_overrides`),
from TOML or a dict (:func:`load_scenario`, :func:`scenario_from_dict`; unknown keys refused with a
suggestion) and back to TOML (:func:`dump_scenario`)."""

from __future__ import annotations

import difflib
import json
import math
from typing import Any

try:
    import tomllib
except ModuleNotFoundError:     # Python 3.10: the same parser, from PyPI (a dependency there)
    import tomli as tomllib  # type: ignore[no-redef]

from predictor.carbon import regions as carbon
from predictor.carbon.lifecycle.scenario import (
    InferencePlan,
    Scenario,
    SearchPlan,
    TrainingRun,
    _input_shape,
    _pos_float,
    _pos_int,
    _range,
)
from profiling.errors import ExanteError
from profiling.ref_policy import check_data_model_ref

# --------------------------------------------------------------------------- CLI and TOML

def scenario_from_args(args) -> Scenario:
    """Build a Scenario from ``exante estimate`` flags (see predictor/cli.py)."""
    def g(name: str, default: Any = None) -> Any:
        return getattr(args, name, default)
    optimizer, dtype = g("optimizer") or "adam", g("dtype") or "fp32"
    dataset_size = g("dataset_size")
    if g("tokens") is not None:
        if dataset_size is not None:
            raise ExanteError("give --dataset-size (samples) or --tokens, not both")
        if g("input") is None:
            raise ExanteError("--tokens needs --input (tokens per sample = its element count)")
        dataset_size = samples_from_tokens(g("tokens"), g("input"))
    train_keys = {"--epochs": g("epochs"), "--dataset-size or --tokens": dataset_size,
                  "--batch": g("batch")}
    training = None
    if any(v is not None for v in train_keys.values()):
        missing = [k for k, v in train_keys.items() if v is None]
        if missing:
            raise ExanteError(f"a training run needs --epochs, --dataset-size and --batch; "
                              f"missing {', '.join(missing)}")
        training = TrainingRun(g("epochs"), dataset_size, g("batch"), optimizer=optimizer,
                               dtype=dtype, grad_scaler=bool(g("grad_scaler")))
    elif g("grad_scaler"):
        raise ExanteError("--grad-scaler prices a training run: give --epochs, --dataset-size "
                          "and --batch too")
    search = None
    if g("trials") is not None:
        if training is None:
            raise ExanteError("--trials repeats the training run: give --epochs, "
                              "--dataset-size and --batch too")
        search = SearchPlan.from_trials(g("trials"), training)
    inference = None
    if g("inferences") is not None:
        batch = g("inference_batch")
        inference = InferencePlan(g("inferences"), 1 if batch is None else batch, dtype=dtype)
    return Scenario(
        model=g("model_ref"), input_shape=g("input"), training=training, search=search,
        inference=inference, pue=carbon.DEFAULT_PUE if g("pue") is None else g("pue"),
        region=g("region"), intensity_g_per_kwh=_intensity_value(g("intensity")),
        hardware=g("hardware") or "h100", gpus=1 if g("gpus") is None else g("gpus"),
        input_dtype=g("input_dtype"), memory_format=g("memory_format") or "contiguous",
        torch_version=g("torch_version"))


def _intensity_value(value):
    """``--intensity``: a number of gCO2eq/kWh or an energy-source name (coal, gas, ...), as
    ``exante calc`` accepts (seed 000 Table 2 via :func:`carbon.resolve_intensity`)."""
    if value is None:
        return None
    return carbon.resolve_intensity(None, value).value_g_per_kwh


# `exante estimate --scenario plan.toml` with flags: the rule (stated in `--help`)
SCENARIO_OVERRIDES = {"model_ref": "model", "input": "input", "hardware": "hardware",
                      "pue": "pue", "region": "region", "intensity": "intensity_g_per_kwh",
                      "gpus": "gpus", "input_dtype": "input_dtype",
                      "memory_format": "memory_format", "torch_version": "torch_version"}
SCENARIO_REFUSED = {"epochs": "--epochs", "dataset_size": "--dataset-size", "tokens": "--tokens",
                    "batch": "--batch", "optimizer": "--optimizer", "dtype": "--dtype",
                    "trials": "--trials", "inferences": "--inferences",
                    "inference_batch": "--inference-batch", "grad_scaler": "--grad-scaler"}


def scenario_overrides(args, path) -> dict:
    """Top-level keys that flags given with ``--scenario`` set in the file: MODEL_REF,
    ``--input``, ``--hardware``, ``--pue``, ``--region`` / ``--intensity`` (either replaces
    both of the file's grid keys) and ``--gpus`` override the file's values; flags that describe
    the runs (``--epochs``, ``--batch``, ``--inferences``, ...) are refused: edit the file."""
    given = [flag for name, flag in SCENARIO_REFUSED.items()
             if getattr(args, name, None) not in (None, False)]
    if given:
        raise ExanteError(
            f"{', '.join(given)} cannot be combined with --scenario: the runs come from "
            f"{path}; edit its tables, or drop --scenario (with --scenario only MODEL_REF, "
            "--input, --input-dtype, --hardware, --pue, --region/--intensity and --gpus "
            "override the file)")
    out = {key: getattr(args, name) for name, key in SCENARIO_OVERRIDES.items()
           if getattr(args, name, None) is not None}
    if out.get("intensity_g_per_kwh") is not None:
        out["intensity_g_per_kwh"] = _intensity_value(out["intensity_g_per_kwh"])
    if "region" in out or "intensity_g_per_kwh" in out:
        out.setdefault("region", None)
        out.setdefault("intensity_g_per_kwh", None)
    return out


_TOP_KEYS = ("model", "input", "input_dtype", "hardware", "pue", "region", "intensity_g_per_kwh", "gpus",
             "embodied_kg", "hardware_lifetime_h", "gpu_share_of_server", "memory_format",
             "torch_version", "training", "search", "inference")
_RUN_KEYS = ("epochs", "dataset_size", "dataset_tokens", "batch", "optimizer", "dtype", "gpus",
             "label", "drop_last", "grad_scaler")
_SEARCH_KEYS = ("trials", "epochs", "dataset_fraction", "dataset_size", "dataset_tokens",
                "batch", "optimizer",
                "dtype", "gpus", "drop_last", "grad_scaler", "seed", "runs")
_INFERENCE_KEYS = ("requests", "batch", "dtype")


def _check_keys(table, accepted, where: str, path) -> None:
    if not isinstance(table, dict):
        raise ExanteError(f"{where} in {path} must be a table, got {type(table).__name__}")
    for key in table:
        if key not in accepted:
            close = difflib.get_close_matches(key, accepted, n=1)
            hint = f"did you mean {close[0]!r}? " if close else ""
            raise ExanteError(f"unknown key {key!r} in {where} of {path}; {hint}"
                              f"accepted: {', '.join(accepted)}")


def _need(table, key, where, path):
    if key not in table:
        raise ExanteError(f"{where} in {path} needs {key!r}")
    return table[key]


def samples_from_tokens(tokens, input_shape) -> int:
    """Samples holding ``tokens`` training tokens: ``ceil(tokens / tokens per sample)``, where
    tokens per sample is the element count of the per-sample input (sequence length)."""
    shape = _input_shape(input_shape)
    per_sample = math.prod(shape)
    n = _pos_float(tokens, "dataset_tokens")
    return max(1, math.ceil(n / per_sample))


def _run_from_table(t: dict, where: str, path, defaults: dict | None = None,
                    input_shape=None) -> TrainingRun:
    d = {**(defaults or {}), **t}
    if "dataset_tokens" in t and "dataset_size" in t:
        raise ExanteError(f"{where} in {path}: give dataset_size or dataset_tokens, not both")
    tokens = d.pop("dataset_tokens", None)
    if tokens is not None and "dataset_size" not in t:   # the table's own size wins
        d["dataset_size"] = samples_from_tokens(tokens, input_shape)
    with _in_table(where, path):
        return TrainingRun(
            epochs=_need(d, "epochs", where, path),
            dataset_size=_need(d, "dataset_size", where, path),
            batch_size=_pos_int(_need(d, "batch", where, path), "batch"),
            optimizer=d.get("optimizer", "adam"), dtype=d.get("dtype", "fp32"),
            gpus=d.get("gpus"), label=d.get("label"), drop_last=d.get("drop_last", False),
            grad_scaler=d.get("grad_scaler", False))


class _in_table:
    """Prefix an ExanteError raised inside with ``<where> in <path>: `` (TOML key context)."""

    def __init__(self, where: str, path):
        self.where, self.path = where, path

    def __enter__(self):
        return self

    def __exit__(self, kind, exc, tb):
        if isinstance(exc, ExanteError) and f" in {self.path}" not in str(exc):
            raise ExanteError(f"{self.where} in {self.path}: {exc}") from exc
        return False


MAX_SCENARIO_BYTES = 1_000_000
MAX_NESTING = 32         # arrays/tables inside each other; a scenario needs 3


def _nesting(obj) -> int:
    """How deeply lists and dicts nest in ``obj`` (iterative: no recursion limit)."""
    deepest, stack = 0, [(obj, 0)]
    while stack:
        o, d = stack.pop()
        if isinstance(o, (list, dict)):
            deepest = max(deepest, d + 1)
            stack.extend((v, d + 1) for v in (o.values() if isinstance(o, dict) else o))
    return deepest


def load_scenario(path, overrides: dict | None = None) -> Scenario:
    """Read a TOML scenario file (schema in the module docstring); ``overrides`` replace
    top-level keys (see :func:`scenario_overrides`)."""
    try:
        with open(path, "rb") as f:
            text = f.read(MAX_SCENARIO_BYTES + 1)
        if len(text) > MAX_SCENARIO_BYTES:
            raise ExanteError(f"scenario file {str(path)!r} is over {MAX_SCENARIO_BYTES // 1000} kB;"
                              " a scenario is a few lines of TOML")
        doc = tomllib.loads(text.decode("utf-8"))
        if _nesting(doc) > MAX_NESTING:   # the same answer whatever the recursion limit
            raise RecursionError
    except RecursionError:          # tomllib parses nested arrays/tables recursively
        raise ExanteError(f"scenario file {str(path)!r} nests arrays or tables too deeply; "
                          "a scenario has at most [training]/[search]/[inference] tables") \
            from None
    except FileNotFoundError:
        raise ExanteError(f"scenario file {str(path)!r} does not exist") from None
    except IsADirectoryError:
        raise ExanteError(f"scenario {str(path)!r} is a folder; give a TOML file "
                          "(e.g. --scenario plan.toml)") from None
    except OSError as exc:
        raise ExanteError(f"cannot read scenario file {str(path)!r}: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ExanteError(f"scenario file {str(path)!r} is not valid TOML: {exc}") from None
    except UnicodeDecodeError:
        raise ExanteError(f"scenario file {str(path)!r} is not UTF-8 text (TOML)") from None
    if "model" in doc and (overrides or {}).get("model") is None:
        # a model the file names may not run code (file.py:f, package.module:f): such a ref
        # must be typed by the user as MODEL_REF, which replaces the file's
        check_data_model_ref(doc["model"], f"from scenario file {str(path)!r}",
                             "to use your own file.py:factory or package.module:factory, type it "
                             "as MODEL_REF on the command line (it replaces the file's model)")
    doc.update(overrides or {})
    doc = {k: v for k, v in doc.items() if v is not None}
    return scenario_from_dict(doc, path=str(path))


def scenario_from_dict(doc: dict, path: str = "<scenario>") -> Scenario:
    """Build a Scenario from the parsed TOML document (same schema as :func:`load_scenario`)."""
    _check_keys(doc, _TOP_KEYS, "the top level", path)
    model = _need(doc, "model", "the top level", path)
    if not isinstance(model, str):
        raise ExanteError(f"model in {path} must be a MODEL_REF string, got {model!r}")

    tr = doc.get("training")
    if isinstance(tr, dict):
        tr = [tr]
    if tr is not None and not isinstance(tr, list):
        raise ExanteError(f"training in {path} must be [[training]] tables")
    runs = []
    for i, t in enumerate(tr or []):
        _check_keys(t, _RUN_KEYS, f"[[training]] #{i + 1}", path)
        runs.append(_run_from_table(t, f"[[training]] #{i + 1}", path,
                                    input_shape=doc.get("input")))

    search = None
    if "search" in doc:
        s = doc["search"]
        _check_keys(s, _SEARCH_KEYS, "[search]", path)
        if "runs" in s:
            extra = [k for k in ("trials", "epochs", "dataset_fraction", "seed") if k in s]
            if extra:
                raise ExanteError(f"[search] in {path}: give either trials (with epochs / "
                                  f"dataset_fraction / seed) or [[search.runs]], not both "
                                  f"({', '.join(extra)} given with runs)")
            if not isinstance(s["runs"], list) or not s["runs"]:
                raise ExanteError(f"[search] runs in {path} must be one or more [[search.runs]]")
            inherit = {k: v for k, v in s.items() if k != "runs"}
            sruns = []
            for i, t in enumerate(s["runs"]):
                _check_keys(t, _RUN_KEYS, f"[[search.runs]] #{i + 1}", path)
                sruns.append(_run_from_table(t, f"[[search.runs]] #{i + 1}", path, inherit,
                                             input_shape=doc.get("input")))
            search = SearchPlan(tuple(sruns))
        else:
            trials = _need(s, "trials", "[search]", path)
            base = {}
            if runs:
                r0 = runs[0]
                base = {"epochs": r0.epochs, "dataset_size": r0.dataset_size,
                        "batch": r0.batch_size, "optimizer": r0.optimizer, "dtype": r0.dtype,
                        "gpus": r0.gpus, "drop_last": r0.drop_last,
                        "grad_scaler": r0.grad_scaler}
            own = {k: v for k, v in s.items() if k in _RUN_KEYS and k != "label"}
            epochs = own.pop("epochs", base.get("epochs"))
            epochs_range = None
            if isinstance(epochs, list):
                epochs_range = _range(epochs, "[search] epochs")
                epochs = epochs_range[0]
            merged = {**base, **own}
            if epochs is not None:
                merged["epochs"] = epochs
            if "dataset_tokens" in own:
                merged.pop("dataset_size", None)
                merged = {**merged, "dataset_tokens": own["dataset_tokens"]}
            base_run = _run_from_table(merged, "[search] (or the first [[training]] run)", path,
                                       input_shape=doc.get("input"))
            fr = s.get("dataset_fraction")
            search = SearchPlan.from_trials(
                trials, base_run, epochs_range=epochs_range,
                dataset_fraction_range=None if fr is None else _range(fr, "[search] dataset_fraction"),
                seed=s.get("seed", 0))

    inference = None
    if "inference" in doc:
        t = doc["inference"]
        _check_keys(t, _INFERENCE_KEYS, "[inference]", path)
        with _in_table("[inference]", path):
            inference = InferencePlan(_need(t, "requests", "[inference]", path),
                                      _pos_int(t.get("batch", 1), "batch"), t.get("dtype", "fp32"))

    with _in_table("the top level", path):
        return Scenario(
            model=model, input_shape=_need(doc, "input", "the top level", path),
            training=runs or None, search=search, inference=inference,
            pue=doc.get("pue", carbon.DEFAULT_PUE), region=doc.get("region"),
            intensity_g_per_kwh=doc.get("intensity_g_per_kwh"),
            hardware=doc.get("hardware", "h100"), embodied_kg=doc.get("embodied_kg"),
            hardware_lifetime_h=doc.get("hardware_lifetime_h"), gpus=doc.get("gpus", 1),
            gpu_share_of_server=doc.get("gpu_share_of_server"),
            input_dtype=doc.get("input_dtype"),
            memory_format=doc.get("memory_format", "contiguous"),
            torch_version=doc.get("torch_version"))


def _toml_value(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    return json.dumps(str(v), ensure_ascii=False)


def _run_lines(run: TrainingRun) -> list[str]:
    out = [f"epochs = {run.epochs}", f"dataset_size = {run.dataset_size}",
           f"batch = {run.batch_size}", f"optimizer = {_toml_value(run.optimizer)}",
           f"dtype = {_toml_value(run.dtype)}"]
    if run.gpus is not None:
        out.append(f"gpus = {run.gpus}")
    if run.label is not None:
        out.append(f"label = {_toml_value(run.label)}")
    if run.drop_last:
        out.append("drop_last = true")
    if run.grad_scaler:
        out.append("grad_scaler = true")
    return out


def dump_scenario(scenario: Scenario) -> str:
    """TOML text that :func:`load_scenario` reads back to an equal Scenario."""
    if not isinstance(scenario.model, str):
        raise ExanteError("only a Scenario whose model is a MODEL_REF string can be written as TOML")
    lines = [f"model = {_toml_value(scenario.model)}",
             f"input = {_toml_value('x'.join(map(str, scenario.input_shape)))}",
             f"hardware = {_toml_value(scenario.hardware)}",
             f"pue = {_toml_value(scenario.pue)}",
             f"gpus = {scenario.gpus}"]
    for key in ("region", "intensity_g_per_kwh", "embodied_kg", "hardware_lifetime_h",
                "gpu_share_of_server", "input_dtype", "torch_version"):
        v = getattr(scenario, key)
        if v is not None:
            lines.append(f"{key} = {_toml_value(v)}")
    if scenario.memory_format != "contiguous":
        lines.append(f"memory_format = {_toml_value(scenario.memory_format)}")
    for run in scenario.training_runs:
        lines += ["", "[[training]]"] + _run_lines(run)
    if scenario.search:
        for run in scenario.search.runs:
            lines += ["", "[[search.runs]]"] + _run_lines(run)
    if scenario.inference:
        inf = scenario.inference
        lines += ["", "[inference]", f"requests = {inf.requests}", f"batch = {inf.batch_size}",
                  f"dtype = {_toml_value(inf.dtype)}"]
    return "\n".join(lines) + "\n"
