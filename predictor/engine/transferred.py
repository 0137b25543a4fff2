"""The transferred engine: a :class:`~predictor.engine.calibrated.CalibratedHardware` carried
to a GPU that was never measured, and the extra interval that carrying costs.

:class:`TransferredHardware` predicts like the model it was carried from (on the target's
transferred parameters) and widens both intervals -- time (s) and energy (J) -- by a
transfer log half-width per regime, in quadrature, labelling every prediction.  The
half-width grows with the datasheet distance (:func:`datasheet_distance`: mean |log ratio|
of the fp32, TF32, bf16 peaks, memory bandwidth and TDP) as
:mod:`predictor.engine.transfer` documents.  Built by :func:`predictor.engine.transfer.transfer`
(a datasheet transfer), :mod:`predictor.engine.joint_transfer` (the joint multi-GPU model) and
:mod:`predictor.fit.calibrate` (few-shot calibration).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from predictor.engine.calibrated import CalibratedHardware
from predictor.engine.physics import Datasheet
from predictor.engine.result import WorkloadPrediction
from predictor.engine.workload import Workload

__all__ = ["TransferredHardware", "TRANSFER_HALFWIDTH", "datasheet_distance",
           "transfer_halfwidth", "halfwidth_at_distance"]

#: largest extra log half-width (90 % nominal) of a datasheet transfer, by regime
TRANSFER_HALFWIDTH = {"gpu": 0.5, "host": 0.55}
#: smallest GPU-bound transfer half-width (another board of the same chip) and the distance
#: scale over which it grows to the ceiling
_GPU_FLOOR, _DIST_SCALE = 0.15, 0.5
_DIST_KEYS = ("peak_fp32", "peak_tf32", "peak_bf16", "mem_bw", "tdp_w")


@dataclass
class TransferredHardware(CalibratedHardware):
    """A :class:`CalibratedHardware` carried to another GPU: its intervals are the source's
    widened by ``widen`` (log half-width added in quadrature, per regime) and every
    prediction is labelled with ``label``."""

    source: str = ""
    widen: dict = field(default_factory=lambda: dict(TRANSFER_HALFWIDTH))
    label: str = ""
    dtype_notes: dict = field(default_factory=dict)    # dtype -> caveat of this GPU

    def predict_workload(self, w: Workload) -> WorkloadPrediction:
        """The source's prediction on this GPU's parameters, intervals widened by the
        transfer half-width of its regime (in quadrature), labelled."""
        r = super().predict_workload(w)
        extra = float(self.widen.get(r.regime, max(self.widen.values(), default=0.0)))
        first = (self.dtype_notes[w.dtype],) if w.dtype in self.dtype_notes else ()
        return r.widened(extra, note=self.label, first_notes=first)


def datasheet_distance(a: Datasheet, b: Datasheet) -> float:
    """Mean |log ratio| of the datasheet numbers the transfer scales by (0: same datasheet)."""
    return float(np.mean([abs(math.log(getattr(a, k) / getattr(b, k))) for k in _DIST_KEYS]))


def transfer_halfwidth(src: Datasheet, dst: Datasheet) -> dict:
    """Extra log half-width per regime of a transfer ``src`` -> ``dst`` (module docstring)."""
    return halfwidth_at_distance(datasheet_distance(src, dst))


def halfwidth_at_distance(d: float) -> dict:
    """Extra log half-width per regime of a transfer over datasheet distance ``d``."""
    top = TRANSFER_HALFWIDTH["gpu"]
    gpu = _GPU_FLOOR + (top - _GPU_FLOOR) * (1.0 - math.exp(-d / _DIST_SCALE))
    return {"gpu": round(gpu, 4), "host": TRANSFER_HALFWIDTH["host"]}
