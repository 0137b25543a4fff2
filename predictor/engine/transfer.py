"""Transfer a measured GPU's physics model to any catalogue GPU by its datasheet.

Only some GPUs are measured (``predictor/artifacts/h100.joblib``; an H200 when its rows
exist).  For every other GPU of the catalogue (:mod:`predictor.carbon.hardware`) the fitted
:class:`~predictor.engine.physics.PhysicsModel` of the nearest measured GPU is carried over with
these rules (``src`` = the measured GPU, ``dst`` = the target; its :class:`Datasheet` comes
from the catalogue):

* **carried over unchanged** -- what the physics model already expresses *relative to the
  datasheet* or what belongs to the host, not the GPU:
  - GPU efficiencies against the datasheet peaks (``eff_mm_fp32``, ``eff_conv_tf32``,
    ``eff_mm_bf16``, ``eff_conv_bf16``, ``eff_grouped``, ``eff_attn``) and the bandwidth
    efficiency ``eff_bw``: the target's rates are its own peaks x these fractions;
  - per-kernel launch/tail times ``tau_s``, ``tau_conv_s`` (driver + kernel tails, a few us);
  - every host cost ``h_*_s`` (Python module call, dispatch, launch, autograd node,
    optimizer tensor ...) and the overlap exponent ``overlap_q``: a property of the host CPU
    and PyTorch, not of the GPU -- the target's host is unknown, hence the wider interval.
* **re-targeted for pre-Ampere GPUs** -- a GPU without a TF32 peak (V100, T4, Turing, Pascal)
  runs fp32 convolutions on its FP32 cores like fp32 matmuls, so its ``eff_conv_tf32`` is the
  fp32 matmul efficiency (the datasheet then gives the conv class the fp32 peak).
* **scaled with the datasheet**:
  - ``p0_w`` (active-idle board power) x idle_dst / idle_src (the catalogue's idle figure,
    or the :class:`Datasheet` fallback of 18 % of the TDP);
  - busy powers ``p_*_w`` (``p_fp32_w``, ``p_tf32_w``, ``p_bf16_w``, ``p_mem_w`` ...) x (TDP - idle)_dst /
    (TDP - idle)_src (dynamic power above active idle);
  - ``e_byte_j`` (energy per memory byte) x the same dynamic-power ratio x BW_src / BW_dst
    (the prior's form: a fixed share of the dynamic power at full bandwidth);
  - ``p_cap_w`` x TDP_dst / TDP_src;
  - ``fill_flops`` (FLOPs a kernel needs to fill every SM) x fp32-peak_dst / fp32-peak_src
    (the fp32 peak is SMs x clock x lanes: a proxy for the SM count).

**Interval.**  The source's conformal log half-widths are combined in quadrature with a
transfer term that says how far the target is from measured ground
(:func:`transfer_halfwidth`, log units, 90 % nominal):

* **GPU-bound work**: ``0.15 + 0.35 * (1 - exp(-d / 0.5))`` where ``d`` is the datasheet
  distance (:func:`datasheet_distance`: mean |log ratio| of fp32, TF32, bf16 peaks, memory
  bandwidth and TDP).  An H200 (the H100's chip with faster memory, d ~ 0.07) gets ~0.2
  (x/÷1.2), an A100 (d ~ 1.0) ~0.45, a pre-Ampere or low-power GPU (V100, A40, L4;
  d 1.3-2.0) ~0.48-0.49 (x/÷1.6), never more than 0.5;
* **host-bound work**: 0.55 (x/÷1.73) whatever the GPU -- the target's host CPU, Python and
  driver are unknown however close the GPU is.

The ceiling 0.5 / 0.55 is the typical spread of datasheet-only transfer errors on three
pre-Hopper GPUs (``experiments/zeus/README.md``: 93 % of the Zeus rows fall inside the
intervals ``predict()`` gives); the
floor 0.15 is what any second board adds (clocks, cooling, power delivery) even for the same
chip.  Every prediction through a transferred model carries the warning "transferred from
<src> by datasheet ..." and the manifest of the in-memory artifact says
``"transferred_from": <src>`` (also in ``predict --json``'s ``artifact.id``).
"""

from __future__ import annotations

import logging
import math
from dataclasses import replace

import numpy as np

from predictor.artifacts import Artifact, available_hardware, load_artifact
from predictor.carbon.hardware import HardwareSpec, lookup
from predictor.engine.calibrated import CalibratedHardware
from predictor.engine.joint_transfer import joint_artifact
from predictor.engine.physics import PARAMS, Datasheet, PhysicsModel
from predictor.engine.transferred import (
    TRANSFER_HALFWIDTH,
    TransferredHardware,
    datasheet_distance,
    halfwidth_at_distance,
    transfer_halfwidth,
)
from profiling.errors import ExanteError

__all__ = ["TransferredHardware", "transfer", "transfer_params", "transferred_artifact",
           "measured_sources", "datasheet_of", "TRANSFER_HALFWIDTH", "can_transfer",
           "datasheet_distance", "transfer_halfwidth", "halfwidth_at_distance", "spec_of"]

log = logging.getLogger(__name__)

_CARRIED = ("eff_mm_fp32", "eff_conv_tf32", "eff_mm_bf16", "eff_conv_bf16", "eff_grouped",
            "eff_attn", "eff_bw", "tau_s", "tau_conv_s", "overlap_q")


def spec_of(hardware: str | HardwareSpec) -> HardwareSpec:
    """The catalogue entry of ``hardware`` (resolved already when a spec is given)."""
    return hardware if isinstance(hardware, HardwareSpec) else lookup(hardware)


def datasheet_of(hardware: str | HardwareSpec) -> Datasheet:
    """The :class:`Datasheet` of a catalogue device (key, name or alias, or its resolved
    :class:`~predictor.carbon.hardware.HardwareSpec`)."""
    spec = spec_of(hardware)
    if spec.kind != "gpu":
        raise ExanteError(f"{spec.name} is a {spec.kind}; the physics model of eager PyTorch "
                          "transfers to GPUs only")
    try:
        return Datasheet.from_spec(spec, idle_w=spec.measured_idle_w)
    except ValueError as exc:
        raise ExanteError(f"cannot transfer to {spec.key}: {exc} (needed: fp32 peak, memory "
                          "bandwidth, TDP)") from None


def _dyn(ds: Datasheet) -> float:
    return max(ds.tdp_w - ds.idle_w, 50.0)       # as Datasheet.prior


def transfer_params(params: dict, src: Datasheet, dst: Datasheet) -> dict:
    """Parameters of the target from the source's fitted ``params`` (rules: module doc)."""
    missing = [p for p in PARAMS if p not in params]
    if missing:
        raise ValueError(f"source parameters lack {', '.join(missing)}")
    out = dict(params)
    if not dst.has_tf32:                                 # no TF32 tensor cores
        out["eff_conv_tf32"] = params["eff_mm_fp32"]
    dyn = _dyn(dst) / _dyn(src)
    out["p0_w"] = params["p0_w"] * dst.idle_w / src.idle_w
    for k in params:            # every busy power above idle (p_fp32_w, p_mem_w, p_launch_w ...)
        if k.startswith("p_") and k.endswith("_w") and k != "p_cap_w":
            out[k] = params[k] * dyn
    out["e_byte_j"] = params["e_byte_j"] * dyn * src.mem_bw / dst.mem_bw
    out["p_cap_w"] = params["p_cap_w"] * dst.tdp_w / src.tdp_w
    out["fill_flops"] = params["fill_flops"] * dst.peak_fp32 / src.peak_fp32
    return out


def _label(src: str, dst: str, widen: dict, dist: float | None = None) -> str:
    far = "" if dist is None else f" (datasheet distance {dist:.2f})"
    return (f"transferred from {src} by datasheet: {dst} was never measured; GPU efficiencies "
            f"and host costs of {src}, powers scaled by TDP and idle; interval widened "
            f"(x/÷{math.exp(widen.get('gpu', 0)):.2f} GPU-bound{far}, "
            f"x/÷{math.exp(widen.get('host', 0)):.2f} host-bound, in quadrature)")


def transfer(base: CalibratedHardware, hardware: str | HardwareSpec, *,
             widen: dict | None = None, dst: Datasheet | None = None,
             dist: float | None = None) -> TransferredHardware:
    """A :class:`TransferredHardware` for catalogue GPU ``hardware`` (a name or its resolved
    spec) from the measured ``base`` (rules and interval: module docstring).  ``dst``: the
    target's datasheet and ``dist`` its :func:`datasheet_distance` from ``base``'s, when the
    caller has them already."""
    spec = spec_of(hardware)
    dst = datasheet_of(spec) if dst is None else dst
    src_ds = base.datasheet
    dist = datasheet_distance(src_ds, dst) if dist is None else dist
    params = transfer_params(base.model.params(), src_ds, dst)
    model = PhysicsModel(dst, **{k: v for k, v in base.model.get_params().items()
                                 if k != "datasheet"})
    model.theta_ = np.array([params[p] for p in PARAMS], float)
    model.n_fit_ = 0
    model.cost_ = float("nan")
    model.converged_ = True
    widen = dict(halfwidth_at_distance(dist) if widen is None else widen)
    src = getattr(base, "source", "") or base.hardware
    info = {**base.info, "datasheet": dst.__dict__, "transferred_from": src,
            "source_datasheet": src_ds.__dict__, "transfer_halfwidth": widen,
            "datasheet_distance": dist}
    dtype_notes = {}
    if "bf16" not in spec.peak_tflops:
        dtype_notes["bf16"] = (
            f"{spec.key} has no bf16 in its datasheet: the bf16 prediction uses its 16-bit "
            f"({'fp16' if 'fp16' in spec.peak_tflops else 'fp32'}) peak, i.e. what fp16 autocast "
            "would run; bf16 autocast itself is emulated there and much slower")
    return TransferredHardware(spec.key, model, base.coverage, dict(base.halfwidth),
                               dict(base.domain), info, source=src, widen=widen,
                               dtype_notes=dtype_notes,
                               label=_label(src, spec.key, widen, dist))


# ------------------------------------------------------------------ artifact plumbing
def measured_sources(artifact_dir=None) -> list[str]:
    """Hardware ids with a measured physics-model artifact (not transferred, not synthetic)."""
    out = []
    for hw in available_hardware(artifact_dir):
        try:
            art = load_artifact(hw, artifact_dir)
        except ExanteError:
            continue
        if isinstance(art.model, CalibratedHardware) and not isinstance(
                art.model, TransferredHardware) and art.manifest.get("measured") is not False:
            out.append(hw)
    return out


def can_transfer(hardware: str | HardwareSpec) -> bool:
    """True when the catalogue knows ``hardware`` as a GPU with the datasheet numbers needed."""
    try:
        datasheet_of(hardware)
    except ExanteError:
        return False
    return True


_ART_CACHE: dict = {}


def transferred_artifact(hardware: str | HardwareSpec, artifact_dir=None,
                         source: str | None = None, *, dst: Datasheet | None = None):
    """An in-memory :class:`~predictor.artifacts.Artifact` for ``hardware`` (a name or its
    resolved spec; ``dst``: its datasheet when the caller has it): its own artifact when one
    exists under its catalogue key, otherwise the joint model's datasheet-driven parameters,
    otherwise the transfer from ``source`` (default: the measured GPU whose datasheet is
    nearest)."""
    spec = spec_of(hardware)
    if spec.key in available_hardware(artifact_dir):
        return load_artifact(spec.key, artifact_dir)
    dst = datasheet_of(spec) if dst is None else dst
    if not source:
        art = joint_artifact(spec, dst, artifact_dir)
        if art is not None:
            return art
    sources = [source] if source else measured_sources(artifact_dir)
    if not sources:
        raise ExanteError(f"no measured GPU model to transfer to {spec.key} from (no artifact "
                          "of a measured GPU found)")
    arts = {s: load_artifact(s, artifact_dir) for s in sources}
    for s, a in arts.items():
        if not isinstance(a.model, CalibratedHardware):
            raise ExanteError(f"the {s} artifact is not a physics model; cannot transfer from it")
    dists = {s: datasheet_distance(arts[s].model.datasheet, dst) for s in sources}
    src = min(sources, key=lambda s: (dists[s], s))
    art = arts[src]
    key = (spec.key, src, art.manifest.get("sha256"))
    hit = _ART_CACHE.get(key)
    if hit is not None:
        return hit
    log.debug("transferring %s from %s (datasheet distance %.3f)", spec.key, src, dists[src])
    th = transfer(art.model, spec, dst=dst, dist=dists[src])
    man = {**art.manifest, "hardware": spec.key,
           "id": f"{spec.key}-transferred-from-{art.manifest.get('id', src)}",
           "transferred_from": src, "measured": art.manifest.get("measured"),
           "method": "datasheet transfer of the " + src + " physics model (predictor.engine.transfer)",
           "interval": {"coverage": th.coverage, "transfer_halfwidth_log": th.widen}}
    out = Artifact(model=th, manifest=man, path=art.path)
    _ART_CACHE[key] = out
    return out


def with_widen(th: TransferredHardware, widen: dict) -> TransferredHardware:
    """A copy of ``th`` with another transfer half-width (and label)."""
    return replace(th, widen=dict(widen), label=_label(th.source, th.hardware, widen))
