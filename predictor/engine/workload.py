"""``Workload``: what one eager call of a model runs, as the physics model needs it.

A workload is the captured layer list of a model (``profiling.capture.core``: distinct layer configs
with their calls per forward and module paths) plus what the capture alone cannot say but CUDA
decides: which ``nn.TransformerEncoderLayer`` / ``nn.MultiheadAttention`` instances take
PyTorch's fused inference "fast path" (one native op instead of a dozen module calls), the
trainable parameter tensors (the optimizer's foreach kernels and per-tensor host work), and the
view/metadata ops (host cost, no kernel).  It is JSON-serialisable, so whole-model rows of a
dataset carry the workload they were measured on (``datasets/<hw>/workloads.jsonl``) and the
predictor can be refitted without rebuilding the models.

Units: counts per call of the whole batch; ``param_numels`` in elements.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from torch import nn

from profiling.capture.core import LayerConfig

__all__ = ["Workload", "WLayer", "fast_path_prefixes", "workload_from_capture"]


@dataclass(frozen=True)
class WLayer:
    """One distinct layer config of a workload (``names``: every module path that ran it)."""

    config: LayerConfig
    count: int
    names: tuple
    supported: bool = True
    module_params: int = 0          # parameters of an unsupported leaf module (shape fallback)


@dataclass
class Workload:
    """One eager call of a model: its captured layers and the conditions CUDA decides
    (counts per call of the whole batch of ``batch`` samples; ``param_numels`` in elements)."""

    layers: tuple                       # WLayer, capture order
    mode: str                           # "inference" | "train_step"
    dtype: str                          # "fp32" | "bf16" | "fp16" (autocast float16)
    batch: int
    optimizer: str | None = None        # "sgd" | "adam" | "adamw" for train_step
    param_numels: tuple = ()            # trainable parameter tensors (numel each)
    zero_cost_ops: int = 0              # view / metadata ops per forward (host only)
    fused_encoder_prefixes: tuple = ()  # TransformerEncoderLayer paths on the fast path
    fused_mha_prefixes: tuple = ()      # MultiheadAttention paths on the native fast path
    notes: tuple = field(default_factory=tuple)
    isolated: bool = False              # one layer replayed alone (a layer row): no model call,
    #                                     containers, loss or zero_grad
    graph: bool = False                 # replayed as a CUDA graph: no host work at all
    memory_format: str = "contiguous"   # "contiguous" | "channels_last" (model and input NHWC)
    grad_scaler: bool = False           # fp16 train_step with a GradScaler (scale, unscale +
    #                                     inf check, conditional step)
    torch_version: str | None = None    # torch version the workload is meant to run on
    #                                     (a recorded condition; None: not stated)

    # ---------------------------------------------------------------- (de)serialisation
    def to_json(self) -> str:
        return json.dumps({
            "layers": [{"config": wl.config.to_dict(), "count": wl.count,
                        "names": list(wl.names), "supported": wl.supported,
                        "module_params": wl.module_params} for wl in self.layers],
            "mode": self.mode, "dtype": self.dtype, "batch": self.batch,
            "optimizer": self.optimizer, "param_numels": list(self.param_numels),
            "zero_cost_ops": self.zero_cost_ops,
            "fused_encoder_prefixes": list(self.fused_encoder_prefixes),
            "fused_mha_prefixes": list(self.fused_mha_prefixes),
            "notes": list(self.notes), "isolated": self.isolated, "graph": self.graph,
            "memory_format": self.memory_format, "grad_scaler": self.grad_scaler,
            "torch_version": self.torch_version,
        }, sort_keys=True, separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str | dict) -> "Workload":
        d = json.loads(text) if isinstance(text, str) else text
        layers = []
        for r in d["layers"]:
            c = r["config"]
            cfg = LayerConfig(c["type"], _tuplify_hparams(c["hparams"]),
                              tuple(tuple(s) for s in c["input_shapes"]),
                              tuple(tuple(s) for s in c["output_shapes"]), c["dtype"])
            layers.append(WLayer(cfg, int(r["count"]), tuple(r["names"]),
                                 bool(r.get("supported", True)), int(r.get("module_params", 0))))
        return cls(tuple(layers), d["mode"], d["dtype"], int(d["batch"]), d.get("optimizer"),
                   tuple(int(n) for n in d.get("param_numels", ())),
                   int(d.get("zero_cost_ops", 0)),
                   tuple(d.get("fused_encoder_prefixes", ())),
                   tuple(d.get("fused_mha_prefixes", ())), tuple(d.get("notes", ())),
                   bool(d.get("isolated", False)), bool(d.get("graph", False)),
                   str(d.get("memory_format") or "contiguous"), bool(d.get("grad_scaler", False)),
                   d.get("torch_version"))


def _tuplify(v):
    if isinstance(v, list):
        return tuple(_tuplify(x) for x in v)
    return v


def _tuplify_hparams(hp: dict) -> tuple:
    return tuple(sorted((k, _tuplify(v)) for k, v in hp.items()))


# ------------------------------------------------------------------- CUDA's fast paths
def _encoder_fast_path(layer: nn.TransformerEncoderLayer) -> bool:
    """The conditions of ``TransformerEncoderLayer.forward``'s fast path that depend on the
    module (the call-time ones -- inference_mode, no autocast, no mask needing grad -- are
    the caller's; see :func:`fast_path_prefixes`)."""
    sa = layer.self_attn
    act = getattr(layer, "activation_relu_or_gelu", 0)
    return bool(_mha_fast_path(sa) and act and layer.norm1.eps == layer.norm2.eps)


def _mha_fast_path(m: nn.MultiheadAttention) -> bool:
    return bool(m.batch_first and m._qkv_same_embed_dim and m.in_proj_bias is not None
                and m.bias_k is None and not m.add_zero_attn and m.num_heads % 2 == 0)


def fast_path_prefixes(model: nn.Module, mode: str, dtype: str) -> tuple[tuple, tuple]:
    """(encoder-layer paths, MHA paths) that run PyTorch's fused native op on CUDA.

    Only in ``inference`` (``torch.inference_mode()``, eval) without autocast
    (``torch.is_autocast_enabled()`` is an exit of both fast paths).  The MHA path also needs
    self-attention (query is key is value), which holds for encoder blocks (ViT, BERT-like
    ``nn`` encoders); a cross-attention call is mis-labelled fused (a small host-cost error).
    """
    if mode != "inference" or dtype != "fp32":
        return (), ()
    enc, mha = [], []
    for name, m in model.named_modules():
        if isinstance(m, nn.TransformerEncoderLayer) and \
                _encoder_fast_path(m):
            enc.append(name)
        elif isinstance(m, nn.MultiheadAttention) and _mha_fast_path(m):
            if not any(name == p + ".self_attn" for p in enc):
                mha.append(name)
    return tuple(enc), tuple(mha)


def workload_from_capture(model: nn.Module, layers, *, mode: str, dtype: str, batch: int,
                          optimizer: str | None, zero_cost_ops: int = 0,
                          notes=(), memory_format: str = "contiguous",
                          grad_scaler: bool = False,
                          torch_version: str | None = None) -> Workload:
    """Assemble a :class:`Workload` from a capture's layers (``WLayer``-like objects with
    ``config``, ``count``, ``names``, ``supported``, ``module_params``) and the model."""
    enc, mha = fast_path_prefixes(model, mode, dtype)
    numels = tuple(int(p.numel()) for p in model.parameters() if p.requires_grad) \
        if mode == "train_step" else ()
    wl = tuple(WLayer(layer.config, int(layer.count), tuple(layer.names),
                      bool(layer.supported), int(getattr(layer, "module_params", 0)))
               for layer in layers)
    return Workload(wl, mode, dtype, int(batch), optimizer, numels, int(zero_cost_ops),
                    enc, mha, tuple(notes), memory_format=memory_format,
                    grad_scaler=bool(grad_scaler), torch_version=torch_version)
