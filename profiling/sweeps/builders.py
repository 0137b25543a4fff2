"""Build a sweep spec (JSON-able dict) into ``(model, inputs)`` on a device: single-layer hosts,
MLP / CNN / transformer / mixed stacks and the H100 reference-set workloads."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn
from torch.nn import functional as F

from profiling.dataset.reference_set import build_encoder
from profiling.errors import ExanteError
from profiling.model_refs import build_mlp, resolve_model

# --------------------------------------------------------------------------- builders


class _LayerHost(nn.Module):
    """Holds one layer; ``forward`` calls it (MultiheadAttention as self-attention)."""

    def __init__(self, layer: nn.Module, self_attention: bool = False):
        super().__init__()
        self.layer = layer
        self.self_attention = self_attention

    def forward(self, *xs):
        if self.self_attention:
            x = xs[0]
            return self.layer(x, x, x, need_weights=False)[0]
        return self.layer(*xs)


class _FunctionalHost(nn.Module):
    """Calls one functional op (captured as such, attributed to this module)."""

    def __init__(self, op: str, kwargs: dict | None = None):
        super().__init__()
        self.op = op
        self.kwargs = dict(kwargs or {})

    def forward(self, *xs):
        if self.op == "sdpa":
            return F.scaled_dot_product_attention(*xs, **self.kwargs)
        if self.op == "add":
            return xs[0] + xs[1]
        if self.op == "mul":
            return xs[0] * xs[1]
        if self.op == "matmul":
            return torch.matmul(xs[0], xs[1])
        if self.op == "mean":
            return xs[0].mean(**self.kwargs)
        if self.op == "softmax":
            return torch.softmax(xs[0], **self.kwargs)
        if self.op == "cat":
            return torch.cat(list(xs), **self.kwargs)
        raise ExanteError(f"unknown functional op {self.op!r}")


def _randn(shape, device):
    return torch.randn(shape, device=device) if torch.device(device).type != "meta" else torch.empty(shape, device="meta")


def _randint(high, shape, device):
    if torch.device(device).type == "meta":
        return torch.empty(shape, dtype=torch.long, device="meta")
    return torch.randint(0, int(high), shape, device=device)


def _act(name: str) -> nn.Module:
    return {"relu": nn.ReLU, "gelu": nn.GELU, "silu": nn.SiLU, "hardswish": nn.Hardswish, "tanh": nn.Tanh,
            "sigmoid": nn.Sigmoid, "leaky_relu": nn.LeakyReLU}[name]()


def _build_layer(spec: dict, device):
    t, b = spec["type"], spec["batch"]
    if t == "Linear":
        m: nn.Module = nn.Linear(spec["in"], spec["out"], bias=spec.get("bias", True))
        shape: tuple[int, ...] = (b, spec["seq"], spec["in"]) if spec.get("seq") else (b, spec["in"])
        return _LayerHost(m), (_randn(shape, device),)
    if t in ("Conv2d", "Conv1d"):
        cls = nn.Conv2d if t == "Conv2d" else nn.Conv1d
        m = cls(spec["cin"], spec["cout"], spec["k"], stride=spec["stride"], padding=spec["k"] // 2,
                groups=spec["groups"], bias=spec.get("bias", False))
        sp = (spec["res"], spec["res"]) if t == "Conv2d" else (spec["length"],)
        return _LayerHost(m), (_randn((b, spec["cin"], *sp), device),)
    if t == "ConvTranspose2d":
        m = nn.ConvTranspose2d(spec["cin"], spec["cout"], spec["k"], stride=spec["stride"])
        return _LayerHost(m), (_randn((b, spec["cin"], spec["res"], spec["res"]), device),)
    if t == "BatchNorm2d":
        return _LayerHost(nn.BatchNorm2d(spec["c"])), (_randn((b, spec["c"], spec["res"], spec["res"]), device),)
    if t == "BatchNorm1d":
        return _LayerHost(nn.BatchNorm1d(spec["c"])), (_randn((b, spec["c"]), device),)
    if t == "LayerNorm":
        return _LayerHost(nn.LayerNorm(spec["d"])), (_randn((b, spec["seq"], spec["d"]), device),)
    if t == "GroupNorm":
        return (_LayerHost(nn.GroupNorm(spec["groups"], spec["c"])),
                (_randn((b, spec["c"], spec["res"], spec["res"]), device),))
    if t in ("ReLU", "GELU", "SiLU", "Sigmoid", "Tanh", "Hardswish", "LeakyReLU", "Dropout"):
        m = nn.Dropout(0.1) if t == "Dropout" else getattr(nn, t)()
        return _LayerHost(m), (_randn(tuple(spec["shape"]), device),)
    if t == "Softmax":
        return _LayerHost(nn.Softmax(dim=-1)), (_randn(tuple(spec["shape"]), device),)
    if t in ("MaxPool2d", "AvgPool2d"):
        m = getattr(nn, t)(spec["k"], stride=spec["stride"])
        return _LayerHost(m), (_randn((b, spec["c"], spec["res"], spec["res"]), device),)
    if t == "AdaptiveAvgPool2d":
        return _LayerHost(nn.AdaptiveAvgPool2d(1)), (_randn((b, spec["c"], spec["res"], spec["res"]), device),)
    if t == "MultiheadAttention":
        m = nn.MultiheadAttention(spec["d"], spec["heads"], batch_first=True)
        return _LayerHost(m, self_attention=True), (_randn((b, spec["seq"], spec["d"]), device),)
    if t == "sdpa":
        shape = (b, spec["heads"], spec["seq"], spec["head_dim"])
        return (_FunctionalHost("sdpa", {"is_causal": bool(spec.get("causal", False))}),
                tuple(_randn(shape, device) for _ in range(3)))
    if t == "Embedding":
        return _LayerHost(nn.Embedding(spec["vocab"], spec["d"])), (_randint(spec["vocab"], (b, spec["seq"]), device),)
    if t == "add":
        shape = tuple(spec["shape"])
        return _FunctionalHost("add"), (_randn(shape, device), _randn(shape, device))
    if t == "matmul":
        return (_FunctionalHost("matmul"),
                (_randn((b, spec["m"], spec["k"]), device), _randn((b, spec["k"], spec["n"]), device)))
    if t == "mean":
        return _FunctionalHost("mean", {"dim": 1}), (_randn((b, spec["seq"], spec["d"]), device),)
    raise ExanteError(f"unknown layer type {t!r} in sweep spec")


class EncoderBlock(nn.Module):
    """Pre-norm transformer encoder block from primitives (Linear, LayerNorm, sdpa, GELU), the
    way ViT/BERT-style code writes it (no fused nn.TransformerEncoderLayer fast path)."""

    def __init__(self, d: int, heads: int, ff_mult: int = 4, act: str = "gelu", causal: bool = False):
        super().__init__()
        self.heads, self.causal = heads, causal
        self.ln1 = nn.LayerNorm(d)
        self.qkv = nn.Linear(d, 3 * d)
        self.proj = nn.Linear(d, d)
        self.ln2 = nn.LayerNorm(d)
        self.fc1 = nn.Linear(d, ff_mult * d)
        self.act = _act(act)
        self.fc2 = nn.Linear(ff_mult * d, d)

    def forward(self, x):
        b, s, d = x.shape
        q, k, v = self.qkv(self.ln1(x)).view(b, s, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4).unbind(0)
        a = F.scaled_dot_product_attention(q, k, v, is_causal=self.causal)
        x = x + self.proj(a.transpose(1, 2).reshape(b, s, d))
        return x + self.fc2(self.act(self.fc1(self.ln2(x))))


class TokenClassifier(nn.Module):
    """Embedding + learned positions -> encoder blocks -> LayerNorm -> mean pool -> Linear."""

    def __init__(self, vocab: int, seq: int, d: int, blocks: Sequence[nn.Module], classes: int):
        super().__init__()
        self.emb = nn.Embedding(vocab, d)
        self.pos = nn.Parameter(torch.zeros(1, seq, d))
        self.blocks = nn.Sequential(*blocks)
        self.ln_f = nn.LayerNorm(d)
        self.head = nn.Linear(d, classes)

    def forward(self, ids):
        x = self.emb(ids) + self.pos
        x = self.ln_f(self.blocks(x))
        return self.head(x.mean(dim=1))


class BasicBlock(nn.Module):
    """ResNet basic block (residual) or the same convs without the skip (plain)."""

    def __init__(self, cin: int, cout: int, stride: int, k: int = 3, residual: bool = True, act: str = "relu",
                 norm: str = "bn"):
        super().__init__()
        self.residual = residual
        self.conv1 = nn.Conv2d(cin, cout, k, stride=stride, padding=k // 2, bias=False)
        self.n1 = _norm2d(norm, cout)
        self.a1 = _act(act)
        self.conv2 = nn.Conv2d(cout, cout, k, padding=k // 2, bias=False)
        self.n2 = _norm2d(norm, cout)
        self.a2 = _act(act)
        self.short = None
        if residual and (stride != 1 or cin != cout):
            self.short = nn.Sequential(nn.Conv2d(cin, cout, 1, stride=stride, bias=False), _norm2d(norm, cout))

    def forward(self, x):
        y = self.n2(self.conv2(self.a1(self.n1(self.conv1(x)))))
        if self.residual:
            y = y + (x if self.short is None else self.short(x))
        return self.a2(y)


def _norm2d(norm: str, c: int) -> nn.Module:
    if norm == "bn":
        return nn.BatchNorm2d(c)
    if norm == "gn":
        return nn.GroupNorm(min(32, c), c) if c % min(32, c) == 0 else nn.GroupNorm(1, c)
    return nn.Identity()


def _build_cnn(spec: dict, device):
    c, res, k = spec["base"], spec["res"], spec["kernel"]
    layers: list[nn.Module] = [nn.Conv2d(spec.get("in_ch", 3), c, 3, stride=2 if res >= 128 else 1, padding=1, bias=False),
                               nn.BatchNorm2d(c), nn.ReLU()]
    if res >= 128:
        layers.append(nn.MaxPool2d(3, stride=2, padding=1))
    cin = c
    for s in range(spec["stages"]):
        cout = min(c * 2 ** s, 1024)
        for j in range(spec["blocks"]):
            layers.append(BasicBlock(cin, cout, 2 if (j == 0 and s > 0) else 1, k, spec["residual"]))
            cin = cout
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(cin, spec["classes"])]
    return nn.Sequential(*layers), (_randn((spec["batch"], spec.get("in_ch", 3), res, res), device),)


def _build_transformer(spec: dict, device):
    d, h = spec["d_model"], spec["heads"]
    blocks = [EncoderBlock(d, h, spec.get("ff_mult", 4), spec.get("act", "gelu"), spec.get("causal", False))
              for _ in range(spec["layers"])]
    model = TokenClassifier(spec["vocab"], spec["seq"], d, blocks, spec["classes"])
    return model, (_randint(spec["vocab"], (spec["batch"], spec["seq"]), device),)


class _Residual(nn.Module):
    def __init__(self, body: nn.Module):
        super().__init__()
        self.body = body

    def forward(self, x):
        return x + self.body(x)


class _SeqMLP(nn.Module):
    def __init__(self, d, mult, act):
        super().__init__()
        self.ln = nn.LayerNorm(d)
        self.fc1 = nn.Linear(d, mult * d)
        self.act = _act(act)
        self.fc2 = nn.Linear(mult * d, d)

    def forward(self, x):
        return x + self.fc2(self.act(self.fc1(self.ln(x))))


class _SeqConv(nn.Module):
    def __init__(self, d, k, act):
        super().__init__()
        self.ln = nn.LayerNorm(d)
        self.conv = nn.Conv1d(d, d, k, padding=k // 2, groups=d)
        self.act = _act(act)

    def forward(self, x):
        y = self.conv(self.ln(x).transpose(1, 2)).transpose(1, 2)
        return x + self.act(y)


def _build_mixed(spec: dict, device):
    kind, b = spec["kind"], spec["batch"]
    if kind == "vector":
        layers: list[nn.Module] = []
        prev = spec["in"]
        for blk in spec["blocks"]:
            layers.append(nn.Linear(prev, blk["out"]))
            if blk.get("norm") == "ln":
                layers.append(nn.LayerNorm(blk["out"]))
            elif blk.get("norm") == "bn":
                layers.append(nn.BatchNorm1d(blk["out"]))
            layers.append(_act(blk["act"]))
            if blk.get("dropout"):
                layers.append(nn.Dropout(blk["dropout"]))
            prev = blk["out"]
        layers.append(nn.Linear(prev, spec["out"]))
        return nn.Sequential(*layers), (_randn((b, spec["in"]), device),)
    if kind == "image":
        c = spec["stem"]
        layers = [nn.Conv2d(spec.get("in_ch", 3), c, 3, stride=spec.get("stem_stride", 1), padding=1, bias=False),
                  nn.BatchNorm2d(c), _act(spec.get("stem_act", "relu"))]
        for blk in spec["blocks"]:
            op = blk["op"]
            if op == "conv":
                groups = c if blk.get("groups") == "dw" else 1
                cout = c if groups > 1 else blk["cout"]
                layers += [nn.Conv2d(c, cout, blk["k"], stride=blk["stride"], padding=blk["k"] // 2, groups=groups,
                                     bias=blk.get("norm") == "none"), _norm2d(blk.get("norm", "bn"), cout),
                           _act(blk["act"])]
                c = cout
            elif op == "dwsep":
                layers += [nn.Conv2d(c, c, blk["k"], stride=blk["stride"], padding=blk["k"] // 2, groups=c, bias=False),
                           nn.BatchNorm2d(c), _act(blk["act"]), nn.Conv2d(c, blk["cout"], 1, bias=False),
                           nn.BatchNorm2d(blk["cout"]), _act(blk["act"])]
                c = blk["cout"]
            elif op == "res":
                layers.append(BasicBlock(c, c, 1, blk["k"], True, blk["act"], blk.get("norm", "bn")))
            elif op == "pool":
                layers.append(nn.MaxPool2d(2) if blk["pool"] == "max" else nn.AvgPool2d(2))
            else:
                raise ExanteError(f"unknown mixed image block {op!r}")
        layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten()]
        if spec.get("dropout"):
            layers.append(nn.Dropout(spec["dropout"]))
        layers.append(nn.Linear(c, spec["classes"]))
        return nn.Sequential(*layers), (_randn((b, spec.get("in_ch", 3), spec["res"], spec["res"]), device),)
    if kind == "sequence":
        d = spec["d_model"]
        blocks: list[nn.Module] = []
        for blk in spec["blocks"]:
            if blk["op"] == "attn":
                blocks.append(_AttnOnly(d, blk["heads"]))
            elif blk["op"] == "mlp":
                blocks.append(_SeqMLP(d, blk["mult"], blk["act"]))
            elif blk["op"] == "conv":
                blocks.append(_SeqConv(d, blk["k"], blk["act"]))
            else:
                raise ExanteError(f"unknown mixed sequence block {blk['op']!r}")
        model = TokenClassifier(spec["vocab"], spec["seq"], d, blocks, spec["classes"])
        return model, (_randint(spec["vocab"], (b, spec["seq"]), device),)
    raise ExanteError(f"unknown mixed kind {kind!r}")


class _AttnOnly(nn.Module):
    def __init__(self, d, heads):
        super().__init__()
        self.ln = nn.LayerNorm(d)
        self.attn = nn.MultiheadAttention(d, heads, batch_first=True)

    def forward(self, x):
        h = self.ln(x)
        return x + self.attn(h, h, h, need_weights=False)[0]


def build_from_spec(spec: dict, device="meta"):
    """``(model, inputs)`` for a sweep spec, built directly on ``device``."""
    fam = spec.get("family")
    dev = torch.device(device)
    with dev:
        if fam == "layer":
            return _build_layer(spec, dev)
        if fam == "mlp":
            return build_mlp(spec["in"], spec["depth"], spec["width"], spec["out"]), (_randn((spec["batch"], spec["in"]), dev),)
        if fam == "cnn":
            return _build_cnn(spec, dev)
        if fam == "transformer":
            return _build_transformer(spec, dev)
        if fam == "mixed":
            return _build_mixed(spec, dev)
        if fam == "refset":
            return _build_refset(spec, dev)
    raise ExanteError(f"unknown sweep family {fam!r}")


def _build_refset(spec: dict, device):
    """One workload of the H100 reference set (profiling.dataset.reference_set), built on ``device``."""
    b, kind = int(spec["batch"]), spec["kind"]
    if kind == "vision":
        return resolve_model(spec["model_ref"]), (_randn((b, *spec["input"]), device),)
    if kind == "transformer":
        arch = spec["arch"]
        return build_encoder(arch), (_randint(arch["vocab"], (b, arch["seq"]), device),)
    if kind == "mlp":
        a = spec["arch"]
        return build_mlp(a["inp"], a["depth"], a["width"], a["out"]), (_randn((b, a["inp"]), device),)
    raise ExanteError(f"unknown reference-set kind {kind!r}; accepted: vision, transformer, mlp")
