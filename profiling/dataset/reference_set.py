"""The 95 workloads of the H100 reference set, to be measured whole on other GPUs.

``../shared/reference/h100/`` (README + ``h100_reference.json``) holds whole-model energy and time
of 95 eager PyTorch workloads measured on an H100 in three sessions. This module holds only
their *definitions* (model, mode, precision, batch, input, optimizer; no measurement), so the
same workloads can be measured on a lent GPU (the ``refset`` sweep) and compared row by row.
``tests/test_sweeps.py`` checks them against the JSON when ``../shared`` is present.

Definitions as the reference README gives them:

- vision: ``torchvision:NAME`` / ``timm:NAME`` default constructors, no weights, input
  ``[3, 224, 224]``; inference fp32 at batch 1 and 32, bf16 autocast at batch 32; train step
  fp32 batch 32, cross-entropy on 1000 classes, SGD with momentum;
- transformer: token ids ``[batch, seq]`` -> ``nn.Embedding(vocab, d)`` ->
  ``nn.TransformerEncoder(nn.TransformerEncoderLayer(d, heads, 4 d, batch_first=True,
  activation="gelu"), layers, enable_nested_tensor=False)`` -> ``nn.Linear(d, 2)`` on token 0
  (:class:`EncoderClassifier`); inference fp32 at batch 1 and 32; train step batch 16, AdamW;
- mlp (seed 004 Table 6 shapes): ``mlp:in=100,depth=D,width=W,out=1``; inference fp32 at
  batch 1 and 32; train step batch 32, MSE on one output, Adam.

Names: the reference's ``dtype`` ``bf16-autocast`` is exante's ``bf16``; its optimizer
``sgd-momentum`` is exante's ``sgd`` (momentum 0.9; the learning rate does not change the cost).
"""

from __future__ import annotations

from torch import nn

__all__ = ["REFERENCE_VISION", "REFERENCE_TRANSFORMERS", "REFERENCE_MLPS", "reference_workloads",
           "EncoderClassifier", "build_encoder"]

# (name in the reference set, model reference)
REFERENCE_VISION = [
    ("resnet18", "torchvision:resnet18"),
    ("mobilenet_v3_large", "torchvision:mobilenet_v3_large"),
    ("vit_b_16", "torchvision:vit_b_16"),
    ("squeezenet1_1", "torchvision:squeezenet1_1"),
    ("alexnet", "torchvision:alexnet"),
    ("vgg11", "torchvision:vgg11"),
    ("timm:ghostnet_100", "timm:ghostnet_100"),
    ("timm:resmlp_12_224", "timm:resmlp_12_224"),
]
REFERENCE_TRANSFORMERS = [
    ("encoder-base-768x12-seq128", {"d": 768, "heads": 12, "layers": 12, "seq": 128, "vocab": 30522}),
    ("encoder-small-512x4-seq256", {"d": 512, "heads": 8, "layers": 4, "seq": 256, "vocab": 30522}),
    ("encoder-tiny-256x2-seq64", {"d": 256, "heads": 4, "layers": 2, "seq": 64, "vocab": 30522}),
]
# seed 004 Table 6: (hidden layers, width), input 100, one output -- the reference set's order
REFERENCE_MLPS = [(100, 10), (10, 100), (200, 10), (100, 20), (20, 100), (10, 200), (300, 10), (100, 30), (30, 100),
                  (10, 300), (200, 20), (20, 200), (300, 20), (200, 30), (30, 200), (20, 300), (300, 30), (30, 300)]

# (mode, dtype, batch, optimizer) per kind, in the reference's order
_VISION_RUNS = [("inference", "fp32", 1, None), ("inference", "fp32", 32, None), ("inference", "bf16", 32, None),
                ("train_step", "fp32", 32, "sgd")]
_TRANSFORMER_RUNS = [("inference", "fp32", 1, None), ("inference", "fp32", 32, None), ("train_step", "fp32", 16, "adamw")]
_MLP_RUNS = [("inference", "fp32", 1, None), ("inference", "fp32", 32, None), ("train_step", "fp32", 32, "adam")]


class EncoderClassifier(nn.Module):
    """The reference set's ``transformer``: embedding -> nn.TransformerEncoder -> Linear(d, 2) on token 0."""

    def __init__(self, vocab: int, d: int, heads: int, layers: int, classes: int = 2):
        super().__init__()
        self.emb = nn.Embedding(vocab, d)
        layer = nn.TransformerEncoderLayer(d, heads, 4 * d, batch_first=True, activation="gelu")
        self.encoder = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.head = nn.Linear(d, classes)

    def forward(self, ids):
        return self.head(self.encoder(self.emb(ids))[:, 0])


def build_encoder(arch: dict) -> EncoderClassifier:
    """An :class:`EncoderClassifier` from a :data:`REFERENCE_TRANSFORMERS` architecture dict
    (``vocab``, ``d``, ``heads``, ``layers``)."""
    return EncoderClassifier(int(arch["vocab"]), int(arch["d"]), int(arch["heads"]), int(arch["layers"]))


# MODEL_REF factories (`profiling.dataset.reference_set:encoder_base_768x12_seq128`, ...)
def encoder_base_768x12_seq128() -> EncoderClassifier:
    """The reference set's ``encoder-base-768x12-seq128`` (d 768, 12 heads, 12 layers; seq 128 is
    the input's)."""
    return build_encoder(REFERENCE_TRANSFORMERS[0][1])


def encoder_small_512x4_seq256() -> EncoderClassifier:
    """The reference set's ``encoder-small-512x4-seq256`` (d 512, 8 heads, 4 layers; seq 256 is the
    input's)."""
    return build_encoder(REFERENCE_TRANSFORMERS[1][1])


def encoder_tiny_256x2_seq64() -> EncoderClassifier:
    """The reference set's ``encoder-tiny-256x2-seq64`` (d 256, 4 heads, 2 layers; seq 64 is the
    input's)."""
    return build_encoder(REFERENCE_TRANSFORMERS[2][1])


def _mlp_ref(depth: int, width: int) -> str:
    return f"mlp:in=100,depth={depth},width={width},out=1"


def reference_workloads() -> list[dict]:
    """The 95 workloads, grouped by model (a model's inference rows before its train row) and
    the models interleaved vision / transformer / mlp, so any prefix covers all three kinds.

    Each dict: ``name, kind, model_ref, arch (transformer/mlp) , input (per sample), mode,
    dtype, batch, optimizer``."""
    groups: dict[str, list[list[dict]]] = {"vision": [], "transformer": [], "mlp": []}
    for name, ref in REFERENCE_VISION:
        groups["vision"].append([{"name": name, "kind": "vision", "model_ref": ref, "arch": None, "input": [3, 224, 224],
                                  "mode": m, "dtype": dt, "batch": b, "optimizer": o} for m, dt, b, o in _VISION_RUNS])
    for name, arch in REFERENCE_TRANSFORMERS:
        ref = "profiling.dataset.reference_set:" + name.replace("-", "_")
        groups["transformer"].append([{"name": name, "kind": "transformer", "model_ref": ref, "arch": dict(arch),
                                       "input": [arch["seq"]], "mode": m, "dtype": dt, "batch": b, "optimizer": o}
                                      for m, dt, b, o in _TRANSFORMER_RUNS])
    for depth, width in REFERENCE_MLPS:
        arch = {"depth": depth, "width": width, "inp": 100, "out": 1}
        groups["mlp"].append([{"name": f"mlp-d{depth}-w{width}", "kind": "mlp", "model_ref": _mlp_ref(depth, width),
                               "arch": arch, "input": [100], "mode": m, "dtype": dt, "batch": b, "optimizer": o}
                              for m, dt, b, o in _MLP_RUNS])
    out: list[dict] = []
    queues = [groups["vision"], groups["transformer"], groups["mlp"]]
    for i in range(max(len(q) for q in queues)):
        for q in queues:
            if i < len(q):
                out += q[i]
    return out
