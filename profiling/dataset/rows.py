"""Row builders of the dataset tables: :func:`layer_row`, :func:`model_row`, :func:`task_row`
(every column present, unknown columns refused) and the run-choice checks."""

from __future__ import annotations

from typing import Any, Mapping, Sequence

from profiling.dataset.cells import json_text
from profiling.dataset.columns import (
    DTYPES,
    EXECS,
    FEATURE_COLUMNS,
    JSON_COLUMNS,
    LAYER_COLUMNS,
    MEASUREMENT_COLUMNS,
    MODEL_COLUMNS,
    MODEL_SUMMARY_COLUMNS,
    MODES,
    OPTIMIZERS,
    PROVENANCE_COLUMNS,
    SCHEMA_VERSION,
    TASK_COLUMNS,
    row_key,
)
from profiling.errors import ExanteError

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
        out.setdefault("windows_json", json_text(ws))
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
    out["features_json"] = json_text(extras)
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
            hparams=json_text(config.hparams_dict() if hasattr(config, "hparams_dict") else dict(config.hparams)),
            input_shapes=json_text(config.input_shapes),
            output_shapes=json_text(config.output_shapes),
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
            row[c] = json_text(row[c])
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
        "spec": json_text(spec) if spec is not None else None,
        "input_shape": json_text(input_shape),
        "batch": batch,
        "mode": mode,
        "exec": exec,
        "dtype": dtype,
        "optimizer": opt,
        "layer_counts": json_text(dict(layer_counts)),
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
            row[c] = json_text(row[c])
    return _complete(row, MODEL_COLUMNS, "model")


def task_row(**fields) -> dict:
    """A ``tasks.csv`` row from keyword fields: every task column (None where not given); an
    ExanteError for an unknown column."""
    return _complete(dict(fields), TASK_COLUMNS, "task")


def check_choice(name: str, value: Any, choices: Sequence[str]) -> None:
    """An ExanteError naming ``name`` and the accepted ``choices`` unless ``value`` is one of
    them."""
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
