"""Restricted unpickling of artifact files: only the project's own classes, numpy, scikit-learn
and scipy types and a few reconstructors (numpy's, Cython's ``__pyx_unpickle_*``) may be named by the pickle; nothing else is imported
or called.

A joblib file is a pickle, and a pickle names the callables it calls (``os.system`` among
them). The manifest's sha256 catches corruption, not tampering: whoever can write the artifact
folder can write a matching manifest. :func:`restricted_load` therefore refuses, *before*
importing or calling it, every global outside :data:`ALLOWED_MODULES`, every function not in
:data:`ALLOWED_FUNCTIONS`, and every call of a project class (project objects are rebuilt
with ``cls.__new__`` and their state, never by running ``__init__``). Arrays of Python objects
nested in joblib's array records go through the same checks. An old-format joblib file
(``NDArrayWrapper``, arrays in side files) is refused, and so is an artifact of the per-layer
regression engine removed in issue 19 (its classes, :data:`RETIRED_MODULES`, no longer
exist): one line saying how to refit.
"""

from __future__ import annotations

import enum
import importlib
import inspect
import io
import lzma
import pickle
import sys
import zlib

import joblib.numpy_pickle as _jnp

from predictor.moved import REMOVED
from profiling.errors import ExanteError
from profiling.moved_modules import new_name

__all__ = ["ALLOWED_FUNCTIONS", "ALLOWED_MODULES", "RETIRED_METHOD", "RETIRED_MODULES",
           "RetiredArtifactError", "UnsafePickleError", "load_or_refuse", "restricted_load",
           "retired_artifact_error"]

# module prefixes whose *classes* may be named (functions only via ALLOWED_FUNCTIONS)
ALLOWED_MODULES = ("predictor", "profiling", "numpy", "sklearn", "scipy.sparse",
                   "scipy.interpolate", "scipy.stats", "scipy.special", "scipy.optimize",
                   "collections", "datetime")
# names the project's classes may not be built by *calling* (REDUCE, INST, OBJ)
_PROJECT = ("predictor", "profiling")
# classes inside allowed modules that touch files or processes when called
_DENIED_CLASSES = {("numpy", "memmap"), ("numpy._core.memmap", "memmap"),
                   ("numpy.core.memmap", "memmap"), ("numpy.lib._datasource", "DataSource"),
                   ("numpy", "DataSource")}
_SAFE_BUILTINS = {"dict", "list", "tuple", "set", "frozenset", "int", "float", "complex",
                  "bool", "str", "bytes", "bytearray", "slice", "range", "object"}
# the per-layer regression engine (removed in issue 19): its artifacts' classes and manifest method
# (their paths between the layout move and the removal, and the old ones predictor.moved refuses)
RETIRED_MODULES = ("predictor.fit.regression", "predictor.engine.predict_regression", *REMOVED)
RETIRED_METHOD = "per-layer regression"
ALLOWED_FUNCTIONS = {
    ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar"),
    ("numpy.core.numeric", "_frombuffer"), ("numpy._core.numeric", "_frombuffer"),
    ("numpy.random._pickle", "__randomstate_ctor"),
    ("numpy.random._pickle", "__bit_generator_ctor"),
    ("numpy.random._pickle", "__generator_ctor"),
    ("copyreg", "_reconstructor"), ("_codecs", "encode"),
}


class UnsafePickleError(pickle.UnpicklingError):
    """The pickle names a global or makes a call outside the allow-list."""


class RetiredArtifactError(pickle.UnpicklingError):
    """The pickle holds a model of the removed per-layer regression engine."""


def retired_artifact_error(path, hardware: str) -> ExanteError:
    """The one-line error for an artifact of the removed per-layer regression engine."""
    return ExanteError(
        f"{path} is a per-layer regression artifact: that engine was removed from exante "
        f"(issue 19) and its artifacts no longer load; refit with `exante fit --hardware "
        f"{hardware}` from whole-model rows (models.csv + workloads.jsonl, measured with "
        "`exante sweep`), or use the shipped physics model")


def _allowed_module(module: str) -> bool:
    return any(module == p or module.startswith(p + ".") for p in ALLOWED_MODULES)


def _is_project_class(obj) -> bool:
    mod = getattr(obj, "__module__", "") or ""
    return isinstance(obj, type) and any(mod == p or mod.startswith(p + ".") for p in _PROJECT)


class _Guard:
    """find_class allow-list plus a check of every callable the pickle calls."""

    def find_class(self, module, name):  # noqa: D401 - pickle's hook
        if not isinstance(module, str) or not isinstance(name, str) or "." in name:
            raise UnsafePickleError(f"global {module}.{name} is not allowed")
        module = new_name(module)       # artifacts pickled before the issue-19 layout move
        if any(module == r or module.startswith(r + ".") for r in RETIRED_MODULES):
            raise RetiredArtifactError(f"{module}.{name} belongs to the removed per-layer "
                                       "regression engine")
        if module == "builtins":
            if name in _SAFE_BUILTINS:
                return getattr(sys.modules["builtins"], name)
            raise UnsafePickleError(f"builtins.{name} is not allowed")
        if (module, name) == ("joblib.numpy_pickle", "NumpyArrayWrapper"):
            return _jnp.NumpyArrayWrapper
        if (module, name) in ALLOWED_FUNCTIONS:
            return getattr(importlib.import_module(module), name)
        if (not _allowed_module(module) or (module, name) in _DENIED_CLASSES
                or "__main__" in module.split(".")):
            raise UnsafePickleError(f"global {module}.{name} is not allowed")
        obj = getattr(importlib.import_module(module), name, None)
        if (name.startswith("__pyx_unpickle_") and callable(obj)
                and not module.startswith(_PROJECT)):
            return obj      # Cython's state rebuilder of that module's own extension type
        if not isinstance(obj, type) or obj is _jnp.NDArrayWrapper:
            raise UnsafePickleError(f"{module}.{name} is not an allowed class")
        if (getattr(obj, "__module__", ""), obj.__name__) in _DENIED_CLASSES:
            raise UnsafePickleError(f"class {module}.{name} is not allowed")
        return obj

    def _check_call(self, func) -> None:
        if _is_project_class(func) and not issubclass(func, enum.Enum):
            raise UnsafePickleError(f"building {func.__module__}.{func.__name__} by calling "
                                    "it is not allowed")

    def _instantiate(self, klass, args):   # INST and OBJ opcodes (protocols 0/1)
        self._check_call(klass)
        return super()._instantiate(klass, args)

    def load_reduce(self):
        self._check_call(self.stack[-2])
        return super().load_reduce()


def _dispatch(base) -> dict:
    d = dict(base.dispatch)
    d[pickle.REDUCE[0]] = lambda self: self.load_reduce()
    d[pickle.BUILD[0]] = lambda self: self.load_build()
    return d


class _PlainRestricted(_Guard, pickle._Unpickler):
    dispatch = _dispatch(pickle._Unpickler)


_NEW_READ = "ensure_native_byte_order" in inspect.signature(_jnp.NumpyArrayWrapper.read).parameters


class _JoblibRestricted(_Guard, _jnp.NumpyUnpickler):
    dispatch = _dispatch(_jnp.NumpyUnpickler)

    def load_build(self):
        pickle._Unpickler.load_build(self)
        top = self.stack[-1]
        if isinstance(top, _jnp.NDArrayWrapper):
            raise UnsafePickleError("old joblib format (arrays in side files) is not accepted")
        if not isinstance(top, _jnp.NumpyArrayWrapper):
            return
        self.stack.pop()
        if top.dtype.hasobject:        # a nested pickle: same checks, own stack
            arr = _PlainRestricted(self.file_handle).load()
            if not isinstance(arr, self.np.ndarray):
                raise UnsafePickleError("an object-array record does not hold an array")
        elif _NEW_READ:
            arr = top.read(self, self.ensure_native_byte_order)
        else:  # pragma: no cover - joblib < 1.5
            arr = top.read(self)
        self.stack.append(arr)


def _open_stream(fobj):
    """joblib's decompressing context manager (name differs across joblib versions)."""
    if hasattr(_jnp, "_validate_fileobject_and_memmap"):
        return _jnp._validate_fileobject_and_memmap(fobj, "", None)
    return _jnp._read_fileobject(fobj, "", None)  # pragma: no cover - joblib < 1.5


def restricted_load(data: bytes):
    """Unpickle joblib-dumped ``data`` under the allow-list; :class:`UnsafePickleError` if
    it names or calls anything outside it (raised before that thing is imported or run)."""
    with _open_stream(io.BytesIO(data)) as opened:
        stream = opened[0] if isinstance(opened, tuple) else opened
        if isinstance(stream, str):
            raise UnsafePickleError("old joblib format is not accepted")
        params = inspect.signature(_jnp.NumpyUnpickler.__init__).parameters
        if "ensure_native_byte_order" in params:
            unpickler = _JoblibRestricted("", stream, True, mmap_mode=None)
        else:  # pragma: no cover - joblib < 1.5
            unpickler = _JoblibRestricted("", stream, mmap_mode=None)
        return unpickler.load()


def load_or_refuse(data: bytes, path, hardware: str):
    """:func:`restricted_load`, with one-line :class:`ExanteError` s naming ``path``."""
    try:
        return restricted_load(data)
    except RetiredArtifactError:
        raise retired_artifact_error(path, hardware) from None
    except UnsafePickleError as exc:
        raise ExanteError(f"refusing to load {path}: {exc} (an artifact may hold only exante, "
                          f"numpy, scikit-learn and scipy objects); refit with `exante fit "
                          f"--hardware {hardware}` or restore the original file") from None
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError,
            ImportError, IndexError, KeyError, OSError, RecursionError, zlib.error,
            lzma.LZMAError) as exc:
        raise ExanteError(f"cannot unpickle {path} ({type(exc).__name__}: {exc}); refit with "
                          f"`exante fit --hardware {hardware}`") from None
