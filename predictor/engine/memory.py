"""Peak GPU memory of one call, estimated from the workload, and the "does it fit" check.

What is counted (bytes; reported in GiB, the unit of vendors' "80 GB" -- an H100's 80 GB
are 80 x 2^30 bytes, so :func:`check_fits` compares like with like):

* weights: the model's parameters and buffers at their own dtype;
* ``train_step``: the optimizer state (SGD with momentum 1 x the trainable parameters,
  Adam/AdamW 2 x), autocast's low-precision weight copies (2 bytes a trainable parameter
  for bf16/fp16), and the larger of the activations autograd keeps for the backward
  (the outputs a backward formula needs: inputs of matmul/conv/norm/GELU-like/mul layers,
  outputs of ReLU-like/sigmoid/softmax/attention ones, taken along the capture order as a
  chain, at the dtype autocast writes) and the gradients (allocated as those activations
  are freed);
* ``inference``: the largest live pair of one layer's inputs and outputs;
* the input batch itself.

Not counted: the CUDA context (~0.3-1 GB), cuDNN/cuBLAS workspaces, the caching
allocator's fragmentation.  The input and the weights are exact and refused as soon as they
exceed the GPU's memory; the whole estimate is approximate (which outputs autograd keeps is
read off the capture order, not the graph), so it is refused only above
:data:`ESTIMATE_TOLERANCE` x the memory and noted as "may not fit" between the two.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

from predictor.carbon.hardware import HardwareSpec, lookup
from profiling.errors import ExanteError

__all__ = ["MemoryEstimate", "estimate_memory", "check_fits", "check_input_fits",
           "gpu_memory_gb", "GIB", "ESTIMATE_TOLERANCE"]

GIB = 2 ** 30

log = logging.getLogger(__name__)
# the estimate is refused only above this multiple of the GPU's memory: on 206 timm training
# runs that fitted on a 24 GB RTX 3090 (experiments/memory/timm_fit_check.py) the estimate
# reached at most 1.41 x 24 GB (median 0.64 x); against the bytes autograd really saves
# (experiments/memory/saved_tensors_check.py, 25 timm models, CPU fp32) the activation
# estimate is 0.67-1.64 x (median 1.00, 23 of 25 within 25 %)
ESTIMATE_TOLERANCE = 1.5
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


# layers whose output is (a view of) their input: no new memory
_ALIAS_TYPES = frozenset({"Identity", "Flatten", "Unflatten", "flatten", "unflatten",
                          "Dropout", "Dropout1d", "Dropout2d", "Dropout3d", "AlphaDropout"})


def _out_bytes_per_element(workload) -> list:
    """Bytes per output element of each layer, with the dtype CUDA autocast really writes
    (:func:`predictor.engine.autocast.autocast_flow`: BatchNorm keeps its 16-bit input, ...)."""
    layers = workload.layers
    if workload.dtype not in ("bf16", "fp16"):
        return [_DTYPE_BYTES.get(x.config.dtype, 4) for x in layers]
    # lazy: lowering imports torch, and the CLI checks an input's size torch-free
    from predictor.engine.autocast import autocast_flow
    from predictor.engine.lowering import family_of

    _, out32 = autocast_flow(layers, [family_of(x.config.type) for x in layers], workload.batch)
    return [(4 if o32 else 2) if x.config.dtype in ("fp32", "bf16", "fp16")
            else _DTYPE_BYTES.get(x.config.dtype, 4) for x, o32 in zip(layers, out32, strict=True)]


# what autograd keeps for the backward, by the layer that keeps it: its input (matmul, conv,
# norms, GELU/SiLU-like activations, mul/div, max pooling) or its output (ReLU-like, sigmoid,
# tanh, softmax, exp; attention keeps both)
_KEEPS_INPUT_FAMS = frozenset({"gemm", "bgemm", "conv", "bn", "ln", "gn", "mha", "sdpa", "rnn",
                               "loss"})
_KEEPS_INPUT_TYPES = frozenset({
    "GELU", "SiLU", "Mish", "Softplus", "Hardswish", "Hardsigmoid", "LeakyReLU", "PReLU",
    "F.gelu", "F.silu", "F.mish", "F.softplus", "F.hardswish", "F.leaky_relu", "gelu", "silu",
    "mul", "div", "mul_", "div_", "pow", "MaxPool1d", "MaxPool2d", "MaxPool3d",
    "F.max_pool1d", "F.max_pool2d", "F.max_pool3d", "AdaptiveMaxPool2d", "max"})
_KEEPS_OUTPUT_FAMS = frozenset({"softmax", "mha", "sdpa"})
_KEEPS_OUTPUT_TYPES = frozenset({
    "ReLU", "ReLU6", "Hardtanh", "ELU", "Sigmoid", "Tanh", "F.relu", "F.relu6", "F.elu",
    "F.hardtanh", "relu", "relu_", "sigmoid", "sigmoid_", "tanh", "tanh_", "exp", "F.sigmoid",
    "F.tanh"})


def _kept_outputs(layers) -> list:
    """Whether each layer's output is kept for the backward: the layer keeps its output, or
    the next layer (capture order, views skipped) keeps its input -- a chain approximation
    of the graph."""
    from predictor.engine.lowering import family_of

    fams = [family_of(x.config.type) for x in layers]
    kept = [False] * len(layers)
    next_keeps_input = False            # the next non-alias layer keeps its input
    for i in range(len(layers) - 1, -1, -1):
        t, f = layers[i].config.type, fams[i]
        if t in _ALIAS_TYPES:           # a view of its input: what it feeds, its input feeds
            continue
        kept[i] = f in _KEEPS_OUTPUT_FAMS or t in _KEEPS_OUTPUT_TYPES or next_keeps_input
        next_keeps_input = f in _KEEPS_INPUT_FAMS or t in _KEEPS_INPUT_TYPES
    return kept


def estimate_memory(workload, *, weights_bytes: int | None = None,
                    trainable_numel: int | None = None, inputs_bytes: int = 0) -> MemoryEstimate:
    """Peak memory of ``workload`` (a :class:`~predictor.engine.workload.Workload`).

    ``weights_bytes`` (parameters + buffers) and ``trainable_numel`` come from the model when
    the caller has it; without, the workload's trainable tensors at 4 bytes each.
    ``inputs_bytes``: the input batch.  Activations, at the dtype autocast writes: in
    ``train_step`` the layer outputs autograd keeps for the backward (:func:`_kept_outputs`),
    in inference the largest input + output pair of one layer."""
    train = workload.mode == "train_step"
    numel = int(sum(workload.param_numels)) if trainable_numel is None else int(trainable_numel)
    if weights_bytes is None:
        weights_bytes = 4 * numel
    opt = _OPT_STATES.get(workload.optimizer or "sgd", 1) * 4 * numel if train else 0
    casts = 2 * numel if train and workload.dtype in ("bf16", "fp16") else 0
    per_elt = _out_bytes_per_element(workload)
    if train:
        acts = sum(x.count * _numel_sum(x.config.output_shapes) * b
                   for x, b, kept in zip(workload.layers, per_elt,
                                         _kept_outputs(workload.layers), strict=True) if kept)
        grads = 4 * numel
    else:
        acts = max(((_numel_sum(x.config.input_shapes) + _numel_sum(x.config.output_shapes)) * b
                    for x, b in zip(workload.layers, per_elt, strict=True)), default=0)
        grads = 0
    est = MemoryEstimate(int(weights_bytes), int(opt), int(casts), int(acts), int(grads),
                         int(inputs_bytes))
    log.debug("memory estimate %.3g GiB (largest part %s)", est.total_gb, est.largest_part())
    return est


def gpu_memory_gb(hardware: str | HardwareSpec | None) -> tuple[str, float] | None:
    """(name, memory in GB) of a catalogue GPU (a name, or its resolved spec); None when the
    catalogue does not know it (``hardware`` None: resolved as unknown already) or lists no
    memory (a private artifact's id)."""
    if hardware is None:
        return None
    try:
        spec = hardware if isinstance(hardware, HardwareSpec) else lookup(hardware)
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


def check_fits(needed_bytes: int, hardware: str | HardwareSpec | None, what: str = "",
               tolerance: float = 1.0) -> str | None:
    """Raise a one-line :class:`ExanteError` when ``needed_bytes`` exceed ``tolerance`` x the
    GPU's memory; return a "may not fit" note when they exceed the memory but not that."""
    gpu = gpu_memory_gb(hardware)
    if gpu is None:
        return None
    name, have_gb = gpu
    need_gb = needed_bytes / GIB
    if need_gb <= have_gb:
        return None
    if need_gb <= tolerance * have_gb:
        return (f"may not fit: estimated {need_gb:.3g} GB of memory, the {name} has "
                f"{have_gb:g} GB (within the estimate's error; a real run decides)")
    raise ExanteError(
        f"does not fit: needs {need_gb:.3g} GB{f' ({what})' if what else ''}, the {name} "
        f"has {have_gb:g} GB; use a smaller batch or input")
