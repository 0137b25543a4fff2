"""An energy objective for neural architecture search, with a vectorised path.

``EnergyObjective(hardware="h100", mode="train_step", batch=32, dtype="fp32", optimizer="adam")``
is callable on an ``nn.Module`` (with ``input_shape``) or on a spec of
:mod:`predictor.search.generators` and returns an :class:`EnergyScore` (J per call of the whole
batch, with the predictor's nominal-90 % interval, and time).  ``score_many(specs)`` scores many specs
of one family at once *without building modules*:

* the layers each family's module would capture are built in closed form, vectorised over
  specs (:mod:`predictor.search.nas_families`, :mod:`predictor.search.nas_nb101`), and
  lowered by the *same* registered rules as :func:`predictor.engine.lowering.lower`
  (:mod:`predictor.engine.rules`, applied to arrays by :mod:`predictor.search.nas_vectorised`):
  host events, GPU kernels with FLOPs/bytes per compute class, the optimizer's foreach
  launches;
* they are stacked into a :class:`predictor.engine.physics.Stack` and priced by
  :func:`predictor.engine.physics.evaluate` with the artifact's fitted ``theta_``; the interval
  follows :meth:`predictor.engine.calibrated.CalibratedHardware.predict_workload` (regime
  half-width, dtype and batch widening, with the library's own constants).

The result equals ``predict(spec.build(), ...)`` to rounding; ``tests/test_nas.py`` checks this
on random specs of every family and mode, so a change to the lowering or the capture fails
there loudly.  Families: MLP (:class:`~predictor.search.generators.MLPSpec`), CNN stack
(:class:`~predictor.search.generators.ConvStackSpec`), transformer encoder
(:class:`~predictor.search.generators.EncoderSpec`; fp32 only), NAS-Bench-101 cell
(:class:`NB101Spec`: ops + adjacency, the CIFAR-10 network of
:func:`predictor.bench.nasbench101.build_network`; fp32 only, bf16 goes through the general
path because autocast changes the dtype layer by layer; ``score_nb101`` takes padded arrays).

The artifact must be a physics model (:class:`~predictor.engine.calibrated.CalibratedHardware`, e.g.
the shipped ``h100``); a family whose layer families the artifact never saw is scored through
the general path, whose interval widening needs the per-layer split.

``optuna_objective(objective, suggest, accuracy)`` turns it into a two-value Optuna objective
(accuracy, predicted energy) for ``optuna.create_study(directions=["maximize", "minimize"])``
(``pip install 'exante[nas]'``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

import predictor.engine.predict as engine_predict
from predictor.artifacts import load_artifact
from predictor.engine.calibrated import (
    OOD_BATCH_WIDEN,
    OOD_DTYPE_WIDEN,
    CalibratedHardware,
    regime_of,
)
from predictor.engine.lowering import torch_major
from predictor.engine.model_capture import check_args
from predictor.engine.physics import Stack, evaluate
from predictor.engine.predict import DEFAULT_TRAIN_OPTIMIZER, DTYPES, MODES, OPTIMIZERS
from predictor.search.generators import ConvStackSpec, EncoderSpec, MLPSpec
from predictor.search.nas_families import (
    col,
    convstack_work,
    encoder_work,
    left_aligned,
    mlp_work,
)
from predictor.search.nas_nb101 import (
    NB101Spec,
    check_nb101,
    nb101_work,
    pad_nb101,
    random_nb101_cells,
)
from predictor.search.nas_vectorised import VectorLowering, VectorWork
from profiling.errors import ExanteError
from profiling.model_refs import check_batch

__all__ = ["EnergyObjective", "EnergyScore", "NB101Spec", "random_nb101_cells",
           "optuna_objective", "FAMILY_LAYER_FAMILIES"]

#: lowering families (:func:`predictor.engine.rules.family_of`) each spec family's modules
#: contain: a family the artifact never measured sends the specs to the general path
FAMILY_LAYER_FAMILIES = {MLPSpec: ("gemm", "ew"), ConvStackSpec: ("conv", "ew", "view", "gemm"),
                         EncoderSpec: ("mha", "dropout", "ew", "ln", "gemm"),
                         NB101Spec: ("conv", "bn", "ew", "copy", "gemm")}


@dataclass
class EnergyScore:
    """Predicted energy (J, GPU board, per call of the whole batch) with its interval, time (s)."""

    energy_j: float
    energy_j_low: float
    energy_j_high: float
    time_s: float
    time_s_low: float
    time_s_high: float

    def __float__(self) -> float:
        return float(self.energy_j)


# ----------------------------------------------------------------------- the objective
# ----------------------------------------------------------------------- the objective
class EnergyObjective:
    """Predicted energy of a design, as a NAS objective (see the module docstring).

    ``mode``: "inference" | "train_step"; ``batch``: per call; ``dtype``: "fp32" | "bf16" |
    "fp16"; ``optimizer``: for train_step (default "sgd", as :func:`predictor.engine.predict`);
    ``input_shape``: per-sample shape for ``nn.Module`` designs (specs carry their own);
    ``memory_format``, ``grad_scaler``, ``torch_version``: as :func:`predictor.engine.predict`
    (fp16, channels_last and a scaler are priced by build + predict, not vectorised).
    """

    def __init__(self, hardware: str = "h100", mode: str = "train_step", batch: int = 32,
                 dtype: str = "fp32", optimizer: str | None = None, input_shape=None, *,
                 artifact_dir=None, memory_format: str = "contiguous",
                 grad_scaler: bool = False, torch_version: str | None = None):
        if mode not in MODES:
            raise ExanteError(f"unknown mode {mode!r}; accepted: {', '.join(MODES)}")
        if dtype not in DTYPES:
            raise ExanteError(f"unknown dtype {dtype!r}; accepted: {', '.join(DTYPES)}")
        if optimizer is not None and optimizer not in OPTIMIZERS:
            raise ExanteError(f"unknown optimizer {optimizer!r}; accepted: "
                              f"{', '.join(OPTIMIZERS)}")
        check_args(mode, dtype, optimizer, memory_format, grad_scaler, torch_version)
        self.hardware, self.mode, self.dtype = hardware, mode, dtype
        self.conditions: dict[str, Any] = {"memory_format": memory_format,
                                           "grad_scaler": grad_scaler,
                                           "torch_version": torch_version}
        self.batch = check_batch(batch)
        self.optimizer = None if mode == "inference" else (optimizer or DEFAULT_TRAIN_OPTIMIZER)
        self.input_shape = None if input_shape is None else tuple(int(x) for x in input_shape)
        self.artifact_dir = artifact_dir
        self._art = load_artifact(hardware, artifact_dir)
        self.model = self._art.model
        self.calls = {"vectorised": 0, "general": 0}

    # ------------------------------------------------------------- general path
    def general(self, model, input_shape=None) -> EnergyScore:
        """Build nothing new: ``predict`` the module (or a spec's built module)."""
        if hasattr(model, "build") and hasattr(model, "input_shape"):
            shape = model.input_shape
            with torch.device("meta"):
                model = model.build()
        else:
            shape = input_shape or self.input_shape
            if shape is None:
                raise ExanteError("an nn.Module design needs input_shape (per sample), given to "
                                  "EnergyObjective(...) or to the call")
        x = torch.zeros((self.batch, *shape), device="meta")
        p = engine_predict.predict(model, x, mode=self.mode, dtype=self.dtype,
                                   hardware=self.hardware, optimizer=self.optimizer,
                                   artifact_dir=self.artifact_dir, **self.conditions)
        self.calls["general"] += 1
        return EnergyScore(p.energy_j, p.energy_j_low, p.energy_j_high, p.time_s,
                           p.time_s_low, p.time_s_high)

    def __call__(self, design, input_shape=None) -> EnergyScore:
        if type(design) in FAMILY_LAYER_FAMILIES and self._vectorisable(type(design)):
            r = self.score_many([design])
            return EnergyScore(*(float(r[k][0]) for k in (
                "energy_j", "energy_j_low", "energy_j_high", "time_s", "time_s_low",
                "time_s_high")))
        return self.general(design, input_shape)

    # ------------------------------------------------------------- vectorised path
    def _vectorisable(self, family) -> bool:
        if not isinstance(self.model, CalibratedHardware):
            return False
        c = self.conditions
        if self.dtype == "fp16" or c["memory_format"] != "contiguous" or c["grad_scaler"]:
            return False                # priced by build + predict (the general path)
        seen = set(self.model.domain.get("families", ()))
        if not set(FAMILY_LAYER_FAMILIES[family]) <= seen:
            return False
        return not (family in (EncoderSpec, NB101Spec) and self.dtype != "fp32")

    def _need_vectorisable(self, family):
        if not isinstance(self.model, CalibratedHardware):
            raise ExanteError(f"the {self.hardware} artifact is not a physics model "
                              "(CalibratedHardware); use the general path (call on modules)")
        if not self._vectorisable(family):
            raise ExanteError(f"{family.__name__} specs at dtype {self.dtype} on "
                              f"{self.hardware} have no vectorised path (fp16, channels_last, a "
                              "grad scaler, bf16 encoder, or layer families the artifact never "
                              "measured, bf16 NAS-Bench-101); "
                              "call the objective on "
                              "each spec instead")

    def _lowering(self, n: int) -> VectorLowering:
        """The vectorised lowering of ``n`` designs at this objective's conditions."""
        return VectorLowering(VectorWork(n), self.mode, self.dtype,
                              torch_major(self.conditions["torch_version"]))

    def _price(self, stack: Stack) -> dict:
        ch: CalibratedHardware = self.model
        t, e, parts = evaluate(ch.model.theta_, stack, ch.datasheet, parts=True)
        power = e / np.maximum(t, 1e-15)
        # the regime as predict_workload decides it: the model's GPU vs host time on this GPU
        gpu = regime_of(parts["time_host_s"], parts["time_gpu_s"]) == "gpu"
        widen = 1.0
        dom = ch.domain
        if self.dtype not in dom.get("dtypes", ()):
            widen *= OOD_DTYPE_WIDEN
        lo, hi = dom.get("batch_range", (self.batch, self.batch))
        if self.batch > hi or self.batch < lo:
            widen *= 1.0 + OOD_BATCH_WIDEN * abs(math.log2(self.batch / (hi if self.batch > hi
                                                                          else lo)))
        out = {"time_s": t, "energy_j": e, "power_w": power}
        for target, v in (("time", t), ("energy", e)):
            h_all = ch.halfwidth[(target, "all")]
            h = np.where(gpu, ch.halfwidth.get((target, "gpu"), h_all),
                         ch.halfwidth.get((target, "host"), h_all)) * widen
            lo_key = "energy_j_low" if target == "energy" else "time_s_low"
            out[lo_key], out[lo_key.replace("low", "high")] = v * np.exp(-h), v * np.exp(h)
        self.calls["vectorised"] += len(t)
        return out

    def score_mlp(self, widths, in_features, out_features=1) -> dict:
        """Vectorised: ``widths`` (n_specs x max_depth, hidden widths, 0-padded at the end)."""
        self._need_vectorisable(MLPSpec)
        w = left_aligned(widths, "widths")
        n = len(w)
        L = self._lowering(n)
        parts = mlp_work(L, self.batch, w, col(in_features, n, "in_features"),
                     col(out_features, n, "out_features"))
        return self._price(L.finish(*parts, optimizer=self.optimizer))

    def score_convstack(self, filters, in_shape, kernel=3, out_features=1) -> dict:
        """Vectorised: ``filters`` (n_specs x max_depth, 0-padded); ``in_shape`` (C, H, W)
        shared; ``kernel`` odd, per spec or shared."""
        self._need_vectorisable(ConvStackSpec)
        f = left_aligned(filters, "filters")
        n = len(f)
        k = col(kernel, n, "kernel")
        if (k % 2 == 0).any():
            raise ExanteError("convstack kernels must be odd (same padding)")
        c, h, wd = (int(x) for x in in_shape)
        L = self._lowering(n)
        parts = convstack_work(L, self.batch, f, c, h * wd, k, col(out_features, n, "out"))
        return self._price(L.finish(*parts, optimizer=self.optimizer))

    def score_encoder(self, d, heads, layers, ffn, seq, out_features=2) -> dict:
        """Vectorised transformer encoders (fp32); arguments per spec or shared."""
        self._need_vectorisable(EncoderSpec)
        n = max(np.size(x) for x in (d, heads, layers, ffn, seq, out_features))
        cols = [col(x, n, name) for x, name in ((d, "d"), (heads, "heads"),
                                                 (layers, "layers"), (ffn, "ffn"),
                                                 (seq, "seq"), (out_features, "out"))]
        if (cols[0] % cols[1]).any():
            raise ExanteError("encoder d must be divisible by heads")
        L = self._lowering(n)
        d_, heads_, layers_, ffn_, seq_, out_ = cols
        parts = encoder_work(L, self.batch, d_, heads_, layers_, ffn_, seq_, out_,
                             fast_path=(self.mode == "inference"))
        return self._price(L.finish(*parts, optimizer=self.optimizer))

    def score_nb101(self, codes, adjacency) -> dict:
        """Vectorised NAS-Bench-101 networks (fp32): ``codes`` (n_specs x 7: 0 absent,
        1 conv3x3-bn-relu, 2 conv1x1-bn-relu, 3 maxpool3x3 on interior vertices 1..5; input 0,
        output 6) and ``adjacency`` (n_specs x 7 x 7), as :meth:`NB101Spec.padded` gives."""
        self._need_vectorisable(NB101Spec)
        c, m = check_nb101(codes, adjacency)
        L = self._lowering(len(c))
        return self._price(L.finish(*nb101_work(L, self.batch, c, m),
                                    optimizer=self.optimizer))

    def score_many(self, specs) -> dict:
        """Score specs of :mod:`predictor.search.generators` (any mix of families; each family
        vectorised where it can be, else the general path), results in the order given:
        arrays ``energy_j, energy_j_low, energy_j_high, time_s, time_s_low, time_s_high``."""
        specs = list(specs)
        keys = ("energy_j", "energy_j_low", "energy_j_high", "time_s", "time_s_low",
                "time_s_high")
        out = {k: np.zeros(len(specs)) for k in keys}
        groups: dict = {}
        for i, sp in enumerate(specs):
            groups.setdefault(type(sp), []).append(i)
        for fam, idx in groups.items():
            items = [specs[i] for i in idx]
            if fam in FAMILY_LAYER_FAMILIES and self._vectorisable(fam):
                r = self._score_family(fam, items)
            else:
                rs = [self.general(sp) for sp in items]
                r = {k: np.array([getattr(x, k) for x in rs]) for k in keys}
            for k in keys:
                out[k][idx] = r[k]
        return out

    def _score_family(self, fam, items) -> dict:
        if fam is MLPSpec:
            w = _pad([sp.widths for sp in items])
            return self.score_mlp(w, [sp.in_features for sp in items],
                                  [sp.out_features for sp in items])
        if fam is ConvStackSpec:
            r: dict = {}
            by_shape: dict = {}
            for j, sp in enumerate(items):
                by_shape.setdefault(sp.in_shape, []).append(j)
            for shape, js in by_shape.items():
                part = self.score_convstack(_pad([items[j].filters for j in js]), shape,
                                            [items[j].kernel for j in js],
                                            [items[j].out_features for j in js])
                for k, v in part.items():
                    r.setdefault(k, np.zeros(len(items)))[js] = v
            return r
        if fam is NB101Spec:
            return self.score_nb101(*pad_nb101(items))
        cols = np.array([(sp.d, sp.heads, sp.layers, sp.ffn, sp.seq, sp.out_features)
                         for sp in items]).T
        return self.score_encoder(*cols)



def _pad(rows) -> np.ndarray:
    m = max(len(r) for r in rows)
    a = np.zeros((len(rows), m), dtype=np.int64)
    for i, r in enumerate(rows):
        a[i, :len(r)] = r
    return a


# ----------------------------------------------------------------------------- Optuna
def optuna_objective(objective: EnergyObjective, suggest, accuracy):
    """A two-value Optuna objective ``trial -> (accuracy, predicted energy J)``.

    ``suggest(trial)`` returns a design (a spec or an ``nn.Module``); ``accuracy(design,
    trial)`` trains/evaluates it and returns the score to maximise.  The predicted energy,
    its interval and time are stored as trial user attributes.  Use with
    ``optuna.create_study(directions=["maximize", "minimize"])``."""

    def run(trial):
        design = suggest(trial)
        e = objective(design)
        for k, v in vars(e).items():
            trial.set_user_attr(k, float(v))
        if hasattr(design, "ref"):
            trial.set_user_attr("ref", design.ref)
        return float(accuracy(design, trial)), float(e.energy_j)

    return run
