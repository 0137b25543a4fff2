"""Features of attention (MultiheadAttention, sdpa) and recurrent layers (LSTM/GRU/RNN).
"""

from __future__ import annotations

from profiling.capture.records import LayerConfig
from profiling.features.families.common import _arg, _feat, _prod, _x
from profiling.features.families.registry import register

# --------------------------------------------------------------------------------------
# attention


def _attn_flops(macs: int, attn_numel: int) -> int:
    return 2 * macs + 5 * attn_numel          # matmuls + softmax


@register("MultiheadAttention")
def _mha(cfg: LayerConfig) -> dict:
    """QKV in-projection, QK^T, softmax, AV and out-projection.

    macs = N·L·E·E (q) + N·S·kdim·E (k) + N·S·vdim·E (v) + N·L·S·E (QK^T) + N·L·S·E (AV)
    + N·L·E·E (out-proj), with N the batch, L/S the query/key lengths, E = embed_dim.
    """
    hp = cfg.hparams_dict()
    e = int(hp["embed_dim"])
    h = int(hp["num_heads"])
    kdim = int(hp.get("kdim") or e)
    vdim = int(hp.get("vdim") or e)
    bf = bool(hp.get("batch_first", False))
    q = cfg.input_shapes[0]
    k = cfg.input_shapes[1] if len(cfg.input_shapes) > 1 else q
    if len(q) == 2:               # unbatched (L, E)
        n, lq, s = 1, int(q[0]), int(k[0])
    elif bf:
        n, lq, s = int(q[0]), int(q[1]), int(k[1])
    else:
        n, lq, s = int(q[1]), int(q[0]), int(k[0])
    bias = bool(hp.get("bias", True))
    add_bias_kv = bool(hp.get("add_bias_kv", False))
    s_eff = s + (1 if add_bias_kv else 0) + (1 if hp.get("add_zero_attn") else 0)
    proj = n * lq * e * e + n * s * kdim * e + n * s * vdim * e + n * lq * e * e
    attn = 2 * n * lq * s_eff * e
    macs = proj + attn
    attn_numel = n * h * lq * s_eff
    params = e * (e + kdim + vdim) + (3 * e if bias else 0) + e * e + (e if bias else 0) \
        + (2 * e if add_bias_kv else 0)
    return _feat(cfg, macs=macs, flops=_attn_flops(macs, attn_numel), params=params, batch=n,
                 seq_len=lq, kv_len=s, heads=h, embed_dim=e, head_dim=e // max(h, 1),
                 attn_numel=attn_numel, proj_macs=proj, attn_macs=attn)


@register("sdpa")
def _sdpa(cfg: LayerConfig) -> dict:
    """F.scaled_dot_product_attention(q, k, v): macs = B·L·S·E (QK^T) + B·L·S·Ev (AV),
    B the product of q's leading dims (batch·heads); softmax 5 flops per score."""
    hp = cfg.hparams_dict()
    q, k, v = cfg.input_shapes[0], cfg.input_shapes[1], cfg.input_shapes[2]
    b = _prod(q[:-2])
    lq, e = int(q[-2]), int(q[-1])
    s, ev = int(k[-2]), int(v[-1])
    macs = b * lq * s * (e + ev)
    attn_numel = b * lq * s
    heads = int(q[-3]) if len(q) >= 3 else 1
    return _feat(cfg, macs=macs, flops=_attn_flops(macs, attn_numel),
                 batch=int(q[0]) if len(q) >= 3 else 1, seq_len=lq, kv_len=s, heads=heads,
                 head_dim=e, attn_numel=attn_numel,
                 is_causal=int(bool(_arg(hp, "is_causal", 5, False))),
                 has_mask=int(len(cfg.input_shapes) > 3))


# --------------------------------------------------------------------------------------
# recurrent layers


@register("LSTM", "GRU", "RNN")
def _rnn(cfg: LayerConfig) -> dict:
    """Per layer, direction and time step: gates·H·(I_l + H_r) macs (+ projection);
    ~4 flops per gate element for the pointwise gate math."""
    hp = cfg.hparams_dict()
    gates = {"LSTM": 4, "GRU": 3}.get(cfg.type, 1)
    isz, hsz = int(hp["input_size"]), int(hp["hidden_size"])
    layers = int(hp.get("num_layers", 1))
    dirs = 2 if hp.get("bidirectional") else 1
    proj = int(hp.get("proj_size", 0) or 0)
    hr = proj or hsz
    bias = bool(hp.get("bias", True))
    x = _x(cfg)
    if len(x) == 2:
        t, n = int(x[0]), 1
    elif hp.get("batch_first"):
        n, t = int(x[0]), int(x[1])
    else:
        t, n = int(x[0]), int(x[1])
    macs = params = 0
    for layer in range(layers):
        il = isz if layer == 0 else hr * dirs
        per_dir = gates * hsz * (il + hr) + (hr * hsz if proj else 0)
        macs += dirs * t * n * per_dir
        params += dirs * (gates * hsz * (il + hr) + (2 * gates * hsz if bias else 0)
                          + (hr * hsz if proj else 0))
    point = 4 * t * n * gates * hsz * layers * dirs
    return _feat(cfg, macs=macs, flops=2 * macs + point, params=params, batch=n,
                 seq_len=t, hidden_size=hsz, num_layers=layers, directions=dirs)


