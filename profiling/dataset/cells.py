"""One CSV cell: Python value -> text (:func:`format_cell`, JSON for containers, ``""`` for
``None``/non-finite) and back by the column's type (:func:`parse_value`)."""

from __future__ import annotations

import json
import math
from typing import Any, Mapping

from profiling.dataset.columns import BOOL_COLUMNS, FLOAT_COLUMNS, INT_COLUMNS


def json_text(obj: Any) -> str:
    """Compact, key-sorted JSON of ``obj`` (non-finite floats as null)."""
    return json.dumps(jsonable(obj), sort_keys=True, separators=(",", ":"))


def jsonable(obj: Any) -> Any:
    """``obj`` made JSON-safe: mappings/sequences recursed, numpy/torch scalars unwrapped, else ``str``."""
    if isinstance(obj, Mapping):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [jsonable(v) for v in obj]
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, (str, int, float, bool)) or obj is None:
        return obj
    if hasattr(obj, "item") and callable(obj.item):  # numpy / torch scalars
        try:
            return obj.item()
        except (TypeError, ValueError, RuntimeError):  # .item() of a multi-element array: str() below
            pass
    return str(obj)


def format_cell(value: Any) -> str:
    """The CSV text of one value (``""`` for ``None`` and non-finite floats)."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        if not math.isfinite(value):
            return ""
        return repr(value)
    if isinstance(value, (dict, list, tuple)):
        return json_text(value)
    if hasattr(value, "item") and callable(value.item):
        try:
            return format_cell(value.item())
        except (TypeError, ValueError, RuntimeError):  # .item() of a multi-element array: str() below
            pass
    return str(value)


def parse_value(column: str, text: str | None) -> Any:
    """Parse one CSV cell back into a Python value by its column's type (JSON stays a string)."""
    if text is None or text == "":
        return None
    if column in BOOL_COLUMNS:
        return text.strip().lower() in ("true", "1", "yes")
    if column in INT_COLUMNS:
        try:
            return int(text)
        except ValueError:
            try:
                return int(float(text))
            except ValueError:
                return text
    if column in FLOAT_COLUMNS:
        try:
            return float(text)
        except ValueError:
            return text
    return text
