"""What a capture records: :class:`LayerConfig` (one distinct layer execution, the
dedup key), :class:`CapturedLayer` (a config with its call count) and :class:`Capture`
(all of a forward's layers). Shared by ``profiling.capture.core`` and the feature registry.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

from torch import nn

ROOT_NAME = "(root)"

# --------------------------------------------------------------------------------------
# data classes


def _canon_json(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str)


@dataclass(frozen=True)
class LayerConfig:
    """One distinct layer execution: the dedup key of the profiler and the datasets.

    ``hparams`` is a sorted tuple of ``(name, value)`` pairs with JSON-serialisable values
    (tuples for sequences); ``input_shapes`` holds the shapes of the tensor arguments in call
    order (positional, then keyword; ``None`` arguments skipped; tensors inside lists such as
    ``torch.cat([a, b])`` flattened); ``output_shapes`` the shapes of the tensor outputs.
    """

    type: str
    hparams: tuple
    input_shapes: tuple
    output_shapes: tuple
    dtype: str

    @property
    def batch(self) -> int:
        """First dim of the first input (1 if there is no input or it is a scalar)."""
        if self.input_shapes and len(self.input_shapes[0]) > 0:
            return int(self.input_shapes[0][0])
        return 1

    def hparams_dict(self) -> dict:
        return dict(self.hparams)

    def to_dict(self) -> dict:
        """JSON-friendly dict (tuples become lists when serialised)."""
        return {
            "type": self.type,
            "hparams": self.hparams_dict(),
            "input_shapes": [list(s) for s in self.input_shapes],
            "output_shapes": [list(s) for s in self.output_shapes],
            "dtype": self.dtype,
        }

    def key(self) -> str:
        """Stable 16-hex-digit key: sha1 of the canonical JSON of all fields.

        Independent of the process, the Python hash seed and dict order.
        """
        payload = _canon_json(
            [self.type, [[k, v] for k, v in self.hparams], self.input_shapes,
             self.output_shapes, self.dtype]
        )
        return hashlib.sha1(payload.encode("utf-8")).hexdigest()[:16]


@dataclass
class CapturedLayer:
    """One distinct layer of a capture: its config, calls per forward, module paths, one module
    instance to replay (None for a functional op) and whether features exist for its type."""
    config: LayerConfig
    count: int                      # calls per model forward
    names: list                     # module paths ("layer1.0.conv1") or "<parent>:<op>"
    module: nn.Module | None        # one instance (for replay); None for functional ops
    supported: bool                 # FEATURE_REGISTRY has a function for config.type

    @property
    def functional(self) -> bool:
        return self.module is None


@dataclass
class Capture:
    """What a capture returns: the distinct layers (first-seen order), the unsupported ones, layer
    calls and view/metadata op calls per forward, and the requested dtype."""
    layers: list                    # distinct CapturedLayer, first-seen order
    unsupported: list               # the subset with supported == False
    total_calls: int                # recorded layer calls (modules + functional ops) per forward
    mode_restored: bool             # training flags of every submodule restored
    zero_cost_ops: dict = field(default_factory=dict)   # view/metadata op name -> calls
    dtype: str = "fp32"             # requested precision ("fp32" | "bf16" | "fp16")

    def counts(self) -> dict:
        """config key -> calls per forward (the dataset's ``layer_counts``)."""
        out: dict = {}
        for layer in self.layers:
            k = layer.config.key()
            out[k] = out.get(k, 0) + layer.count
        return out


