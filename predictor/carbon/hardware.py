"""Hardware catalogue: one resolved row per device with datasheet numbers and their sources.

Data: ``predictor/data/hardware.csv`` (package data, loaded with ``importlib.resources``);
what each value is and where it came from is in ``predictor/data/README.md``.

Units: ``tdp_w``, ``idle_w``, ``measured_idle_w`` in W; ``peak_tflops`` in dense TFLOP/s
(TOP/s for ``int8``) per device — tensor-core rates for ``tf32``/``fp16``/``bf16``/``fp8``/``int8``,
never the 2:4-sparsity figures; ``memory_gb`` in GB; ``mem_bw_gbs`` in GB/s.

>>> from predictor.carbon.hardware import lookup
>>> lookup("NVIDIA H100 80GB HBM3").peak_tflops["bf16"]
989.5
"""

from __future__ import annotations

import csv
import difflib
import io
import re
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources
from types import MappingProxyType
from typing import Mapping

from profiling.errors import ExanteError

DTYPES = ("fp64", "fp32", "tf32", "fp16", "bf16", "fp8", "int8")
KINDS = ("gpu", "tpu", "cpu", "soc")
_SOURCE_FIELDS = {"tdp_w": "source_tdp", "idle_w": "source_idle",
                  "measured_idle_w": "source_measured_idle", "peak_tflops": "source_peak",
                  "memory_gb": "source_memory", "mem_bw_gbs": "source_memory",
                  "sm_count": "source_sm_clock", "boost_clock_mhz": "source_sm_clock"}
GENERATIONS = ("kepler", "maxwell", "pascal", "volta", "turing", "ampere", "ada", "hopper",
               "blackwell", "polaris", "cdna", "cdna2", "cdna3", "cdna4", "tpu", "")
# dtype a device lacks -> what the same training runs on it (stated in notes, never an error)
_DTYPE_FALLBACK = {"bf16": ("fp16",), "tf32": ("fp32",), "fp8": ("bf16", "fp16"),
                   "fp16": ("bf16",), "fp32": ("tf32",), "fp64": ("fp32",)}
_KEY_RE = re.compile(r"^[a-z0-9_-]+$")


@dataclass(frozen=True)
class HardwareSpec:
    """One device. ``None`` means no published figure (never zero)."""

    key: str                      # short id, the --hardware / --device value, e.g. "h100"
    name: str                     # canonical name, e.g. "H100 SXM"
    kind: str                     # "gpu" | "tpu" | "cpu" | "soc"
    vendor: str
    year: int | None
    tdp_w: float | None           # board / chip TDP (W)
    idle_w: float | None          # published idle power (W)
    measured_idle_w: float | None  # this project's own idle measurement (W), source in sources
    peak_tflops: Mapping[str, float]  # dtype -> dense peak TFLOP/s
    memory_gb: float | None
    mem_bw_gbs: float | None
    aliases: tuple[str, ...] = ()
    sm_count: int | None = None   # streaming multiprocessors (AMD: compute units)
    boost_clock_mhz: float | None = None
    generation: str = ""          # "volta", "ampere", "hopper", "cdna3", "tpu", ...
    sources: Mapping[str, str] = field(default_factory=dict)  # field -> source text
    notes: str = ""

    def peak(self, dtype: str) -> float:
        """Dense peak TFLOP/s for ``dtype``; ExanteError naming what is published if absent."""
        d = str(dtype).strip().lower()
        if d not in DTYPES:
            raise ExanteError(f"unknown dtype {dtype!r}; accepted: {', '.join(DTYPES)}")
        if d not in self.peak_tflops:
            have = ", ".join(self.peak_tflops) or "none"
            raise ExanteError(f"{self.name} has no published {d} peak; published: {have}")
        return self.peak_tflops[d]

    def training_dtype(self, dtype: str) -> tuple[str, str | None]:
        """``(dtype the device runs, note or None)``: a dtype the device lacks falls back to
        the one mixed-precision training uses there (bf16 on a V100 -> fp16), never an error."""
        d = str(dtype).strip().lower()
        if d not in DTYPES:
            raise ExanteError(f"unknown dtype {dtype!r}; accepted: {', '.join(DTYPES)}")
        if d in self.peak_tflops:
            return d, None
        cands = [a for a in (*_DTYPE_FALLBACK.get(d, ()), "fp32") if a in self.peak_tflops]
        if cands:   # the fastest of what that training could run as (fp32 on consumer Pascal)
            alt = max(cands, key=lambda a: self.peak_tflops[a])
            return alt, (f"{self.name} has no {d} peak ({self.generation or 'this device'}); "
                         f"its {alt} rate is used, what {d} training would run as there")
        have = ", ".join(self.peak_tflops) or "none"
        raise ExanteError(f"{self.name} has no published peak for {d} or a fallback "
                          f"(published: {have}); pass --mfu with --power-w and --gpu-hours")

    def to_dict(self) -> dict:
        """JSON-ready dict of the row (W, TFLOP/s, GB, GB/s, MHz) with its sources."""
        return {"key": self.key, "name": self.name, "kind": self.kind, "vendor": self.vendor,
                "year": self.year, "tdp_w": self.tdp_w, "idle_w": self.idle_w,
                "measured_idle_w": self.measured_idle_w, "peak_tflops": dict(self.peak_tflops),
                "memory_gb": self.memory_gb, "mem_bw_gbs": self.mem_bw_gbs,
                "aliases": list(self.aliases), "sm_count": self.sm_count,
                "boost_clock_mhz": self.boost_clock_mhz, "generation": self.generation,
                "sources": dict(self.sources), "notes": self.notes}


def _num(text: str | None) -> float | None:
    text = (text or "").strip()
    return float(text) if text else None


def _norm(name: str) -> str:
    """Case-, space-, dash- and underscore-insensitive form used for matching."""
    return re.sub(r"[\s_\-]+", "", str(name).strip().lower())


def _row_to_spec(row: dict, line: int) -> HardwareSpec:
    key = row["key"].strip()
    if not _KEY_RE.match(key):
        raise RuntimeError(f"hardware.csv line {line}: bad key {key!r}")  # pragma: no cover
    if row["kind"] not in KINDS:
        raise RuntimeError(f"hardware.csv line {line}: bad kind {row['kind']!r}")  # pragma: no cover
    peaks: dict[str, float] = {}
    for d in DTYPES:
        v = _num(row[d])
        if v is not None:
            peaks[d] = v
    values = {"tdp_w": _num(row["tdp_w"]), "idle_w": _num(row["idle_w"]),
              "measured_idle_w": _num(row["measured_idle_w"]),
              "memory_gb": _num(row["memory_gb"]),
              "mem_bw_gbs": _num(row["mem_bw_gbs"]), "sm_count": _num(row.get("sm_count")),
              "boost_clock_mhz": _num(row.get("boost_clock_mhz"))}
    given = {**{k: v is not None for k, v in values.items()}, "peak_tflops": bool(peaks)}
    sources = {}
    for fld, col in _SOURCE_FIELDS.items():
        src = (row.get(col) or "").strip()
        if given[fld]:
            if not src:
                raise RuntimeError(  # pragma: no cover - guarded by tests
                    f"hardware.csv line {line} ({key}): {fld} has a value but no {col}")
            sources[fld] = src
    gen = (row.get("generation") or "").strip()
    if gen not in GENERATIONS:
        raise RuntimeError(f"hardware.csv line {line}: bad generation {gen!r}")  # pragma: no cover
    year = _num(row["year"])
    return HardwareSpec(
        key=key, name=row["name"].strip(), kind=row["kind"], vendor=row["vendor"].strip(),
        year=int(year) if year is not None else None, tdp_w=values["tdp_w"],
        idle_w=values["idle_w"], measured_idle_w=values["measured_idle_w"],
        peak_tflops=MappingProxyType(peaks), memory_gb=values["memory_gb"],
        mem_bw_gbs=values["mem_bw_gbs"],
        aliases=tuple(a.strip() for a in row["aliases"].split("|") if a.strip()),
        sm_count=int(values["sm_count"]) if values["sm_count"] is not None else None,
        boost_clock_mhz=values["boost_clock_mhz"], generation=gen,
        sources=MappingProxyType(sources), notes=(row.get("notes") or "").strip())


@lru_cache(maxsize=None)
def catalogue() -> tuple[HardwareSpec, ...]:
    """All devices, in file order (seed devices first, then data-centre GPUs, AMD, TPUs)."""
    text = resources.files("predictor.data").joinpath("hardware.csv").read_text(encoding="utf-8")
    specs = tuple(_row_to_spec(row, i) for i, row in
                  enumerate(csv.DictReader(io.StringIO(text)), start=2))
    _index(specs)  # fail at load time on an ambiguous alias
    return specs


def _index(specs: tuple[HardwareSpec, ...]) -> dict[str, HardwareSpec]:
    index: dict[str, HardwareSpec] = {}
    for spec in specs:
        for name in (spec.key, spec.name, *spec.aliases):
            n = _norm(name)
            if n in index and index[n] is not spec:
                raise RuntimeError(  # pragma: no cover - guarded by tests
                    f"hardware.csv: name {name!r} names both {index[n].key} and {spec.key}")
            index[n] = spec
    return index


@lru_cache(maxsize=None)
def _lookup_index() -> dict[str, HardwareSpec]:
    return _index(catalogue())


def keys() -> tuple[str, ...]:
    """The short ids (``--device`` values) of every device."""
    return tuple(s.key for s in catalogue())


def close_matches(name: str, n: int = 6) -> list[str]:
    """Catalogue keys whose key, name or alias is close to ``name`` (difflib), best first:
    for 'unknown hardware' errors anywhere (``--hardware h1000`` -> h100, ...)."""
    index = _lookup_index()
    close = difflib.get_close_matches(_norm(name), list(index), n=3 * n, cutoff=0.6)
    return list(dict.fromkeys(index[c].key for c in close))[:n]


#: a GeForce/RTX model number without its brand ("5090", "3080ti", "pro6000maxq", "a6000")
_BARE_RTX = re.compile(r"^(\d{4}|pro\d{4}|a\d{4})")


def _candidates(n: str) -> list[str]:
    """Normalised names to try for ``n``: itself; without a leading ``nvidia``/``geforce``
    ("NVIDIA L40S", "GeForce RTX 3090"); a bare RTX model number with ``rtx`` in front
    ("5090" -> "rtx5090", "pro6000maxq" -> "rtxpro6000maxq", as timm's file names write them)."""
    out = [n]
    for pre in ("nvidia", "geforce"):
        if out[-1].startswith(pre):
            out.append(out[-1][len(pre):])
    if _BARE_RTX.match(out[-1]):
        out.append("rtx" + out[-1])
    return out


def lookup(name: str) -> HardwareSpec:
    """Resolve a device by key, canonical name or alias, ignoring case, spaces, ``-`` and ``_``
    (``"h100"``, ``"H100 SXM"``, ``"NVIDIA H100 80GB HBM3"`` — what NVML reports — all work;
    so does a bare RTX model number, ``"5090"`` or ``"pro6000maxq"``, as file names write it).

    Returns the catalogue row: ``tdp_w`` (W), ``peak_tflops`` (dense TFLOP/s per dtype),
    ``memory_gb`` (GB), ``mem_bw_gbs`` (GB/s), each with its source.  Raises
    :class:`ExanteError` naming the input, close matches and the known keys.
    """
    if isinstance(name, HardwareSpec):
        return name
    if not isinstance(name, str) or not name.strip():
        raise ExanteError(f"device must be a non-empty name like 'h100' or 'V100', got {name!r}")
    index = _lookup_index()
    for n in _candidates(_norm(name)):
        if n in index:
            return index[n]
    close_keys = close_matches(name, 8)
    hint = f"close matches: {', '.join(close_keys)}; " if close_keys else ""
    raise ExanteError(f"unknown device {name!r}; {hint}accepted: a catalogue key, name or "
                      f"nvidia-smi name ({len(keys())} devices: exante calc --list-hardware)")


def catalogue_table(kind: str | None = None) -> str:
    """The catalogue as a fixed-width text table (key, name, generation, SMs, boost MHz, TDP W,
    dense fp16 / bf16 TFLOP/s, memory GB, GB/s), for any command's ``--list-hardware``."""
    def f(v, fmt="g"):
        return "-" if v is None else format(v, fmt)
    head = (f"{'key':20s} {'name':44s} {'gen':9s} {'SMs':>4s} {'MHz':>5s} {'TDP W':>6s} "
            f"{'fp16':>7s} {'bf16':>7s} {'GB':>5s} {'GB/s':>6s}")
    lines = [head]
    for s in catalogue():
        if kind is not None and s.kind != kind:
            continue
        lines.append(f"{s.key:20s} {s.name[:44]:44s} {s.generation or '-':9s} "
                     f"{f(s.sm_count):>4s} {f(s.boost_clock_mhz):>5s} {f(s.tdp_w):>6s} "
                     f"{f(s.peak_tflops.get('fp16')):>7s} {f(s.peak_tflops.get('bf16')):>7s} "
                     f"{f(s.memory_gb):>5s} {f(s.mem_bw_gbs):>6s}")
    return "\n".join(lines)
