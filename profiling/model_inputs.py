"""Example inputs for a model: zero tensors of a ``(batch, *shape)`` (``meta`` allocates
nothing), token ids for Hugging Face models, and the ``--input-dtype`` names."""

from __future__ import annotations

import math

import torch
from torch import nn

from profiling.errors import ExanteError
from profiling.input_spec import check_batch


def hf_example_inputs(model: nn.Module, batch: int, seq_len: int = 128,
                      device: str | torch.device = "meta") -> dict:
    """Token-id inputs for a Hugging Face model: ``input_ids`` (zeros, int64) and an
    all-ones ``attention_mask`` of shape ``(batch, seq_len)``, plus ``decoder_input_ids``
    for encoder-decoder models and ``pixel_values`` (3×image_size²) for vision models."""
    b = check_batch(batch)
    cfg = getattr(model, "config", None)
    if cfg is not None and getattr(cfg, "model_type", "") in _HF_VISION:
        size = int(getattr(cfg, "image_size", 224))
        return {"pixel_values": torch.zeros(b, int(getattr(cfg, "num_channels", 3)), size, size,
                                            device=device)}
    ids = torch.zeros(b, int(seq_len), dtype=torch.long, device=device)
    out = {"input_ids": ids, "attention_mask": torch.ones_like(ids)}
    if cfg is not None and getattr(cfg, "is_encoder_decoder", False):
        out["decoder_input_ids"] = torch.zeros_like(ids)
    return out


_HF_VISION = frozenset({"vit", "deit", "beit", "convnext", "swin", "dinov2", "resnet",
                        "regnet", "mobilevit", "efficientnet", "levit", "poolformer"})


INPUT_DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16,
                "int64": torch.int64, "int32": torch.int32}   # --input-dtype: int for token ids
_MAX_TENSOR_BYTES = 2**63 - 1                                 # torch's storage-size limit


def input_dtype(name) -> torch.dtype:
    """The torch dtype for ``--input-dtype`` (``float32`` | ``float16`` | ``bfloat16`` |
    ``int64`` | ``int32``; a torch dtype is returned as is)."""
    if isinstance(name, torch.dtype):
        return name
    key = str(name).strip().lower()
    if key not in INPUT_DTYPES:
        raise ExanteError(f"unknown --input-dtype {name!r}; accepted: {', '.join(INPUT_DTYPES)} "
                          "(int64 for models that take token ids)")
    return INPUT_DTYPES[key]


def check_numel(shape: tuple[int, ...], batch: int, dtype: torch.dtype = torch.float32) -> int:
    """The element count of a ``(batch, *shape)`` input; an :class:`ExanteError` when the
    tensor would exceed torch's limit of 2^63 - 1 bytes (it overflows before that)."""
    n = int(batch) * math.prod(int(d) for d in shape)
    if n * torch.empty((), dtype=dtype).element_size() > _MAX_TENSOR_BYTES:
        raise ExanteError(
            f"--batch {batch} x --input {'x'.join(map(str, shape))} is {n:.3g} {dtype} elements, "
            f"more than a torch tensor can hold (2^63 - 1 bytes); use a smaller batch or input")
    return n


def example_inputs(shape: tuple[int, ...], batch: int, device: str | torch.device = "meta",
                   dtype: torch.dtype | str = torch.float32,
                   vocab: int | None = None) -> torch.Tensor:
    """A ``(batch, *shape)`` tensor of zeros on ``device`` (``meta`` allocates nothing).

    ``dtype``: a torch dtype or an ``--input-dtype`` name (``int64`` for token ids). With
    ``vocab`` the input is int64 token ids drawn uniformly from ``[0, vocab)`` (on meta:
    only the shape and dtype matter)."""
    b = check_batch(batch)
    dt = torch.int64 if vocab is not None else input_dtype(dtype)
    if vocab is not None and (isinstance(vocab, bool) or not isinstance(vocab, int) or vocab < 1):
        raise ExanteError(f"--vocab must be a positive integer (the token-id range), got {vocab!r}")
    check_numel(shape, b, dt)
    if vocab is not None and torch.device(device).type != "meta":
        return torch.randint(0, vocab, (b, *shape), device=device, dtype=dt)
    return torch.zeros((b, *shape), device=device, dtype=dt)
