"""The H100 reference set's architectures that are not in torchvision/timm, in ``torch.nn``.

Definitions from ``shared/reference/h100/README.md`` ("Architectures that are not in
torchvision/timm"), and :func:`build_reference_model` that rebuilds any row of the set.
"""

from __future__ import annotations

import torch
from torch import nn

from profiling.model_refs import build_mlp, resolve_model_on_meta

__all__ = ["ReferenceEncoder", "build_reference_model", "reference_inputs"]


class ReferenceEncoder(nn.Module):
    """token ids [batch, seq] -> Embedding(vocab, d) -> TransformerEncoder(layers x
    TransformerEncoderLayer(d, heads, 4d, batch_first, gelu)) -> Linear(d, 2) on token 0."""

    def __init__(self, d: int, heads: int, layers: int, vocab: int):
        super().__init__()
        self.emb = nn.Embedding(vocab, d)
        self.encoder = nn.TransformerEncoder(
            nn.TransformerEncoderLayer(d, heads, 4 * d, batch_first=True, activation="gelu"),
            layers, enable_nested_tensor=False)
        self.head = nn.Linear(d, 2)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self.head(self.encoder(self.emb(ids))[:, 0])


def build_reference_model(row: dict, device: str = "meta") -> nn.Module:
    """The model of one reference row (``kind`` vision / transformer / mlp)."""
    kind = row["kind"]
    if kind == "vision":
        return resolve_model_on_meta(row["source"])
    a = row["arch"]
    with torch.device(device):
        if kind == "transformer":
            return ReferenceEncoder(a["d"], a["heads"], a["layers"], a["vocab"])
        if kind == "mlp":
            return build_mlp(a["inp"], a["depth"], a["width"], a["out"])
    raise ValueError(f"unknown reference kind {kind!r}")


def reference_inputs(row: dict) -> torch.Tensor:
    """Meta inputs of one row: images float, token ids int64, MLP features float."""
    shape = (int(row["batch"]), *[int(d) for d in row["input"]])
    if row["kind"] == "transformer":
        return torch.zeros(shape, dtype=torch.long, device="meta")
    return torch.zeros(shape, device="meta")
