"""All-or-nothing writes to a dataset folder: several files appended as one change.

Each table append in :mod:`profiling.dataset.schema` is atomic on its own; a profile writes three
files (``layers.csv``, ``models.csv``, ``meta.json``), so a failure after the first would
leave rows of a session whose model row or session record is missing. :func:`all_or_nothing`
restores every named file to its bytes from before (or removes it, if it did not exist)
when the block raises.
"""

from __future__ import annotations

import contextlib
import os

from profiling.dataset.atomic import write_atomic_chunks


@contextlib.contextmanager
def all_or_nothing(*paths):
    """Inside the block, write ``paths`` freely; on any exception each is put back as it was
    (atomically) and the exception propagates."""
    before: dict[str, bytes | None] = {}
    for p in map(os.fspath, paths):
        try:
            with open(p, "rb") as fh:
                before[p] = fh.read()
        except FileNotFoundError:
            before[p] = None
    try:
        yield
    except BaseException:
        for p, data in before.items():
            if data is None:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(p)
            else:
                write_atomic_chunks(p, [data])
        raise
