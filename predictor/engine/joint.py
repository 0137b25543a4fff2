"""One physics model fitted across GPUs (issue 17 item 3).

Every row carries its GPU's :class:`~predictor.engine.physics.Datasheet`.  The parameters are split:

* **shared** -- what belongs to the architecture, PyTorch and the kernel libraries: the 36
  :data:`~predictor.engine.physics.PARAMS` expressed on a *reference* datasheet (the H100's);
  efficiencies are fractions of each GPU's own peaks and bandwidth, host costs seconds per
  event, powers are carried to each GPU by its TDP and idle power
  (:func:`predictor.engine.transfer.transfer_params`: p0 x idle ratio, busy powers x (TDP - idle)
  ratio, cap x TDP ratio, ``fill_flops`` x SM-count ratio);
* **datasheet-driven** -- two shared elasticities: compute efficiency x (16-bit peak /
  reference)^``a_compute`` and bandwidth efficiency x (bandwidth / reference)^``a_bw`` (a
  small GPU reaches a larger share of its smaller peak), zero-centred priors;
* **per GPU** -- log-scale corrections (:data:`CORRECTIONS`: compute, bandwidth, launch/tail,
  host, idle and busy power) with a zero-centred prior, for GPUs that have rows only; a GPU
  with no rows gets the datasheet-nearest measured GPUs' corrections, shrunk (the host one
  excepted: its machine is unknown, so the shared host costs), see :meth:`corrections_for`.
  Power corrections are only informed where the GPU has energy rows; elsewhere energy is the
  power model learned on the GPUs with power data, in fractions of TDP and idle
  (:meth:`energy_source`).

Loss: log relative error of time (every row) and energy (rows with finite energy: time-only
rows mask it), soft-L1, rows weighted by ``sample_weight`` (callers give each GPU x source
equal total weight, so 285 H100 rows are not drowned by thousands of timm rows; an (n, 2)
weight weighs time and energy apart).
"""

from __future__ import annotations

import logging
import math

import numpy as np
from scipy.optimize import least_squares
from scipy.sparse import lil_matrix
from sklearn.base import BaseEstimator, RegressorMixin
from sklearn.utils.validation import check_is_fitted

from predictor.engine.lowering import LoweredWorkload, lower
from predictor.engine.physics import PARAMS, Datasheet, PhysicsModel, evaluate, stack

__all__ = ["JointPhysicsModel", "CORRECTIONS", "SLOPES", "gpu_theta", "group_weights",
           "source_weights"]

log = logging.getLogger(__name__)

CORRECTIONS = ("k_compute", "k_bw", "k_tau", "k_host", "k_p0", "k_pdyn")
#: the corrections that belong to the GPU itself (compute, bandwidth, launch tails; an unseen
#: GPU borrows them, not ``k_host``) and its power ones (informed by energy rows only)
_GPU_CORR = slice(0, CORRECTIONS.index("k_host"))
_POWER_CORR = slice(CORRECTIONS.index("k_p0"), len(CORRECTIONS))
SLOPES = ("a_compute", "a_bw")
_EFF_COMPUTE = ("eff_mm_fp32", "eff_conv_tf32", "eff_mm_bf16", "eff_conv_bf16", "eff_grouped",
                "eff_attn")
_EFF_CAP, _CAP_K = 0.95, 8.0       # smooth cap of an efficiency (fraction of the peak)
_IDX = {p: i for i, p in enumerate(PARAMS)}
_HOST_IDX = [i for i, p in enumerate(PARAMS) if p.startswith("h_")]
_DYN_IDX = [i for i, p in enumerate(PARAMS)
            if (p.startswith("p_") and p.endswith("_w") and p != "p_cap_w") or p == "e_byte_j"]


def _dyn(ds: Datasheet) -> float:
    return max(ds.tdp_w - ds.idle_w, 50.0)


_RATIOS = {"fp32": ("peak_fp32", "peak_fp32"), "tf32": ("peak_tf32", "peak_tf32"),
           "fp16": ("fp16_peak", "fp16_peak"), "bw": ("mem_bw", "mem_bw")}


def log_ratios(ds: Datasheet, ref: Datasheet) -> dict:
    """log(datasheet value / reference value) of the quantities the elasticities use."""
    return {k: math.log(getattr(ds, a) / getattr(ref, b)) for k, (a, b) in _RATIOS.items()}


def gpu_theta(theta_ref: np.ndarray, slopes: np.ndarray, corr: np.ndarray, ref: Datasheet,
              ds: Datasheet, clip: dict | None = None) -> np.ndarray:
    """Parameters (:data:`PARAMS` order) of GPU ``ds`` from the shared ``theta_ref`` (on the
    reference datasheet), the elasticities ``slopes`` (:data:`SLOPES`) and its log
    corrections ``corr`` (:data:`CORRECTIONS`; zeros for a GPU without rows).  ``clip``:
    {quantity: (lo, hi)} of the log ratios the fitted GPUs span -- an elasticity is never
    extrapolated beyond the datasheets it was learned on."""
    t = np.array(theta_ref, float)
    if not ds.has_tf32:                                 # fp32 convs on CUDA cores
        t[_IDX["eff_conv_tf32"]] = t[_IDX["eff_mm_fp32"]]
    lr = log_ratios(ds, ref)
    if clip:
        lr = {k: min(max(v, clip[k][0]), clip[k][1]) if k in clip else v for k, v in lr.items()}
    # each class's efficiency scales with the ratio of the peak it runs at (a small peak is
    # easier to reach): fp32 CUDA cores, TF32 (fp32 convs), 16-bit tensor cores
    r32, rtf, r16 = lr["fp32"], lr["tf32"], lr["fp16"]
    for k, r in (("eff_mm_fp32", r32), ("eff_grouped", r32), ("eff_conv_tf32", rtf),
                 ("eff_mm_bf16", r16), ("eff_conv_bf16", r16), ("eff_attn", r16)):
        t[_IDX[k]] *= math.exp(slopes[0] * r + corr[0])
    t[_IDX["eff_bw"]] *= math.exp(slopes[1] * lr["bw"] + corr[1])
    for k in _EFF_COMPUTE + ("eff_bw",):          # no class beats its datasheet peak
        t[_IDX[k]] = (t[_IDX[k]] ** -_CAP_K + _EFF_CAP ** -_CAP_K) ** (-1.0 / _CAP_K)
    t[_IDX["tau_s"]] *= math.exp(corr[2])
    t[_IDX["tau_conv_s"]] *= math.exp(corr[2])
    t[_HOST_IDX] *= math.exp(corr[3])
    dyn = _dyn(ds) / _dyn(ref)
    t[_IDX["p0_w"]] *= ds.idle_w / ref.idle_w * math.exp(corr[4])
    t[_DYN_IDX] *= dyn * math.exp(corr[5])
    t[_IDX["e_byte_j"]] *= ref.mem_bw / ds.mem_bw
    t[_IDX["p_cap_w"]] *= ds.tdp_w / ref.tdp_w
    # a board's average power never exceeds its power limit (the TDP, 5 % slack for meters)
    t[_IDX["p_cap_w"]] = min(t[_IDX["p_cap_w"]], 1.05 * ds.tdp_w)
    if ds.sm_count and ref.sm_count:
        t[_IDX["fill_flops"]] *= ds.sm_count / ref.sm_count
    else:
        t[_IDX["fill_flops"]] *= ds.peak_fp32 / ref.peak_fp32
    return t


def _distance(a: Datasheet, b: Datasheet) -> float:
    """Mean |log ratio| of the datasheet numbers (fp32, TF32, 16-bit peaks, bandwidth, TDP)."""
    keys = (("peak_fp32", "peak_fp32"), ("peak_tf32", "peak_tf32"), ("fp16_peak", "fp16_peak"),
            ("mem_bw", "mem_bw"), ("tdp_w", "tdp_w"))
    return float(np.mean([abs(math.log(getattr(a, k) / getattr(b, k))) for k, _ in keys]))


def group_weights(groups, total: float | None = None) -> np.ndarray:
    """Row weights giving every group (GPU x source) the same total (default: the mean group
    size, so the weights sum to the row count)."""
    g = np.asarray(groups)
    keys, inv, counts = np.unique(g, return_inverse=True, return_counts=True)
    tot = float(len(g)) / len(keys) if total is None else float(total)
    return tot / counts[inv]


def source_weights(gpu, source, totals: dict | None = None, default: float = 300.0
                   ) -> np.ndarray:
    """Row weights: every GPU x source group sums to ``totals[source-prefix]`` (default
    ``default``, about the H100 reference set's row count), so one large source does not
    drown the others.  A source matches a key of ``totals`` it contains (any case: ``"zeus"``)."""
    src = np.asarray(source).astype(str)
    grp = np.array([f"{g}/{s}" for g, s in zip(np.asarray(gpu).astype(str), src, strict=True)])
    w = group_weights(grp, total=1.0)
    tot = np.array([next((v for k, v in (totals or {}).items() if k.lower() in s.lower()), default)
                    for s in src], float)
    return w * tot


class JointPhysicsModel(RegressorMixin, BaseEstimator):
    """Physics model over rows of many GPUs.  ``fit(X, y, gpu=...)``: ``X`` a list of
    Workload/LoweredWorkload, ``y`` (n, 2) of (time_s, energy_j) with NaN energy for
    time-only rows, ``gpu`` the catalogue id per row; ``datasheets`` maps every id to its
    :class:`Datasheet`; ``reference`` the datasheet the shared parameters are expressed on.
    ``init``: starting shared parameters (e.g. a fitted single-GPU model's); ``corr_sigma``:
    log-sd of the per-GPU corrections' prior (one value, or one per :data:`CORRECTIONS`: tight
    for the GPU's compute and bandwidth, which the datasheet elasticities must explain -- the
    looser 0.15 left them in corrections a GPU never seen cannot have and held-out RTX 3090/
    4090 MAPE doubled in experiments/multigpu --, wide for the host, which the datasheet cannot
    explain); ``reference_corr_sigma``: the reference GPU's (the H100, with most rows) at
    least this wide, so the shared values are a generic GPU's and the H100 keeps its own fit;
    ``slope_sigma``: that of the elasticities."""

    def __init__(self, reference: Datasheet | None = None, datasheets: dict | None = None,
                 prior_weight: float = 0.1, energy_weight: float = 1.0,
                 corr_sigma=(0.02, 0.02, 0.1, 0.7, 0.3, 0.3), slope_sigma: float = 1.0, loss: str = "soft_l1", f_scale: float = 0.2,
                 init=None, max_nfev: int = 60, neighbour_scale: float = 0.5,
                 neighbour_shrink: float = 0.02, reference_corr_sigma: float | None = 0.3):
        self.reference = reference
        self.datasheets = datasheets
        self.prior_weight = prior_weight
        self.energy_weight = energy_weight
        self.corr_sigma = corr_sigma
        self.slope_sigma = slope_sigma
        self.loss = loss
        self.f_scale = f_scale
        self.init = init
        self.max_nfev = max_nfev
        self.neighbour_scale = neighbour_scale
        self.neighbour_shrink = neighbour_shrink
        self.reference_corr_sigma = reference_corr_sigma

    def _ds(self, g: str) -> Datasheet:
        if not self.datasheets or g not in self.datasheets:
            raise ValueError(f"no datasheet for GPU {g!r}")
        return self.datasheets[g]

    def fit(self, X, y, gpu, sample_weight=None):
        if self.reference is None:
            raise ValueError("JointPhysicsModel needs a reference datasheet")
        y = np.asarray(y, float).reshape(-1, 2)
        gpu = np.asarray(gpu)
        if len(y) != len(X) or len(gpu) != len(X):
            raise ValueError(f"X, y and gpu differ in length ({len(X)}, {len(y)}, {len(gpu)})")
        if not np.all(np.isfinite(y[:, 0]) & (y[:, 0] > 0)):
            raise ValueError("every row needs a positive finite time_s")
        has_e = np.isfinite(y[:, 1]) & (y[:, 1] > 0)
        lowered = [x if isinstance(x, LoweredWorkload) else lower(x) for x in X]
        gpus = sorted(set(gpu.tolist()))
        parts = [(g, np.flatnonzero(gpu == g)) for g in gpus]
        stacks = {g: stack([lowered[i] for i in idx]) for g, idx in parts}
        w = np.ones((len(y), 2)) if sample_weight is None else np.asarray(sample_weight, float)
        if w.ndim == 1:                                   # one weight for time and energy
            w = np.column_stack([w, w])
        sw, swe = np.sqrt(w[:, 0]), np.sqrt(w[:, 1])
        ly = np.log(np.where(np.isfinite(y) & (y > 0), y, 1.0))
        mu, sd = self.reference.prior()
        lmu = np.log(mu)
        z0 = np.log(np.asarray(self.init, float)) if self.init is not None else lmu.copy()
        nP, nS, nC, G = len(PARAMS), len(SLOPES), len(CORRECTIONS), len(gpus)
        lam = math.sqrt(self.prior_weight)
        ew = math.sqrt(self.energy_weight)
        # power corrections only where a GPU has energy rows (otherwise fixed at 0)
        e_gpu = {g: bool(has_e[idx].any()) for g, idx in parts}
        csig = np.tile(np.broadcast_to(np.asarray(self.corr_sigma, float), (nC,)), G)
        if self.reference_corr_sigma is not None:        # the reference GPU may leave the
            for j, g in enumerate(gpus):                  # shared values (= generic GPU)
                if self._ds(g).name == self.reference.name:
                    csig[j * nC:(j + 1) * nC] = np.maximum(
                        csig[j * nC:(j + 1) * nC], self.reference_corr_sigma)

        def unpack(z):
            th = np.exp(z[:nP])
            sl = z[nP:nP + nS]
            c = z[nP + nS:].reshape(G, nC).copy()
            for j, g in enumerate(gpus):
                if not e_gpu[g]:
                    c[j, _POWER_CORR] = 0.0
            return th, sl, c

        def resid(z):
            th, sl, c = unpack(z)
            rt, re_ = np.zeros(len(y)), np.zeros(len(y))
            for j, (g, idx) in enumerate(parts):
                tg = gpu_theta(th, sl, c[j], self.reference, self._ds(g))
                t, e = evaluate(tg, stacks[g], self._ds(g))
                rt[idx] = np.log(np.maximum(t, 1e-15)) - ly[idx, 0]
                re_[idx] = np.where(has_e[idx], np.log(np.maximum(e, 1e-15)) - ly[idx, 1], 0.0)
            return np.concatenate([sw * rt, ew * swe * re_, lam * (z[:nP] - lmu) / sd,
                                   lam * z[nP:nP + nS] / self.slope_sigma,
                                   lam * z[nP + nS:] / csig])

        n = len(y)
        nz = nP + nS + G * nC
        sp = lil_matrix((2 * n + nz, nz), dtype=int)
        sp[:2 * n, :nP + nS] = 1
        for j, (_g, idx) in enumerate(parts):
            cols = slice(nP + nS + j * nC, nP + nS + (j + 1) * nC)
            sp[idx, cols] = 1
            sp[n + idx, cols] = 1
        for k in range(nz):
            sp[2 * n + k, k] = 1
        z_init = np.concatenate([z0, np.zeros(nS + G * nC)])
        sol = least_squares(resid, z_init, loss=self.loss, f_scale=self.f_scale, method="trf",
                            jac_sparsity=sp, max_nfev=self.max_nfev, x_scale=1.0)
        th, sl, c = unpack(sol.x)
        self.theta_ = th
        self.slopes_ = sl
        self.corrections_ = {g: c[j] for j, g in enumerate(gpus)}
        self.energy_gpus_ = sorted(g for g in gpus if e_gpu[g])
        self.gpus_ = gpus
        self.datasheets_ = {g: self._ds(g) for g in gpus}
        self.n_fit_ = int(n)
        self.cost_ = float(sol.cost)
        self.converged_ = bool(sol.success)
        log.info("joint fit: %d rows on %s, cost %.4g, nfev %d", n, gpus, sol.cost, sol.nfev)
        return self

    # ------------------------------------------------------------------ per GPU
    def corrections_for(self, g: str, ds: Datasheet | None = None) -> np.ndarray:
        """Log corrections of GPU ``g``: its own if it had rows; else the datasheet-weighted
        mean of the measured GPUs' (weight exp(-d / ``neighbour_scale``), d the datasheet
        distance: mean |log ratio| of peaks, bandwidth and TDP), shrunk toward zero by a
        pseudo-GPU of weight ``neighbour_shrink``, for what belongs to a GPU (compute,
        bandwidth, launch tails; power from GPUs with energy rows only).  The host correction
        stays 0 -- the shared host costs of a generic machine: it is the measured machines'
        CPU and Python, which no datasheet predicts (borrowing it from the datasheet-nearest
        GPUs put the Zeus V100, held out, 1.6x too slow on host-bound steps: time MAPE 31.1 %,
        energy 36.4 %; not borrowing it: 14.5 / 25.0 %, experiments/multigpu/run.py)."""
        check_is_fitted(self, "theta_")
        if g in self.corrections_:
            return np.asarray(self.corrections_[g], float)
        ds = ds or self._ds(g)
        out = np.zeros(len(CORRECTIONS))
        for cols, pool in ((_GPU_CORR, self.gpus_), (_POWER_CORR, self.energy_gpus_)):
            num, den = np.zeros(cols.stop - cols.start), self.neighbour_shrink
            for j in pool:
                k = math.exp(-_distance(ds, self.datasheets_[j]) / self.neighbour_scale)
                num += k * np.asarray(self.corrections_[j], float)[cols]
                den += k
            out[cols] = num / den
        return out

    def theta_for(self, g: str, ds: Datasheet | None = None) -> np.ndarray:
        """Parameters of GPU ``g`` (its corrections if it had rows, else datasheet-driven:
        :meth:`corrections_for`)."""
        check_is_fitted(self, "theta_")
        ds = ds or self._ds(g)
        return gpu_theta(self.theta_, self.slopes_, self.corrections_for(g, ds),
                         self._reference(), ds, clip=self.ratio_range())

    def _reference(self) -> Datasheet:
        if self.reference is None:
            raise ValueError("the joint model has no reference datasheet")
        return self.reference

    def ratio_range(self) -> dict:
        """{quantity: (lo, hi)} log ratios to the reference spanned by the fitted GPUs."""
        check_is_fitted(self, "theta_")
        ref = self._reference()
        rs = [log_ratios(d, ref) for d in self.datasheets_.values()]
        return {k: (min(r[k] for r in rs), max(r[k] for r in rs)) for k in _RATIOS}

    def energy_source(self, g: str) -> str:
        """How this GPU's energy is predicted: its own power rows, or the power model."""
        check_is_fitted(self, "theta_")
        if g in self.energy_gpus_:
            return f"fitted on {g}'s own power measurements"
        return ("power model learned on " + ", ".join(self.energy_gpus_) + " in fractions of "
                f"TDP and idle power, applied to {g}'s datasheet (no power measured on it)")

    def physics_model(self, g: str, ds: Datasheet | None = None) -> PhysicsModel:
        """A fitted single-GPU :class:`PhysicsModel` of GPU ``g``."""
        ds = ds or self._ds(g)
        m = PhysicsModel(ds, prior_weight=self.prior_weight, energy_weight=self.energy_weight,
                         loss=self.loss, f_scale=self.f_scale)
        m.theta_ = self.theta_for(g, ds)
        m.n_fit_ = self.n_fit_
        m.cost_ = self.cost_
        m.converged_ = self.converged_
        return m

    # ------------------------------------------------------------------ (de)serialisation
    def to_dict(self) -> dict:
        """JSON-able fitted state (shared parameters, elasticities, corrections, datasheets)."""
        check_is_fitted(self, "theta_")
        return {"format": 1, "params": dict(zip(PARAMS, map(float, self.theta_), strict=True)),
                "slopes": dict(zip(SLOPES, map(float, self.slopes_), strict=True)),
                "corrections": {g: dict(zip(CORRECTIONS, map(float, c), strict=True))
                                for g, c in self.corrections_.items()},
                "gpus": list(self.gpus_), "energy_gpus": list(self.energy_gpus_),
                "reference": dict(self.reference.__dict__),
                "datasheets": {g: dict(d.__dict__) for g, d in self.datasheets_.items()},
                "neighbour_scale": self.neighbour_scale,
                "neighbour_shrink": self.neighbour_shrink, "n_fit": self.n_fit_,
                "prior_weight": self.prior_weight, "energy_weight": self.energy_weight,
                "loss": self.loss, "f_scale": self.f_scale}

    @classmethod
    def from_dict(cls, d: dict) -> "JointPhysicsModel":
        if d.get("format") != 1:
            raise ValueError(f"unknown joint model format {d.get('format')!r}")
        sheets = {g: Datasheet(**v) for g, v in d["datasheets"].items()}
        m = cls(Datasheet(**d["reference"]), dict(sheets), prior_weight=d["prior_weight"],
                energy_weight=d["energy_weight"], loss=d["loss"], f_scale=d["f_scale"],
                neighbour_scale=d["neighbour_scale"], neighbour_shrink=d["neighbour_shrink"])
        m.theta_ = np.array([d["params"][p] for p in PARAMS], float)
        m.slopes_ = np.array([d["slopes"][k] for k in SLOPES], float)
        m.corrections_ = {g: np.array([c[k] for k in CORRECTIONS], float)
                          for g, c in d["corrections"].items()}
        m.gpus_, m.energy_gpus_ = list(d["gpus"]), list(d["energy_gpus"])
        m.datasheets_ = sheets
        m.n_fit_, m.cost_, m.converged_ = int(d.get("n_fit", 0)), float("nan"), True
        return m

    def predict(self, X, gpu) -> np.ndarray:
        gpu = np.asarray(gpu)
        lowered = [x if isinstance(x, LoweredWorkload) else lower(x) for x in X]
        out = np.zeros((len(lowered), 2))
        for g in sorted(set(gpu.tolist())):
            idx = np.flatnonzero(gpu == g)
            t, e = evaluate(self.theta_for(g), stack([lowered[i] for i in idx]), self._ds(g))
            out[idx, 0], out[idx, 1] = t, e
        return out

    def score(self, X, y, gpu=None, sample_weight=None):
        """Negative mean absolute log error of time (higher is better)."""
        p = self.predict(X, gpu)
        return -float(np.mean(np.abs(np.log(p[:, 0] / np.asarray(y, float).reshape(-1, 2)[:, 0]))))
