"""Torch-free checks of what the command line names: ``--input``, ``--batch``, MODEL_REF.

The CLI runs them before torch is imported, so a mistyped shape, a negative batch or a
misspelt zoo model is refused in a fraction of a second (importing torch and a model zoo
takes seconds). :func:`profiling.model_refs.parse_input_shape` and ``check_batch`` are
these functions.
"""

from __future__ import annotations

import difflib
import importlib.util
import math
import os
import re
from functools import lru_cache

from profiling.errors import ExanteError

# bytes per element of each --input-dtype (torch's element sizes)
INPUT_DTYPE_BYTES = {"float32": 4, "float16": 2, "bfloat16": 2, "int64": 8, "int32": 4}
_MAX_TENSOR_BYTES = 2**63 - 1                                 # torch's storage-size limit


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
    """``--batch``: a positive integer written as one (``32``, not ``32.0`` or ``-1``)."""
    try:
        b = int(batch)
    except (TypeError, ValueError):
        b = 0
    if b < 1 or str(batch).strip() not in (str(b),):
        raise ExanteError(f"--batch must be a positive integer, got {batch!r}")
    return b


def check_input_bytes(shape: tuple[int, ...], batch: int, dtype: str = "float32") -> int:
    """The element count of a ``(batch, *shape)`` input of ``dtype`` (an ``--input-dtype``
    name); an :class:`ExanteError` when it exceeds torch's limit of 2^63 - 1 bytes."""
    n = int(batch) * math.prod(int(d) for d in shape)
    if n * INPUT_DTYPE_BYTES.get(str(dtype), 4) > _MAX_TENSOR_BYTES:
        raise ExanteError(
            f"--batch {batch} x --input {'x'.join(map(str, shape))} is {n:.3g} {dtype} elements, "
            f"more than a torch tensor can hold (2^63 - 1 bytes); use a smaller batch or input")
    return n


# --------------------------------------------------------------------------- zoo names

_REGISTER = re.compile(r"@register_model\((?:\s*name\s*=\s*)?[\"']([\w.\-]+)[\"']|@register_model")
_DEF = re.compile(r"^def\s+(\w+)", re.M)
_DEPRECATIONS = re.compile(r"register_model_deprecations\(\s*__name__\s*,\s*\{(.*?)\}\s*\)", re.S)
_DEPRECATED_KEY = re.compile(r"[\"']([\w.\-]+)[\"']\s*:")


def zoo_model_names(package: str) -> frozenset[str]:
    """The model names ``package`` (``torchvision`` or ``timm``) registers, read from its
    source files without importing it (``@register_model`` builders and timm's deprecated
    aliases); empty when the package is missing or its layout is not recognised."""
    try:
        spec = importlib.util.find_spec(package)
    except (ImportError, ValueError):          # e.g. sys.modules[package] is None
        return frozenset()
    if spec is None or not spec.origin:
        return frozenset()
    return _names_under(os.path.join(os.path.dirname(spec.origin), "models"))


@lru_cache(maxsize=8)
def _names_under(root: str) -> frozenset[str]:
    names: set[str] = set()
    for folder, _, files in os.walk(root):
        for name in files:
            if not name.endswith(".py"):
                continue
            try:
                with open(os.path.join(folder, name), encoding="utf-8") as fh:
                    text = fh.read()
            except (OSError, UnicodeDecodeError):
                continue
            if "register_model" not in text:
                continue
            for m in _REGISTER.finditer(text):
                if m.group(1):
                    names.add(m.group(1))
                    continue
                d = _DEF.search(text, m.end())
                if d:
                    names.add(d.group(1))
            for m in _DEPRECATIONS.finditer(text):
                names.update(_DEPRECATED_KEY.findall(m.group(1)))
    return frozenset(names)


# ("bert", "BertConfig") in CONFIG_MAPPING_NAMES, "mimi_encoder": "MimiEncoderConfig" in updates
_HF_PAIR = re.compile(r"\(\s*[\"']([\w.\-]+)[\"']\s*,\s*[\"']\w+Config[\"']\s*\)"
                      r"|[\"']([\w.\-]+)[\"']\s*:\s*[\"']\w+Config[\"']")


@lru_cache(maxsize=4)
def _hf_types_in(folder: str) -> frozenset[str]:
    names: set[str] = set()
    for name in ("auto_mappings.py", "configuration_auto.py"):
        try:
            with open(os.path.join(folder, name), encoding="utf-8") as fh:
                text = fh.read()
        except (OSError, UnicodeDecodeError):
            continue
        names.update(a or b for a, b in _HF_PAIR.findall(text))
    return frozenset(names)


def hf_model_types() -> frozenset[str]:
    """The ``model_type`` names of the installed transformers (``AutoConfig.for_model``),
    read from its source without importing it; empty when not installed or not recognised."""
    try:
        spec = importlib.util.find_spec("transformers")
    except (ImportError, ValueError):
        return frozenset()
    if spec is None or not spec.origin:
        return frozenset()
    return _hf_types_in(os.path.join(os.path.dirname(spec.origin), "models", "auto"))


def _check_hf_type(ref: str) -> None:
    model_type = ref.partition(":")[2].partition(",")[0].strip()
    types = hf_model_types()
    if len(types) < 50 or model_type in types:      # unrecognised layout: the import decides
        return
    close = difflib.get_close_matches(model_type, sorted(types), n=3, cutoff=0.6)
    hint = f"; close matches: {', '.join(close)}" if close else " (e.g. gpt2, bert, llama)"
    raise ExanteError(f"transformers has no model type {model_type!r}{hint}")


def check_zoo_name(ref: str) -> None:
    """A ``torchvision:NAME`` / ``timm:NAME`` whose NAME the installed zoo does not register
    is an :class:`ExanteError` with close matches, found without importing torch. Other refs,
    and zoos whose source could not be read, pass (the real import decides)."""
    scheme, sep, name = str(ref).partition(":")
    if scheme == "hf" and sep:
        return _check_hf_type(ref)
    if not sep or scheme not in ("torchvision", "timm"):
        return
    names = zoo_model_names(scheme)
    if len(names) < 20:                 # not installed or not recognised: the import decides
        return
    arch = name.split(".", 1)[0] if scheme == "timm" else name   # timm: resnet50.a1_in1k
    if arch in names:
        return
    close = difflib.get_close_matches(arch, sorted(names), n=3, cutoff=0.6)
    hint = f"; close matches: {', '.join(close)}" if close else ""
    listing = ("torchvision.models.list_models()" if scheme == "torchvision"
               else "timm.list_models()")
    raise ExanteError(f"{scheme} has no model {name!r}{hint} (all names: {listing})")


# --------------------------------------------------------------------------- MODEL_REF syntax

REF_FORMS = (
    "torchvision:NAME, timm:NAME, hf:MODEL_TYPE, mlp:in=100,depth=10,width=100,out=1, "
    "mlpseq:in=100,sizes=75-50-1, convstack:in=1x10x10,filters=32-32,kernel=3,out=1, "
    "encoder:d=256,heads=4,layers=2, path/to/file.py:factory, package.module:factory"
)
MLP_KEYS = ("in", "depth", "width", "out")


def parse_mlp_spec(spec: str) -> dict[str, int]:
    """``in=100,depth=10,width=100[,out=1]`` -> ``{"in": 100, ...}`` (``out`` defaults to 1);
    an :class:`ExanteError` naming what is wrong (keys, integers, positive values)."""
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
    values.setdefault("out", 1)
    if min(values.values()) < 1:
        raise ExanteError(
            f"mlp needs positive in, depth, width and out; got in={values['in']}, "
            f"depth={values['depth']}, width={values['width']}, out={values['out']}")
    return values


def check_ref_syntax(ref: str) -> None:
    """What can be told of a MODEL_REF without importing torch: that it has a scheme or a
    ``target:factory`` form, that an ``mlp:`` spec parses, that a zoo NAME exists."""
    if not isinstance(ref, str) or ":" not in ref:
        raise ExanteError(f"unknown MODEL_REF {ref!r}; accepted forms: {REF_FORMS}")
    scheme, _, rest = ref.partition(":")
    if scheme == "mlp":
        parse_mlp_spec(rest)
    check_zoo_name(ref)
