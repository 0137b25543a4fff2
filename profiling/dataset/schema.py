"""The dataset contract (DESIGN.md §3): the atomic CSV tables, and one import for the contract
(columns in :mod:`profiling.dataset.columns`, cells in ``cells``, row builders in ``rows``,
atomic writes in ``atomic``).

Two tables per hardware folder (``datasets/<hw>/``):

- ``layers.csv``: one row per (layer config, mode, exec, dtype, optimizer) measured in
  isolation (``LAYER_COLUMNS``), plus ``layer_type == "reference"`` rows: a fixed reference
  workload re-measured every ~20 configs for drift detection;
- ``models.csv``: one row per whole-model measurement (``MODEL_COLUMNS``) with the count of each
  layer config it contains and the additivity ratio rho = sum(count * E_layer) / E_model;
- ``tasks.csv``: sweep bookkeeping (``TASK_COLUMNS``), one row per finished sweep task, so a
  resumed sweep skips it even when the task wrote no new measurement row (all deduplicated);
- ``meta.json``: sweeps, sessions and environments (written with :func:`write_json_atomic`).

Units are in the names (``_s``, ``_j``, ``_w``, ``_mhz``, ``_c``). ``time_s`` and ``energy_j``
are per call of the layer/model (for a CUDA graph holding n calls, per one of those calls).
Every append is atomic: the whole new file is written to a temporary file in the same folder,
fsync'ed and ``os.replace``'d over the old one, so a crash leaves either the old or the new
file, never a torn one (a sweep loses at most the task in flight).
"""

from __future__ import annotations

import csv
import io
import os
from typing import Iterable, Mapping, Sequence

from profiling.dataset.atomic import (
    file_lock,
    read_json,
    update_meta,
    write_atomic_chunks,
    write_bytes_atomic,
    write_json_atomic,
)
from profiling.dataset.cells import format_cell, parse_value
from profiling.dataset.columns import (
    BOOL_COLUMNS,
    DTYPES,
    EXECS,
    FEATURE_COLUMNS,
    FLOAT_COLUMNS,
    INT_COLUMNS,
    JSON_COLUMNS,
    LAYER_COLUMNS,
    LAYER_FILE,
    LAYER_ID_COLUMNS,
    MEASUREMENT_COLUMNS,
    META_FILE,
    MODEL_COLUMNS,
    MODEL_FILE,
    MODEL_ID_COLUMNS,
    MODEL_SUMMARY_COLUMNS,
    MODES,
    OPTIMIZERS,
    PROVENANCE_COLUMNS,
    SCHEMA_VERSION,
    TASK_COLUMNS,
    TASK_FILE,
    row_key,
)
from profiling.dataset.rows import check_choice, check_run, layer_row, model_row, task_row
from profiling.errors import ExanteError

__all__ = [
    "BOOL_COLUMNS", "DTYPES", "EXECS", "FEATURE_COLUMNS", "FLOAT_COLUMNS", "INT_COLUMNS",
    "JSON_COLUMNS", "LAYER_COLUMNS", "LAYER_FILE", "LAYER_ID_COLUMNS", "MEASUREMENT_COLUMNS",
    "META_FILE", "MODEL_COLUMNS", "MODEL_FILE", "MODEL_ID_COLUMNS", "MODEL_SUMMARY_COLUMNS",
    "MODES", "OPTIMIZERS", "PROVENANCE_COLUMNS", "SCHEMA_VERSION", "TASK_COLUMNS", "TASK_FILE",
    "CsvTable", "check_choice", "check_run", "layer_row", "layer_table", "model_row",
    "model_table", "parse_value", "read_json", "row_key", "task_row", "task_table",
    "update_meta", "write_bytes_atomic", "write_json_atomic",
]

# the old private names, still used by profiling.sweeps.dataset_card (use profiling.dataset.atomic)
_write_atomic_bytes = write_atomic_chunks
_locked = file_lock


class CsvTable:
    """A CSV file with a fixed header, appended atomically.

    ``append(rows)`` writes old content + new rows to a temporary file in the same folder,
    fsyncs it and ``os.replace``s it over the old file (under an advisory file lock), so
    readers and crashes see either the old or the new table. The header is written once, when
    the file is created; an existing file whose header differs from ``columns`` is refused
    with an :class:`ExanteError` (migrate it rather than mixing layouts).
    """

    def __init__(self, path: str | os.PathLike, columns: Sequence[str], key_columns: Sequence[str] = ("sweep_id", "key")):
        self.path = os.fspath(path)
        self.columns = tuple(columns)
        if len(set(self.columns)) != len(self.columns):
            raise ExanteError(f"duplicate column names in table {self.path}")
        missing = [c for c in key_columns if c not in self.columns]
        if missing:
            raise ExanteError(f"key column(s) {missing} are not columns of table {self.path}")
        self.key_columns = tuple(key_columns)

    def __repr__(self) -> str:
        return f"CsvTable({self.path!r}, {len(self.columns)} columns)"

    def exists(self) -> bool:
        return os.path.isfile(self.path) and os.path.getsize(self.path) > 0

    def header(self) -> list[str] | None:
        if not self.exists():
            return None
        with open(self.path, newline="", encoding="utf-8") as f:
            first = next(csv.reader(f), None)
        return first

    def check_header(self) -> None:
        """Refuse (ExanteError) an existing file whose header differs from ``columns``."""
        head = self.header()
        if head is None:
            return
        if tuple(head) != self.columns:
            extra = [c for c in head if c not in self.columns]
            missing = [c for c in self.columns if c not in head]
            raise ExanteError(
                f"{self.path} has a different header than this version of exante expects "
                f"(unknown columns: {extra or 'none'}; missing columns: {missing or 'none'}"
                f"{'; same columns, different order' if not extra and not missing else ''}); "
                f"write to a new folder or migrate the file"
            )

    def encode(self, rows: Sequence[Mapping], with_header: bool) -> bytes:
        """The CSV bytes of ``rows`` (every column present, none unknown), header first if asked."""
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        if with_header:
            w.writerow(self.columns)
        for i, row in enumerate(rows):
            if not isinstance(row, Mapping):
                raise ExanteError(f"row {i} for {self.path} is a {type(row).__name__}, expected a dict")
            unknown = set(row) - set(self.columns)
            missing = [c for c in self.columns if c not in row]
            if unknown or missing:
                raise ExanteError(
                    f"row {i} for {self.path} does not match the table's columns "
                    f"(unknown: {sorted(unknown) or 'none'}; missing: {missing or 'none'}); "
                    f"build rows with schema.layer_row / model_row"
                )
            w.writerow([format_cell(row[c]) for c in self.columns])
        return buf.getvalue().encode("utf-8")

    def append(self, rows: Iterable[Mapping]) -> int:
        """Append ``rows`` atomically; returns how many were written. ``[]`` is a no-op."""
        rows = list(rows)
        if not rows:
            return 0
        with file_lock(self.path):
            self.check_header()
            exists = self.exists()
            new = self.encode(rows, with_header=not exists)

            def chunks():
                if exists:
                    with open(self.path, "rb") as f:
                        last = b"\n"
                        while True:
                            block = f.read(1 << 20)
                            if not block:
                                break
                            last = block[-1:]
                            yield block
                    if last != b"\n":  # a file edited by hand without a final newline
                        yield b"\n"
                yield new

            write_atomic_chunks(self.path, chunks())
        return len(rows)

    def read(self, *, raw: bool = False) -> list[dict]:
        """All rows as dicts (typed values; JSON columns stay strings; ``raw`` keeps strings)."""
        if not self.exists():
            return []
        self.check_header()
        with open(self.path, newline="", encoding="utf-8") as f:
            reader = csv.DictReader(f)
            if raw:
                return [dict(r) for r in reader]
            return [{c: parse_value(c, r.get(c)) for c in self.columns} for r in reader]

    def read_frame(self):
        """The table as a pandas DataFrame (empty, with the columns, if the file is missing)."""
        import pandas as pd

        if not self.exists():
            return pd.DataFrame(columns=list(self.columns))
        self.check_header()
        return pd.read_csv(self.path, keep_default_na=True)

    def keys(self, columns: Sequence[str] | None = None) -> set:
        """The set of row keys present: tuples of ``columns`` (default ``key_columns``).

        A single key column gives a set of plain values instead of 1-tuples.
        """
        cols = tuple(columns or self.key_columns)
        bad = [c for c in cols if c not in self.columns]
        if bad:
            raise ExanteError(f"{bad} are not columns of {self.path}")
        if not self.exists():
            return set()
        self.check_header()
        out = set()
        with open(self.path, newline="", encoding="utf-8") as f:
            for r in csv.DictReader(f):
                vals = tuple(r.get(c) or "" for c in cols)
                out.add(vals[0] if len(cols) == 1 else vals)
        return out

    def __len__(self) -> int:
        return len(self.read(raw=True))

    _check_header = check_header        # the old private names (predictor.cli.checks uses one)
    _encode = encode


def layer_table(directory: str | os.PathLike) -> CsvTable:
    """The ``layers.csv`` table of the dataset in ``directory``."""
    return CsvTable(os.path.join(os.fspath(directory), LAYER_FILE), LAYER_COLUMNS)


def model_table(directory: str | os.PathLike) -> CsvTable:
    """The ``models.csv`` table of the dataset in ``directory``."""
    return CsvTable(os.path.join(os.fspath(directory), MODEL_FILE), MODEL_COLUMNS)


def task_table(directory: str | os.PathLike) -> CsvTable:
    """The ``tasks.csv`` table (resume bookkeeping) of the dataset in ``directory``."""
    return CsvTable(os.path.join(os.fspath(directory), TASK_FILE), TASK_COLUMNS)


# --------------------------------------------------------------------------- JSON
