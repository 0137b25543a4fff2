"""Shape-based features of a layer configuration (the predictor's inputs), one module per
layer family; importing this package fills :data:`registry.FEATURE_REGISTRY`.

``FEATURE_REGISTRY`` maps a :class:`~profiling.capture.core.LayerConfig` ``type`` to a *pure*
function of the config (hyper-parameters, shapes, dtype) — no module, no tensor — in the
spirit of ``torch.utils.flop_counter`` and fvcore's jit handles (whose shape helpers are
reused: ``conv_flop_count``, and the same conventions for linear/matmul/norm/pool counts).

Conventions (units in the names):

* ``macs``: fvcore's count for the op — one fused multiply-add = 1. For matmul/conv-like
  ops this is the number of multiply-accumulates; fvcore also counts norms (BatchNorm eval:
  2 per element with affine, 1 without; batch-statistics BatchNorm, LayerNorm, GroupNorm,
  InstanceNorm: 5 per element with affine, 4 without), adaptive average pooling (1 per input
  element) and nearest/bilinear upsampling (1/4 per output element); we follow it. Ops fvcore
  ignores (activations, elementwise arithmetic, max/avg pooling, softmax, copies) have
  ``macs = 0``. So Σ count·macs over a model matches ``fvcore.nn.FlopCountAnalysis``.
* ``flops``: floating-point operations. ``2·macs`` for matmul/conv-like ops (bias adds
  ignored, as fvcore does); otherwise an op count: 1 per output element for elementwise ops
  (activations, add, mul ...), 5 per element for softmax (max, sub, exp, sum, div),
  ``kernel_numel`` per output element for max/avg pooling, 1 per input element for
  reductions and adaptive pooling, the fvcore per-element count for norms, 0 for copies,
  views, factories and eval-mode dropout.
* ``params``: parameters owned by the layer (computed from hyper-parameters, so it also
  works on a LayerConfig without a module). Functional ops own none: their weights are
  inputs.
* ``bytes_read``: bytes of all tensor inputs + parameters (+ BatchNorm running statistics),
  each counted once at the compute dtype size (``dtype_bytes``); Embedding reads its indices
  (8 bytes each) and only the gathered rows, not the whole table; factory ops read nothing.
  ``bytes_written``: bytes of the tensor outputs at the compute dtype size. These are tensor
  sizes (a shape-based proxy), not measured DRAM traffic; views/identity layers keep them.
* ``input_numel`` / ``output_numel``: elements over all tensor inputs / outputs.
* ``batch``: the batch size (first dim of the first input; MultiheadAttention/RNN with
  ``batch_first=False`` and unbatched inputs are corrected to the real batch).
* ``dtype_bytes``: bytes per element of the compute dtype.
* ``arith_intensity``: ``flops / (bytes_read + bytes_written)`` (flop per byte).

Type-specific features (``in_features``, ``kernel_size``, ``groups``, ``seq_len``, ``heads``
...) are added where meaningful; ``CORE_FEATURES`` is the numeric set every function returns.
"""


from __future__ import annotations

from profiling.features.families import (  # noqa: F401  (registration, in this order)
           attention,
           conv,
           copies,
           elementwise,
           embedding,
           linear,
           losses,
           norms,
           pooling,
)
from profiling.features.families.registry import (
           CORE_FEATURES,
           DTYPE_BYTES,
           FEATURE_REGISTRY,
           UnsupportedLayerWarning,
           layer_features,
           register,
)

#: the types exante's own families registered (a user's later ``register`` calls are not in it)
BUILTIN_FEATURE_TYPES = frozenset(FEATURE_REGISTRY)

__all__ = ["BUILTIN_FEATURE_TYPES", "CORE_FEATURES", "DTYPE_BYTES", "FEATURE_REGISTRY",
           "UnsupportedLayerWarning", "layer_features", "register"]
