"""Shape helpers shared by the feature families (``_feat`` builds the core feature dict).
"""

from __future__ import annotations

import math
import re

from profiling.capture.records import LayerConfig
from profiling.features.families.registry import DTYPE_BYTES

# --------------------------------------------------------------------------------------
# helpers


def _prod(xs) -> int:
    return math.prod(int(x) for x in xs)


def _ntuple(v, n: int) -> tuple:
    if isinstance(v, (tuple, list)):
        v = tuple(v)
        return v if len(v) == n else (v + (v[-1],) * n)[:n] if v else (1,) * n
    return (v,) * n


def _dtype_bytes(dtype: str) -> int:
    return DTYPE_BYTES.get(dtype, 4)


def _arg(hp: dict, name: str, pos: int | None, default=None):
    """A functional op's argument, given by keyword (``name``) or position (``argN``)."""
    if name in hp:
        return hp[name]
    if pos is not None and f"arg{pos}" in hp:
        return hp[f"arg{pos}"]
    return default


def _nd_from_type(t: str) -> int:
    m = re.search(r"(\d)d$", t)
    return int(m.group(1)) if m else 2


def _feat(cfg: LayerConfig, *, macs: int = 0, flops: int = 0, params: int = 0,
          extra_read_elems: int = 0, bytes_read: int | None = None,
          bytes_written: int | None = None, batch: int | None = None, **extra) -> dict:
    db = _dtype_bytes(cfg.dtype)
    in_n = sum(_prod(s) for s in cfg.input_shapes)
    out_n = sum(_prod(s) for s in cfg.output_shapes)
    br = (in_n + params + extra_read_elems) * db if bytes_read is None else int(bytes_read)
    bw = out_n * db if bytes_written is None else int(bytes_written)
    moved = br + bw
    d = {
        "macs": int(macs),
        "flops": int(flops),
        "params": int(params),
        "bytes_read": int(br),
        "bytes_written": int(bw),
        "input_numel": int(in_n),
        "output_numel": int(out_n),
        "batch": int(cfg.batch if batch is None else batch),
        "dtype_bytes": db,
        "arith_intensity": float(flops) / moved if moved else 0.0,
    }
    for k, v in extra.items():
        d[k] = float(v) if isinstance(v, float) else int(v)
    return d


def _x(cfg) -> tuple:
    return cfg.input_shapes[0] if cfg.input_shapes else ()


def _y(cfg) -> tuple:
    return cfg.output_shapes[0] if cfg.output_shapes else ()


