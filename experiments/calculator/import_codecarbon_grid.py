"""Import grid carbon intensities from codecarbon's package data into
``predictor/data/grid_intensity_codecarbon.csv`` (every row with its source).

codecarbon (MIT licence, https://github.com/mlco2/codecarbon) ships the data as package files;
this script reads them straight from the wheels pip downloads, so nothing is typed by hand:

    pip download codecarbon==3.3.2 --no-deps -d /tmp/cc
    pip download codecarbon==1.2.0 --no-deps -d /tmp/cc
    python experiments/calculator/import_codecarbon_grid.py /tmp/cc

- ``country:NAME``  codecarbon 3.3.2 ``data/private_infra/global_energy_mix.json``:
  ``carbon_intensity`` (gCO2eq/kWh) per country with its ``year``.
- ``us:average`` and ``us-state:NAME``  codecarbon 3.3.2 ``data/private_infra/2023/usa_emissions.json``:
  EPA eGRID2023 annual CO2-equivalent total output emission rate (field STC2ERTA), lbs/MWh,
  converted with 1 lb = 0.45359237 kg (lbs/MWh × 0.45359237 = g/kWh).
- ``ca-province:NAME``  codecarbon 3.3.2 ``data/private_infra/2023/canada_energy_mix.json``:
  generation shares (%), turned into an intensity with codecarbon's own rule
  (``_region_energy_mix_to_emissions_rate``: coal 0.995725971, petroleum 0.8166885263, natural
  gas 0.7438415916 kg/kWh; other sources count as zero — so these are fossil-only figures).
- ``azure:REGION``  codecarbon 1.2.0 ``data/cloud/impact.csv``, the last releases shipping the
  Azure rows of the mlco2/impact data behind seed 001's (garbled) Azure table; each row keeps
  the original source the file names.
"""

from __future__ import annotations

import csv
import io
import json
import sys
import zipfile
from pathlib import Path

LB_TO_KG = 0.45359237
OUT = Path(__file__).resolve().parents[2] / "predictor" / "data" / "grid_intensity_codecarbon.csv"
FOSSIL_KG_PER_KWH = {"coal": 0.995725971, "petroleum": 0.8166885263, "naturalGas": 0.7438415916}


def _wheel(folder: Path, version: str) -> zipfile.ZipFile:
    matches = sorted(folder.glob(f"codecarbon-{version}-*.whl"))
    if not matches:
        sys.exit(f"no codecarbon-{version} wheel in {folder}: pip download codecarbon=={version} "
                 f"--no-deps -d {folder}")
    return zipfile.ZipFile(matches[0])


def _slug(name: str) -> str:
    return "-".join(name.strip().lower().replace(",", " ").replace("'", "").split())


def main(folder: str) -> None:
    folder = Path(folder)
    new, old = _wheel(folder, "3.3.2"), _wheel(folder, "1.2.0")
    rows = []
    cc = "codecarbon 3.3.2 (MIT)"

    mix = json.loads(new.read("codecarbon/data/private_infra/global_energy_mix.json"))
    for iso, d in sorted(mix.items(), key=lambda kv: kv[1]["country_name"]):
        if d.get("carbon_intensity") is None:
            continue
        rows.append({"key": f"country:{_slug(d['country_name'])}", "provider": "country",
                     "region": iso.lower(), "country": d["country_name"],
                     "location": f"{d['country_name']} (national grid, {d['year']})",
                     "g_co2eq_per_kwh": round(float(d["carbon_intensity"]), 3),
                     "source": f"{cc} data/private_infra/global_energy_mix.json, carbon_intensity "
                               f"for {iso}, year {d['year']}"})

    usa = json.loads(new.read("codecarbon/data/private_infra/2023/usa_emissions.json"))
    src = usa["_source"]
    for state, d in usa.items():
        if state.startswith("_"):
            continue
        g = round(float(d["emissions"]) * LB_TO_KG, 3)
        where = (f"{src['name']} ({src['field']}, {src['year']}): {d['emissions']} lbs/MWh x "
                 f"0.45359237, via {cc} data/private_infra/2023/usa_emissions.json")
        if state == "usa":
            rows.append({"key": "us:average", "provider": "us", "region": "average",
                         "country": "USA", "location": f"US national average ({src['year']})",
                         "g_co2eq_per_kwh": g, "source": where})
        else:
            rows.append({"key": f"us-state:{_slug(state)}", "provider": "us-state",
                         "region": d["regionCode"].lower(), "country": "USA",
                         "location": f"{state.title()} (state grid, {src['year']})",
                         "g_co2eq_per_kwh": g, "source": where})

    can = json.loads(new.read("codecarbon/data/private_infra/2023/canada_energy_mix.json"))
    for prov, d in sorted(can.items()):
        g = sum(d.get(k, 0.0) / d["total"] * v for k, v in FOSSIL_KG_PER_KWH.items()) * 1000.0
        rows.append({"key": f"ca-province:{_slug(prov)}", "provider": "ca-province",
                     "region": _slug(prov), "country": "Canada",
                     "location": f"{prov.title()} (province grid, 2023 mix; fossil share only)",
                     "g_co2eq_per_kwh": round(g, 3),
                     "source": f"{cc} data/private_infra/2023/canada_energy_mix.json shares x "
                               f"codecarbon's fossil factors (coal 995.7, petroleum 816.7, "
                               f"natural gas 743.8 g/kWh; others 0)"})

    text = old.read("codecarbon/data/cloud/impact.csv").decode("utf-8-sig")
    for r in csv.DictReader(io.StringIO(text)):
        if r["provider"] != "azure":
            continue
        orig = (r.get("source") or "").strip() or "no original source given"
        note = f"; comment: {r['comment'].strip()}" if (r.get("comment") or "").strip() else ""
        rows.append({"key": f"azure:{r['region']}", "provider": "azure", "region": r["region"],
                     "country": r["countryName"], "location": r["city"],
                     "g_co2eq_per_kwh": float(r["impact"]),
                     "source": f"codecarbon 1.2.0 (MIT) data/cloud/impact.csv (mlco2/impact "
                               f"data, as seed 001's Azure table); original: {orig}{note}"})

    keys = [r["key"] for r in rows]
    dup = {k for k in keys if keys.count(k) > 1}
    if dup:
        sys.exit(f"duplicate keys: {sorted(dup)}")
    cols = ["key", "provider", "region", "country", "location", "g_co2eq_per_kwh", "source"]
    with OUT.open("w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, cols, lineterminator="\n")
        w.writeheader()
        w.writerows(rows)
    print(f"wrote {len(rows)} rows to {OUT}")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "/tmp/cc")
