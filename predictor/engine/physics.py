"""A physically structured time and energy model of eager PyTorch on one GPU (36 parameters).

Fitted on whole-model measurements (or per-layer ones), with weak priors from the GPU's
datasheet (:mod:`predictor.carbon.hardware`), on log relative error of both time and energy::

    host time   T_host = sum_e  n_e * h_e            (seconds per host event: module call,
                                                      dispatch, kernel launch, conv set-up,
                                                      autograd node, optimizer tensor/op ...)
    GPU time    T_gpu  = sum_k  smax(F_k / (peak_c * eff_c * fill_k * tile_k), B_k / (BW * eff_bw))
                                 + tau * kernels + tau_conv * conv kernels
    wall time   T      = (T_host^q + T_gpu^q)^(1/q)          (the slower of the two, smooth)
    energy      E      = T * smin(P0 + (sum_k p_c(k) fill_k t_k + p_launch tau n + e_B B) / T,
                                   P_cap)

``peak_c`` is the datasheet peak of the class's unit (FP32 cores for fp32 matmul, TF32 tensor
cores for fp32 convolutions, bf16 tensor cores under autocast), ``fill_k`` the partial-wave
ramp of a small kernel, ``tile_k = N / (N + n_tile)`` the tile quantisation of a tensor-core
GEMM or convolution whose output width N (features, channels) is narrow against the MMA tiles
(1 on CUDA cores, and for convolutions of a GPU without TF32), ``BW`` the HBM bandwidth,
P0 the active-idle board power (prior: the measured idle power), p_c the dynamic power while a
kernel of class c runs (matmul units near the TDP; a slow kernel still burns it), P_cap near
the TDP.  All
parameters are positive and fitted in log space; the prior keeps each near its datasheet or
typical value (a factor ~e for host costs), so a held-out family cannot pull the fit apart.

:class:`PhysicsModel` is a scikit-learn estimator over a list of
:class:`~predictor.engine.workload.Workload` (``X``) and ``y`` = array (n, 2) of (time_s, energy_j).
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import numpy as np
from scipy.optimize import least_squares
from sklearn.base import BaseEstimator, RegressorMixin
from sklearn.utils.validation import check_is_fitted

from predictor.engine.lowering import CLASSES, HOST_FEATURES, LoweredWorkload, lower

__all__ = ["PhysicsModel", "Datasheet", "PARAMS", "Stack", "stack", "evaluate", "entry_times"]

log = logging.getLogger(__name__)

_GPU_EFF = ("eff_mm_fp32", "eff_conv_tf32", "eff_mm_bf16", "eff_conv_bf16", "eff_grouped",
            "eff_attn", "eff_bw", "tau_s", "tau_conv_s", "fill_flops", "n_tile")
_HOST = tuple("h_" + h + "_s" for h in HOST_FEATURES)
_ENERGY = ("p0_w", "p_fp32_w", "p_tf32_w", "p_bf16_w", "p_mem_w", "p_launch_w", "e_byte_j",
           "p_cap_w")
PARAMS = _GPU_EFF + _HOST + ("overlap_q",) + _ENERGY

# typical host costs of eager PyTorch on a server CPU (s per event) -- the prior's centre
_HOST_PRIOR = {"call": 30e-6, "container": 6e-6, "disp": 8e-6, "disp_train": 4e-6, "kern": 5e-6, "conv": 15e-6,
               "lt": 5e-6,
               "view": 2e-6, "mha": 100e-6, "fused": 60e-6, "cast": 5e-6, "bnode": 8e-6, "step": 400e-6,
               "opt_tensor": 3e-6, "opt_op": 15e-6, "opt_launch": 5e-6}
_GPU_PRIOR = {"eff_mm_fp32": (0.6, 0.5), "eff_conv_tf32": (0.3, 0.7),
              "eff_mm_bf16": (0.5, 0.5), "eff_conv_bf16": (0.3, 0.7),
              "eff_grouped": (0.02, 1.0), "eff_attn": (0.3, 0.7), "eff_bw": (0.7, 0.3),
              "tau_s": (3e-6, 0.5), "tau_conv_s": (3e-6, 1.0),
              # FLOPs a matmul/conv/attention kernel needs to fill every SM (on Hopper ~132
              # SMs x a 128x128 output tile x K); fewer -> partial waves, lower throughput
              "fill_flops": (1e8, 1.5),
              # output width at which a tensor-core GEMM/conv tile is half used (tiles 64-256
              # wide): a kernel of output width N runs at N / (N + n_tile) of the class's rate
              "n_tile": (64.0, 0.7)}
_SMAX_ROOF = 4.0          # roofline corner sharpness (per kernel group)
#: classes whose kernels run on tensor cores (tile quantisation along the output width)
_TENSOR_CORE = np.array([c in ("conv_tf32", "mm_bf16", "conv_bf16", "attn_bf16") for c in CLASSES])
_SMIN_CAP = 20.0          # power-cap corner sharpness


@dataclass(frozen=True)
class Datasheet:
    """What the prior needs of a GPU: dense peaks (FLOP/s), HBM bandwidth (B/s), power (W)."""

    name: str
    peak_fp32: float
    peak_tf32: float
    peak_bf16: float
    mem_bw: float
    tdp_w: float
    idle_w: float
    #: dense FP16 tensor rate with FP32 accumulate (FLOP/s; what fp16 autocast runs at --
    #: GeForce's FP16-accumulate rate is twice it); None: the bf16 peak
    peak_fp16: float | None = None
    sm_count: int | None = None            # streaming multiprocessors (None: unpublished)
    boost_clock_mhz: float | None = None   # boost clock (MHz; None: unpublished)

    @classmethod
    def from_spec(cls, spec, idle_w: float | None = None) -> "Datasheet":
        pk = spec.peak_tflops
        fp32 = pk.get("fp32")
        missing = [n for n, v in (("fp32 peak", fp32), ("memory bandwidth", spec.mem_bw_gbs),
                                  ("TDP", spec.tdp_w)) if not v]
        if missing:
            raise ValueError(f"{spec.name}: the catalogue lacks its {', '.join(missing)}")
        tf32 = pk.get("tf32") or fp32
        # a 16-bit rate below the fp32 one (consumer Pascal's 1/64-rate FP16) is not what
        # autocast runs at: cuBLAS/cuDNN then compute the 16-bit tensors in fp32
        bf16 = max(pk.get("bf16") or pk.get("fp16") or tf32, fp32)
        fp16 = max(pk.get("fp16") or bf16, fp32)
        idle = idle_w or spec.idle_w or 0.18 * spec.tdp_w
        sm = getattr(spec, "sm_count", None)
        clk = getattr(spec, "boost_clock_mhz", None)
        return cls(spec.name, fp32 * 1e12, tf32 * 1e12, bf16 * 1e12, spec.mem_bw_gbs * 1e9,
                   float(spec.tdp_w), float(idle), fp16 * 1e12,
                   int(sm) if sm else None, float(clk) if clk else None)

    @property
    def fp16_peak(self) -> float:
        """Dense fp16 (FP32-accumulate) tensor peak, FLOP/s; the bf16 peak when unpublished."""
        return float(self.peak_fp16 or self.peak_bf16)

    @property
    def has_tf32(self) -> bool:
        """TF32 tensor cores (Ampere on); without them fp32 convolutions run on CUDA cores
        (the catalogue then gives no TF32 peak and ``from_spec`` uses the fp32 one)."""
        return self.peak_tf32 > self.peak_fp32 * 1.0001

    def class_peaks(self, half: bool = False) -> np.ndarray:
        """Peak FLOP/s of each class of :data:`predictor.engine.lowering.CLASSES` (``half``: the
        low-precision classes run fp16 autocast, at :attr:`fp16_peak`, not bf16)."""
        lo = self.fp16_peak if half else self.peak_bf16
        by = {"mm_fp32": self.peak_fp32, "conv_tf32": self.peak_tf32,
              "mm_bf16": lo, "conv_bf16": lo,
              "conv_grouped": self.peak_fp32, "mem": self.peak_fp32,
              "attn_fp32": self.peak_fp32, "attn_bf16": lo}
        return np.array([by[c] for c in CLASSES])

    def prior(self) -> tuple[np.ndarray, np.ndarray]:
        """(centre, log-sigma) of every parameter in :data:`PARAMS`."""
        mu, sd = {}, {}
        for k, (m, s) in _GPU_PRIOR.items():
            mu[k], sd[k] = m, s
        for h in HOST_FEATURES:
            mu[f"h_{h}_s"], sd[f"h_{h}_s"] = _HOST_PRIOR[h], 1.0
        mu["overlap_q"], sd["overlap_q"] = 3.0, 0.5
        dyn = max(self.tdp_w - self.idle_w, 50.0)
        # dynamic power while a kernel of the class runs (W above active idle): matmul-class
        # kernels near the TDP, memory-bound ones about half of it; + energy per HBM byte
        mu.update({"p0_w": self.idle_w, "p_fp32_w": 0.8 * dyn, "p_tf32_w": 0.7 * dyn,
                   "p_bf16_w": 0.7 * dyn, "p_mem_w": 0.35 * dyn, "p_launch_w": 0.05 * dyn,
                   "e_byte_j": 0.1 * dyn / self.mem_bw, "p_cap_w": 1.05 * self.tdp_w})
        sd.update({"p0_w": 0.1, "p_fp32_w": 0.7, "p_tf32_w": 0.7, "p_bf16_w": 0.7,
                   "p_mem_w": 0.7, "p_launch_w": 1.0, "e_byte_j": 1.5, "p_cap_w": 0.1})
        return (np.array([mu[p] for p in PARAMS], float), np.array([sd[p] for p in PARAMS], float))


# ------------------------------------------------------------------ stacked workloads
@dataclass
class Stack:
    """Many lowered workloads concatenated for vectorised evaluation."""

    H: np.ndarray          # (n, n_host)
    w: np.ndarray          # entry -> workload index
    cls: np.ndarray
    par: np.ndarray        # FLOPs per kernel of matmul-like entries (0: no ramp)
    flops: np.ndarray      # x mult
    bytes: np.ndarray      # x mult
    kern: np.ndarray       # x mult
    conv_kern: np.ndarray  # x mult
    mult: np.ndarray
    n: int
    ndim: np.ndarray       # output width N of GEMM/conv entries for tile quantisation (0: none)
    half: np.ndarray | None = None   # per entry: fp16 autocast (fp16 peak; None: none is)


def stack(lowered: list[LoweredWorkload]) -> Stack:
    """Concatenate lowered workloads into one :class:`Stack` (host event counts per workload;
    GPU kernel entries with FLOPs, bytes and kernel counts already multiplied by their call
    multiplicity) so :func:`evaluate` prices many workloads in one vectorised pass."""
    H = np.array([lw.host for lw in lowered], float).reshape(len(lowered), len(HOST_FEATURES))
    w = np.concatenate([np.full(len(lw.cls), i) for i, lw in enumerate(lowered)] or [np.zeros(0)])
    cat = (lambda a: np.concatenate([getattr(lw, a) for lw in lowered])) if lowered else (
        lambda a: np.zeros(0))
    mult = cat("mult")
    half = None
    if any(getattr(lw, "fp16", False) for lw in lowered):
        half = np.concatenate([np.full(len(lw.cls), bool(getattr(lw, "fp16", False)))
                               for lw in lowered])
    return Stack(H, w.astype(int), cat("cls").astype(int), cat("par"), cat("flops") * mult,
                 cat("bytes") * mult, cat("kern") * mult, cat("conv_kern") * mult, mult,
                 len(lowered), cat("ndim"), half)


def _smax(a, b, k):
    m = np.maximum(a, b)
    m = np.where(m > 0, m, 1e-30)
    return m * ((a / m) ** k + (b / m) ** k) ** (1.0 / k)


def entry_times(p: dict, s: Stack, ds: Datasheet) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per GPU entry of ``s``: (work seconds, launch/tail seconds, SM fill fraction) for the
    parameters ``p`` (name -> value)."""
    eff = np.array([p["eff_mm_fp32"], p["eff_conv_tf32"], p["eff_mm_bf16"], p["eff_conv_bf16"],
                    p["eff_grouped"], 0.5, p["eff_attn"], p["eff_attn"]])
    rate = ds.class_peaks() * eff
    if s.half is not None and s.half.any():           # fp16 autocast entries: fp16 peak
        rate16 = ds.class_peaks(half=True) * eff
        rate_e = np.where(s.half, rate16[s.cls], rate[s.cls])
    else:
        rate_e = rate[s.cls]
    bw = ds.mem_bw * p["eff_bw"]
    # partial waves: a matmul-like kernel of fewer FLOPs than fill_flops runs at that fraction
    # of the class's rate (smooth min(1, F/fill)); memory-class entries (par 0) are exempt
    fill = np.where(s.par > 0, (1.0 + (p["fill_flops"] / np.maximum(s.par, 1.0)) ** 2) ** -0.5,
                    1.0)
    tc = _TENSOR_CORE.copy()
    if not ds.has_tf32:                                # fp32 convs on CUDA cores
        tc[CLASSES.index("conv_tf32")] = False
    on = (s.ndim > 0) & tc[s.cls]
    tile = np.where(on, s.ndim / (np.maximum(s.ndim, 1.0) + p["n_tile"]), 1.0)
    t_work = _smax(s.flops / (rate_e * fill * tile), s.bytes / bw, _SMAX_ROOF)
    t_over = s.kern * p["tau_s"] + s.conv_kern * p["tau_conv_s"]   # launch/tail per kernel
    return t_work, t_over, fill


def evaluate(theta: np.ndarray, s: Stack, ds: Datasheet, *, parts: bool = False):
    """(time_s, energy_j) arrays of the stacked workloads for parameters ``theta``."""
    p = dict(zip(PARAMS, theta, strict=True))
    t_work, t_over, fill = entry_times(p, s, ds)
    t_entry = t_work + t_over
    t_gpu = np.bincount(s.w, t_entry, minlength=s.n)
    h = np.array([p[k] for k in _HOST])
    t_host = s.H @ h
    q = p["overlap_q"]
    t = _smax(t_host, t_gpu, q)
    # class -> busy power: mm_fp32, conv_tf32, mm_bf16, conv_bf16, grouped, mem, attn32, attn16
    pc = np.array([p["p_fp32_w"], p["p_tf32_w"], p["p_bf16_w"], p["p_bf16_w"], p["p_mem_w"],
                   p["p_mem_w"], p["p_fp32_w"], p["p_bf16_w"]])
    # a partial wave occupies a fraction `fill` of the SMs: its busy power scales with it
    e_dyn = np.bincount(s.w, t_work * pc[s.cls] * fill + t_over * p["p_launch_w"]
                        + s.bytes * p["e_byte_j"], minlength=s.n)
    t_safe = np.maximum(t, 1e-12)
    p_raw = p["p0_w"] + e_dyn / t_safe
    power = (p_raw ** -_SMIN_CAP + p["p_cap_w"] ** -_SMIN_CAP) ** (-1.0 / _SMIN_CAP)
    e = power * t_safe
    if parts:
        return t, e, {"time_host_s": t_host, "time_gpu_s": t_gpu, "power_w": power}
    return t, e


class PhysicsModel(RegressorMixin, BaseEstimator):
    """Structured eager-PyTorch model; ``X``: list of Workload (or LoweredWorkload),
    ``y``: (n, 2) array of (time_s, energy_j) per call.

    ``datasheet``: a :class:`Datasheet` (priors and peaks); ``prior_weight``: strength of the
    prior relative to one data residual; ``energy_weight``: weight of the energy residuals
    relative to time; ``loss``/``f_scale``: scipy ``least_squares`` robust loss.
    """

    def __init__(self, datasheet: Datasheet | None = None, prior_weight: float = 0.1,
                 energy_weight: float = 1.0, loss: str = "soft_l1", f_scale: float = 0.2):
        self.datasheet = datasheet
        self.prior_weight = prior_weight
        self.energy_weight = energy_weight
        self.loss = loss
        self.f_scale = f_scale

    @staticmethod
    def _lowered(X) -> list[LoweredWorkload]:
        return [x if isinstance(x, LoweredWorkload) else lower(x) for x in X]

    def _ds(self) -> Datasheet:
        if self.datasheet is None:
            raise ValueError("PhysicsModel needs a datasheet (peaks, bandwidth, TDP)")
        return self.datasheet

    def fit(self, X, y, sample_weight=None):
        """Fit ``theta_`` on workloads ``X`` and ``y`` = (n, 2) of (time_s, energy_j)."""
        ds = self._ds()
        y = np.asarray(y, float).reshape(-1, 2)
        if len(y) != len(X):
            raise ValueError(f"X has {len(X)} workloads but y has {len(y)} rows")
        if not np.all(np.isfinite(y)) or np.any(y <= 0):
            raise ValueError("y must hold positive finite (time_s, energy_j) pairs")
        s = stack(self._lowered(X))
        mu, sd = ds.prior()
        lmu = np.log(mu)
        wts = np.ones(len(y)) if sample_weight is None else np.asarray(sample_weight, float)
        sw = np.sqrt(wts)
        ly = np.log(y)
        lam = math.sqrt(self.prior_weight)
        ew = math.sqrt(self.energy_weight)

        def resid(z):
            t, e = evaluate(np.exp(z), s, ds)
            return np.concatenate([sw * (np.log(np.maximum(t, 1e-15)) - ly[:, 0]),
                                   ew * sw * (np.log(np.maximum(e, 1e-15)) - ly[:, 1]),
                                   lam * (z - lmu) / sd])

        sol = least_squares(resid, lmu.copy(), loss=self.loss, f_scale=self.f_scale,
                            method="trf", x_scale=1.0, max_nfev=400)
        self.theta_ = np.exp(sol.x)
        self.n_fit_ = int(len(y))
        self.cost_ = float(sol.cost)
        self.converged_ = bool(sol.success)
        log.debug("physics fit on %d rows (%s): cost %.4g, converged %s", self.n_fit_, ds.name,
                  self.cost_, self.converged_)
        return self

    def params(self) -> dict:
        """{parameter name: fitted value} (units in the names: _s seconds, _w watts ...)."""
        check_is_fitted(self, "theta_")
        return {k: float(v) for k, v in zip(PARAMS, self.theta_, strict=True)}

    def predict_parts(self, X) -> tuple[np.ndarray, np.ndarray, dict]:
        """(time_s, energy_j, parts) arrays of workloads ``X``; parts: host and GPU times."""
        check_is_fitted(self, "theta_")
        return evaluate(self.theta_, stack(self._lowered(X)), self._ds(), parts=True)

    def predict(self, X) -> np.ndarray:
        """(n, 2) array of (time_s, energy_j) per workload of ``X``."""
        t, e, _ = self.predict_parts(X)
        return np.column_stack([t, e])

    def score(self, X, y, sample_weight=None):
        """Negative mean absolute log error over time and energy (higher is better)."""
        p = self.predict(X)
        return -float(np.mean(np.abs(np.log(p / np.asarray(y, float).reshape(-1, 2)))))
