"""Workloads of timm image models, captured on ``meta`` and cached on disk (gzip JSON).

``timm_workload(name, img_size, batch, mode, dtype="fp16", memory_format="contiguous")``
builds ``timm.create_model(name, pretrained=False)`` on the ``meta`` device (no weights), runs
one capture (:func:`predictor.engine.predict.capture_workload`; ``train_step`` with optimizer
``"sgd"``, what timm's benchmark runs: ``create_optimizer_v2`` default, SGD Nesterov momentum
0.9, plain cross-entropy, no gradient scaler) and returns the
:class:`~predictor.engine.workload.Workload` of a ``(batch, 3, img_size, img_size)`` input.

Which architecture variant: timm's benchmark files name the architecture without its
pretrained tag and list it at every tag's test size (``resnet50`` at 160 ... 288).  The
default configuration is used when the image runs through it; a model with a fixed input
size (ViT position embeddings, Swin windows) is built from the pretrained tag whose
``input_size``/``test_input_size`` is ``img_size`` (``caformer_s18`` at 384 ->
``caformer_s18.sail_in1k_384``), else with ``img_size=`` as a keyword; a deprecated name whose
pretrained tag no longer exists (``vit_base_patch16_224_sam``) is built as its architecture
(``vit_base_patch16_224``).  What was built is in the workload's ``notes``.

Cache: one file per (timm version, torch version, name, img_size, batch, mode, dtype) under
``cache_dir/timm-<version>/`` (default ``~/.cache/exante/timm``, or ``$EXANTE_TIMM_CACHE``);
a model that cannot be built or captured is cached as an error file and raised again as
:class:`TimmBuildError` (a failure is reported, never hidden).  ``memory_format`` does not
change what is captured (shapes are logical): it is set on the returned workload.  Writes are
atomic (temporary file + ``os.replace``), so several processes may share one cache.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import logging
import os
import re
from collections import OrderedDict
from dataclasses import fields, replace
from pathlib import Path

from profiling.dataset.schema import write_bytes_atomic
from profiling.errors import ExanteError

__all__ = ["timm_workload", "TimmBuildError", "default_cache_dir", "cache_path",
           "build_timm_model", "timm_version", "warm_cache", "MEMORY_FORMATS", "CACHE_FORMAT"]

log = logging.getLogger(__name__)

MEMORY_FORMATS = ("contiguous", "channels_last")
#: bump when what is stored changes meaning (the key of every cached file includes it)
CACHE_FORMAT = 1
_SAFE = re.compile(r"[^A-Za-z0-9_.-]+")


class TimmBuildError(ExanteError):
    """A timm model that could not be built or captured here (message: the error)."""


def _timm():
    from profiling.model_refs import import_torchvision

    try:
        import_torchvision()             # timm imports torchvision; shim its C++ ops first
    except (ExanteError, ImportError):
        pass
    try:
        import timm
    except ModuleNotFoundError:
        raise ExanteError("timm workloads need the optional package 'timm' "
                          "(pip install 'exante[models]')") from None
    return timm


def timm_version() -> str:
    """The installed timm version string."""
    return _timm().__version__


def default_cache_dir() -> Path:
    """Workload cache folder: ``$EXANTE_TIMM_CACHE`` or ``~/.cache/exante/timm``."""
    env = os.environ.get("EXANTE_TIMM_CACHE")
    return Path(env) if env else Path.home() / ".cache" / "exante" / "timm"


def _key(name: str, img_size: int, batch: int, mode: str, dtype: str) -> str:
    import torch

    return (f"v{CACHE_FORMAT}|timm={timm_version()}|torch={torch.__version__.split('+')[0]}|"
            f"{name}|{int(img_size)}|b{int(batch)}|{mode}|{dtype}")


def cache_path(cache_dir, name: str, img_size: int, batch: int, mode: str,
               dtype: str = "fp16") -> Path:
    """Where the workload of these arguments is (or would be) cached (``.json.gz``; an error
    is cached beside it as ``.err.json``)."""
    key = _key(name, img_size, batch, mode, dtype)
    h = hashlib.sha256(key.encode()).hexdigest()[:10]
    stem = f"{_SAFE.sub('_', name)}-{int(img_size)}-b{int(batch)}-{mode}-{dtype}-{h}"
    return Path(cache_dir) / f"timm-{timm_version()}" / f"{stem}.json.gz"


def _err_path(path: Path) -> Path:
    return path.with_name(path.name[:-len(".json.gz")] + ".err.json")


def _cfg_sizes(cfg) -> set:
    out = set()
    for k in ("input_size", "test_input_size"):
        v = getattr(cfg, k, None) if not isinstance(cfg, dict) else cfg.get(k)
        if v:
            out.add(int(v[-1]))
    return out


def _candidates(name: str, img_size: int):
    """(label, create_model kwargs) to try, best first (see the module docstring)."""
    timm = _timm()
    from timm.models import get_pretrained_cfg

    if not timm.is_model(name):
        raise TimmBuildError(f"timm {timm.__version__} has no model {name!r}")
    out: list[tuple[str, dict]] = []
    default = get_pretrained_cfg(name)
    if default is None or int(img_size) in _cfg_sizes(default):
        out.append((name, {}))
    tags = [t for t in timm.list_pretrained(f"{name}.*")
            if (c := get_pretrained_cfg(t)) is not None and int(img_size) in _cfg_sizes(c)]
    # the benchmark's ImageNet-1k heads first (an in22k tag has a 21k-class classifier)
    tags.sort(key=lambda t: getattr(get_pretrained_cfg(t), "num_classes", 1000) != 1000)
    out += [(t, {}) for t in tags[:1]]
    if not out or out[0][0] != name:
        out.append((name, {}))
    out.append((f"{name} img_size={int(img_size)}", {"img_size": int(img_size)}))
    # a deprecated name whose pretrained tag is gone (vit_base_patch16_224_sam ->
    # vit_base_patch16_224.sam): the architecture without the tag (no weights are loaded)
    target = _deprecated().get(name)
    if target and "." in target:
        out.append((target.split(".")[0], {}))
    return out


def _deprecated() -> dict:
    """timm's deprecated model names -> their current ``arch.tag`` (empty if not exposed)."""
    try:
        from timm.models import _registry
    except ImportError:
        return {}
    dep = getattr(_registry, "_deprecated_models", {})
    return dep if isinstance(dep, dict) else {}


def build_timm_model(model_name: str, **kwargs):
    """``timm.create_model(model_name, pretrained=False, **kwargs)`` on the meta device."""
    import torch

    timm = _timm()
    with torch.device("meta"):
        return timm.create_model(model_name, pretrained=False, **kwargs)


def _capture(model, shape, mode: str, dtype: str, optimizer):
    import importlib

    try:        # the capture side of predict(), where it has its own module
        P = importlib.import_module("predictor.engine.model_capture")
    except ModuleNotFoundError:
        P = importlib.import_module("predictor.engine.predict")
    if dtype in P.DTYPES:
        return P.capture_workload(model, shape, mode, dtype, optimizer, cache=False)
    # predict() does not accept fp16 yet; profiling.capture.core does (fp16 autocast policy)
    import torch

    from predictor.engine.workload import workload_from_capture
    from profiling.capture.core import capture

    cap = capture(model, (torch.empty(shape, device="meta"),), dtype=dtype,
                  train=mode == "train_step")
    zero = int(sum(getattr(cap, "zero_cost_ops", {}).values()))
    return workload_from_capture(model, cap.layers, mode=mode, dtype=dtype, batch=shape[0],
                                 optimizer=optimizer, zero_cost_ops=zero)


_BUILT: "OrderedDict[str, object]" = OrderedDict()
_BUILT_MAX = 4


def _built(label: str, model_name: str, kw: dict):
    """A meta model per build label, the last few kept: the same architecture is captured at
    several batches and image sizes, and a capture leaves the model as it was."""
    if label in _BUILT:
        _BUILT.move_to_end(label)
        return _BUILT[label]
    model = build_timm_model(model_name, **kw)
    _BUILT[label] = model
    if len(_BUILT) > _BUILT_MAX:
        _BUILT.popitem(last=False)
    return model


def _capture_fresh(name, img_size, batch, mode, dtype):
    optimizer = "sgd" if mode == "train_step" else None
    shape = (int(batch), 3, int(img_size), int(img_size))
    errors = []
    for label, kw in _candidates(name, img_size):
        model_name = label.split(" ")[0]
        try:
            model = _built(label, model_name, kw)
        except Exception as exc:          # noqa: BLE001 -- kept and reported below
            errors.append(f"{label}: build: {type(exc).__name__}: {exc}")
            continue
        try:
            w = _capture(model, shape, mode, dtype, optimizer)
        except Exception as exc:          # noqa: BLE001 -- kept and reported below
            errors.append(f"{label}: capture: {type(exc).__name__}: {exc}")
            continue
        return replace(w, notes=tuple(w.notes) + (f"timm {timm_version()} model {label}",))
    raise TimmBuildError("; ".join(e.splitlines()[0][:300] for e in errors))


def _with_format(w, memory_format: str, torch_version: str | None):
    have = {f.name for f in fields(w)}
    if "memory_format" in have:
        w = replace(w, memory_format=memory_format)
    elif memory_format != "contiguous":
        log.warning("Workload has no memory_format field yet; %s not recorded", memory_format)
    if torch_version and "torch_version" in have:
        w = replace(w, torch_version=str(torch_version))
    return w


def timm_workload(name: str, img_size: int, batch: int, mode: str = "inference",
                  dtype: str = "fp16", memory_format: str = "contiguous", *,
                  torch_version: str | None = None, cache_dir=None, use_cache: bool = True, retry_failed: bool = False):
    """The :class:`~predictor.engine.workload.Workload` of one timm model call (whole batch).

    ``mode``: "inference" | "train_step" (SGD); ``dtype``: "fp32" | "bf16" | "fp16"
    (autocast); ``memory_format``: "contiguous" | "channels_last"; ``torch_version``: the
    torch release the step ran on (a recorded condition, set on the workload).  Cached (see module
    docstring); raises :class:`TimmBuildError` with the error when the model cannot be built
    or captured here (also when that failure is cached, unless ``retry_failed``)."""
    from predictor.engine.workload import Workload

    if mode not in ("inference", "train_step"):
        raise ExanteError(f"unknown mode {mode!r}; accepted: inference, train_step")
    if memory_format not in MEMORY_FORMATS:
        raise ExanteError(f"unknown memory format {memory_format!r}; accepted: "
                          f"{', '.join(MEMORY_FORMATS)}")
    if int(batch) < 1 or int(img_size) < 1:
        raise ExanteError(f"batch {batch} and img_size {img_size} must be positive")
    path = cache_path(cache_dir or default_cache_dir(), name, img_size, batch, mode, dtype)
    if use_cache:
        if path.is_file():
            with gzip.open(path, "rt", encoding="utf-8") as fh:
                return _with_format(Workload.from_json(json.load(fh)["workload"]), memory_format,
                                    torch_version)
        err = _err_path(path)
        if err.is_file() and not retry_failed:
            raise TimmBuildError(json.loads(err.read_text())["error"])
    key = _key(name, img_size, batch, mode, dtype)
    try:
        w = _capture_fresh(name, img_size, batch, mode, dtype)
    except TimmBuildError as exc:
        if use_cache:
            write_bytes_atomic(_err_path(path), json.dumps({"key": key, "error": str(exc)}).encode())
        raise
    if use_cache:
        rec = {"key": key, "workload": json.loads(w.to_json())}
        write_bytes_atomic(path, gzip.compress(json.dumps(rec, separators=(",", ":")).encode(), 6))
    return _with_format(w, memory_format, torch_version)


def _warm_one(args) -> str | None:
    name, img, batch, mode, dtype, cache_dir = args
    try:
        timm_workload(name, img, batch, mode, dtype, cache_dir=cache_dir)
    except ExanteError as exc:              # cached as an error file too; reported by callers
        return str(exc)
    return None


def _init_worker() -> None:
    import torch

    torch.set_num_threads(1)


def warm_cache(shapes, cache_dir, jobs: int = 1, progress=None) -> int:
    """Capture every ``(name, img_size, batch, mode, dtype)`` of ``shapes`` not cached yet,
    with ``jobs`` worker processes (spawned, one thread each), one model after the other so a
    worker reuses what it built.  Returns how many were captured (failures are cached as
    errors and raised again by :func:`timm_workload`)."""
    cache_dir = Path(cache_dir)
    todo = sorted({tuple(s) for s in shapes
                   if not (p := cache_path(cache_dir, *s)).is_file() and not _err_path(p).is_file()})
    if not todo:
        return 0
    if progress:
        progress(f"capturing {len(todo)} timm workloads not in {cache_dir} ({jobs} processes)")
    args = [(*s, cache_dir) for s in todo]
    if jobs <= 1:
        for i, a in enumerate(args, 1):
            _warm_one(a)
            if progress and i % 100 == 0:
                progress(f"captured {i}/{len(todo)}")
        return len(todo)
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor

    chunk = max(1, min(32, len(args) // (4 * jobs)))
    with ProcessPoolExecutor(jobs, mp_context=mp.get_context("spawn"),
                             initializer=_init_worker) as ex:
        for i, _ in enumerate(ex.map(_warm_one, args, chunksize=chunk), 1):
            if progress and i % 100 == 0:
                progress(f"captured {i}/{len(todo)}")
    return len(todo)
