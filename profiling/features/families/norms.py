"""Features of normalisation layers (BatchNorm, InstanceNorm, LayerNorm, RMSNorm, GroupNorm).
"""

from __future__ import annotations

from profiling.capture.records import LayerConfig
from profiling.features.families.common import _arg, _feat, _ntuple, _prod, _x
from profiling.features.families.registry import register

# --------------------------------------------------------------------------------------
# normalisation


@register("BatchNorm1d", "BatchNorm2d", "BatchNorm3d", "SyncBatchNorm", "LazyBatchNorm1d",
          "LazyBatchNorm2d", "LazyBatchNorm3d")
def _batchnorm(cfg: LayerConfig) -> dict:
    """Eval with running stats: 2 ops/element with affine, 1 without (fvcore); batch
    statistics (training, or track_running_stats=False): 5 / 4 per element."""
    hp = cfg.hparams_dict()
    x = _x(cfg)
    c = int(hp["num_features"])
    affine = bool(hp.get("affine", True))
    track = bool(hp.get("track_running_stats", True))
    batch_stats = bool(hp.get("training", False)) or not track
    n = _prod(x)
    per = (5 if affine else 4) if batch_stats else (2 if affine else 1)
    macs = n * per
    params = 2 * c if affine else 0
    return _feat(cfg, macs=macs, flops=macs, params=params,
                 extra_read_elems=2 * c if track else 0, num_features=c,
                 spatial=n // max(c * (x[0] if len(x) > 1 else 1), 1),
                 batch_stats=int(batch_stats))


@register("InstanceNorm1d", "InstanceNorm2d", "InstanceNorm3d")
def _instancenorm(cfg: LayerConfig) -> dict:
    hp = cfg.hparams_dict()
    c = int(hp["num_features"])
    affine = bool(hp.get("affine", False))
    n = _prod(_x(cfg))
    macs = n * (5 if affine else 4)
    return _feat(cfg, macs=macs, flops=macs, params=2 * c if affine else 0, num_features=c)


@register("LayerNorm")
def _layernorm(cfg: LayerConfig) -> dict:
    """fvcore: 5 ops/element with elementwise_affine, 4 without."""
    hp = cfg.hparams_dict()
    shape = _ntuple(hp["normalized_shape"], 1) if not isinstance(
        hp["normalized_shape"], (tuple, list)) else tuple(hp["normalized_shape"])
    p = _prod(shape)
    affine = bool(hp.get("elementwise_affine", True))
    bias = bool(hp.get("bias", True))
    n = _prod(_x(cfg))
    macs = n * (5 if affine else 4)
    params = p * (2 if bias else 1) if affine else 0
    return _feat(cfg, macs=macs, flops=macs, params=params, normalized_numel=p,
                 rows=n // max(p, 1))


@register("RMSNorm")
def _rmsnorm(cfg: LayerConfig) -> dict:
    hp = cfg.hparams_dict()
    shape = hp["normalized_shape"]
    p = _prod(shape if isinstance(shape, (tuple, list)) else (shape,))
    affine = bool(hp.get("elementwise_affine", True))
    n = _prod(_x(cfg))
    flops = n * (4 if affine else 3)
    return _feat(cfg, flops=flops, params=p if affine else 0, normalized_numel=p)


@register("GroupNorm")
def _groupnorm(cfg: LayerConfig) -> dict:
    hp = cfg.hparams_dict()
    c = int(hp["num_channels"])
    affine = bool(hp.get("affine", True))
    n = _prod(_x(cfg))
    macs = n * (5 if affine else 4)
    return _feat(cfg, macs=macs, flops=macs, params=2 * c if affine else 0,
                 num_channels=c, num_groups=int(hp["num_groups"]))


@register("F.layer_norm", "F.group_norm", "F.instance_norm")
def _f_norm(cfg: LayerConfig) -> dict:
    n = _prod(_x(cfg))
    affine = len(cfg.input_shapes) > 1 if cfg.type == "F.layer_norm" else \
        len(cfg.input_shapes) > (1 if cfg.type == "F.group_norm" else 3)
    macs = n * (5 if affine else 4)
    return _feat(cfg, macs=macs, flops=macs)


@register("F.rms_norm")
def _f_rms_norm(cfg: LayerConfig) -> dict:
    n = _prod(_x(cfg))
    return _feat(cfg, flops=n * (4 if len(cfg.input_shapes) > 1 else 3))


@register("F.batch_norm")
def _f_batchnorm(cfg: LayerConfig) -> dict:
    hp = cfg.hparams_dict()
    training = bool(_arg(hp, "training", 5, False))
    n = _prod(_x(cfg))
    n_t = len(cfg.input_shapes)
    if training or n_t in (1, 3):      # no running stats given -> batch statistics
        affine = n_t in (3, 5)
        per = 5 if affine else 4
    else:
        per = 2 if n_t >= 4 else 1
    return _feat(cfg, macs=n * per, flops=n * per)


