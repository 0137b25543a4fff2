"""Import the optional model zoos (torchvision, timm, transformers) beside the CPU torch:
a missing one is an :class:`ExanteError` naming the extra to install, a broken install one
naming the version mismatch (PyPI's torchvision beside the CPU torch is shimmed, see
:func:`import_torchvision`)."""

from __future__ import annotations

import importlib
import importlib.util
import sys

from profiling.errors import ExanteError

_TV_OPS_SHIM = None          # torch.library definitions kept alive (see import_torchvision)


def import_torchvision():
    """``import torchvision``, also where its C++ ops cannot load.

    PyPI's torchvision wheels for Linux x86_64 are built against the CUDA torch; beside the
    CPU torch (``pip install torch==2.13.0``) their ``_C`` extension does not load, and
    torchvision's own ``_meta_registrations`` then fails on import with "operator
    torchvision::nms does not exist" (it registers a fake kernel for ``nms`` even without
    the ops). In exactly that case the two op schemas it needs (``nms``, ``qnms``) are
    defined here and the import is retried: models, transforms and the Python ops work;
    the C++ ops (nms, roi_align, deform_conv2d ...) raise when called. Any other failure is
    an :class:`ExanteError` that says torchvision is installed but cannot be imported.
    """
    global _TV_OPS_SHIM
    try:
        return importlib.import_module("torchvision")
    except ModuleNotFoundError as exc:
        if exc.name != "torchvision":
            raise _broken("torchvision", exc) from None
        raise ExanteError("MODEL_REF needs the optional package 'torchvision', which is not "
                          "installed; install it as the README's set-up says "
                          "(pip install 'exante[models]' with the matching torch)") from None
    except Exception as exc:                         # noqa: BLE001 - reported below
        first = exc
    ext = sys.modules.get("torchvision.extension")
    if _TV_OPS_SHIM is not None or ext is None or ext._has_ops() \
            or "torchvision::nms" not in str(first):
        raise _broken("torchvision", first) from None
    for k in [k for k in sys.modules if k == "torchvision" or k.startswith("torchvision.")]:
        del sys.modules[k]
    import torch.library

    lib = torch.library.Library("torchvision", "DEF")
    lib.define("nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
    lib.define("qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
    _TV_OPS_SHIM = lib
    try:
        return importlib.import_module("torchvision")
    except Exception as exc:                         # noqa: BLE001
        raise _broken("torchvision", exc) from None


def _broken(name: str, exc: BaseException) -> ExanteError:
    import torch as _torch

    return ExanteError(
        f"{name} is installed but cannot be imported beside torch {_torch.__version__} "
        f"({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}); install "
        f"the {name} release built for this torch (see the README's set-up)"
    )


def _optional_module(name: str):
    try:                            # timm and transformers import torchvision themselves
        if importlib.util.find_spec("torchvision") is not None:
            import_torchvision()
    except (ExanteError, ImportError, ValueError):
        pass
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as exc:
        if exc.name != name:
            raise _broken(name, exc) from None
        extra = "hf" if name == "transformers" else "models"
        raise ExanteError(
            f"MODEL_REF needs the optional package {name!r}, which is not installed; "
            f"install it with `pip install 'exante[{extra}]'`"
        ) from None
    except Exception as exc:  # a broken install (e.g. a version mismatch with torch)
        raise _broken(name, exc) from None


def import_timm():
    """``import timm`` with the torchvision workaround of :func:`import_torchvision` applied
    first (timm imports torchvision); an :class:`ExanteError` naming the extra when missing."""
    return _optional_module("timm")


def import_transformers():
    """``import transformers`` with the torchvision workaround applied first, so that
    ``from transformers import BertModel`` works beside the CPU torch (its lazy modules
    import torchvision); an :class:`ExanteError` naming the extra when missing."""
    return _optional_module("transformers")
