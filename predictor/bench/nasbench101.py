"""NAS-Bench-101 networks in ``torch.nn`` from a cell's ``ops`` and ``adjacency``.

A port of the TensorFlow builder of NAS-Bench-101 (Ying et al., ICML 2019,
``nasbench/lib/model_builder.py`` and ``base_ops.py``), the code EC-NAS-Bench trained with:

* stem: 3×3 conv (no bias) → BatchNorm → ReLU, 128 channels;
* 3 stacks × 3 cells; before stacks 2 and 3 a 2×2 max-pool (stride 2) and the cells' output
  channels double (128 → 256 → 512);
* a cell: vertex ``t`` sums its inputs (interior predecessors *truncated* to its channel
  count, the cell input through a 1×1 conv-bn-relu *projection*), applies its op
  (``conv3x3-bn-relu``, ``conv1x1-bn-relu`` or ``maxpool3x3`` with stride 1, same padding);
  the vertices feeding the output are concatenated (channels split by
  :func:`vertex_channels`) and, if the input feeds the output directly, its projection is
  added;
* global average pool → dense layer to 10 classes (CIFAR-10, input 3×32×32).

Trainable parameters (conv kernels, BatchNorm γ/β, dense weight and bias) equal TF's count,
which is the ``params`` column of NAS-Bench-101 / EC-NAS tables.
"""

from __future__ import annotations

import json
from typing import Sequence

import numpy as np
import torch
from torch import nn

from profiling.errors import ExanteError

OPS = ("conv3x3-bn-relu", "conv1x1-bn-relu", "maxpool3x3")
STEM_CHANNELS = 128
NUM_STACKS = 3
CELLS_PER_STACK = 3
NUM_CLASSES = 10
INPUT_SHAPE = (3, 32, 32)
MAX_VERTICES = 7
MAX_EDGES = 9

__all__ = ["OPS", "INPUT_SHAPE", "parse_cell", "vertex_channels", "NB101Network", "build_network",
           "trainable_params", "BlockCache"]


def parse_cell(ops, adjacency) -> tuple[list[str], np.ndarray]:
    """Validate a cell given as lists or JSON strings; returns ``(ops, matrix)``.

    Raises :class:`ExanteError` (one line) when the cell is not a NAS-Bench-101 cell: ops must
    start with ``input``, end with ``output`` and use :data:`OPS` in between; the adjacency must
    be a square 0/1 upper-triangular matrix of the same size with ≤ 9 edges, and every vertex
    must lie on a path from input to output (NAS-Bench-101 prunes the others).
    """
    try:
        if isinstance(ops, str):
            ops = json.loads(ops)
        if isinstance(adjacency, str):
            adjacency = json.loads(adjacency)
        m = np.asarray(adjacency, dtype=int)
    except (ValueError, TypeError) as exc:
        raise ExanteError(f"cell is not valid JSON / a 0-1 matrix: {exc}") from None
    ops = list(ops) if isinstance(ops, (list, tuple)) else None
    if ops is None or not all(isinstance(o, str) for o in ops):
        raise ExanteError("ops must be a JSON list of op names")
    n = len(ops)
    if m.ndim != 2 or m.shape != (n, n):
        raise ExanteError(f"adjacency must be a {n}x{n} matrix to match {n} ops, got shape {m.shape}")
    if n < 2 or n > MAX_VERTICES:
        raise ExanteError(f"a NAS-Bench-101 cell has 2..{MAX_VERTICES} vertices, got {n}")
    if ops[0] != "input" or ops[-1] != "output":
        raise ExanteError("ops must start with 'input' and end with 'output'")
    bad = [o for o in ops[1:-1] if o not in OPS]
    if bad:
        raise ExanteError(f"unknown op(s) {sorted(set(bad))}; accepted: {', '.join(OPS)}")
    if not np.isin(m, (0, 1)).all() or np.tril(m).any():
        raise ExanteError("adjacency must be 0/1 and strictly upper-triangular (a DAG in vertex order)")
    if m.sum() > MAX_EDGES:
        raise ExanteError(f"a NAS-Bench-101 cell has at most {MAX_EDGES} edges, got {int(m.sum())}")
    # every vertex reachable from input and reaching output
    fwd = np.zeros(n, bool)
    fwd[0] = True
    for v in range(n):
        if fwd[v]:
            fwd |= m[v].astype(bool)
    bwd = np.zeros(n, bool)
    bwd[-1] = True
    for v in range(n - 1, -1, -1):
        if bwd[v]:
            bwd |= m[:, v].astype(bool)
    if not fwd[-1]:
        raise ExanteError("output is not reachable from input")
    if not (fwd & bwd).all():
        raise ExanteError("cell has vertices off every input→output path (not pruned)")
    return ops, m


def vertex_channels(in_channels: int, out_channels: int, matrix: np.ndarray) -> list[int]:
    """Channels of each vertex (NAS-Bench-101's ``compute_vertex_channels``).

    The output's channels are split evenly over the vertices feeding it (remainder to the first
    ones); other interior vertices take the max over their successors.
    """
    n = matrix.shape[0]
    ch = [0] * n
    ch[0] = in_channels
    ch[n - 1] = out_channels
    if n == 2:
        return ch
    in_degree = matrix[1:].sum(axis=0)
    fan_in = int(in_degree[n - 1])
    interior = out_channels // fan_in if fan_in else 0
    correction = out_channels % fan_in if fan_in else 0
    for v in range(1, n - 1):
        if matrix[v, n - 1]:
            ch[v] = interior
            if correction:
                ch[v] += 1
                correction -= 1
    for v in range(n - 3, 0, -1):
        if not matrix[v, n - 1]:
            for dst in range(v + 1, n - 1):
                if matrix[v, dst]:
                    ch[v] = max(ch[v], ch[dst])
    return ch


class ConvBnRelu(nn.Sequential):
    """Conv (no bias, same padding) → BatchNorm → ReLU, as NAS-Bench-101's ``conv_bn_relu``."""

    def __init__(self, c_in: int, c_out: int, k: int, device=None):
        super().__init__(nn.Conv2d(c_in, c_out, k, padding=k // 2, bias=False, device=device),
                         nn.BatchNorm2d(c_out, eps=1e-5, momentum=0.003, device=device), nn.ReLU())


def _new_block(device):
    def make(c_in: int, c_out: int, k):
        if k == "maxpool3x3":
            return nn.MaxPool2d(3, stride=1, padding=1)
        return ConvBnRelu(c_in, c_out, k, device)
    return make


class BlockCache:
    """Reuses one ``meta`` conv-bn-relu block per (in, out, kernel) across networks.

    Building ~200 torch modules per network dominates capture time in a NAS loop; the blocks
    hold no state that differs between architectures, so a network for *capture* can share
    them (within one network too: each call is still recorded). Parameter counts must then
    come from the capture (Σ calls × params), not from ``model.parameters()``.
    """

    def __init__(self, device="meta"):
        self.device = device
        self._blocks: dict = {}

    def __call__(self, c_in: int, c_out: int, k):
        key = (c_in, c_out, k)
        b = self._blocks.get(key)
        if b is None:
            b = self._blocks[key] = _new_block(self.device)(c_in, c_out, k)
        return b


class Cell(nn.Module):
    """One NAS-Bench-101 module (cell) with ``in_channels`` → ``out_channels``."""

    def __init__(self, ops: Sequence[str], matrix: np.ndarray, in_channels: int, out_channels: int,
                 device=None, block=None):
        super().__init__()
        make = block or _new_block(device)
        self.matrix = matrix
        n = matrix.shape[0]
        self.n = n
        self.ch = vertex_channels(in_channels, out_channels, matrix)
        self.proj = nn.ModuleDict()
        self.ops = nn.ModuleDict()
        for t in range(1, n - 1):
            if matrix[0, t]:
                self.proj[str(t)] = make(in_channels, self.ch[t], 1)
            op = ops[t]
            if op == "conv3x3-bn-relu":
                self.ops[str(t)] = make(self.ch[t], self.ch[t], 3)
            elif op == "conv1x1-bn-relu":
                self.ops[str(t)] = make(self.ch[t], self.ch[t], 1)
            else:
                self.ops[str(t)] = make(0, 0, "maxpool3x3")
        if matrix[0, n - 1]:
            self.proj[str(n - 1)] = make(in_channels, out_channels, 1)

    def forward(self, x):
        n, m, ch = self.n, self.matrix, self.ch
        tensors = [x]
        concat = []
        for t in range(1, n - 1):
            add_in = [tensors[s][:, :ch[t]] for s in range(1, t) if m[s, t]]
            if m[0, t]:
                add_in.append(self.proj[str(t)](x))
            v = add_in[0]
            for a in add_in[1:]:
                v = v + a
            v = self.ops[str(t)](v)
            tensors.append(v)
            if m[t, n - 1]:
                concat.append(v)
        if not concat:
            return self.proj[str(n - 1)](x)
        out = concat[0] if len(concat) == 1 else torch.cat(concat, dim=1)
        if m[0, n - 1]:
            out = out + self.proj[str(n - 1)](x)
        return out


class NB101Network(nn.Module):
    """The full NAS-Bench-101 CIFAR-10 network for one cell (see the module docstring)."""

    def __init__(self, ops, adjacency, *, stem_channels: int = STEM_CHANNELS,
                 num_stacks: int = NUM_STACKS, cells_per_stack: int = CELLS_PER_STACK,
                 num_classes: int = NUM_CLASSES, device=None, block=None):
        super().__init__()
        ops, m = parse_cell(ops, adjacency)
        self.stem = (block or _new_block(device))(INPUT_SHAPE[0], stem_channels, 3)
        layers: list[nn.Module] = []
        c_in = stem_channels
        c_out = stem_channels
        for s in range(num_stacks):
            if s > 0:
                layers.append(nn.MaxPool2d(2, stride=2))
                c_out *= 2
            for _ in range(cells_per_stack):
                layers.append(Cell(ops, m, c_in, c_out, device, block))
                c_in = c_out
        self.layers = nn.Sequential(*layers)
        self.classifier = nn.Linear(c_out, num_classes, device=device)

    def forward(self, x):
        x = self.layers(self.stem(x))
        return self.classifier(x.mean(dim=(2, 3)))


def build_network(ops, adjacency, device="meta", block=None) -> NB101Network:
    """The network on ``device`` (``meta`` by default: no memory is allocated).

    ``block``: a :class:`BlockCache` to share conv-bn-relu blocks (fast capture on ``meta``).
    """
    return NB101Network(ops, adjacency, device=device, block=block)


def trainable_params(model: nn.Module) -> int:
    """Number of trainable parameters of ``model``."""
    return int(sum(p.numel() for p in model.parameters() if p.requires_grad))
