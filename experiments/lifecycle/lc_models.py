"""The life-cycle experiments' model zoo, synthetic data held on the device and the real
training / inference loops (DESIGN.md §4's ``train_step``); see lcbench.py."""

from __future__ import annotations

import copy
import functools
import os
import re
import sys
import time
from dataclasses import dataclass
from typing import Callable

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

import torch  # noqa: E402
from torch import nn  # noqa: E402

from profiling.errors import ExanteError  # noqa: E402

# --------------------------------------------------------------------------- models


@dataclass(frozen=True)
class ModelSpec:
    """A model of the zoo: how to build it, its per-sample input shape and its output."""

    name: str
    family: str                     # "mlp" | "cnn" | "transformer"
    input_shape: tuple[int, ...]    # per sample, no batch dim
    out_features: int               # > 1: classifier (cross-entropy); 1: regression (MSE)
    builder: Callable[[], nn.Module]
    model_ref: str | None = None    # a MODEL_REF string when one exists (mlp:...)
    note: str = ""

    @property
    def classifier(self) -> bool:
        return self.out_features > 1

    @property
    def loss(self) -> str:
        return "cross_entropy" if self.classifier else "mse"

    def build(self) -> nn.Module:
        return self.builder()


def _mlp_spec(name: str, depth: int, width: int, in_f: int = 100, out_f: int = 1, note: str = "") -> ModelSpec:
    from profiling.model_refs import build_mlp

    ref = f"mlp:in={in_f},depth={depth},width={width},out={out_f}"
    return ModelSpec(name, "mlp", (in_f,), out_f, functools.partial(build_mlp, in_f, depth, width, out_f),
                     model_ref=ref, note=note)


class SmallCNN(nn.Module):
    """Three 3x3 convolutions with ReLU (two of stride 2), global average pool, linear head."""

    def __init__(self, in_ch: int = 3, c1: int = 32, c2: int = 64, classes: int = 10):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(in_ch, c1, 3, padding=1), nn.ReLU(),
            nn.Conv2d(c1, c2, 3, stride=2, padding=1), nn.ReLU(),
            nn.Conv2d(c2, c2, 3, stride=2, padding=1), nn.ReLU(),
            nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.head = nn.Linear(c2, classes)

    def forward(self, x):
        return self.head(self.features(x))


class SmallTransformer(nn.Module):
    """A post-norm transformer encoder on float sequences (batch, seq, d_model), mean-pooled,
    then a linear classifier (float inputs, so ``Scenario(input_shape=(seq, d))`` works)."""

    def __init__(self, d_model: int = 128, nhead: int = 4, ff: int = 256, layers: int = 2, classes: int = 10):
        super().__init__()
        layer = nn.TransformerEncoderLayer(d_model, nhead, ff, dropout=0.0, batch_first=True)
        self.encoder = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.head = nn.Linear(d_model, classes)

    def forward(self, x):
        return self.head(self.encoder(x).mean(dim=1))


def _zoo() -> dict[str, ModelSpec]:
    z = [
        # seed 004 Table 6 shapes (input 100, `Layers` hidden layers of `Layer Size`, 1 output)
        _mlp_spec("mlp-d10-w100", 10, 100, note="seed 004 Table 6 row 2 (wide)"),
        _mlp_spec("mlp-d100-w10", 100, 10, note="seed 004 Table 6 row 1 (deep)"),
        _mlp_spec("mlp-d10-w300", 10, 300, note="seed 004 Table 6 row 10 (wide)"),
        # GPU-bound MLP (large matmuls), classifier
        _mlp_spec("mlp-d4-w4096", 4, 4096, in_f=1024, out_f=10, note="GPU-bound: 4 x 4096 wide, 10 classes"),
        ModelSpec("cnn-small", "cnn", (3, 32, 32), 10, functools.partial(SmallCNN, 3, 32, 64, 10),
                  note="3 conv (32, 64, 64 filters) + GAP + linear, CIFAR-sized input"),
        ModelSpec("transformer-small", "transformer", (64, 128), 10,
                  functools.partial(SmallTransformer, 128, 4, 256, 2, 10),
                  note="2-layer encoder, d_model 128, 4 heads, ff 256, seq 64"),
        # tiny versions for --smoke on CPU
        _mlp_spec("mlp-d2-w16", 2, 16, in_f=32, out_f=1, note="smoke"),
        ModelSpec("cnn-tiny", "cnn", (3, 8, 8), 4, functools.partial(SmallCNN, 3, 4, 8, 4), note="smoke"),
        ModelSpec("transformer-tiny", "transformer", (8, 16), 4,
                  functools.partial(SmallTransformer, 16, 2, 32, 1, 4), note="smoke"),
    ]
    return {s.name: s for s in z}


ZOO = _zoo()
_MLP_NAME = re.compile(r"^mlp-d(\d+)-w(\d+)(?:-i(\d+))?(?:-o(\d+))?$")


def get_spec(name: str) -> ModelSpec:
    """A zoo model by name; any ``mlp-d<depth>-w<width>[-i<in>][-o<out>]`` is also accepted
    (input 100 and 1 output by default, as in seed 004's grid)."""
    if name in ZOO:
        return ZOO[name]
    m = _MLP_NAME.match(name)
    if m:
        d, w, i, o = (int(g) if g else None for g in m.groups())
        return _mlp_spec(name, d, w, in_f=i or 100, out_f=o or 1)
    raise ExanteError(f"unknown model {name!r}; known: {', '.join(ZOO)} or mlp-d<depth>-w<width>[-i<in>][-o<out>]")


def n_params(model: nn.Module) -> int:
    return int(sum(p.numel() for p in model.parameters()))


# --------------------------------------------------------------------------- data and training


def make_dataset(spec: ModelSpec, n: int, device: torch.device, seed: int = 0):
    """Synthetic (X, Y) ON ``device``: X ~ N(0, 1) of shape (n, *input_shape); Y class ids for a
    classifier, N(0, 1) targets of shape (n, out) otherwise."""
    g = torch.Generator(device=device).manual_seed(seed)   # generated on the device itself
    x = torch.randn((n, *spec.input_shape), generator=g, device=device)
    if spec.classifier:
        y = torch.randint(0, spec.out_features, (n,), generator=g, device=device)
    else:
        y = torch.randn((n, spec.out_features), generator=g, device=device)
    return x, y


def loss_fn(spec: ModelSpec) -> Callable:
    return nn.functional.cross_entropy if spec.classifier else nn.functional.mse_loss


def autocast(dtype: str, device: torch.device):
    from profiling.measure.replay import autocast_context

    return autocast_context(dtype, device)


def steps_per_epoch(n: int, batch: int, drop_last: bool = False) -> tuple[int, int]:
    """(full steps, size of the last partial batch or 0)."""
    full, last = divmod(n, batch)
    return full, (0 if drop_last else last)


def train(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, spec: ModelSpec, epochs: int, batch: int,
          optimizer: str, dtype: str = "fp32", drop_last: bool = False,
          on_epoch: Callable[[int], None] | None = None) -> int:
    """Train ``epochs`` epochs: each epoch a fresh ``torch.randperm`` on the device, mini-batches
    gathered with ``index_select`` from the device tensors, the last one partial unless
    ``drop_last``. Returns the number of optimizer steps. ``on_epoch(i)`` runs after epoch i
    (not after the last one)."""
    from profiling.measure.replay import make_optimizer

    dev = x.device
    model.train()
    opt = make_optimizer(optimizer, model.parameters())
    lossf = loss_fn(spec)
    n = x.shape[0]
    stop = n - (n % batch) if drop_last else n
    steps = 0
    for ep in range(epochs):
        perm = torch.randperm(n, device=dev)
        for s in range(0, stop, batch):
            idx = perm[s:s + batch]
            xb = x.index_select(0, idx)
            yb = y.index_select(0, idx)
            opt.zero_grad(set_to_none=True)
            with autocast(dtype, dev):
                loss = lossf(model(xb), yb)
            loss.backward()
            opt.step()
            steps += 1
        if on_epoch is not None and ep < epochs - 1:
            on_epoch(ep)
    return steps


def infer(model: nn.Module, x: torch.Tensor, *, passes: int, batch: int, dtype: str = "fp32",
          on_pass: Callable[[int], None] | None = None) -> int:
    """``passes`` forward passes over ``x`` in order (contiguous slices, last batch partial),
    ``model.eval()`` under ``torch.inference_mode()``. Returns the number of forward calls."""
    dev = x.device
    model.eval()
    n = x.shape[0]
    calls = 0
    with torch.inference_mode():
        for p in range(passes):
            for s in range(0, n, batch):
                with autocast(dtype, dev):
                    model(x[s:s + batch])
                calls += 1
            if on_pass is not None and p < passes - 1:
                on_pass(p)
    return calls


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def warm_up(spec: ModelSpec, model: nn.Module, x, y, *, batch: int, optimizer: str, dtype: str, steps: int,
            last_batch: int = 0, inference: bool = False) -> float:
    """Warm the device up on a COPY of the model (lazy CUDA init, cuBLAS/cuDNN heuristics,
    allocator pools) at the run's batch sizes; returns the steady time per step (s), measured
    over the second half of the warm-up steps."""
    dev = x.device
    m = copy.deepcopy(model)
    steps = max(2, int(steps))
    n = x.shape[0]
    nb = min(batch, n)
    xs, ys = x[:nb], y[:nb]
    try:
        if last_batch:
            if inference:
                infer(m, x[:last_batch], passes=1, batch=last_batch, dtype=dtype)
            else:
                train(m, x[:last_batch], y[:last_batch], spec=spec, epochs=1, batch=last_batch,
                      optimizer=optimizer, dtype=dtype)
        half = steps // 2
        if inference:
            infer(m, xs, passes=steps - half, batch=nb, dtype=dtype)
        else:
            train(m, xs, ys, spec=spec, epochs=steps - half, batch=nb, optimizer=optimizer, dtype=dtype)
        sync(dev)
        t0 = time.perf_counter()
        if inference:
            infer(m, xs, passes=half, batch=nb, dtype=dtype)
        else:
            train(m, xs, ys, spec=spec, epochs=half, batch=nb, optimizer=optimizer, dtype=dtype)
        sync(dev)
        return (time.perf_counter() - t0) / max(1, half)
    finally:
        del m
        free(dev)


def free(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.empty_cache()
