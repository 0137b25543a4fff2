"""Resolve MODEL_REF strings and ``--input`` shapes into a module and example inputs.

Accepted MODEL_REF forms (DESIGN.md §4):

- ``torchvision:NAME`` / ``timm:NAME`` (optional extras; built without weights)
- ``mlp:in=100,depth=10,width=100,out=1`` (Linear layers with ReLU between them)
- ``path/to/file.py:factory`` and ``package.module:factory`` (a callable returning an nn.Module)
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import re
from typing import Callable

import torch
from torch import nn

from .errors import ExanteError

REF_FORMS = (
    "torchvision:NAME, timm:NAME, mlp:in=100,depth=10,width=100,out=1, "
    "path/to/file.py:factory, package.module:factory"
)

MLP_KEYS = {"in", "depth", "width", "out"}


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
    values: dict[str, int] = {}
    for part in filter(None, spec.split(",")):
        key, sep, val = part.partition("=")
        key = key.strip()
        if not sep or key not in MLP_KEYS:
            raise ExanteError(
                f"bad mlp spec {spec!r}: expected comma-separated key=int with keys "
                f"in, depth, width, out (e.g. mlp:in=100,depth=10,width=100,out=1)"
            )
        try:
            values[key] = int(val)
        except ValueError:
            raise ExanteError(f"bad mlp spec {spec!r}: {key}={val!r} is not an integer") from None
    missing = {"in", "depth", "width"} - values.keys()
    if missing:
        raise ExanteError(f"bad mlp spec {spec!r}: missing {', '.join(sorted(missing))}")
    return build_mlp(values["in"], values["depth"], values["width"], values.get("out", 1))


def _optional_module(name: str):
    try:
        return importlib.import_module(name)
    except Exception as exc:  # ImportError, or a broken install (torchvision vs torch mismatch)
        raise ExanteError(
            f"MODEL_REF needs the optional package {name!r}, which cannot be imported here "
            f"({type(exc).__name__}: {exc}); install it with `pip install 'exante[models]'`"
        ) from None


def _call_factory(factory: Callable, ref: str) -> nn.Module:
    model = factory()
    if not isinstance(model, nn.Module):
        raise ExanteError(f"{ref!r} returned {type(model).__name__}, expected a torch.nn.Module")
    return model


def resolve_model(ref: str) -> nn.Module:
    """Build the nn.Module named by ``ref`` (see module docstring for the accepted forms)."""
    if not isinstance(ref, str) or ":" not in ref:
        raise ExanteError(f"unknown MODEL_REF {ref!r}; accepted forms: {REF_FORMS}")
    scheme, _, rest = ref.partition(":")
    if scheme == "mlp":
        return _parse_mlp(rest)
    if scheme == "torchvision":
        tv = _optional_module("torchvision")
        try:
            return tv.models.get_model(rest, weights=None)
        except Exception as exc:
            raise ExanteError(f"torchvision has no model {rest!r} ({exc})") from None
    if scheme == "timm":
        timm = _optional_module("timm")
        try:
            return timm.create_model(rest, pretrained=False)
        except Exception as exc:
            raise ExanteError(f"timm has no model {rest!r} ({exc})") from None
    # file.py:factory or package.module:factory (split on the last colon: Windows paths)
    target, _, attr = ref.rpartition(":")
    if not attr.isidentifier():
        raise ExanteError(f"unknown MODEL_REF {ref!r}; accepted forms: {REF_FORMS}")
    if target.endswith(".py"):
        if not os.path.isfile(target):
            raise ExanteError(f"MODEL_REF file {target!r} does not exist")
        spec = importlib.util.spec_from_file_location(f"_exante_ref_{abs(hash(target))}", target)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    elif re.fullmatch(r"[A-Za-z_][\w.]*", target):
        try:
            module = importlib.import_module(target)
        except ImportError as exc:
            raise ExanteError(
                f"cannot import {target!r} for MODEL_REF {ref!r} ({exc}); accepted forms: {REF_FORMS}"
            ) from None
    else:
        raise ExanteError(f"unknown MODEL_REF {ref!r}; accepted forms: {REF_FORMS}")
    factory = getattr(module, attr, None)
    if not callable(factory):
        raise ExanteError(f"{target!r} has no callable {attr!r}")
    return _call_factory(factory, ref)


def resolve_model_on_meta(ref: str) -> nn.Module:
    """``resolve_model`` under ``torch.device("meta")``: no weights are allocated, so a
    billion-parameter model costs nothing. A factory that cannot run on meta (data-dependent
    initialisation, say) is built normally and moved to meta."""
    try:
        with torch.device("meta"):
            return resolve_model(ref)
    except ExanteError:
        raise
    except Exception:
        return resolve_model(ref).to("meta")


def parse_input_shape(text: str) -> tuple[int, ...]:
    """Parse ``--input`` like ``3x224x224`` or ``100`` (per-sample shape, no batch dim)."""
    parts = str(text).lower().replace("×", "x").split("x")
    try:
        shape = tuple(int(p) for p in parts)
    except ValueError:
        shape = ()
    if not shape or any(d < 1 for d in shape):
        raise ExanteError(
            f"malformed --input {text!r}: expected positive integers joined by 'x', "
            f"e.g. 100 or 3x224x224 (per sample, without the batch dimension)"
        )
    return shape


def check_batch(batch) -> int:
    try:
        b = int(batch)
    except (TypeError, ValueError):
        b = 0
    if b < 1 or str(batch).strip() not in (str(b),):
        raise ExanteError(f"--batch must be a positive integer, got {batch!r}")
    return b


def example_inputs(shape: tuple[int, ...], batch: int, device: str | torch.device = "meta",
                   dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """A float tensor of shape ``(batch, *shape)`` on ``device`` (``meta`` allocates nothing)."""
    return torch.zeros((check_batch(batch), *shape), device=device, dtype=dtype)
