"""The shipped form of the physics model of eager PyTorch: fitted parameters + intervals +
the fitted domain.

:class:`CalibratedHardware` is what ``predictor/artifacts/<hw>.joblib`` holds (fitted from
whole-model rows by :func:`predictor.fit.calibrated_fit.fit_calibrated`).  It predicts a
:class:`~predictor.engine.workload.Workload`'s time (s) and total board energy (J) as a
:class:`~predictor.engine.result.WorkloadPrediction`, splits them over its layers, and gives a
90 % (nominal) interval from leave-one-family-out residuals (split-conformal, log units),
widened by the cross-session re-measurement spread and, outside the fitted domain (a dtype
never measured, layer families never seen or priced by no lowering rule, a batch beyond the
fitted range), by a stated factor with a warning.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field

import numpy as np

from predictor.engine.interval import Interval
from predictor.engine.lowering import HOST_FEATURES, LoweredWorkload, family_of, lower
from predictor.engine.physics import Datasheet, PhysicsModel, entry_times, stack
from predictor.engine.result import LayerSplit, WorkloadPrediction
from predictor.engine.workload import Workload

__all__ = ["CalibratedHardware", "conformal_halfwidth", "regime_of", "OOD_BATCH_WIDEN",
           "OOD_DTYPE_WIDEN", "OOD_FAMILY_WIDEN"]

log = logging.getLogger(__name__)

#: outside the fitted domain, the log half-width is multiplied by: 1 + OOD_BATCH_WIDEN per
#: doubling beyond the measured batches; OOD_DTYPE_WIDEN for a dtype never measured;
#: 1 + OOD_FAMILY_WIDEN x the work share of layer families never measured or never priced
OOD_BATCH_WIDEN = 0.35
OOD_DTYPE_WIDEN = 1.5
OOD_FAMILY_WIDEN = 2.0
# the old private names (predictor.search.nas imports them)
_OOD_BATCH_WIDEN, _OOD_DTYPE_WIDEN, _OOD_FAMILY_WIDEN = (OOD_BATCH_WIDEN, OOD_DTYPE_WIDEN,
                                                         OOD_FAMILY_WIDEN)


def conformal_halfwidth(abs_resid: np.ndarray, coverage: float) -> float:
    """Split-conformal quantile of |log residuals|: the ceil((n+1)c)/n empirical quantile."""
    r = np.sort(np.asarray(abs_resid, float))
    n = len(r)
    if n == 0:
        return float("nan")
    k = min(n, int(math.ceil((n + 1) * coverage)))
    return float(r[k - 1])


def regime_of(time_host_s, time_gpu_s):
    """"gpu" where the GPU's own work is at least the host's (per row), else "host" -- on any
    GPU, from the model's two times (never a wattage of one GPU)."""
    g = np.asarray(time_gpu_s, float) >= np.asarray(time_host_s, float)
    return np.where(g, "gpu", "host")


@dataclass
class CalibratedHardware:
    """A fitted :class:`PhysicsModel` with its intervals and fitted domain (see module doc)."""

    hardware: str
    model: PhysicsModel
    coverage: float
    halfwidth: dict                      # {(target, "gpu"|"host"): log half-width}
    domain: dict                         # modes, dtypes, optimizers, batch range, families
    info: dict = field(default_factory=dict)

    @property
    def datasheet(self) -> Datasheet:
        """The GPU's datasheet (peaks FLOP/s, bandwidth B/s, power W) the model is fitted on."""
        ds = self.model.datasheet
        if ds is None:
            raise ValueError(f"the physics model of {self.hardware} has no datasheet")
        return ds

    @property
    def modes(self) -> tuple:
        return tuple(self.domain.get("modes", ()))

    @property
    def optimizers(self) -> tuple:
        return tuple(self.domain.get("optimizers", ()))

    # ------------------------------------------------------------------ prediction
    def predict_workload(self, w: Workload) -> WorkloadPrediction:
        """Time (s), energy (J), their intervals, the per-layer split and out-of-domain notes
        of one call of ``w``."""
        lw = lower(w)
        t, e, parts = self.model.predict_parts([lw])
        T, E = float(t[0]), float(e[0])
        host_s, gpu_s = float(parts["time_host_s"][0]), float(parts["time_gpu_s"][0])
        regime = str(regime_of(host_s, gpu_s))
        work = self._layer_work(lw)
        unpriced = _unpriced_layers(w, lw)
        notes, widen, unpriced_note = self._domain_check(w, lw, work, unpriced)
        ivs = []
        for target, v in (("time", T), ("energy", E)):
            h = self.halfwidth.get((target, regime), self.halfwidth[(target, "all")]) * widen
            ivs.append(Interval(v, v * math.exp(-h), v * math.exp(h), self.coverage))
        log.debug("%s: %s-bound, T=%.3g s, E=%.3g J, widen x%.2f", self.hardware, regime, T, E,
                  widen)
        return WorkloadPrediction(time_s=ivs[0], energy_j=ivs[1], time_host_s=host_s,
                                  time_gpu_s=gpu_s, regime=regime,
                                  layers=self._split(w, work, T, E), notes=tuple(notes),
                                  unknown_types=tuple(lw.unknown),
                                  unpriced=tuple(sorted(unpriced.items())),
                                  unpriced_note=unpriced_note)

    def _domain_check(self, w: Workload, lw: LoweredWorkload, work: np.ndarray,
                      unpriced: dict[int, str]) -> tuple[list[str], float, str | None]:
        """(notes, half-width factor, the note naming the unpriced layers) for what lies
        outside the fitted domain (``work``: the
        per-layer host + GPU seconds, :meth:`_layer_work`; ``unpriced``: position -> reason
        of the layers the lowering priced by its memory fallback)."""
        notes: list[str] = []
        widen = 1.0
        d = self.domain
        if w.dtype not in d.get("dtypes", ()):
            widen *= OOD_DTYPE_WIDEN
            notes.append(f"dtype {w.dtype} was never measured on {self.hardware} (fitted: "
                         f"{', '.join(d.get('dtypes', ()))}); predicted from datasheet peaks, "
                         "interval widened")
        lo, hi = d.get("batch_range", (w.batch, w.batch))
        if w.batch > hi or w.batch < lo:
            edge = hi if w.batch > hi else lo
            dbl = abs(math.log2(w.batch / edge))
            widen *= 1.0 + OOD_BATCH_WIDEN * dbl
            notes.append(f"batch {w.batch} is outside the measured batches {lo}–{hi}; "
                         "extrapolated, interval widened")
        seen = set(d.get("families", ()))
        fams = [(family_of(x.config.type) or "unknown", i) for i, x in enumerate(w.layers)
                if i not in unpriced]
        unseen = sorted({f for f, _ in fams if f not in seen})
        share_unseen = self._share(work, [i for f, i in fams if f in unseen])
        share_unpriced = self._share(work, list(unpriced))
        if unseen or unpriced:
            widen *= 1.0 + OOD_FAMILY_WIDEN * (share_unseen + share_unpriced)
        if unseen:
            notes.append(f"layer families never measured on {self.hardware}: "
                         f"{', '.join(unseen)} ({100 * share_unseen:.0f} % of the predicted "
                         "GPU+host work); interval widened")
        unpriced_note = None
        if unpriced:
            named = ", ".join(
                f"{w.layers[i].config.type} x{w.layers[i].count} "
                f"({', '.join(list(w.layers[i].names)[:3]) or '-'}: {why})"
                for i, why in unpriced.items())
            unpriced_note = (f"not priced by a lowering rule: {named}; each counted as one "
                             f"memory-bound kernel over its tensors ({100 * share_unpriced:.0f} "
                             "% of the predicted GPU+host work); interval widened")
            notes.append(unpriced_note)
        return notes, widen, unpriced_note

    def _layer_work(self, lw: LoweredWorkload) -> np.ndarray:
        """Per-layer host + GPU seconds (unscaled), from the fitted parameters."""
        p = self.model.params()
        if lw.layer_host is None:
            raise ValueError("a lowered workload without per-layer host counts")
        n_layers = lw.layer_host.shape[0]
        h = np.array([p["h_" + k + "_s"] for k in HOST_FEATURES])
        host = lw.layer_host @ h
        t_work, t_over, _ = entry_times(p, stack([lw]), self.datasheet)   # x calls already
        mask = lw.layer >= 0
        gpu = np.bincount(lw.layer[mask], (t_work + t_over)[mask], minlength=n_layers)
        return host + gpu

    @staticmethod
    def _share(work: np.ndarray, idx: list[int]) -> float:
        """Share of the layers at positions ``idx`` in the per-layer work."""
        tot = float(work.sum()) or 1.0
        return float(sum(work[i] for i in idx)) / tot

    @staticmethod
    def _split(w: Workload, work: np.ndarray, T: float, E: float) -> tuple[LayerSplit, ...]:
        """Time ``T`` (s) and energy ``E`` (J) split over the layers by their work."""
        tot = float(work.sum()) or 1.0
        out = []
        for i, x in enumerate(w.layers):
            share = work[i] / tot
            out.append(LayerSplit(i, x, family_of(x.config.type) or "unknown",
                                  T * share, E * share))
        return tuple(out)



def _unpriced_layers(w: Workload, lw: LoweredWorkload) -> dict[int, str]:
    """{position in ``w.layers``: reason} of the layers the lowering priced by its generic
    memory fallback (``LoweredWorkload.unpriced``, listed in layer order: matched back as a
    subsequence by type and module paths)."""
    listed = list(lw.unpriced)
    out: dict[int, str] = {}
    j = 0
    for i, x in enumerate(w.layers):
        if j < len(listed) and listed[j].type == x.config.type \
                and tuple(listed[j].names) == tuple(x.names):
            out[i] = str(listed[j].reason)
            j += 1
    if j < len(listed):
        log.warning("%d unpriced layers not matched to the workload", len(listed) - j)
    return out
