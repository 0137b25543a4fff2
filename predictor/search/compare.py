"""Compare designs: predicted energy (with interval), time, parameters, FLOPs, kWh and CO2.

``compare(designs, input_shape, batch, ...)`` predicts every design with
:func:`predictor.engine.predict.predict` on the same input shape, batch, mode and dtype and ranks them
by predicted energy.  Each design is a MODEL_REF string, an ``nn.Module`` or a spec of
:mod:`predictor.search.generators`.  With ``epochs`` and ``dataset_size`` the kWh and CO2 columns are
those of a whole training run (:func:`predictor.carbon.lifecycle.estimate`: ``train_step`` at ``batch``
with ``optimizer``, PUE, grid intensity) and the ranking follows the run's energy; without
them they are one call of ``mode`` (× PUE).

Ranking and intervals: designs are sorted by the central prediction; two designs whose
(nominal 90 %) intervals overlap are put in the same *tie group* and no ranking between them
is claimed.  The intervals of one predictor are correlated (its systematic errors move all
designs together), so a tie is a conservative statement, never a measured equality.

``exante compare REF REF ... --input 100 --batch 32 [--mode] [--epochs --dataset-size]
[--plot FILE.png|.svg] [--json]`` is the command line (:mod:`predictor.cli.compare`;
``--json``: ``{"designs": [...]}`` in the order given).
"""

from __future__ import annotations

import logging
import math
import os
import warnings
from dataclasses import asdict, dataclass, field

from predictor.carbon import lifecycle
from predictor.carbon import regions as carbon
from predictor.carbon.interval_fields import flat, interval_ends
from predictor.engine.interval import Interval
from predictor.engine.prediction import conditions_text
from profiling.errors import ExanteError

__all__ = ["compare", "Comparison", "DesignRow", "check_plot_path"]

log = logging.getLogger(__name__)


@dataclass
class DesignRow:
    """One design's predictions, each quantity an :class:`Interval`: ``energy`` (J per call
    of the whole batch), ``time`` (s per call), ``facility_energy`` (kWh of one call, or of
    the training run, × PUE) and ``co2`` (kg CO2eq of the same); ``run_energy_j`` (J of the
    training run, GPU board).  The flat attributes (``energy_j``, ``energy_j_low``, ...,
    ``kwh``, ``co2_kg_high``) read the intervals; ``to_dict`` gives the flat JSON form."""

    ref: str
    energy: Interval                  # J per call of the whole batch
    time: Interval                    # s per call
    power_w: float                    # W, average over the call
    params: int
    flops: float                      # per call of the whole batch (forward, feature FLOPs)
    facility_energy: Interval         # kWh incl. PUE (the run's with a training run)
    co2: Interval                     # kg CO2eq of the same
    run_energy_j: float | None = None
    memory_gb: float | None = None    # estimated peak GPU memory of one call (GiB)
    rank: int = 0                     # 1 = least energy (by the ranking quantity)
    tie_group: int = 0                # designs sharing a group: intervals overlap
    warnings: list = field(default_factory=list)

    energy_j, energy_j_low, energy_j_high = interval_ends("energy")
    time_s, time_s_low, time_s_high = interval_ends("time")
    kwh, kwh_low, kwh_high = interval_ends("facility_energy")
    co2_kg, co2_kg_low, co2_kg_high = interval_ends("co2")

    def to_dict(self) -> dict:
        """JSON-ready dict with the intervals flat (``energy_j``, ``energy_j_low`` ...)."""
        return {"ref": self.ref, **flat("energy_j", self.energy), **flat("time_s", self.time),
                "power_w": self.power_w, "params": self.params, "flops": self.flops,
                **flat("kwh", self.facility_energy), **flat("co2_kg", self.co2),
                "run_energy_j": self.run_energy_j, "memory_gb": self.memory_gb,
                "rank": self.rank, "tie_group": self.tie_group,
                "warnings": list(self.warnings)}


@dataclass
class Comparison:
    """Designs predicted on the same input, batch, mode and dtype, ranked by energy (per
    call, J, or of the training run, kWh); ``coverage`` is the intervals' nominal level."""

    designs: list                     # DesignRow, in the order given
    mode: str
    dtype: str
    batch: int
    optimizer: str | None
    hardware: str
    input_shape: tuple
    ranked_by: str                    # "energy_j" (per call) or "run_energy_j"
    run: dict | None                  # epochs, dataset_size, pue, grid
    pue: float
    grid: str
    coverage: float
    notes: list = field(default_factory=list)
    memory_format: str = "contiguous"
    grad_scaler: bool = False
    torch_version: str | None = None

    def ranked(self) -> list:
        """The rows in rank order (1 = least energy)."""
        return sorted(self.designs, key=lambda r: (r.rank, r.ref))

    def overlaps(self) -> list[tuple[str, str]]:
        """Pairs of designs (in rank order) whose intervals overlap."""
        key = self._key()
        rows = self.ranked()
        out = []
        for i, a in enumerate(rows):
            for b in rows[i + 1:]:
                if _overlap(key(a), key(b)):
                    out.append((a.ref, b.ref))
        return out

    def _key(self):
        if self.ranked_by == "run_energy_j":
            return lambda r: (r.kwh_low, r.kwh_high)
        return lambda r: (r.energy_j_low, r.energy_j_high)

    def to_dict(self) -> dict:
        """JSON-ready dict: the settings, ``designs`` (in the order given, intervals flat)
        and ``overlapping_pairs``."""
        d = {k: v for k, v in asdict(self).items() if k != "designs"}
        d["designs"] = [r.to_dict() for r in self.designs]
        d["overlapping_pairs"] = [list(p) for p in self.overlaps()]
        return d

    def to_text(self) -> str:
        """The ranking as a text table (``exante compare``)."""
        pct = int(round(self.coverage * 100))
        opt = conditions_text(self.optimizer, self.memory_format, self.grad_scaler,
                              self.torch_version)
        head = (f"exante compare — {self.hardware}, {self.mode}, {self.dtype}, batch "
                f"{self.batch}{opt}, input {'x'.join(map(str, self.input_shape))}")
        if self.run:
            head += (f"; training run: {self.run['epochs']} epochs × {self.run['dataset_size']} "
                     f"samples")
        cols = ("rank", "design", f"energy/call ({pct} % interval)", "time/call", "params",
                "GFLOPs/call", "kWh" + (" (run)" if self.run else " (call)"), "kg CO2eq")
        rows = []
        for r in self.ranked():
            rows.append((f"{r.rank}{'=' if self._tied(r) else ''}", r.ref,
                         f"{_j(r.energy_j)} [{_j(r.energy_j_low)}–{_j(r.energy_j_high)}]",
                         _s(r.time_s), f"{r.params:,}", f"{r.flops / 1e9:.3g}",
                         f"{r.kwh:.3g}", f"{r.co2_kg:.3g}"))
        w = [max(len(c) for c in col) for col in zip(cols, *rows, strict=True)]
        line = lambda cells: "  ".join(c.ljust(n) for c, n in zip(cells, w, strict=True)).rstrip()  # noqa: E731
        out = [head, "", line(cols), line(tuple("-" * n for n in w))] + [line(r) for r in rows]
        groups: dict[int, list[str]] = {}
        for r in self.designs:
            groups.setdefault(r.tie_group, []).append(r.ref)
        ties = [g for g in groups.values() if len(g) > 1]
        out.append("")
        if ties:
            for g in ties:
                out.append("intervals overlap, no ranking claimed between: " + ", ".join(g))
        else:
            out.append(f"no two {pct} % intervals overlap: the ranking is claimed")
        out.append(f"ranked by {'training-run energy' if self.run else 'energy per call'}; "
                   f"kWh include PUE {self.pue:g}; CO2 at {self.grid}")
        out += [f"note: {n}" for n in self.notes]
        return "\n".join(out)

    def _tied(self, row) -> bool:
        return sum(1 for r in self.designs if r.tie_group == row.tie_group) > 1

    def plot(self, path: str) -> str:
        """Energy per design with its interval (PNG or SVG by extension); returns ``path``."""
        try:
            import matplotlib
            matplotlib.use("Agg")
            import matplotlib.pyplot as plt
        except ImportError:
            raise ExanteError("--plot needs matplotlib: pip install 'exante[plot]'") from None
        check_plot_path(path)
        rows = self.ranked()[::-1]
        run = self.ranked_by == "run_energy_j"
        val = [(r.kwh if run else r.energy_j) for r in rows]
        lo = [(r.kwh_low if run else r.energy_j_low) for r in rows]
        hi = [(r.kwh_high if run else r.energy_j_high) for r in rows]
        fig, ax = plt.subplots(figsize=(7.5, 0.45 * len(rows) + 1.6))
        colors = ["#1f77b4" if not self._tied(r) else "#ff7f0e" for r in rows]
        y = range(len(rows))
        ax.barh(y, val, color=colors, alpha=0.75)
        ax.errorbar(val, y, xerr=[[v - a for v, a in zip(val, lo, strict=True)], [b - v for v, b in zip(val, hi, strict=True)]],
                    fmt="none", ecolor="black", capsize=3, lw=1)
        ax.set_yticks(list(y), [r.ref for r in rows], fontsize=8)
        ax.set_xlabel(("training-run energy (kWh, incl. PUE)" if run else
                       "predicted energy per call (J, GPU board)")
                      + f" — {int(round(self.coverage * 100))} % interval")
        ax.set_title(f"{self.hardware}, {self.mode}, {self.dtype}, batch {self.batch}"
                     + ("  (orange: intervals overlap, no ranking)" if any(
                         self._tied(r) for r in rows) else ""), fontsize=9)
        fig.tight_layout()
        fig.savefig(path)
        plt.close(fig)
        return str(path)


def check_plot_path(path) -> str:
    """A ``--plot`` path that can be written: a .png/.svg file name in an existing, writable
    folder (one-line ``ExanteError`` otherwise)."""
    p = str(path)
    if not p.strip() or not p.lower().endswith((".png", ".svg")):
        raise ExanteError(f"--plot file must end in .png or .svg, got {p!r}")
    folder = os.path.dirname(os.path.abspath(p))
    if os.path.isdir(p):
        raise ExanteError(f"--plot {p!r} is a folder; give a file name ending in .png or .svg")
    if not os.path.isdir(folder):
        raise ExanteError(f"--plot folder {folder!r} does not exist")
    if not os.access(folder, os.W_OK):
        raise ExanteError(f"--plot folder {folder!r} is not writable")
    return p


def _overlap(a, b) -> bool:
    return a[0] <= b[1] and b[0] <= a[1]


def _j(v):
    v = float(v)
    for div, unit in ((1e6, "MJ"), (1e3, "kJ"), (1.0, "J"), (1e-3, "mJ")):
        if abs(v) >= div:
            return f"{v / div:.3g} {unit}"
    return f"{v / 1e-6:.3g} µJ"


def _s(v):
    v = float(v)
    for div, unit in ((1.0, "s"), (1e-3, "ms")):
        if abs(v) >= div:
            return f"{v / div:.3g} {unit}"
    return f"{v / 1e-6:.3g} µs"


def _label_and_model(design):
    """(label, module on meta) of a MODEL_REF, an nn.Module or a generators spec."""
    from torch import nn

    from profiling.model_refs import resolve_model_on_meta

    if isinstance(design, str):
        return design, resolve_model_on_meta(design)
    if isinstance(design, nn.Module):
        return type(design).__name__, design
    if hasattr(design, "build") and hasattr(design, "ref"):
        import torch
        with torch.device("meta"):
            return design.ref, design.build()
    raise ExanteError(f"a design must be a MODEL_REF string, an nn.Module or a spec of "
                      f"predictor.search.generators; got {type(design).__name__}")


def compare(designs, input_shape, batch: int, mode: str = "inference", dtype: str = "fp32",
            optimizer: str | None = None, hardware: str = "h100", *, epochs=None,
            dataset_size=None, pue: float | None = None, region: str | None = None,
            intensity=None, artifact_dir=None, memory_format: str = "contiguous",
            grad_scaler: bool = False, torch_version: str | None = None) -> Comparison:
    """Predict and rank ``designs`` (see the module docstring): per design the energy (J per
    call), time (s per call), kWh (× ``pue``) and kg CO2eq, each with its interval, of one call
    or, with ``epochs`` and ``dataset_size`` (samples), of the training run.  ``input_shape``:
    per sample (``"3x224x224"``, ``100`` or a tuple); ``batch``: per call.  ``memory_format``,
    ``grad_scaler`` (train_step) and ``torch_version`` as in :func:`predictor.engine.predict`."""
    import torch

    from predictor.engine.model_capture import check_args
    from predictor.engine.predict import DTYPES, MODES, predict
    from profiling.model_refs import check_batch, parse_input_shape

    designs = list(designs)
    if len(designs) < 2:
        raise ExanteError(f"compare needs at least two designs, got {len(designs)}")
    if mode not in MODES:
        raise ExanteError(f"unknown mode {mode!r}; accepted: {', '.join(MODES)}")
    if dtype not in DTYPES:
        raise ExanteError(f"unknown dtype {dtype!r}; accepted: {', '.join(DTYPES)}")
    # a gradient scaler acts on training: the per-call mode, or the training run's steps
    check_args("train_step" if epochs is not None else mode, dtype, None, memory_format,
               grad_scaler, torch_version)
    shape = (parse_input_shape(input_shape) if isinstance(input_shape, str) else
             tuple(int(d) for d in ((input_shape,) if isinstance(input_shape, int)
                                    else input_shape)))
    if not shape or min(shape) < 1:
        raise ExanteError(f"input_shape must be positive per-sample dims, got {input_shape!r}")
    batch = check_batch(batch)
    if (epochs is None) != (dataset_size is None):
        raise ExanteError("give both --epochs and --dataset-size for a training run, or neither")
    pue = carbon.DEFAULT_PUE if pue is None else float(pue)
    if not math.isfinite(pue) or pue < 1:
        raise ExanteError(f"pue must be a number >= 1, got {pue!r}")
    grid = carbon.resolve_intensity(region, intensity)
    opt = optimizer if mode == "train_step" else None
    if mode == "train_step" and opt is None:
        opt = "adam" if epochs is not None else "sgd"
    run = None
    if epochs is not None:
        run = lifecycle.TrainingRun(epochs, dataset_size, batch, optimizer or "adam", dtype,
                                    grad_scaler=grad_scaler)
    scaled = grad_scaler and mode == "train_step"
    notes: list[str] = []
    rows: list[DesignRow] = []
    cov = 0.9
    labels: set[str] = set()
    for d in designs:
        label, model = _label_and_model(d)
        if label in labels:
            label = f"{label}#{len(rows) + 1}"
        labels.add(label)
        log.info("predicting design %d of %d: %s", len(rows) + 1, len(designs), label)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            p = predict(model, torch.zeros((batch, *shape), device="meta"), mode=mode,
                        dtype=dtype, hardware=hardware, optimizer=opt,
                        artifact_dir=artifact_dir, memory_format=memory_format,
                        torch_version=torch_version, grad_scaler=scaled)
        cov = p.coverage
        params = int(sum(t.numel() for t in {id(t): t for t in model.parameters()}.values()))
        flops = float(sum(r["count"] * r.get("features", {}).get("flops", 0) for r in p.layers))
        warn = list(dict.fromkeys(list(p.warnings) + [str(w.message) for w in caught]))
        if run is not None:
            rep = lifecycle.estimate(lifecycle.Scenario(
                model, shape, training=run, pue=pue,
                intensity_g_per_kwh=grid.value_g_per_kwh, hardware=hardware,
                memory_format=memory_format, torch_version=torch_version),
                predict_fn=lambda *a, **k: predict(*a, artifact_dir=artifact_dir, **k))
            kwh, co2 = rep.total_facility_energy, rep.co2
            run_e = rep.total_energy_j
        else:
            ends = [carbon.to_kwh(v) * pue for v in (p.energy_j, p.energy_j_low,
                                                     p.energy_j_high)]
            kwh = Interval(ends[0], ends[1], ends[2], cov)
            co2s = [carbon.co2_kg(k, grid) for k in ends]
            co2 = Interval(co2s[0], co2s[1], co2s[2], cov)
            run_e = None
        rows.append(DesignRow(label, Interval(p.energy_j, p.energy_j_low, p.energy_j_high, cov),
                              Interval(p.time_s, p.time_s_low, p.time_s_high, cov), p.power_w,
                              params, flops, kwh, co2, run_energy_j=run_e,
                              memory_gb=p.memory_gb, warnings=warn))
    ranked_by = "run_energy_j" if run is not None else "energy_j"
    _rank(rows, ranked_by)
    if run is not None:
        notes.append(f"training run: train_step at batch {batch}, optimizer {run.optimizer}, "
                     f"{run.epochs} epochs of ceil({run.dataset_size}/{batch}) steps "
                     "(predictor.carbon.lifecycle); data loading and evaluation not included")
    return Comparison(rows, mode, dtype, batch, opt, hardware, shape, ranked_by,
                      None if run is None else {"epochs": run.epochs,
                                                "dataset_size": run.dataset_size},
                      pue, grid.label, cov, notes, memory_format, grad_scaler,
                      torch_version)


def _rank(rows: list, by: str) -> None:
    """Rank by the central value; chain designs whose intervals overlap into tie groups."""
    if by == "run_energy_j":
        key = lambda r: (r.kwh_low, r.kwh, r.kwh_high)  # noqa: E731
    else:
        key = lambda r: (r.energy_j_low, r.energy_j, r.energy_j_high)  # noqa: E731
    order = sorted(rows, key=lambda r: key(r)[1])
    group, hi = 0, -math.inf
    for i, r in enumerate(order, 1):
        lo, _, h = key(r)
        if lo > hi:
            group += 1
            hi = h
        else:
            hi = max(hi, h)
        r.rank, r.tie_group = i, group
