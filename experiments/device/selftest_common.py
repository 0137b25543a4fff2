"""The GPU self-test's shared parts (experiments/device/gpu_selftest.py): modes and dtypes
checked, the fast protocol, the small specs, the report (JSON + TSV) and the device helpers."""

from __future__ import annotations

import contextlib
import gc
import json
import os
import sys
import time
import traceback

LAYER_MODES = (("inference", None), ("forward_backward", None), ("train_step", "sgd"), ("train_step", "adam"))
MODEL_MODES = (("inference", None), ("train_step", "sgd"), ("train_step", "adam"))
DTYPES = ("fp32", "bf16")

# protocol settings that only exercise the code path (replay meter: nothing is measured)
FAST_PROTOCOL = {"min_window_s": 0.004, "n_windows": 1, "max_rounds": 1, "warmup_s": 0.0, "warmup_calls": 1,
                 "calibrate_s": 0.002, "jitter_s": (0.0, 0.0), "max_total_s": 30.0}

# extra shapes beyond one small config per type: paths the sweeps reach at other sizes
EXTRA_LAYER_SPECS = [
    {"family": "layer", "type": "Linear", "batch": 2, "in": 64, "out": 48, "seq": 8},
    {"family": "layer", "type": "Conv2d", "batch": 2, "cin": 16, "cout": 16, "k": 3, "stride": 2, "res": 16,
     "groups": 16},
    {"family": "layer", "type": "ReLU", "batch": 2, "shape": [2, 8, 6, 6]},
    {"family": "layer", "type": "sdpa", "batch": 2, "heads": 4, "head_dim": 64, "seq": 128, "causal": False},
    # > 3072 indices: embedding backward sorts (pytorch#82886: may not be graph-capturable)
    {"family": "layer", "type": "Embedding", "batch": 64, "vocab": 1000, "d": 32, "seq": 64},
]


def small_model_specs() -> list[dict]:
    """One small model per sweep family / kind (the shapes of profiling.sweeps' designs)."""
    return [
        {"family": "mlp", "in": 16, "depth": 3, "width": 32, "out": 10, "batch": 8},
        {"family": "cnn", "residual": False, "res": 16, "in_ch": 3, "base": 8, "stages": 2, "blocks": 1, "kernel": 3,
         "classes": 10, "batch": 2},
        {"family": "cnn", "residual": True, "res": 16, "in_ch": 3, "base": 8, "stages": 2, "blocks": 2, "kernel": 3,
         "classes": 10, "batch": 2},
        {"family": "transformer", "vocab": 50, "seq": 16, "d_model": 32, "heads": 2, "layers": 1, "ff_mult": 2,
         "classes": 4, "act": "gelu", "causal": True, "batch": 2},
        {"family": "mixed", "kind": "vector", "in": 24, "out": 10, "batch": 4,
         "blocks": [{"out": 32, "act": "gelu", "norm": "ln", "dropout": 0.1},
                    {"out": 16, "act": "hardswish", "norm": "bn", "dropout": 0.0},
                    {"out": 16, "act": "tanh", "norm": "none", "dropout": 0.0}]},
        {"family": "mixed", "kind": "image", "res": 16, "in_ch": 3, "stem": 8, "stem_act": "relu", "dropout": 0.2,
         "classes": 10, "batch": 2,
         "blocks": [{"op": "conv", "k": 3, "stride": 1, "cout": 8, "act": "silu", "groups": "dw", "norm": "gn"},
                    {"op": "dwsep", "k": 3, "stride": 2, "cout": 16, "act": "relu"},
                    {"op": "res", "k": 3, "act": "gelu", "norm": "bn"},
                    {"op": "conv", "k": 1, "stride": 1, "cout": 16, "act": "relu", "groups": "1", "norm": "none"},
                    {"op": "pool", "pool": "avg"}, {"op": "pool", "pool": "max"}]},
        {"family": "mixed", "kind": "sequence", "vocab": 50, "seq": 12, "d_model": 32, "classes": 4, "batch": 2,
         "blocks": [{"op": "attn", "heads": 2}, {"op": "mlp", "mult": 2, "act": "silu"},
                    {"op": "conv", "k": 3, "act": "gelu"}]},
    ]


# --------------------------------------------------------------------------- report


class Report:
    """Rows (one per check) + sections, written to JSON/TSV after every section."""

    TSV_COLUMNS = ("section", "name", "exec", "mode", "dtype", "optimizer", "status", "seconds", "detail")

    def __init__(self, out_dir: str):
        self.out_dir = out_dir
        self.rows: list[dict] = []
        self.data: dict = {"started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "sections": {}}
        self.t0 = time.perf_counter()

    def add(self, section: str, name: str, status: str, *, seconds: float | None = None, detail: str = "",
            exec: str = "", mode: str = "", dtype: str = "", optimizer: str | None = None, **extra) -> dict:
        row = {"section": section, "name": name, "exec": exec, "mode": mode, "dtype": dtype,
               "optimizer": optimizer or "", "status": status,
               "seconds": None if seconds is None else round(float(seconds), 4), "detail": str(detail or "")}
        row.update(extra)
        self.rows.append(row)
        return row

    def counts(self) -> dict:
        c: dict = {}
        for r in self.rows:
            c[r["status"]] = c.get(r["status"], 0) + 1
        return c

    def write(self) -> None:
        try:
            os.makedirs(self.out_dir, exist_ok=True)
            self.data["elapsed_s"] = round(time.perf_counter() - self.t0, 2)
            self.data["counts"] = self.counts()
            self.data["rows"] = self.rows
            _write_atomic(os.path.join(self.out_dir, "selftest.json"),
                          json.dumps(self.data, indent=1, default=_json_default))
            lines = ["\t".join(self.TSV_COLUMNS)]
            for r in self.rows:
                lines.append("\t".join(_tsv(r.get(c)) for c in self.TSV_COLUMNS))
            _write_atomic(os.path.join(self.out_dir, "selftest.tsv"), "\n".join(lines) + "\n")
        except OSError as exc:  # a report that cannot be written must not stop the test
            print(f"selftest: cannot write the report to {self.out_dir}: {exc}", file=sys.stderr)


def _write_atomic(path: str, text: str) -> None:
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
    os.replace(tmp, path)


def _tsv(v) -> str:
    return "" if v is None else str(v).replace("\t", " ").replace("\n", " | ")


def _json_default(o):
    try:
        return float(o)
    except (TypeError, ValueError):
        return str(o)


def error_line(exc: BaseException) -> str:
    msg = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {msg[0] if msg else ''}"[:400]


def short_traceback(limit: int = 6) -> str:
    return traceback.format_exc(limit=limit)[-1500:]


# --------------------------------------------------------------------------- device helpers


def sync_device(dev) -> None:
    import torch

    if dev.type == "cuda":
        torch.cuda.synchronize(dev)


def free_memory(dev, collect: bool = True) -> None:
    import torch

    if collect:
        gc.collect()
    if dev.type == "cuda":
        with contextlib.suppress(Exception):  # a poisoned context: cuda_healthy() reports it
            torch.cuda.synchronize(dev)
            torch.cuda.empty_cache()


def cuda_healthy(dev) -> tuple[bool, str]:
    """A tiny op + sync: False once the CUDA context is poisoned (sticky error)."""
    import torch

    if dev.type != "cuda":
        return True, ""
    try:
        x = torch.full((16,), 2.0, device=dev)
        y = float((x * x).sum())
        torch.cuda.synchronize(dev)
        return (y == 64.0), ("" if y == 64.0 else f"wrong result {y}")
    except Exception as exc:
        return False, error_line(exc)


def stream_ok(dev) -> bool:
    """The current stream is the default one (a failed capture must not leave its side stream set)."""
    import torch

    if dev.type != "cuda":
        return True
    cur = torch.cuda.current_stream(dev)
    if cur == torch.cuda.default_stream(dev):
        return True
    torch.cuda.set_stream(torch.cuda.default_stream(dev))
    return False


def mem(dev) -> dict:
    import torch

    if dev.type != "cuda":
        return {}
    return {"allocated_mb": torch.cuda.memory_allocated(dev) / 2**20, "reserved_mb": torch.cuda.memory_reserved(dev) / 2**20,
            "max_allocated_mb": torch.cuda.max_memory_allocated(dev) / 2**20}
