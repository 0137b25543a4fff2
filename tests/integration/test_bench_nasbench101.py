"""NAS-Bench-101 networks in torch.nn: channel split, validation, parameter count."""

import numpy as np
import pytest
import torch

from predictor.bench.nasbench101 import (
    NB101Network,
    build_network,
    parse_cell,
    trainable_params,
    vertex_channels,
)
from profiling.errors import ExanteError

CHAIN_OPS = ["input", "conv3x3-bn-relu", "output"]
CHAIN_ADJ = [[0, 1, 0], [0, 0, 1], [0, 0, 0]]


def test_vertex_channels_split_evenly_with_remainder_first():
    # three interior vertices all feeding the output: 128 = 43 + 43 + 42
    m = np.array([[0, 1, 1, 1, 0], [0, 0, 0, 0, 1], [0, 0, 0, 0, 1], [0, 0, 0, 0, 1],
                  [0, 0, 0, 0, 0]])
    assert vertex_channels(64, 128, m) == [64, 43, 43, 42, 128]


def test_vertex_channels_interior_vertex_takes_max_of_successors():
    # 1 -> 2 -> out and 1 -> 3 -> out: vertex 1 feeds both (64 each)
    m = np.array([[0, 1, 0, 0, 0], [0, 0, 1, 1, 0], [0, 0, 0, 0, 1], [0, 0, 0, 0, 1],
                  [0, 0, 0, 0, 0]])
    assert vertex_channels(32, 128, m) == [32, 64, 64, 64, 128]


@pytest.mark.parametrize("ops, adj, words", [
    (["input", "conv5x5", "output"], CHAIN_ADJ, "unknown op"),
    (CHAIN_OPS, [[0, 1], [0, 0]], "3x3"),
    (CHAIN_OPS, [[0, 1, 0], [1, 0, 1], [0, 0, 0]], "upper-triangular"),
    (CHAIN_OPS, [[0, 1, 0], [0, 0, 0], [0, 0, 0]], "not reachable"),
    (["conv3x3-bn-relu", "input", "output"], CHAIN_ADJ, "start with 'input'"),
    ("[not json", CHAIN_ADJ, "JSON"),
])
def test_parse_cell_rejects_non_nb101_cells(ops, adj, words):
    with pytest.raises(ExanteError, match=words):
        parse_cell(ops, adj)


def test_parse_cell_rejects_dangling_vertex():
    ops = ["input", "conv3x3-bn-relu", "maxpool3x3", "output"]
    adj = [[0, 1, 1, 0], [0, 0, 0, 1], [0, 0, 0, 0], [0, 0, 0, 0]]   # vertex 2 never reaches output
    with pytest.raises(ExanteError, match="off every"):
        parse_cell(ops, adj)


def _chain_params() -> int:
    """Independent count for input -> conv3x3 -> output (projection 1x1 at each cell input)."""
    def cbr(cin, cout, k):          # conv without bias + BN gamma/beta
        return cin * cout * k * k + 2 * cout
    total = cbr(3, 128, 3)
    cin = 128
    for c in (128, 256, 512):
        for _ in range(3):
            total += cbr(cin, c, 1) + cbr(c, c, 3)
            cin = c
    return total + 512 * 10 + 10


def test_chain_cell_parameter_count_matches_hand_count():
    net = build_network(CHAIN_OPS, CHAIN_ADJ, device="meta")
    assert trainable_params(net) == _chain_params()


def test_real_forward_on_cpu_gives_logits_and_concat_cell_runs():
    ops = ["input", "conv1x1-bn-relu", "maxpool3x3", "conv3x3-bn-relu", "output"]
    adj = [[0, 1, 1, 0, 1], [0, 0, 0, 1, 1], [0, 0, 0, 1, 0], [0, 0, 0, 0, 1], [0, 0, 0, 0, 0]]
    net = NB101Network(ops, adj, stem_channels=16, device="cpu").eval()   # small, same layout
    with torch.no_grad():
        out = net(torch.randn(2, 3, 32, 32))
    assert out.shape == (2, 10)
    assert torch.isfinite(out).all()
