"""Throughput of LLM training from the project's own physics model, plus parallel overheads.

One transformer layer, tensor-parallel sharded (``heads/tp`` heads, ``ffn/tp`` MLP columns),
is built on ``meta`` and priced by :func:`predictor.engine.predict.predict` (``train_step``: forward +
backward of one micro-batch, lowered kernels on the device's datasheet, via the shipped H100
artifact or its datasheet transfer); the LM head likewise. A global step of ``m`` micro-batches
then costs (all in s)::

    t_stage = (L/pp)·t_layer + t_head + t_tp_comm          (one micro-batch, one stage)
    t_step  = (m + pp - 1)·t_stage + t_dp_exposed + t_optimizer

``t_optimizer``: Adam as a memory-bound pass over the (ZeRO-sharded) states, 28 bytes/param
fused (read fp32 master, m, v, 16-bit grad; write master, m, v, 16-bit weights) and 64
bytes/param unfused (the single-tensor update's ~16 fp32 element-wise accesses, counted).
MFU = ``6·N·tokens_per_step / (t_step · devices · peak)``. Attention is ``F.scaled_dot_product_attention``
with ``flash=True`` and explicit matmul-softmax-matmul otherwise.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field

from predictor.carbon.llm import parallel
from profiling.errors import ExanteError

OPT_BYTES_PER_PARAM = {True: 28.0, False: 64.0}


@dataclass(frozen=True)
class TransformerConfig:
    """Shape and parallel layout of a decoder-only transformer training run."""

    layers: int
    hidden: int
    heads: int
    seq_len: int = 2048
    micro_batch: int = 1
    ffn_hidden: int | None = None      # default 4·hidden
    vocab: int = 50257
    kv_heads: int | None = None
    flash: bool = True
    fused_optimizer: bool = True
    tp: int = 1
    pp: int = 1
    global_batch_tokens: float = 4e6

    @property
    def params(self) -> float:
        """Parameter count of the transformer."""
        ffn = self.ffn_hidden or 4 * self.hidden
        kv = (self.kv_heads or self.heads) / self.heads
        per_layer = (2 + 2 * kv) * self.hidden ** 2 + 2 * self.hidden * ffn
        return self.layers * per_layer + self.vocab * self.hidden


def infer_config(params: float, *, seq_len: int = 2048, tp: int | None = None,
                 pp: int = 1) -> tuple[TransformerConfig, str]:
    """A GPT-like shape of ``params`` parameters (``12·L·h²`` with ``h/L = 128``, as GPT-3 175B:
    12288/96), when only the parameter count is known."""
    h = (128 * params / 12.0) ** (1 / 3)
    h = max(256, int(round(h / 128)) * 128)
    layers = max(1, int(round(params / (12 * h * h))))
    heads = max(1, h // 128)
    if tp is None:
        tp = 1 if params < 20e9 else 8
    return (TransformerConfig(layers=layers, hidden=h, heads=heads, seq_len=seq_len, tp=tp,
                              pp=pp),
            f"shape inferred from params: {layers} layers x hidden {h}, {heads} heads "
            f"(12·L·h², h/L = 128), seq {seq_len}, micro-batch 1, tp {tp}, pp {pp}")


def _block(cfg: TransformerConfig):
    import torch
    import torch.nn as nn
    import torch.nn.functional as F

    tp = cfg.tp
    hd = cfg.hidden // cfg.heads
    hq = max(1, cfg.heads // tp)
    hkv = max(1, (cfg.kv_heads or cfg.heads) // tp)
    ffn = max(1, (cfg.ffn_hidden or 4 * cfg.hidden) // tp)

    class Block(nn.Module):
        def __init__(self):
            super().__init__()
            self.ln1 = nn.LayerNorm(cfg.hidden)
            self.qkv = nn.Linear(cfg.hidden, (hq + 2 * hkv) * hd, bias=False)
            self.proj = nn.Linear(hq * hd, cfg.hidden, bias=False)
            self.ln2 = nn.LayerNorm(cfg.hidden)
            self.fc1 = nn.Linear(cfg.hidden, ffn, bias=False)
            self.fc2 = nn.Linear(ffn, cfg.hidden, bias=False)

        def forward(self, x):
            b, s, _ = x.shape
            q, k, v = self.qkv(self.ln1(x)).split([hq * hd, hkv * hd, hkv * hd], dim=-1)
            q = q.view(b, s, hq, hd).transpose(1, 2)
            k = k.view(b, s, hkv, hd).transpose(1, 2)
            v = v.view(b, s, hkv, hd).transpose(1, 2)
            if hkv != hq:
                k = k.repeat_interleave(hq // hkv, dim=1)
                v = v.repeat_interleave(hq // hkv, dim=1)
            if cfg.flash:
                a = F.scaled_dot_product_attention(q, k, v, is_causal=True)
            else:
                a = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(hd), dim=-1) @ v
            x = x + self.proj(a.transpose(1, 2).reshape(b, s, hq * hd))
            return x + self.fc2(F.gelu(self.fc1(self.ln2(x))))

    with torch.device("meta"):
        return Block(), nn.Linear(cfg.hidden, max(1, cfg.vocab // tp), bias=False)


@dataclass
class ThroughputEstimate:
    """Per global step (s), the resulting MFU and the parts, for ``devices`` devices."""

    step_time_s: float
    tokens_per_step: float
    mfu: float
    devices: int
    parts: dict = field(default_factory=dict)
    notes: list = field(default_factory=list)

    def device_hours(self, tokens: float) -> float:
        """Device-hours (h × devices) to train on ``tokens`` tokens."""
        return tokens / self.tokens_per_step * self.step_time_s * self.devices / 3600.0


def estimate(cfg: TransformerConfig, spec, devices: int, *, dtype: str = "bf16",
             flops_params: float | None = None, zero_stage: int = 1,
             link: parallel.Interconnect | None = None) -> ThroughputEstimate:
    """Physics-model throughput of ``cfg`` on ``devices`` × ``spec`` (a HardwareSpec)."""
    from predictor.engine.predict import predict

    if spec.kind != "gpu":
        raise ExanteError(f"the physics model prices GPUs only; {spec.name} is a {spec.kind}")
    if devices % (cfg.tp * cfg.pp):
        raise ExanteError(f"{devices} devices is not a multiple of tp×pp = {cfg.tp * cfg.pp}")
    dp = devices // (cfg.tp * cfg.pp)
    run_dtype, note = spec.training_dtype(dtype)
    notes = [note] if note else []
    pdtype = {"bf16": "bf16", "fp16": "fp16", "fp8": "bf16"}.get(run_dtype, "fp32")
    if run_dtype == "fp8":
        notes.append("fp8 training priced as bf16 kernels (the physics model has no fp8 path)")
    block, head = _block(cfg)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        x = (cfg.micro_batch, cfg.seq_len, cfg.hidden)
        t_layer = predict(block, x, mode="train_step", dtype=pdtype, hardware=spec.key,
                          optimizer="sgd").time_s
        t_head = predict(head, x, mode="train_step", dtype=pdtype, hardware=spec.key,
                         optimizer="sgd").time_s
    notes += list(dict.fromkeys(str(w.message) for w in caught))[:2]
    link = link or parallel.interconnect(spec.generation)
    n = flops_params or cfg.params
    tokens_mb = cfg.seq_len * cfg.micro_batch
    m = max(1, int(round(cfg.global_batch_tokens / (tokens_mb * dp))))
    t_tp = parallel.tp_comm_s(layers_per_stage=cfg.layers / cfg.pp, seq_len=cfg.seq_len,
                              micro_batch=cfg.micro_batch, hidden=cfg.hidden, tp=cfg.tp, link=link)
    t_stage = cfg.layers / cfg.pp * t_layer + t_head + t_tp
    params_dev = cfg.params / (cfg.tp * cfg.pp)
    t_ar, t_dp = parallel.dp_exposed_s(grad_bytes_per_device=2.0 * params_dev, dp=dp,
                                       tp=cfg.tp, pp=cfg.pp, hide_s=2 / 3 * t_stage, link=link)
    opt_params = params_dev / (dp if zero_stage >= 1 else 1)
    t_opt = opt_params * OPT_BYTES_PER_PARAM[cfg.fused_optimizer] / (spec.mem_bw_gbs * 1e9)
    t_step = (m + cfg.pp - 1) * t_stage + t_dp + t_opt
    tokens = m * tokens_mb * dp
    peak = spec.peak(run_dtype)
    mfu = 6.0 * n * tokens / (t_step * devices * peak * 1e12)
    parts = {"layer_fwd_bwd_s": t_layer, "head_fwd_bwd_s": t_head, "tp_comm_s": t_tp,
             "stage_s": t_stage, "micro_batches": m, "dp": dp,
             "bubble_fraction": parallel.bubble_fraction(cfg.pp, m),
             "dp_allreduce_s": t_ar, "dp_exposed_s": t_dp, "optimizer_s": t_opt,
             "interconnect": link.label, "dtype": run_dtype}
    notes.append("each micro-batch's price includes one SGD update of its layer's weights "
                 "(the physics model's train_step); Adam is added once per step")
    return ThroughputEstimate(t_step, tokens, mfu, devices, parts, notes)
