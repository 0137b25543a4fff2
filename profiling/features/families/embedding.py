"""Features of embeddings and upsampling.
"""

from __future__ import annotations

from profiling.capture.records import LayerConfig
from profiling.features.families.common import _arg, _dtype_bytes, _feat, _prod, _x, _y
from profiling.features.families.registry import register

# --------------------------------------------------------------------------------------
# embedding, upsampling


@register("Embedding", "F.embedding")
def _embedding(cfg: LayerConfig) -> dict:
    """Gather: reads the indices (8 bytes each) and the gathered rows only."""
    hp = cfg.hparams_dict()
    idx_n = _prod(_x(cfg))
    out_n = _prod(_y(cfg))
    db = _dtype_bytes(cfg.dtype)
    if cfg.type == "Embedding":
        num, dim = int(hp["num_embeddings"]), int(hp["embedding_dim"])
        params = num * dim
    else:
        w = cfg.input_shapes[1]
        num, dim = int(w[0]), int(w[-1])
        params = 0
    return _feat(cfg, params=params, bytes_read=idx_n * 8 + out_n * db,
                 num_embeddings=num, embedding_dim=dim, lookups=idx_n)


_UPSAMPLE_PER_OUT = {"nearest": 1, "nearest-exact": 1, "linear": 2, "bilinear": 4,
                     "bicubic": 16, "trilinear": 8, "area": 1}


@register("Upsample", "UpsamplingNearest2d", "UpsamplingBilinear2d", "F.interpolate",
          "F.upsample", "F.grid_sample")
def _upsample(cfg: LayerConfig) -> dict:
    """fvcore: nearest 1 and bilinear 4 per output element (macs); flops the same, with
    linear 2, trilinear 8, bicubic 16 per output element."""
    hp = cfg.hparams_dict()
    if cfg.type == "UpsamplingNearest2d":
        mode = "nearest"
    elif cfg.type in ("UpsamplingBilinear2d", "F.grid_sample"):
        mode = "bilinear"
    elif cfg.type.startswith("F."):
        mode = _arg(hp, "mode", 3, "nearest")
    else:
        mode = hp.get("mode", "nearest")
    per = _UPSAMPLE_PER_OUT.get(mode, 1)
    out_n = _prod(_y(cfg))
    macs = out_n * per if mode in ("nearest", "bilinear") else 0
    return _feat(cfg, macs=macs, flops=out_n * per)


