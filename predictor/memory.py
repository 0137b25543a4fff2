"""Peak GPU memory of one call, estimated from the workload, and the "does it fit" check.

What is counted (bytes; reported in GiB, the unit of vendors' "80 GB" -- an H100's 80 GB
are 80 x 2^30 bytes, so :func:`check_fits` compares like with like):

* weights: the model's parameters and buffers at their own dtype;
* ``train_step``: the optimizer state (SGD with momentum 1 x the trainable parameters,
  Adam/AdamW 2 x), autocast's low-precision weight copies (2 bytes a trainable parameter
  for bf16/fp16), and the larger of the activations autograd keeps for the backward
  (approximated by the sum of every layer call's outputs -- what conv/linear/BN/activation
  backward formulas save) and the gradients (allocated as those activations are freed);
* ``inference``: the largest live pair of one layer's inputs and outputs;
* the input batch itself.

Not counted: the CUDA context (~0.3-1 GB), cuDNN/cuBLAS workspaces, the caching
allocator's fragmentation -- so a workload refused here does not fit, and one accepted close
to the limit may still not.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from profiling.errors import ExanteError

__all__ = ["MemoryEstimate", "estimate_memory", "check_fits", "check_input_fits",
           "gpu_memory_gb", "GIB"]

GIB = 2 ** 30
_OPT_STATES = {"sgd": 1, "adam": 2, "adamw": 2}      # state tensors per parameter


@dataclass(frozen=True)
class MemoryEstimate:
    """Estimated peak GPU memory of one call, by part (bytes)."""

    weights_bytes: int
    optimizer_bytes: int
    autocast_copies_bytes: int
    activations_bytes: int       # train_step: kept for backward; inference: largest live pair
    gradients_bytes: int
    inputs_bytes: int

    @property
    def total_bytes(self) -> int:
        return int(self.weights_bytes + self.optimizer_bytes + self.autocast_copies_bytes
                   + max(self.activations_bytes, self.gradients_bytes) + self.inputs_bytes)

    @property
    def total_gb(self) -> float:
        """Total in GiB (vendors' "GB" of GPU memory)."""
        return self.total_bytes / GIB

    def largest_part(self) -> str:
        parts = {"the input": self.inputs_bytes, "the weights": self.weights_bytes,
                 "the optimizer state": self.optimizer_bytes,
                 "the activations": self.activations_bytes,
                 "the gradients": self.gradients_bytes}
        name, v = max(parts.items(), key=lambda kv: kv[1])
        return f"{name} {v / GIB:.3g} GB"


def _numel(shape) -> int:
    return int(math.prod(int(d) for d in shape))


_DTYPE_BYTES = {"fp64": 8, "fp32": 4, "bf16": 2, "fp16": 2, "int64": 8, "int32": 4,
                "int16": 2, "int8": 1, "uint8": 1, "bool": 1, "c64": 8, "c128": 16}


def _layer_bytes(shapes, dtype: str) -> int:
    return _numel_sum(shapes) * _DTYPE_BYTES.get(dtype, 4)


def _numel_sum(shapes) -> int:
    return sum(_numel(s) for s in shapes)


def estimate_memory(workload, *, weights_bytes: int | None = None,
                    trainable_numel: int | None = None, inputs_bytes: int = 0) -> MemoryEstimate:
    """Peak memory of ``workload`` (a :class:`~predictor.workload.Workload`).

    ``weights_bytes`` (parameters + buffers) and ``trainable_numel`` come from the model when
    the caller has it; without, the workload's trainable tensors at 4 bytes each.
    ``inputs_bytes``: the input batch."""
    train = workload.mode == "train_step"
    numel = int(sum(workload.param_numels)) if trainable_numel is None else int(trainable_numel)
    if weights_bytes is None:
        weights_bytes = 4 * numel
    opt = _OPT_STATES.get(workload.optimizer or "sgd", 1) * 4 * numel if train else 0
    casts = 2 * numel if train and workload.dtype in ("bf16", "fp16") else 0
    if train:
        acts = sum(wl.count * _layer_bytes(wl.config.output_shapes, wl.config.dtype)
                   for wl in workload.layers)
        grads = 4 * numel
    else:
        acts = max((_layer_bytes(wl.config.input_shapes, wl.config.dtype)
                    + _layer_bytes(wl.config.output_shapes, wl.config.dtype)
                    for wl in workload.layers), default=0)
        grads = 0
    return MemoryEstimate(int(weights_bytes), int(opt), int(casts), int(acts), int(grads),
                          int(inputs_bytes))


def gpu_memory_gb(hardware: str) -> tuple[str, float] | None:
    """(name, memory in GB) of a catalogue GPU; None when the catalogue does not know it or
    lists no memory (a private artifact's id)."""
    from .hardware import lookup

    try:
        spec = lookup(hardware)
    except ExanteError:
        return None
    if not spec.memory_gb:
        return None
    return spec.name, float(spec.memory_gb)


def check_input_fits(shape, batch: int, input_dtype: str | None, hardware: str) -> None:
    """The ``(batch, *shape)`` input alone against the GPU's memory (torch-free: the CLI
    calls it before building the model)."""
    from profiling.input_spec import INPUT_DTYPE_BYTES

    n = int(batch) * math.prod(int(d) for d in shape)
    check_fits(n * INPUT_DTYPE_BYTES.get(input_dtype or "float32", 4), hardware,
               "the input alone")


def check_fits(needed_bytes: int, hardware: str, what: str = "") -> None:
    """Raise a one-line :class:`ExanteError` when ``needed_bytes`` exceed the GPU's memory."""
    gpu = gpu_memory_gb(hardware)
    if gpu is None:
        return
    name, have_gb = gpu
    need_gb = needed_bytes / GIB
    if need_gb > have_gb:
        raise ExanteError(
            f"does not fit: needs {need_gb:.3g} GB{f' ({what})' if what else ''}, the {name} "
            f"has {have_gb:g} GB; use a smaller batch or input")
