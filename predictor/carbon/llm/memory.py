"""Memory per device of LLM training: model states under ZeRO-1/2/3 / FSDP, activations with
or without checkpointing, optimizer state per dtype. All sizes in GB (1e9 bytes).

Model states (Rajbhandari et al. 2020, ZeRO, §3.1 and §5): weights ``w`` + gradients ``g`` +
optimizer states ``o`` bytes per parameter, divided by ``tp·pp``; ZeRO-1 also divides ``o`` by
``dp``, ZeRO-2 ``o`` and ``g``, ZeRO-3 (= FSDP full shard) all three.

Activations per transformer layer and micro-batch (Korthikanti et al. 2022, "Reducing
Activation Recomputation in Large Transformer Models", §4, Table 2): ``s·b·h·(34 + 5·a·s/h)``
bytes at 16 bit, divided by ``tp`` with sequence parallelism; FlashAttention removes the
``5·a·s/h`` score term; full checkpointing keeps ``2·s·b·h`` bytes per layer plus one layer's
full set. With 1F1B pipelining the first stage holds ``pp`` micro-batches of its ``L/pp`` layers,
i.e. ``L`` layers' worth.
"""

from __future__ import annotations

from dataclasses import dataclass

from profiling.errors import ExanteError

SHARDING = ("none", "zero1", "zero2", "zero3", "fsdp", "auto")
CHECKPOINTING = ("none", "selective", "full", "auto")
OPT_DTYPES = ("fp32", "bf16", "int8")
SOURCE = ("ZeRO model states: Rajbhandari et al. 2020 §3.1/§5; activations: Korthikanti et al. "
          "2022 §4 Table 2 (s·b·h·(34+5as/h) bytes per layer, 2sbh with full recomputation)")
_OPT_BYTES = {"fp32": 12.0, "bf16": 8.0, "int8": 6.0}   # master fp32 + m + v per parameter


@dataclass(frozen=True)
class MemoryPlan:
    """Per-device memory of one configuration (GB) and whether it fits."""

    model_states_gb: float
    activations_gb: float
    total_gb: float
    device_memory_gb: float | None
    fits: bool | None
    sharding: str
    checkpointing: str
    note: str

    def verdict(self) -> str:
        """One line: fits or not, GB needed of GB on the device, the layout chosen."""
        if self.fits is None or self.device_memory_gb is None:
            return f"needs {self.total_gb:.3g} GB per device (device memory unknown)"
        if self.fits:
            tight = ("; within 10 % of capacity: the CUDA context, allocator fragmentation and "
                     "communication buffers (not counted) may not leave room"
                     if self.total_gb > 0.9 * self.device_memory_gb else "")
            return (f"fits ({self.total_gb:.3g} of {self.device_memory_gb:g} GB; "
                    f"{self.sharding}, checkpointing {self.checkpointing}{tight})")
        return (f"does not fit (needs {self.total_gb:.3g} GB, has {self.device_memory_gb:g}; "
                f"{self.sharding}, checkpointing {self.checkpointing})")


def bytes_per_param(dtype: str, optimizer_dtype: str = "fp32") -> tuple[float, float, float]:
    """``(weights, grads, optimizer)`` bytes per parameter for Adam: mixed precision keeps
    16-bit weights and grads with an fp32 master copy; fp32 training keeps no master copy."""
    if optimizer_dtype not in OPT_DTYPES:
        raise ExanteError(f"optimizer state dtype must be one of {', '.join(OPT_DTYPES)}, "
                          f"got {optimizer_dtype!r}")
    if dtype in ("fp32", "tf32"):
        return 4.0, 4.0, _OPT_BYTES[optimizer_dtype] - 4.0
    return 2.0, 2.0, _OPT_BYTES[optimizer_dtype]


def model_states_gb(params: float, dtype: str, *, dp: int, tp: int, pp: int, sharding: str,
                    optimizer_dtype: str = "fp32") -> float:
    """Weights, gradients and optimizer state per device (GB) under ``sharding``."""
    w, g, o = bytes_per_param(dtype, optimizer_dtype)
    stage = {"none": 0, "zero1": 1, "zero2": 2, "zero3": 3, "fsdp": 3}[sharding]
    per = (w / (dp if stage >= 3 else 1) + g / (dp if stage >= 2 else 1)
           + o / (dp if stage >= 1 else 1))
    return params * per / (tp * pp) / 1e9


def activations_gb(*, layers: int, hidden: int, heads: int, seq_len: int, micro_batch: int,
                   tp: int, checkpointing: str, flash: bool) -> float:
    """Activation memory per device (GB) of one micro-batch under ``checkpointing``."""
    s, b, h, a = seq_len, micro_batch, hidden, heads
    full_layer = s * b * h * (34 + (0 if flash else 5 * a * s / h)) / tp
    if checkpointing == "full":
        return (layers * 2 * s * b * h / tp + full_layer) / 1e9
    if checkpointing == "selective":   # recompute attention scores only (Korthikanti §5)
        return layers * s * b * h * 34 / tp / 1e9
    return layers * full_layer / 1e9


def plan(params: float, dtype: str, device_memory_gb: float | None, *, dp: int, tp: int,
         pp: int, layers: int, hidden: int, heads: int, seq_len: int, micro_batch: int,
         sharding: str = "auto", checkpointing: str = "auto", flash: bool = True,
         optimizer_dtype: str = "fp32") -> MemoryPlan:
    """Memory per device; ``"auto"`` picks the least sharding / checkpointing that fits
    (none < zero1 < zero2 < zero3, then none < selective < full), as a user would."""
    if sharding not in SHARDING:
        raise ExanteError(f"sharding must be one of {', '.join(SHARDING)}, got {sharding!r}")
    if checkpointing not in CHECKPOINTING:
        raise ExanteError(f"checkpointing must be one of {', '.join(CHECKPOINTING)}, "
                          f"got {checkpointing!r}")
    shards = ("none", "zero1", "zero2", "zero3") if sharding == "auto" else (sharding,)
    ckpts = ("none", "selective", "full") if checkpointing == "auto" else (checkpointing,)
    best: MemoryPlan | None = None
    for ck in ckpts:
        for sh in shards:
            ms = model_states_gb(params, dtype, dp=dp, tp=tp, pp=pp, sharding=sh,
                                 optimizer_dtype=optimizer_dtype)
            act = activations_gb(layers=layers, hidden=hidden, heads=heads, seq_len=seq_len,
                                 micro_batch=micro_batch, tp=tp, checkpointing=ck, flash=flash)
            total = ms + act
            fits = None if device_memory_gb is None else total <= device_memory_gb
            cand = MemoryPlan(ms, act, total, device_memory_gb, fits, sh, ck, "")
            if fits:
                best = cand
                break
            if best is None or total < best.total_gb:
                best = cand
        if best is not None and best.fits:
            break
    assert best is not None                 # shards and ckpts are never empty
    auto = [k for k, v in (("sharding", sharding), ("checkpointing", checkpointing)) if v == "auto"]
    note = (f"{' and '.join(auto)} chosen as the least that fits" if auto and best.fits
            else f"{' and '.join(auto)}: the smallest footprint tried" if auto else "")
    return MemoryPlan(best.model_states_gb, best.activations_gb, best.total_gb,
                      best.device_memory_gb, best.fits, best.sharding, best.checkpointing, note)
