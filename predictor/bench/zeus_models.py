"""The networks of the Zeus (NSDI '23) power traces, rebuilt in ``torch.nn`` (no weights).

* ``cifar100/shufflenetv2``: Zeus's CIFAR-100 example builds ShuffleNet V2 from
  weiaicunzai/pytorch-cifar100 (1.0x widths 116/232/464/1024, stages of 1+3, 1+7, 1+3 units,
  a 3x3 stride-1 stem with BatchNorm and no max-pool -- a 32x32 image keeps its resolution
  into stage 2 --, 1x1 conv to 1024, global average pool, 100 classes).  Written here from
  that architecture (not torchvision's ``shufflenet_v2_x1_0``, whose ImageNet stem divides a
  32x32 input by 4 before stage 2 and would have ~10x fewer FLOPs than what Zeus trained).
* ``imagenet/resnet50``: torchvision's ``resnet50`` (what Zeus's ImageNet example trains).
* ``squad/bert_base_uncased``: Hugging Face ``BertForQuestionAnswering`` with
  bert-base-uncased's published config (:mod:`predictor.bench.hf_models`), eager attention,
  sequences of 384 tokens (``run_qa.py``'s ``max_seq_length`` default), loss computed by the
  model from start/end positions.

Per-epoch sample counts (dataset sizes the traces' epochs iterate over):
CIFAR-100 50,000 training images; ImageNet-1k 1,281,167; SQuAD v1.1 88,524 features
(87,599 questions split into 384-token windows with stride 128, as ``run_qa.py`` logs for
bert-base-uncased).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["ShuffleNetV2Cifar", "ZEUS_NETWORKS", "build_network", "network_inputs"]


def _shuffle(x: torch.Tensor, groups: int = 2) -> torch.Tensor:
    b, c, h, w = x.shape
    return x.view(b, groups, c // groups, h, w).transpose(1, 2).contiguous().view(b, c, h, w)


def _dw(c: int, stride: int) -> list:
    return [nn.Conv2d(c, c, 3, stride=stride, padding=1, groups=c), nn.BatchNorm2d(c)]


def _pw(cin: int, cout: int, relu: bool = True) -> list:
    return [nn.Conv2d(cin, cout, 1), nn.BatchNorm2d(cout)] + ([nn.ReLU(inplace=True)] if relu else [])


class _Unit(nn.Module):
    """One ShuffleNet V2 unit: split (stride 1) or two-branch downsampling (stride 2)."""

    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__()
        self.split = stride == 1 and cin == cout
        half = cout // 2
        if self.split:
            c = cin // 2
            self.shortcut = nn.Sequential()
            self.residual = nn.Sequential(*_pw(c, c), *_dw(c, 1), *_pw(c, c))
        else:
            self.residual = nn.Sequential(*_pw(cin, cin), *_dw(cin, stride), *_pw(cin, half))
            self.shortcut = nn.Sequential(*_dw(cin, stride), *_pw(cin, half))

    def forward(self, x):
        if self.split:
            a, b = torch.split(x, x.shape[1] // 2, dim=1)
        else:
            a, b = x, x
        return _shuffle(torch.cat([self.shortcut(a), self.residual(b)], dim=1))


class ShuffleNetV2Cifar(nn.Module):
    """ShuffleNet V2 (1.0x) for 32x32 CIFAR images (architecture of Zeus's CIFAR-100 job)."""

    def __init__(self, num_classes: int = 100, widths=(116, 232, 464, 1024),
                 repeats=(3, 7, 3)):
        super().__init__()
        self.pre = nn.Sequential(nn.Conv2d(3, 24, 3, padding=1), nn.BatchNorm2d(24))
        stages, cin = [], 24
        for cout, rep in zip(widths[:3], repeats, strict=False):   # the last width: the head
            stages.append(nn.Sequential(_Unit(cin, cout, 2),
                                        *[_Unit(cout, cout, 1) for _ in range(rep)]))
            cin = cout
        self.stage2, self.stage3, self.stage4 = stages
        self.conv5 = nn.Sequential(*_pw(widths[2], widths[3]))
        self.fc = nn.Linear(widths[3], num_classes)

    def forward(self, x):
        x = self.stage4(self.stage3(self.stage2(self.pre(x))))
        x = F.adaptive_avg_pool2d(self.conv5(x), 1)
        return self.fc(x.view(x.size(0), -1))


#: (dataset, network) -> what the traces trained; ``samples`` per epoch
ZEUS_NETWORKS: dict[tuple[str, str], dict[str, Any]] = {
    ("cifar100", "shufflenetv2"): {"samples": 50_000, "input": (3, 32, 32), "classes": 100},
    ("imagenet", "resnet50"): {"samples": 1_281_167, "input": (3, 224, 224), "classes": 1000},
    ("squad", "bert_base_uncased"): {"samples": 88_524, "seq_len": 384},
}


def build_network(dataset: str, network: str) -> nn.Module:
    """The network of one trace workload, on ``meta`` (ExanteError if an optional package
    it needs -- torchvision, transformers -- is missing)."""
    if (dataset, network) == ("cifar100", "shufflenetv2"):
        with torch.device("meta"):
            return ShuffleNetV2Cifar()
    if (dataset, network) == ("imagenet", "resnet50"):
        from profiling.model_refs import resolve_model_on_meta

        return resolve_model_on_meta("torchvision:resnet50")
    if (dataset, network) == ("squad", "bert_base_uncased"):
        from predictor.bench.hf_models import HF_CONFIGS, _transformers, prepare_for_capture

        tf = _transformers()                # with the torchvision workaround
        cls_name, kw = HF_CONFIGS["bert-base-uncased"]
        cfg = getattr(tf, cls_name)(**kw)
        cfg._attn_implementation = "eager"
        with torch.device("meta"):
            m = tf.BertForQuestionAnswering(cfg)
        return prepare_for_capture(m)
    raise KeyError((dataset, network))


def network_inputs(dataset: str, network: str, batch: int):
    """Example inputs (on ``meta``) of one training step at ``batch``."""
    spec = ZEUS_NETWORKS[(dataset, network)]
    if "seq_len" in spec:
        ids = torch.zeros(batch, spec["seq_len"], dtype=torch.long, device="meta")
        pos = torch.zeros(batch, dtype=torch.long, device="meta")
        return {"input_ids": ids, "token_type_ids": ids, "attention_mask": torch.ones_like(ids),
                "start_positions": pos, "end_positions": pos}
    return torch.empty((batch, *spec["input"]), device="meta")
