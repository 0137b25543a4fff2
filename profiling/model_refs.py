"""Resolve MODEL_REF strings into a module (example inputs: :mod:`profiling.model_inputs`; the
optional zoos: :mod:`profiling.optional_imports`; both re-exported here).

Accepted MODEL_REF forms (DESIGN.md §4):

- ``torchvision:NAME`` / ``timm:NAME`` (optional extra ``exante[models]``; built without
  weights: ``weights=None`` and, for detection/segmentation, ``weights_backbone=None``)
- ``hf:MODEL_TYPE[,key=value,...]`` (a Hugging Face ``transformers`` model built from its
  default config, e.g. ``hf:gpt2`` or ``hf:llama,num_hidden_layers=2``; no download; takes
  token ids, see :func:`hf_example_inputs`)
- ``mlp:in=100,depth=10,width=100,out=1`` (Linear layers with ReLU between them)
- ``path/to/file.py:factory`` and ``package.module:factory`` (a callable returning an nn.Module)
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import inspect
import logging
import os
import re
import sys
import traceback
import warnings
from typing import Callable

import torch
from torch import nn

from profiling.errors import ExanteError
from profiling.input_spec import (
    REF_FORMS,
    check_batch,
    check_zoo_name,
    parse_input_shape,
    parse_mlp_spec,
)
from profiling.lazy_refs import LAZY_REF_SCHEMES
from profiling.model_inputs import (
    INPUT_DTYPES,
    check_numel,
    example_inputs,
    hf_example_inputs,
    input_dtype,
)
from profiling.optional_imports import import_timm, import_torchvision, import_transformers

__all__ = [
    # MODEL_REFs (this module)
    "MODEL_REF_ATTR", "REF_SCHEMES", "FactoryError", "ModelBuildError", "build_mlp",
    "capture_with_cpu_fallback", "rebuild_on_cpu", "register_ref_scheme", "resolve_model",
    "resolve_model_on_meta",
    # kept importable from here (they live in profiling.model_inputs, profiling.input_spec,
    # profiling.optional_imports)
    "INPUT_DTYPES", "check_batch", "check_numel", "example_inputs", "hf_example_inputs",
    "import_timm", "import_torchvision", "import_transformers", "input_dtype",
    "parse_input_shape",
]

logger = logging.getLogger(__name__)

MODEL_REF_ATTR = "_exante_model_ref"    # set on models built from a ref (see rebuild_on_cpu)


class ModelBuildError(ExanteError):
    """A known model whose constructor failed (e.g. on the meta device)."""

# further MODEL_REF schemes registered by other packages (predictor.search.generators registers
# mlpseq:, convstack:, encoder:): scheme -> builder(text after the colon) -> nn.Module
REF_SCHEMES: dict[str, Callable[[str], nn.Module]] = {}


def register_ref_scheme(scheme: str, builder: Callable[[str], nn.Module]) -> None:
    """Make ``scheme:...`` a MODEL_REF built by ``builder(text after the colon)``."""
    REF_SCHEMES[scheme] = builder


def build_mlp(in_features: int, depth: int, width: int, out_features: int = 1) -> nn.Sequential:
    """``depth`` hidden Linear layers of ``width`` units with ReLU, then a Linear to ``out``.

    ``depth`` counts hidden layers, as in seed 004's wide-vs-deep grid, so the model has
    ``depth + 1`` Linear layers and ``depth`` ReLUs.
    """
    if min(in_features, depth, width, out_features) < 1:
        raise ExanteError(
            f"mlp needs positive in, depth, width and out; got in={in_features}, depth={depth}, "
            f"width={width}, out={out_features}"
        )
    layers: list[nn.Module] = []
    prev = in_features
    for _ in range(depth):
        layers += [nn.Linear(prev, width), nn.ReLU()]
        prev = width
    layers.append(nn.Linear(prev, out_features))
    return nn.Sequential(*layers)


def _parse_mlp(spec: str) -> nn.Module:
    v = parse_mlp_spec(spec)
    return build_mlp(v["in"], v["depth"], v["width"], v["out"])




def _torchvision_model(name: str) -> nn.Module:
    tv = import_torchvision()
    if name not in tv.models.list_models():
        check_zoo_name(f"torchvision:{name}")          # with close matches
        raise ExanteError(f"torchvision has no model {name!r}; see "
                          "torchvision.models.list_models()")
    builder = tv.models.get_model_builder(name)
    kwargs = {"weights": None}
    if "weights_backbone" in inspect.signature(builder).parameters:
        kwargs["weights_backbone"] = None          # never a download nobody asked for
    try:
        return builder(**kwargs)
    except Exception as exc:
        raise ModelBuildError(f"building torchvision:{name} failed: {type(exc).__name__}: "
                              f"{exc}") from exc


def _timm_model(name: str) -> nn.Module:
    timm = import_timm()
    if not timm.is_model(name):
        check_zoo_name(f"timm:{name}")                 # with close matches
        raise ExanteError(f"timm has no model {name!r}; see timm.list_models()")
    try:
        return timm.create_model(name, pretrained=False)
    except Exception as exc:
        raise ModelBuildError(f"building timm:{name} failed: {type(exc).__name__}: "
                              f"{exc}") from exc


def _parse_overrides(text: str, ref: str) -> dict:
    out: dict = {}
    for part in filter(None, text.split(",")):
        key, sep, val = part.partition("=")
        if not sep or not key.strip().isidentifier():
            raise ExanteError(f"bad hf spec {ref!r}: expected hf:MODEL_TYPE[,key=value,...] "
                              f"(e.g. hf:llama,num_hidden_layers=2)")
        val = val.strip()
        for conv in (int, float):
            try:
                out[key.strip()] = conv(val)
                break
            except ValueError:
                continue
        else:
            out[key.strip()] = {"true": True, "false": False}.get(val.lower(), val)
    return out


def _hf_model(spec: str, ref: str) -> nn.Module:
    model_type, _, rest = spec.partition(",")
    transformers = import_transformers()
    from transformers import AutoConfig, AutoModel

    overrides = _parse_overrides(rest, ref)
    try:
        cfg = AutoConfig.for_model(model_type.strip(), **overrides)
    except ValueError:
        raise ExanteError(f"transformers {transformers.__version__} has no model type "
                          f"{model_type!r} (e.g. gpt2, bert, llama)") from None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return AutoModel.from_config(cfg)
    except Exception as exc:
        raise ModelBuildError(f"building hf:{spec} failed: {type(exc).__name__}: "
                              f"{exc}") from exc


class FactoryError(ExanteError):
    """A user's factory (``file.py:factory``, ``package.module:factory``) raised.
    ``meta_related``: the error names the meta device, so a CPU build may still work."""

    def __init__(self, message: str, meta_related: bool = False):
        super().__init__(message)
        self.meta_related = meta_related


_OWN_DIR = os.path.dirname(os.path.abspath(__file__))
_FILE_MODULES: dict[tuple, object] = {}     # (realpath, mtime_ns, size) -> module: run once


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text.splitlines()[0]}" if text else type(exc).__name__


def _user_frame(exc: BaseException) -> str:
    """`` (path, line N)`` of the innermost traceback frame in the user's code (not in an
    installed package, the standard library or exante), or '' when there is none."""
    skip = ("site-packages", "dist-packages", "<frozen")
    stdlib = os.path.dirname(os.__file__)
    for frame in reversed(traceback.extract_tb(exc.__traceback__)):
        path = frame.filename
        if any(s in path for s in skip) or path.startswith((stdlib, _OWN_DIR)):
            continue
        rel = os.path.relpath(path) if not os.path.relpath(path).startswith("..") else path
        return f" ({rel}, line {frame.lineno})"
    return ""


def _call_factory(factory: Callable, ref: str) -> nn.Module:
    attr = ref.rpartition(":")[2]
    try:
        model = factory()
    except ExanteError:
        raise
    except Exception as exc:
        meta = isinstance(exc, NotImplementedError) or "meta" in str(exc).lower()
        raise FactoryError(f"MODEL_REF {ref!r}: {attr}() raised {_first_line(exc)}"
                           f"{_user_frame(exc)}", meta_related=meta) from exc
    if not isinstance(model, nn.Module):
        raise ExanteError(f"{ref!r} returned {type(model).__name__}, expected a torch.nn.Module")
    return model


def _load_file_module(target: str):
    """Run ``file.py`` once (again only when it changed) with its folder on ``sys.path``, as
    Python runs a script; import failures are one-line :class:`ExanteError` s."""
    if not os.path.isfile(target):
        raise ExanteError(f"MODEL_REF file {target!r} does not exist")
    real = os.path.realpath(target)
    st = os.stat(real)
    key = (real, st.st_mtime_ns, st.st_size)
    if key in _FILE_MODULES:
        return _FILE_MODULES[key]
    folder = os.path.dirname(real)
    if folder not in sys.path:
        sys.path.insert(0, folder)
    name = "_exante_ref_" + hashlib.sha1(real.encode()).hexdigest()[:12]
    spec = importlib.util.spec_from_file_location(name, real)
    if spec is None or spec.loader is None:
        raise ExanteError(f"MODEL_REF file {target!r} cannot be loaded as a Python module")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module              # dataclasses, pickle and typing look it up
    try:
        spec.loader.exec_module(module)
    except SyntaxError as exc:
        sys.modules.pop(name, None)
        raise ExanteError(f"MODEL_REF file {target!r} has a syntax error at line {exc.lineno}: "
                          f"{exc.msg}") from exc
    except (Exception, SystemExit) as exc:
        sys.modules.pop(name, None)
        raise ExanteError(f"MODEL_REF file {target!r} failed to import: {_first_line(exc)}"
                          f"{_user_frame(exc)}") from exc
    _FILE_MODULES[key] = module
    return module


def _import_user_module(target: str, ref: str):
    """``importlib.import_module(target)`` with the current folder on ``sys.path`` (first, as
    ``python -m`` puts it), so ``mymodels.net:build`` works from the project folder."""
    cwd = os.getcwd()
    if not any(os.path.abspath(p or os.curdir) == cwd for p in sys.path):
        sys.path.insert(0, cwd)
    try:
        return importlib.import_module(target)
    except ImportError as exc:
        raise ExanteError(
            f"cannot import {target!r} for MODEL_REF {ref!r} ({exc}; looked in the current "
            f"folder and the installed packages); accepted forms: {REF_FORMS}") from exc
    except SyntaxError as exc:
        raise ExanteError(f"MODEL_REF module {target!r} has a syntax error in "
                          f"{exc.filename}, line {exc.lineno}: {exc.msg}") from exc
    except (Exception, SystemExit) as exc:
        raise ExanteError(f"MODEL_REF module {target!r} failed to import: {_first_line(exc)}"
                          f"{_user_frame(exc)}") from exc


def _builder(ref: str) -> Callable[[], nn.Module]:
    """A zero-argument builder for ``ref``; user code (file.py, package.module) is imported
    here, once, so the builder can run under ``torch.device("meta")`` and again on the CPU."""
    if not isinstance(ref, str) or ":" not in ref:
        raise ExanteError(f"unknown MODEL_REF {ref!r}; accepted forms: {REF_FORMS}")
    scheme, _, rest = ref.partition(":")
    if scheme == "mlp":
        return lambda: _parse_mlp(rest)
    if scheme not in REF_SCHEMES and scheme in LAZY_REF_SCHEMES:
        importlib.import_module(LAZY_REF_SCHEMES[scheme])      # registers the scheme
    if scheme in REF_SCHEMES:
        return lambda: REF_SCHEMES[scheme](rest)
    if scheme == "torchvision":
        return lambda: _torchvision_model(rest)
    if scheme == "timm":
        return lambda: _timm_model(rest)
    if scheme == "hf":
        return lambda: _hf_model(rest, ref)
    # file.py:factory or package.module:factory (split on the last colon: Windows paths)
    target, _, attr = ref.rpartition(":")
    if not attr.isidentifier():
        raise ExanteError(f"unknown MODEL_REF {ref!r}; accepted forms: {REF_FORMS}")
    if target.endswith(".py"):
        module = _load_file_module(target)
    elif re.fullmatch(r"[A-Za-z_][\w.]*", target):
        module = _import_user_module(target, ref)
    else:
        raise ExanteError(f"unknown MODEL_REF {ref!r}; accepted forms: {REF_FORMS}")
    factory = getattr(module, attr, None)
    if not callable(factory):
        raise ExanteError(f"{target!r} has no callable {attr!r}")
    return lambda: _call_factory(factory, ref)


def resolve_model(ref: str) -> nn.Module:
    """Build the nn.Module named by ``ref`` (see module docstring for the accepted forms)."""
    return _builder(ref)()


def resolve_model_on_meta(ref: str) -> nn.Module:
    """``resolve_model`` under ``torch.device("meta")``: no weights are allocated, so a
    billion-parameter model costs nothing. A model whose constructor cannot run on meta
    (data-dependent initialisation, e.g. torchvision's RegNets) is built on the CPU and
    moved to meta; a user's factory is retried on the CPU only when its error names the meta
    device (any other error is reported after one call). The model remembers its ref
    (:func:`rebuild_on_cpu`)."""
    build = _builder(ref)                   # imports user code once, outside the meta context
    try:
        with torch.device("meta"):
            model = build()
    except FactoryError as exc:
        if not exc.meta_related:
            raise
        model = build().to("meta")
    except ModelBuildError:
        model = build().to("meta")
    except ExanteError:
        raise
    except Exception as exc:                # a zoo constructor that cannot run on meta
        logger.debug("building %s on meta failed (%s: %s); building it on the CPU", ref,
                     type(exc).__name__, exc)
        model = build().to("meta")
    model.__dict__[MODEL_REF_ATTR] = ref
    return model


def rebuild_on_cpu(model: nn.Module) -> nn.Module | None:
    """A fresh CPU build of a model made by :func:`resolve_model_on_meta` (for a forward
    that cannot run on meta, e.g. detection models calling ``nonzero``), else None."""
    ref = model.__dict__.get(MODEL_REF_ATTR) if isinstance(model, nn.Module) else None
    if ref is None:
        return None
    twin = resolve_model(ref)
    twin.train(model.training)
    return twin



def _zeros_like_on(obj, device):
    if isinstance(obj, torch.Tensor):
        return torch.zeros(obj.shape, dtype=obj.dtype, device=device) if obj.is_meta else obj
    if isinstance(obj, (list, tuple)):
        return type(obj)(_zeros_like_on(x, device) for x in obj)
    if isinstance(obj, dict):
        return {k: _zeros_like_on(v, device) for k, v in obj.items()}
    return obj


def capture_with_cpu_fallback(model: nn.Module, inputs, *, dtype: str = "fp32",
                              train: bool = False):
    """``capture(model, inputs)``; when a model built from a ref on meta cannot run its
    forward there (``nonzero`` in detection heads, a value read), it is rebuilt on the CPU
    and captured once with zero inputs (ones for an ``attention_mask``), slower but real.
    Returns ``(Capture, note)``; ``note`` is None unless the fallback ran. A model not
    built from a ref (the user's own) is never rebuilt: the meta error is raised."""
    from profiling.capture.core import capture

    try:
        return capture(model, inputs, dtype=dtype, train=train), None
    except ExanteError as exc:
        meta_error = exc
        twin = rebuild_on_cpu(model)
        if twin is None:
            raise
    cpu_inputs = _zeros_like_on(inputs, "cpu")
    if isinstance(cpu_inputs, dict) and isinstance(cpu_inputs.get("attention_mask"), torch.Tensor):
        cpu_inputs["attention_mask"] = torch.ones_like(cpu_inputs["attention_mask"])
    try:
        cap = capture(twin, cpu_inputs, dtype=dtype, train=train)
    except ExanteError:
        raise meta_error from None          # the same failure on the CPU: report the meta one
    note = (f"the forward could not run on the meta device ({meta_error}); "
            f"{model.__dict__[MODEL_REF_ATTR]} was built on the CPU and traced once with zero "
            "inputs instead (slower)")
    return cap, note
