"""The dataset contract (DESIGN.md §3): column lists, row builders, atomic CSV tables.

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

import contextlib
import csv
import io
import json
import math
import os
import tempfile
from typing import Any, Iterable, Mapping, Sequence

from profiling.errors import ExanteError

SCHEMA_VERSION = "1"

# Feature columns (features.py contract: every feature dict has at least these). Extra,
# type-specific features go to ``features_json``.
FEATURE_COLUMNS = (
    "macs",
    "flops",
    "params",
    "bytes_read",
    "bytes_written",
    "input_numel",
    "output_numel",
    "dtype_bytes",
    "arith_intensity",
)
# (``batch`` is a feature too; it has its own column, shared with the identity fields.)

# The protocol's measurement fields, per call (see protocol.Measurement).
MEASUREMENT_COLUMNS = (
    "time_s",
    "energy_j",
    "energy_dynamic_j",
    "power_w",
    "idle_power_w",
    "spread",
    "n_windows",
    "calls_per_window",
    "calls_per_invocation",
    "remeasured",
    "windows_json",
    "sm_clock_mhz",
    "temperature_c",
    "meter",
    "meter_measured",
)

# Provenance: where, when and with what the measurement was taken.
PROVENANCE_COLUMNS = (
    "gpu_name",
    "driver",
    "power_limit_w",
    "cpu_name",
    "torch_version",
    "cuda_version",
    "cudnn_version",
    "allow_tf32_matmul",
    "allow_tf32_cudnn",
    "date",
    "protocol_version",
    "schema_version",
    "session_id",
)

LAYER_ID_COLUMNS = (
    "hardware",
    "sweep_id",
    "key",
    "config_key",
    "task_key",
    "layer_type",
    "hparams",
    "input_shapes",
    "output_shapes",
    "dtype",
    "batch",
    "mode",
    "exec",
    "optimizer",
)

LAYER_COLUMNS: tuple[str, ...] = (
    LAYER_ID_COLUMNS + FEATURE_COLUMNS + ("features_json",) + MEASUREMENT_COLUMNS + PROVENANCE_COLUMNS
)

MODEL_ID_COLUMNS = (
    "hardware",
    "sweep_id",
    "key",
    "task_key",
    "model_ref",
    "family",
    "spec",
    "input_shape",
    "dtype",
    "batch",
    "mode",
    "exec",
    "optimizer",
)

MODEL_SUMMARY_COLUMNS = (
    # totals over the model's supported layer calls (sum of count * feature)
    "params",
    "macs",
    "flops",
    "bytes_read",
    "bytes_written",
    "layer_counts",  # JSON: config key -> calls per forward
    "n_layer_calls",  # supported leaf calls per forward
    "n_distinct_layers",
    "n_unsupported",
    "unsupported_types",  # JSON list
    "sum_layer_energy_j",  # sum of count * E_layer (eager, same mode/dtype/optimizer)
    "sum_layer_time_s",
    "sum_layer_energy_graph_j",  # the same over CUDA-graph layer measurements (empty if none)
    "additivity_ratio",  # sum_layer_energy_j / energy_j
    "time_additivity_ratio",  # sum_layer_time_s / time_s
    "layers_reused",  # how many layer configs came from earlier measurements of the sweep
)

MODEL_COLUMNS: tuple[str, ...] = (
    MODEL_ID_COLUMNS + MODEL_SUMMARY_COLUMNS + MEASUREMENT_COLUMNS + PROVENANCE_COLUMNS
)

TASK_COLUMNS: tuple[str, ...] = (
    "sweep_id",
    "key",  # the sweep task key
    "kind",  # "layer" | "model"
    "family",
    "status",  # "ok" | "error"
    "error",
    "n_layer_rows",
    "n_model_rows",
    "elapsed_s",
    "session_id",
    "date",
)

JSON_COLUMNS = frozenset(
    {"hparams", "input_shapes", "output_shapes", "features_json", "windows_json", "spec", "input_shape",
     "layer_counts", "unsupported_types"}
)
INT_COLUMNS = frozenset(
    {"batch", "macs", "flops", "params", "bytes_read", "bytes_written", "input_numel", "output_numel", "dtype_bytes",
     "n_windows", "calls_per_window", "calls_per_invocation", "remeasured", "n_layer_calls", "n_distinct_layers",
     "n_unsupported", "layers_reused", "n_layer_rows", "n_model_rows"}
)
BOOL_COLUMNS = frozenset({"meter_measured", "allow_tf32_matmul", "allow_tf32_cudnn"})
FLOAT_COLUMNS = frozenset(
    {"time_s", "energy_j", "energy_dynamic_j", "power_w", "idle_power_w", "spread", "sm_clock_mhz", "temperature_c",
     "power_limit_w", "arith_intensity", "sum_layer_energy_j", "sum_layer_time_s", "sum_layer_energy_graph_j",
     "additivity_ratio", "time_additivity_ratio", "elapsed_s"}
)

MODES = ("inference", "forward_backward", "train_step")
EXECS = ("eager", "graph")
DTYPES = ("fp32", "bf16", "fp16")
OPTIMIZERS = ("sgd", "adam", "adamw")

LAYER_FILE = "layers.csv"
MODEL_FILE = "models.csv"
TASK_FILE = "tasks.csv"
META_FILE = "meta.json"


# --------------------------------------------------------------------------- keys


def row_key(config_key: str, mode: str, exec: str, dtype: str, optimizer: str | None) -> str:
    """The dataset key of one layer measurement: config key + mode + exec + dtype + optimizer.

    ``optimizer`` only matters for ``train_step`` (it is ``""`` otherwise), so the same layer
    measured for inference under two sweeps' optimizer settings is one key.
    """
    opt = (optimizer or "") if mode == "train_step" else ""
    return f"{config_key}|{mode}|{exec}|{dtype}|{opt}"


# --------------------------------------------------------------------------- value helpers


def _json(obj: Any) -> str:
    return json.dumps(_jsonable(obj), sort_keys=True, separators=(",", ":"))


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, Mapping):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, (str, int, float, bool)) or obj is None:
        return obj
    if hasattr(obj, "item") and callable(obj.item):  # numpy / torch scalars
        try:
            return obj.item()
        except Exception:
            pass
    return str(obj)


_WINDOW_FIELDS = ("calls", "time_s", "energy_j", "jitter_s", "round", "used", "n_changes", "span_s")


def _measurement_dict(measurement: Any) -> dict:
    """Flatten a protocol.Measurement (or an ``as_row()`` dict) into measurement columns."""
    if measurement is None:
        return {}
    if isinstance(measurement, Mapping):
        d = dict(measurement)
        windows = d.pop("windows", None)
    else:
        d = dict(measurement.as_row()) if hasattr(measurement, "as_row") else dict(vars(measurement))
        windows = getattr(measurement, "windows", None)
        if "windows" in d and not isinstance(d["windows"], (int, float)):
            d.pop("windows")
    out = {k: d.get(k) for k in MEASUREMENT_COLUMNS if k in d}
    if windows is not None and not isinstance(windows, (int, float, str)):
        ws = []
        for w in windows:
            if isinstance(w, Mapping):
                ws.append({k: w.get(k) for k in _WINDOW_FIELDS if k in w})
            else:
                ws.append({k: getattr(w, k) for k in _WINDOW_FIELDS if hasattr(w, k)})
        out.setdefault("windows_json", _json(ws))
        out.setdefault("n_windows", len(ws))
    if "n_windows" not in out:
        nw = d.get("n_windows", d.get("windows"))
        if isinstance(nw, (int, float)):
            out["n_windows"] = int(nw)
    if "meter_measured" not in out and "measured" in d:
        out["meter_measured"] = d["measured"]
    return out


def _provenance(env: Mapping | None) -> dict:
    env = dict(env or {})
    out = {k: env.get(k) for k in PROVENANCE_COLUMNS if k in env}
    out["schema_version"] = SCHEMA_VERSION
    return out


def _features(features: Mapping | None) -> dict:
    features = dict(features or {})
    out = {k: features.get(k) for k in FEATURE_COLUMNS}
    extras = {k: v for k, v in features.items() if k not in FEATURE_COLUMNS and k != "batch"}
    out["features_json"] = _json(extras)
    return out


def _complete(row: dict, columns: Sequence[str], what: str) -> dict:
    unknown = set(row) - set(columns)
    if unknown:
        raise ExanteError(f"{what} row has unknown column(s) {sorted(unknown)}; known columns: {', '.join(columns)}")
    return {c: row.get(c) for c in columns}


# --------------------------------------------------------------------------- row builders


def layer_row(
    config: Any,
    *,
    features: Mapping | None,
    measurement: Any,
    env: Mapping | None,
    mode: str,
    exec: str,
    dtype: str,
    optimizer: str | None = None,
    hardware: str,
    sweep_id: str | None = None,
    task_key: str | None = None,
    layer_type: str | None = None,
    extra: Mapping | None = None,
) -> dict:
    """One ``layers.csv`` row (every ``LAYER_COLUMNS`` key present, missing values ``None``).

    ``config`` is a ``capture.LayerConfig`` (or ``None`` with ``layer_type``/``extra`` giving the
    identity, e.g. for reference rows); ``measurement`` a ``protocol.Measurement`` or its
    ``as_row()`` dict; ``env`` ``protocol.environment_info(meter)`` (+ ``session_id``).
    """
    opt = check_run(mode, exec, dtype, optimizer)
    row: dict[str, Any] = {
        "hardware": hardware,
        "sweep_id": sweep_id,
        "task_key": task_key,
        "mode": mode,
        "exec": exec,
        "dtype": dtype,
        "optimizer": opt,
    }
    if config is not None:
        ckey = config.key() if callable(getattr(config, "key", None)) else str(config.key)
        row.update(
            config_key=ckey,
            key=row_key(ckey, mode, exec, dtype, opt),
            layer_type=config.type,
            hparams=_json(config.hparams_dict() if hasattr(config, "hparams_dict") else dict(config.hparams)),
            input_shapes=_json(config.input_shapes),
            output_shapes=_json(config.output_shapes),
            batch=config.batch,
        )
    if layer_type is not None:
        row["layer_type"] = layer_type
    row.update(_features(features))
    if features and features.get("batch") is not None:  # corrected for batch_first=False etc.
        row["batch"] = features.get("batch")
    row.update(_provenance(env))
    row.update(_measurement_dict(measurement))
    if extra:
        row.update(extra)
    if not row.get("key") and row.get("config_key"):
        row["key"] = row_key(row["config_key"], mode, exec, dtype, opt)
    for c in JSON_COLUMNS:
        if c in row and row[c] is not None and not isinstance(row[c], str):
            row[c] = _json(row[c])
    return _complete(row, LAYER_COLUMNS, "layer")


def model_row(
    *,
    key: str,
    model_ref: str | None,
    family: str | None,
    spec: Any,
    input_shape: Any,
    batch: int,
    mode: str,
    dtype: str,
    optimizer: str | None,
    measurement: Any,
    env: Mapping | None,
    hardware: str,
    layer_counts: Mapping[str, int],
    totals: Mapping | None = None,
    exec: str = "eager",
    sweep_id: str | None = None,
    task_key: str | None = None,
    extra: Mapping | None = None,
) -> dict:
    """One ``models.csv`` row (every ``MODEL_COLUMNS`` key present, missing values ``None``).

    ``totals`` carries the summary fields (params, macs, ..., sum_layer_energy_j,
    additivity_ratio, ...; see ``MODEL_SUMMARY_COLUMNS``).
    """
    opt = check_run(mode, exec, dtype, optimizer)
    row: dict[str, Any] = {
        "hardware": hardware,
        "sweep_id": sweep_id,
        "key": key,
        "task_key": task_key,
        "model_ref": model_ref,
        "family": family,
        "spec": _json(spec) if spec is not None else None,
        "input_shape": _json(input_shape),
        "batch": batch,
        "mode": mode,
        "exec": exec,
        "dtype": dtype,
        "optimizer": opt,
        "layer_counts": _json(dict(layer_counts)),
        "n_layer_calls": int(sum(layer_counts.values())),
        "n_distinct_layers": len(layer_counts),
    }
    if totals:
        unknown = set(totals) - set(MODEL_SUMMARY_COLUMNS)
        if unknown:
            raise ExanteError(f"model totals have unknown field(s) {sorted(unknown)}; known: {', '.join(MODEL_SUMMARY_COLUMNS)}")
        row.update(totals)
    row.update(_provenance(env))
    row.update(_measurement_dict(measurement))
    if extra:
        row.update(extra)
    for c in JSON_COLUMNS:
        if c in row and row[c] is not None and not isinstance(row[c], str):
            row[c] = _json(row[c])
    return _complete(row, MODEL_COLUMNS, "model")


def task_row(**fields) -> dict:
    return _complete(dict(fields), TASK_COLUMNS, "task")


def check_choice(name: str, value: Any, choices: Sequence[str]) -> None:
    if value not in choices:
        raise ExanteError(f"unknown {name} {value!r}; accepted: {', '.join(map(str, choices))}")


def check_run(mode: str, exec: str, dtype: str | None, optimizer: str | None, *,
              default_optimizer: str | None = None) -> str | None:
    """Validate one (mode, exec, dtype, optimizer) combination (``dtype=None`` skips it).

    Returns the optimizer that applies: ``None`` outside ``train_step``; in ``train_step`` the
    given one, or ``default_optimizer`` when none is given (an error when that is ``None``).
    """
    check_choice("mode", mode, MODES)
    check_choice("exec", exec, EXECS)
    if dtype is not None:
        check_choice("dtype", dtype, DTYPES)
    if mode != "train_step":
        return None
    optimizer = optimizer or default_optimizer
    check_choice("optimizer", optimizer, OPTIMIZERS)
    return optimizer


# --------------------------------------------------------------------------- CSV


def _fmt(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        if not math.isfinite(value):
            return ""
        return repr(value)
    if isinstance(value, (dict, list, tuple)):
        return _json(value)
    if hasattr(value, "item") and callable(value.item):
        try:
            return _fmt(value.item())
        except Exception:
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


@contextlib.contextmanager
def _locked(path: str):
    """An advisory inter-process lock on ``path + '.lock'`` (no-op where fcntl is missing).

    The lock file is removed on release, so no ``.lock`` stays in a dataset folder; a waiter
    that got the lock on a file removed meanwhile (its inode is no longer the path's) retries
    on the current one."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows
        yield
        return
    lock = path + ".lock"
    os.makedirs(os.path.dirname(os.path.abspath(lock)), exist_ok=True)   # a new dataset folder
    while True:
        fd = os.open(lock, os.O_CREAT | os.O_RDWR, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            try:
                st, held = os.stat(lock), os.fstat(fd)
                current = (st.st_ino, st.st_dev) == (held.st_ino, held.st_dev)
            except FileNotFoundError:
                current = False
        except BaseException:
            os.close(fd)
            raise
        if current:
            break
        os.close(fd)
    try:
        yield
    finally:
        try:
            with contextlib.suppress(OSError):
                os.unlink(lock)
        finally:
            os.close(fd)                    # releases the flock


def _new_file_mode() -> int:
    """0o666 less the process umask (0o644 with the usual 022), read without changing it."""
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return 0o666 & ~int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    return 0o644


def _fsync_dir(directory: str) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _write_atomic_bytes(path: str, chunks: Iterable[bytes]) -> None:
    directory = os.path.dirname(os.path.abspath(path)) or "."
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix="." + os.path.basename(path) + ".", suffix=".tmp", dir=directory)
    try:
        try:                                # mkstemp makes 0600: keep the file's mode, else 0644
            mode = os.stat(path).st_mode & 0o7777
        except OSError:
            mode = _new_file_mode()
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as f:
            for chunk in chunks:
                f.write(chunk)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        tmp = None
        _fsync_dir(directory)
    finally:
        if tmp is not None:
            with contextlib.suppress(OSError):
                os.unlink(tmp)


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

    def _check_header(self) -> None:
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

    def _encode(self, rows: Sequence[Mapping], with_header: bool) -> bytes:
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
            w.writerow([_fmt(row[c]) for c in self.columns])
        return buf.getvalue().encode("utf-8")

    def append(self, rows: Iterable[Mapping]) -> int:
        """Append ``rows`` atomically; returns how many were written. ``[]`` is a no-op."""
        rows = list(rows)
        if not rows:
            return 0
        with _locked(self.path):
            self._check_header()
            exists = self.exists()
            new = self._encode(rows, with_header=not exists)

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

            _write_atomic_bytes(self.path, chunks())
        return len(rows)

    def read(self, *, raw: bool = False) -> list[dict]:
        """All rows as dicts (typed values; JSON columns stay strings; ``raw`` keeps strings)."""
        if not self.exists():
            return []
        self._check_header()
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
        self._check_header()
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
        self._check_header()
        out = set()
        with open(self.path, newline="", encoding="utf-8") as f:
            for r in csv.DictReader(f):
                vals = tuple(r.get(c) or "" for c in cols)
                out.add(vals[0] if len(cols) == 1 else vals)
        return out

    def __len__(self) -> int:
        return len(self.read(raw=True))


def layer_table(directory: str | os.PathLike) -> CsvTable:
    return CsvTable(os.path.join(os.fspath(directory), LAYER_FILE), LAYER_COLUMNS)


def model_table(directory: str | os.PathLike) -> CsvTable:
    return CsvTable(os.path.join(os.fspath(directory), MODEL_FILE), MODEL_COLUMNS)


def task_table(directory: str | os.PathLike) -> CsvTable:
    return CsvTable(os.path.join(os.fspath(directory), TASK_FILE), TASK_COLUMNS)


# --------------------------------------------------------------------------- JSON


def write_bytes_atomic(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically: a temporary file in the same folder, fsync'ed and
    ``os.replace``'d over the old one (whose mode it keeps; a new file gets 0o666 less the
    umask), then the folder fsync'ed -- a crash leaves the old file or the new one."""
    _write_atomic_bytes(os.fspath(path), [data])


def write_json_atomic(path: str | os.PathLike, obj: Any) -> None:
    """Write ``obj`` as indented JSON to ``path`` atomically (temp file, fsync, os.replace)."""
    text = json.dumps(_jsonable(obj), indent=2, sort_keys=True) + "\n"
    _write_atomic_bytes(os.fspath(path), [text.encode("utf-8")])


def update_meta(directory: str | os.PathLike, update) -> dict:
    """Read-modify-write ``<directory>/meta.json`` under the file lock; ``update(meta)`` edits it in place."""
    path = os.path.join(os.fspath(directory), META_FILE)
    os.makedirs(os.fspath(directory), exist_ok=True)
    with _locked(path):
        meta = read_json(path, default={}) or {}
        update(meta)
        write_json_atomic(path, meta)
    return meta


def read_json(path: str | os.PathLike, default: Any = None) -> Any:
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except FileNotFoundError:
        return default
    except json.JSONDecodeError as exc:
        raise ExanteError(f"{os.fspath(path)} is not valid JSON ({exc})") from None
