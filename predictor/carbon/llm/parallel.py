"""Parallel overheads of LLM training: pipeline bubble, tensor-parallel all-reduces,
data-parallel gradient all-reduce over a stated interconnect. Times in s, bandwidths in GB/s.

- 1F1B pipeline: a step of ``m`` micro-batches over ``pp`` stages takes ``(m + pp - 1)`` stage
  times (bubble fraction ``(pp-1)/(m+pp-1)``; Narayanan et al. 2021, Megatron-LM §2.2).
- Tensor parallelism (Megatron, Shoeybi et al. 2019 §3): 4 all-reduces of the ``s·b·h``
  16-bit activations per layer and micro-batch (2 forward, 2 backward), on the critical path.
- Ring all-reduce of ``B`` bytes over ``n`` ranks moves ``2·(n-1)/n·B`` per rank.
- Data-parallel gradients are reduced once per step; the part not hidden behind the last
  micro-batch's backward pass (2/3 of its time) is exposed.
"""

from __future__ import annotations

from dataclasses import dataclass

from profiling.errors import ExanteError

# unidirectional per-GPU bandwidth, GB/s (NVLink total bidirectional / 2; network line rate / 8)
INTERCONNECTS = {
    "pcie3": (16.0, "PCIe 3.0 x16, 16 GB/s per direction (PCI-SIG), transcribed"),
    "pcie4": (32.0, "PCIe 4.0 x16, 32 GB/s per direction (PCI-SIG), transcribed"),
    "pcie5": (64.0, "PCIe 5.0 x16, 64 GB/s per direction (PCI-SIG), transcribed"),
    "nvlink2": (150.0, "NVLink 2 (V100): 300 GB/s total per GPU (V100 datasheet 2020), /2"),
    "nvlink3": (300.0, "NVLink 3 (A100): 600 GB/s total per GPU (A100 datasheet 2021), /2"),
    "nvlink4": (450.0, "NVLink 4 (H100 SXM): 900 GB/s total per GPU (H100 datasheet 2023), /2"),
    "nvlink5": (900.0, "NVLink 5 (B200): 1.8 TB/s total per GPU (HGX B200 specs 2024), /2"),
    "ib-edr": (12.5, "InfiniBand EDR 100 Gb/s per GPU, /8"),
    "ib-hdr": (25.0, "InfiniBand HDR 200 Gb/s per GPU (DGX A100: 8 HDR ports / 8 GPUs), /8"),
    "ib-ndr": (50.0, "InfiniBand NDR 400 Gb/s per GPU (DGX H100: 8 NDR ports / 8 GPUs), /8"),
    "ib-xdr": (100.0, "InfiniBand XDR 800 Gb/s per GPU, /8"),
}
DEFAULT_BY_GENERATION = {  # (intra-node, inter-node) when none is stated
    "volta": ("nvlink2", "ib-edr"), "ampere": ("nvlink3", "ib-hdr"),
    "hopper": ("nvlink4", "ib-ndr"), "blackwell": ("nvlink5", "ib-ndr"),
}
GPUS_PER_NODE = 8


@dataclass(frozen=True)
class Interconnect:
    """The links of a run: bandwidth within a node and between nodes (GB/s), and a label."""

    intra_gbs: float
    inter_gbs: float
    label: str


def interconnect(generation: str, intra: str | None = None, inter: str | None = None) -> Interconnect:
    """The stated links, or the generation's usual DGX/HGX pair (said so in ``label``)."""
    d_intra, d_inter = DEFAULT_BY_GENERATION.get(generation, ("pcie4", "ib-hdr"))
    for name in (intra, inter):
        if name is not None and name not in INTERCONNECTS:
            raise ExanteError(f"unknown interconnect {name!r}; accepted: "
                              f"{', '.join(INTERCONNECTS)}")
    i, o = intra or d_intra, inter or d_inter
    how = "stated" if intra or inter else f"default for {generation or 'this device'}"
    return Interconnect(INTERCONNECTS[i][0], INTERCONNECTS[o][0],
                        f"{i} within a node, {o} between nodes ({how}): "
                        f"{INTERCONNECTS[i][1]}; {INTERCONNECTS[o][1]}")


def ring_allreduce_s(nbytes: float, ranks: int, bw_gbs: float) -> float:
    """Seconds of a ring all-reduce of ``nbytes`` bytes over ``ranks`` at ``bw_gbs`` GB/s."""
    if ranks <= 1:
        return 0.0
    return 2.0 * (ranks - 1) / ranks * nbytes / (bw_gbs * 1e9)


def bubble_fraction(pp: int, micro_batches: int) -> float:
    """Pipeline bubble share of a step (0-1) with ``pp`` stages and ``micro_batches``."""
    return (pp - 1) / (micro_batches + pp - 1)


def tp_comm_s(*, layers_per_stage: float, seq_len: int, micro_batch: int, hidden: int, tp: int,
              link: Interconnect) -> float:
    """Tensor-parallel all-reduce time of one stage for one micro-batch (fwd + bwd)."""
    bw = link.intra_gbs if tp <= GPUS_PER_NODE else link.inter_gbs
    return layers_per_stage * 4 * ring_allreduce_s(2.0 * seq_len * micro_batch * hidden, tp, bw)


def dp_exposed_s(*, grad_bytes_per_device: float, dp: int, tp: int, pp: int,
                 hide_s: float, link: Interconnect) -> tuple[float, float]:
    """``(all-reduce time, exposed part)`` of the data-parallel gradient reduction."""
    bw = link.intra_gbs if dp * tp * pp <= GPUS_PER_NODE else link.inter_gbs
    t = ring_allreduce_s(grad_bytes_per_device, dp, bw)
    return t, max(0.0, t - hide_s)
