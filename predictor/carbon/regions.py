"""Carbon factors: grid intensity by region, hardware TDP, energy sources, everyday equivalents.

Every number here comes from package data in ``predictor/data/*.csv`` (loaded with
``importlib.resources``, like codecarbon does); each row carries a ``source`` column naming the
seed paper and its table. See ``predictor/data/README.md`` for what was transcribed and what
was left out.

Conversions (seed 000 Eq. 1, seed 004 §3.8): ``CO2eq = energy × grid intensity``;
``co2_kg(energy_kwh, intensity) = energy_kwh × g_per_kwh / 1000``.

Defaults documented here and used by :mod:`predictor.carbon.lifecycle`:

- :data:`DEFAULT_PUE` = 1.58 — the average data-centre PUE in 2020 per the Uptime Institute,
  quoted by seed 004 §3.4 ([34]). (Seed 002 §3.2 quotes 1.59 as the global average and 1.10 for
  Google's fleet; seed 001 quotes 1.1 for Google Cloud.)
- :data:`DEFAULT_INTENSITY_KEY` = ``"location:world"`` — 475 gCO2eq/kWh, the average global
  carbon intensity quoted by seed 000 §4.1; used when neither a region nor a value is given.
- :data:`GPU_SHARE_OF_SERVER` = 0.74 — the GPU's share of a training server's draw (GPU + CPUs +
  DRAM) measured while training BERT-base on one TITAN X (seed 002 Table 1: 187.14 W of
  251.69 W). Optional, off by default: divide GPU energy by it to approximate the whole server.
"""

from __future__ import annotations

import csv
import difflib
import io
import math
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources

from predictor.carbon.hardware import catalogue
from profiling.errors import ExanteError

DEFAULT_PUE = 1.58
PUE_SOURCE = ("seed 004 (Gitzel et al. 2023) §3.4: average data-centre PUE in 2020 per the "
              "Uptime Institute [34]")
DEFAULT_INTENSITY_KEY = "location:world"
GPU_SHARE_OF_SERVER = 0.74
GPU_SHARE_SOURCE = ("seed 002 (Dodge et al. 2022) Table 1: GPU = 74 % of GPU+CPU+DRAM draw "
                    "training BERT-base on one TITAN X (187.14 W of 251.69 W)")
J_PER_KWH = 3.6e6

_DATA_PACKAGE = "predictor.data"


@dataclass(frozen=True)
class GridIntensity:
    """A grid carbon intensity with where it came from."""

    value_g_per_kwh: float
    label: str
    source: str

    def to_dict(self) -> dict:
        """JSON-ready dict (gCO2eq/kWh, label, source)."""
        return {"g_co2eq_per_kwh": self.value_g_per_kwh, "label": self.label,
                "source": self.source}


def _read_csv(name: str) -> tuple[dict, ...]:
    text = resources.files(_DATA_PACKAGE).joinpath(name).read_text(encoding="utf-8")
    rows = tuple(csv.DictReader(io.StringIO(text)))
    for i, row in enumerate(rows, start=2):
        if not (row.get("source") or "").strip():
            raise RuntimeError(f"package data {name} line {i} has no source")  # pragma: no cover
    return rows


def _num(value: str) -> float | None:
    value = (value or "").strip()
    return float(value) if value else None


REGION_FILES = ("grid_intensity_regions.csv", "grid_intensity_codecarbon.csv")
ENERGY_SOURCE_ALIASES = {"gas": "natural gas", "natural-gas": "natural gas", "naturalgas": "natural gas",
                         "hydro": "hydroelectricity", "hydroelectric": "hydroelectricity"}


@lru_cache(maxsize=None)
def grid_regions() -> dict[str, dict]:
    """``{"aws:us-east-1": {provider, region, country, location, g_co2eq_per_kwh, source}, ...}``.

    From the seeds (``grid_intensity_regions.csv``): cloud regions of GCP and AWS (seed 001
    Appendix A) and a few named locations (``location:quebec``, ``location:iowa``,
    ``location:spain``, ``location:world``). Imported from codecarbon's package data by
    ``experiments/calculator/import_codecarbon_grid.py`` (``grid_intensity_codecarbon.csv``):
    ``azure:REGION``, ``country:NAME`` (national averages), ``us:average``,
    ``us-state:NAME`` (EPA eGRID2023) and ``ca-province:NAME``.
    """
    out = {}
    for name in REGION_FILES:
        for row in _read_csv(name):
            row = dict(row)
            row["g_co2eq_per_kwh"] = float(row["g_co2eq_per_kwh"])
            key = row.pop("key")
            if key in out:
                raise RuntimeError(f"grid region {key} appears twice")  # pragma: no cover
            out[key] = row
    return out


@lru_cache(maxsize=None)
def hardware_table() -> tuple[dict, ...]:
    """Rows ``{device, key, tdp_w, peak_tflops_fp32, peak_tflops_fp16, gflops_fp32_per_w,
    gflops_fp16_per_w, source}`` derived from the hardware catalogue
    (:func:`predictor.carbon.hardware.catalogue`, one resolved row per device); numbers as float,
    None where nothing is published. ``source`` names the TDP's source."""
    rows = []
    for spec in catalogue():
        fp32 = spec.peak_tflops.get("fp32")
        fp16 = spec.peak_tflops.get("fp16")
        tdp_w = spec.tdp_w

        def per_w(t, tdp_w=tdp_w):
            return round(t * 1000.0 / tdp_w, 2) if t is not None and tdp_w else None

        rows.append({"device": spec.name, "key": spec.key, "tdp_w": spec.tdp_w,
                     "peak_tflops_fp32": fp32, "peak_tflops_fp16": fp16,
                     "gflops_fp32_per_w": per_w(fp32), "gflops_fp16_per_w": per_w(fp16),
                     "source": spec.sources.get("tdp_w") or spec.sources.get("peak_tflops", "")})
    return tuple(rows)


@lru_cache(maxsize=None)
def energy_sources() -> dict[str, dict]:
    """``{"coal": {g_co2eq_per_kwh, n_models, low_carbon, source}, ...}`` (seed 000 Table 2)."""
    out = {}
    for row in _read_csv("energy_sources.csv"):
        row = dict(row)
        row["g_co2eq_per_kwh"] = float(row["g_co2eq_per_kwh"])
        row["n_models"] = int(row["n_models"])
        row["low_carbon"] = row["low_carbon"].strip().lower() == "yes"
        out[row.pop("energy_source")] = row
    return out


@lru_cache(maxsize=None)
def equivalents() -> tuple[dict, ...]:
    """EPA everyday equivalents (seed 002 §5.1): ``{key, label, unit, t_co2_per_unit, basis,
    source}``; ``t_co2_per_unit`` in metric tons of CO2 per unit, as the seed gives it."""
    rows = []
    for row in _read_csv("equivalents.csv"):
        row = dict(row)
        row["t_co2_per_unit"] = float(row["t_co2_per_unit"])
        rows.append(row)
    return tuple(rows)


def _check_intensity(value, what: str) -> float:
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise ExanteError(f"{what} must be a number of gCO2eq/kWh (>= 0), got {value!r}") from None
    if not math.isfinite(v) or v < 0:
        raise ExanteError(f"{what} must be a finite number of gCO2eq/kWh >= 0, got {value!r}")
    return v


def _normalise_key(region: str) -> str:
    return "-".join(region.strip().lower().replace("_", "-").split())


def grid_intensity(region: str | None = None,
                   intensity_g_per_kwh: float | None = None) -> GridIntensity:
    """Resolve a grid carbon intensity.

    - ``intensity_g_per_kwh`` given: that value, labelled "custom" (``region`` may name it).
    - ``region`` given: a key of :func:`grid_regions` such as ``"aws:us-east-1"``,
      ``"gcp:us-central1"`` or ``"location:quebec"``; a bare region name (``"us-east-1"``)
      is accepted when it is unambiguous.
    - neither: the world average (:data:`DEFAULT_INTENSITY_KEY`, seed 000 §4.1).
    """
    if intensity_g_per_kwh is not None:
        v = _check_intensity(intensity_g_per_kwh, "grid intensity")
        label = f"custom ({region})" if region else "custom"
        return GridIntensity(v, label, "user-supplied value")
    table = grid_regions()
    if region is None:
        row = table[DEFAULT_INTENSITY_KEY]
        return GridIntensity(row["g_co2eq_per_kwh"],
                             f"{DEFAULT_INTENSITY_KEY} (default: {row['location']})",
                             row["source"])
    if not isinstance(region, str) or not region.strip():
        raise ExanteError(f"region must be a string like 'aws:us-east-1', got {region!r}")
    key = _normalise_key(region)
    if key not in table:
        bare = [k for k in table if k.split(":", 1)[1] == key]
        if len(bare) == 1:
            key = bare[0]
        elif len(bare) > 1:
            raise ExanteError(f"ambiguous grid region {region!r}: it names {', '.join(bare)}; "
                              f"give one of these keys")
        else:
            close = bare or difflib.get_close_matches(key, list(table), n=5, cutoff=0.6)
            if not close:  # try matching the part after the provider prefix
                names = {k.split(":", 1)[1]: k for k in table}
                close = [names[n] for n in difflib.get_close_matches(
                    key.split(":")[-1], list(names), n=5, cutoff=0.6)]
            hint = f"close matches: {', '.join(close)}; " if close else ""
            raise ExanteError(
                f"unknown grid region {region!r}; {hint}accepted: provider:region keys "
                f"(aws:us-east-1, gcp:us-central1, azure:eastus), country:NAME, us:average, "
                f"us-state:NAME, ca-province:NAME or location:NAME (list: exante calc "
                f"--list-regions), or a custom value (intensity_g_per_kwh=; CLI: --intensity G|coal|gas|...)")
    row = table[key]
    return GridIntensity(row["g_co2eq_per_kwh"], f"{key} ({row['location']}, {row['country']})",
                         row["source"])


def energy_source_intensity(name: str) -> GridIntensity:
    """Average intensity of a main energy source (seed 000 Table 2): ``coal``, ``gas`` /
    ``natural gas``, ``hydro`` / ``hydroelectricity``, ``oil``, ``nuclear``."""
    table = energy_sources()
    key = " ".join(str(name).strip().lower().replace("_", " ").split())
    key = ENERGY_SOURCE_ALIASES.get(key.replace(" ", "-"), ENERGY_SOURCE_ALIASES.get(key, key))
    if key not in table:
        raise ExanteError(f"unknown energy source {name!r}; accepted: a number of gCO2eq/kWh or "
                          f"one of {', '.join(sorted(set(table) | set(ENERGY_SOURCE_ALIASES)))}")
    row = table[key]
    return GridIntensity(row["g_co2eq_per_kwh"], f"energy source: {key}", row["source"])


def resolve_intensity(region: str | None = None, intensity=None) -> GridIntensity:
    """``intensity`` as a number (gCO2eq/kWh) or an energy-source name (seed 000 Table 2), else
    the ``region`` (see :func:`grid_intensity`), else the world-average default."""
    if intensity is not None and region is not None:
        raise ExanteError("give a region or an intensity, not both")
    if isinstance(intensity, str):
        try:
            intensity = float(intensity)
        except ValueError:
            return energy_source_intensity(intensity)
    return grid_intensity(region, intensity)


def to_kwh(energy_j: float) -> float:
    """Joules → kWh (1 kWh = 3.6 MJ)."""
    return float(energy_j) / J_PER_KWH


def co2_kg(energy_kwh: float, intensity: GridIntensity | float) -> float:
    """kg CO2eq of ``energy_kwh`` at ``intensity`` (a :class:`GridIntensity` or g/kWh)."""
    g = intensity.value_g_per_kwh if isinstance(intensity, GridIntensity) else \
        _check_intensity(intensity, "grid intensity")
    return float(energy_kwh) * g / 1000.0


def everyday_equivalents(co2_kg: float) -> list[tuple[str, float, str, str]]:
    """``[(label, amount, unit, source), ...]``: how many of each EPA reference item
    (seed 002 §5.1) emit the same ``co2_kg``."""
    out = []
    for row in equivalents():
        out.append((row["label"], float(co2_kg) / (row["t_co2_per_unit"] * 1000.0),
                    row["unit"], row["source"]))
    return out
