"""The page's inputs: field parsing (query string or form body), the MODEL_REF gate, and the
calculator / estimate computations with the CLI's own validation.

The gate (:func:`check_page_model_ref`) runs before anything resolves a reference: the page
builds only zoo models (``torchvision:``, ``timm:``, ``hf:``) and generated ones (``mlp:``,
``mlpseq:``, ``convstack:``, ``encoder:``); a file, a ``package.module:callable`` or anything
else is refused, so no request can make the process import or run code it names.
"""

from __future__ import annotations

import argparse
import logging
import math
import threading
import warnings
from types import SimpleNamespace
from typing import Callable
from urllib.parse import parse_qs

from predictor.carbon import lifecycle
from predictor.carbon.calc import TPU_POWER, calc, serving
from predictor.carbon.llm.memory import CHECKPOINTING, OPT_DTYPES, SHARDING
from predictor.carbon.llm.mfu import FLAVOURS
from predictor.carbon.llm.plan import MFU_MODES, TRAIN_DTYPES
from predictor.cli.checks import finite_float, positive_float, positive_int
from profiling.errors import ExanteError
from profiling.ref_policy import DATA_REF_SCHEMES, check_data_model_ref

CALC_FIELDS = ("device", "count", "hours", "gpu_hours", "power_w", "utilization", "pue",
               "region", "intensity", "offset_pct", "tpu_power", "params", "tokens", "flops",
               "active_params", "mfu", "mfu_mode", "mfu_flavour", "dtype", "sharding",
               "checkpointing", "optimizer_dtype", "layers", "hidden", "heads", "seq_len",
               "micro_batch", "global_batch_tokens", "flash", "fused_optimizer", "interconnect",
               "dp", "tp", "pp")
SERVING_FIELDS = ("params", "active_params", "device", "count", "concurrency", "requests",
                  "prompt_tokens", "output_tokens", "weights", "pue", "region", "intensity")
# the calculator's choice fields: (accepted values, calc's default) -- as `exante calc`
CALC_CHOICES = {"tpu_power": (TPU_POWER, "measured"), "mfu_mode": (MFU_MODES, "default"),
                "mfu_flavour": (FLAVOURS, "published"), "dtype": (TRAIN_DTYPES, "bf16"),
                "sharding": (SHARDING, "auto"), "checkpointing": (CHECKPOINTING, "auto"),
                "optimizer_dtype": (OPT_DTYPES, "fp32"), "flash": (("on", "off"), "on"),
                "fused_optimizer": (("on", "off"), "on")}
WEIGHTS = ("bf16", "fp16", "fp8", "mxfp4", "int4", "fp32")
ESTIMATE_FIELDS = ("model", "input", "input_dtype", "epochs", "dataset_size", "tokens", "batch",
                   "optimizer", "dtype", "trials", "inferences", "inference_batch", "pue",
                   "region", "intensity", "gpus", "hardware")
MAX_FIELDS = 64
MAX_VALUE_CHARS = 1000

PAGE_REF_SCHEMES = DATA_REF_SCHEMES

# (CLI flag type, name in scenario_from_args) of each estimate field; None: a plain string
_ESTIMATE_TYPES = {"epochs": positive_float, "dataset_size": positive_float,
                   "tokens": positive_float, "inferences": positive_float,
                   "batch": positive_int, "trials": positive_int, "inference_batch": positive_int,
                   "gpus": positive_int, "pue": finite_float}
DTYPES = ("fp32", "bf16")
OPTIMIZERS = ("sgd", "adam", "adamw")
INPUT_DTYPES = ("float32", "float16", "bfloat16", "int64", "int32")

logger = logging.getLogger(__name__)
_ESTIMATE_LOCK = threading.Lock()      # one prediction at a time (shared caches, memory)


def parse_fields(raw: str, accepted: tuple[str, ...]) -> dict[str, str]:
    """``{field: stripped value}`` of a query string or urlencoded body; empty values dropped.
    Unknown, repeated, too many or too long fields are refused by name."""
    try:
        parsed = parse_qs(raw, keep_blank_values=True, max_num_fields=MAX_FIELDS)
    except ValueError:
        raise ExanteError(f"too many fields (more than {MAX_FIELDS})") from None
    unknown = sorted(k for k in parsed if k not in accepted)
    if unknown:
        raise ExanteError(f"unknown field(s) {', '.join(unknown)}; accepted: "
                          f"{', '.join(accepted)}")
    out = {}
    for k, vals in parsed.items():
        if len(vals) > 1:
            raise ExanteError(f"field {k} given {len(vals)} times; give it once")
        v = vals[0].strip()
        if len(v) > MAX_VALUE_CHARS:
            raise ExanteError(f"field {k} is {len(v)} characters long; at most "
                              f"{MAX_VALUE_CHARS} are accepted")
        if v:
            out[k] = v
    return out


def check_page_model_ref(ref: str) -> str:
    """``ref`` if the page may build it (zoo and generator references only), else a one-line
    ExanteError. Nothing is imported or resolved here."""
    return check_data_model_ref(ref, "by the page", "the page never imports a file or a module "
                                "(file.py:factory and package.module:factory work only in the CLI)")


def _typed(name: str, text: str, kind: Callable):
    try:
        return kind(text)
    except argparse.ArgumentTypeError as exc:
        raise ExanteError(f"{name} {exc}") from None


def _choice(name: str, text: str | None, accepted: tuple[str, ...]) -> str | None:
    if text is not None and text.lower() not in accepted:
        raise ExanteError(f"unknown {name} {text!r}; accepted: {', '.join(accepted)}")
    return None if text is None else text.lower()


def check_finite(result):
    """``result`` if every number of its ``to_dict()`` (nested) is finite, else a one-line
    ExanteError: an overflow (``1e308`` hours, ...) is refused, not shown as ``inf``."""
    def walk(x, where):
        if isinstance(x, float) and not math.isfinite(x):
            raise ExanteError(f"the inputs give a non-finite {where} ({x}); give realistic "
                              "values")
        if isinstance(x, dict):
            for k, v in x.items():
                walk(v, k)
        elif isinstance(x, (list, tuple)):
            for v in x:
                walk(v, where)
    walk(result.to_dict(), "result")
    return result


def calc_from_fields(p: dict):
    """:func:`predictor.carbon.calc.calc` on the calculator form's fields, with ``exante calc``'s
    defaults; numbers go to calc as typed (its own parsers and range checks)."""
    c = {k: _choice(k, p.get(k), accepted) or default
         for k, (accepted, default) in CALC_CHOICES.items()}
    return calc(p.get("device"), count=p.get("count", 1), hours=p.get("hours"),
                gpu_hours=p.get("gpu_hours"), power_w=p.get("power_w"),
                utilization=p.get("utilization"), pue=p.get("pue"), region=p.get("region"),
                intensity=p.get("intensity"), offset_pct=p.get("offset_pct"),
                params=p.get("params"), tokens=p.get("tokens"), flops=p.get("flops"),
                mfu=p.get("mfu"), dtype=c["dtype"], dp=p.get("dp"), tp=p.get("tp", 1),
                pp=p.get("pp", 1), tpu_power=c["tpu_power"],
                active_params=p.get("active_params"), mfu_mode=c["mfu_mode"],
                mfu_flavour=c["mfu_flavour"], sharding=c["sharding"],
                checkpointing=c["checkpointing"], optimizer_dtype=c["optimizer_dtype"],
                layers=p.get("layers"), hidden=p.get("hidden"), heads=p.get("heads"),
                seq_len=p.get("seq_len"), micro_batch=p.get("micro_batch"),
                global_batch_tokens=p.get("global_batch_tokens"), flash=c["flash"] == "on",
                fused_optimizer=c["fused_optimizer"] == "on",
                interconnect=p.get("interconnect"))


class ServingResult(dict):
    """:func:`predictor.carbon.calc.serving`'s report (J, kWh, kg CO2eq) with ``to_dict()``."""

    def to_dict(self) -> dict:
        """The serving report as a plain dict (J, kWh, kg CO2eq)."""
        return dict(self)


def serving_from_fields(p: dict) -> ServingResult:
    """:func:`predictor.carbon.calc.serving` (what ``exante calc --concurrency`` prints) on the
    serving form's fields, with the CLI's defaults (1 request of 1000 + 500 tokens, bf16)."""
    return ServingResult(serving(
        p.get("params"), p.get("device"), p.get("count", 1), p.get("concurrency"),
        requests=p.get("requests", 1.0), prompt_tokens=p.get("prompt_tokens", 1000.0),
        output_tokens=p.get("output_tokens", 500.0), active_params=p.get("active_params"),
        weights=_choice("weights", p.get("weights"), WEIGHTS) or "bf16", pue=p.get("pue"),
        region=p.get("region"), intensity=p.get("intensity")))


def estimate_args(p: dict) -> SimpleNamespace:
    """The ``exante estimate`` arguments the fields stand for (same types, same names)."""
    for need in ("model", "input"):
        if need not in p:
            raise ExanteError(f"field {need} is required")
    args = {"model_ref": check_page_model_ref(p["model"]), "input": p["input"]}
    for name, kind in _ESTIMATE_TYPES.items():
        args[name] = _typed(name, p[name], kind) if name in p else None
    if "intensity" in p:
        try:
            args["intensity"] = finite_float(p["intensity"])
        except argparse.ArgumentTypeError:
            args["intensity"] = p["intensity"]        # refused by name in Scenario
    else:
        args["intensity"] = None
    args["dtype"] = _choice("dtype", p.get("dtype"), DTYPES)
    args["optimizer"] = _choice("optimizer", p.get("optimizer"), OPTIMIZERS)
    args["input_dtype"] = _choice("input_dtype", p.get("input_dtype"), INPUT_DTYPES)
    args["region"], args["hardware"] = p.get("region"), p.get("hardware")
    if args["region"] is not None and args["intensity"] is not None:
        raise ExanteError("give region or intensity, not both")
    return SimpleNamespace(**args)


def estimate_from_fields(p: dict, predict_fn: Callable | None = None):
    """:func:`predictor.carbon.lifecycle.estimate` of the estimate form's fields, built as
    ``exante estimate`` builds its scenario (:func:`scenario_from_args`)."""
    args = estimate_args(p)              # the MODEL_REF gate runs first

    scenario = lifecycle.scenario_from_args(args)
    with _ESTIMATE_LOCK, warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        report = lifecycle.estimate(scenario, predict_fn=predict_fn)
    for msg in dict.fromkeys(str(w.message) for w in caught):   # the page, not the terminal
        logger.info("estimate: %s", msg)
    return report
