"""The dataset's columns (DESIGN.md §3): names, value types, accepted run choices, file names,
and the key of one layer measurement. Units are in the names (``_s``, ``_j``, ``_w``, ``_mhz``, ``_c``)."""

from __future__ import annotations

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
