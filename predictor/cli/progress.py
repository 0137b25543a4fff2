"""Progress bars and messages on stderr for work longer than a few seconds.

One switch for the whole process: :func:`set_enabled` (the CLI turns progress off with
``--quiet`` and in ``--json`` mode); bars use tqdm and go to stderr only, so stdout stays
the command's result. Library callers get no bars unless they pass ``enabled=True``.
"""

from __future__ import annotations

import sys
from typing import Iterable, Iterator, TypeVar

T = TypeVar("T")
_ENABLED = False           # off for library use; the CLI turns it on (not --quiet, not --json)


def set_enabled(on: bool) -> None:
    """Turn bars and progress messages on or off for this process."""
    global _ENABLED
    _ENABLED = bool(on)


def enabled() -> bool:
    """Whether progress is shown (the CLI's choice; off by default)."""
    return _ENABLED


def bar(iterable: Iterable[T], *, desc: str, total: int | None = None,
        unit: str = "it", enabled: bool | None = None) -> Iterator[T]:
    """``iterable`` with a tqdm bar on stderr (``desc``: what is counted); a plain iterator
    when progress is off. The bar is removed when done."""
    on = _ENABLED if enabled is None else enabled
    if not on:
        yield from iterable
        return
    from tqdm.auto import tqdm

    with tqdm(iterable, desc=f"exante: {desc}", total=total, unit=unit, file=sys.stderr,
              leave=False, dynamic_ncols=True, mininterval=0.5) as it:
        yield from it


def message(text: str, *, prefix: str = "exante") -> None:
    """One progress line on stderr (printed above any running bar); nothing when off."""
    if not _ENABLED:
        return
    from tqdm.auto import tqdm

    tqdm.write(f"{prefix}: {text}", file=sys.stderr)
