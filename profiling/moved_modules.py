"""Old module paths kept importable after the issue-19 layout move, with a DeprecationWarning.

``install(table)`` puts one finder first on ``sys.meta_path``: importing an old dotted name
(``predictor.calibrated``) gives a module whose attributes are the new module's
(``predictor.engine.calibrated``), and warns once.  An old *package* path maps its submodules
too (``predictor.lifecycle.stages`` -> ``predictor.carbon.lifecycle.stages``).  A removed
path (``install(..., removed=...)``) fails with ModuleNotFoundError saying why.
``new_name(old)`` translates a dotted name without importing anything (pickled artifacts name
their classes by module path: :mod:`predictor.artifacts.safe_load` loads old ones quietly).
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import sys
import types
import warnings

_TABLE: dict[str, str] = {}
_REMOVED: dict[str, str] = {}


def _old_prefix(table: dict[str, str], module: str) -> str | None:
    """The longest key of ``table`` that is ``module`` or a dotted prefix of it (None: none)."""
    parts = module.split(".")
    for n in range(len(parts), 0, -1):
        prefix = ".".join(parts[:n])
        if prefix in table:
            return prefix
    return None


def new_name(module: str) -> str:
    """The current dotted path of ``module`` (unchanged when it did not move)."""
    old = _old_prefix(_TABLE, module)
    return module if old is None else _TABLE[old] + module[len(old):]


class _MovedFinder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    def find_spec(self, fullname, path=None, target=None):
        gone = _old_prefix(_REMOVED, fullname)
        if gone is not None:
            raise ModuleNotFoundError(f"{fullname} no longer exists: {_REMOVED[gone]}",
                                      name=fullname)
        if new_name(fullname) == fullname:
            return None
        return importlib.machinery.ModuleSpec(fullname, self, is_package=True)

    def create_module(self, spec):
        return None

    def exec_module(self, module: types.ModuleType) -> None:
        new = new_name(module.__name__)
        warnings.warn(f"{module.__name__} moved to {new}; import it from there (the old path "
                      "will be removed)", DeprecationWarning, stacklevel=2)
        target = importlib.import_module(new)
        module.__dict__.update({k: v for k, v in vars(target).items()
                                if not (k.startswith("__") and k.endswith("__"))})
        module.__doc__ = target.__doc__
        module.__path__ = []          # submodules resolve through this finder too


_FINDER = _MovedFinder()


def install(table: dict[str, str], removed: dict[str, str] | None = None) -> None:
    """Register ``old dotted path -> new dotted path`` entries and removed paths (``old ->
    why``) (idempotent)."""
    _TABLE.update(table)
    _REMOVED.update(removed or {})
    if _FINDER not in sys.meta_path:
        sys.meta_path.insert(0, _FINDER)


def forward(package: str, target: str, *, deprecated: bool = True):
    """A PEP 562 ``__getattr__`` for a package that replaced a module of the same name: the
    old module's names (``from predictor.fit import fit_hardware``) resolve in ``target``."""

    def __getattr__(name: str):
        try:
            value = getattr(importlib.import_module(target), name)
        except AttributeError:
            raise AttributeError(f"module {package!r} has no attribute {name!r}") from None
        if deprecated:
            warnings.warn(f"{package}.{name} moved to {target}.{name}; import it from there",
                          DeprecationWarning, stacklevel=2)
        return value

    return __getattr__
