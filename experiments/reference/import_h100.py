"""Import the H100 reference measurements into ``datasets/h100/`` (never typed in by hand).

Source: ``shared/reference/h100/h100_reference.json`` ("H100 reference set,
shared/reference/h100"): 95 eager-PyTorch whole-model workloads on one NVIDIA H100 80GB HBM3
(driver 580.159.04, PyTorch 2.11.0+cu130, 2026-11-22), each measured in three sessions.

Writes, atomically and idempotently (rows of other sweeps are kept):

* ``models.csv``: one row per (workload, session) in the project's model-row schema, sweep id
  ``h100-reference``, meter ``nvml_energy_counter`` with the source's protocol in
  ``protocol_version``, the session's idle power, within-session spread and the per-session
  energy/time/power; ``spec`` holds the architecture, the source file and the workload key;
* ``workloads.jsonl``: the captured :class:`predictor.engine.workload.Workload` of each workload
  (layer configs with calls per forward, fast paths, parameter tensors;
  :func:`predictor.fit.datasets.attach_workloads`), so fitting needs neither torchvision nor timm;
* ``meta.json`` (sweep entry) and the dataset card ``README.md``.

Needs torchvision and timm to rebuild the vision models (no weights; built on ``meta``)::

    python experiments/reference/import_h100.py [--source PATH] [--out datasets/h100]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from predictor.engine.lowering import lower  # noqa: E402
from predictor.fit.datasets import attach_workloads, load_whole_model_data  # noqa: E402
from profiling.dataset import schema  # noqa: E402
from profiling.dataset.reference_set import reference_workloads  # noqa: E402
from profiling.features.api import layer_features  # noqa: E402
from profiling.model_refs import resolve_model_on_meta  # noqa: E402

SWEEP_ID = "h100-reference"
SOURCE_LABEL = "H100 reference set, shared/reference/h100"
PROTOCOL = ("h100-reference-2026-11-22: NVML total-energy counter polled every 2 ms by a "
            "thread, power = dE/dt between first and last counter change in the window; 0.3 s "
            "warm-up, 2 windows >= 1.2 s (sync every 8 calls), mean of the 2 windows; eager, "
            "cudnn.benchmark=False, default TF32 settings")
DTYPES = {"fp32": "fp32", "bf16-autocast": "bf16"}
OPTIMIZERS = {None: None, "sgd-momentum": "sgd", "adam": "adam", "adamw": "adamw"}


def default_source() -> Path:
    return ROOT.parent / "shared" / "reference" / "h100" / "h100_reference.json"


def workload_key(r: dict) -> str:
    return f"{r['model']}|{r['mode']}|{DTYPES[r['dtype']]}|b{r['batch']}"


def model_refs() -> dict:
    """Reference-set model name -> MODEL_REF (``profiling.dataset.reference_set``'s definitions)."""
    return {w["name"]: w["model_ref"] for w in reference_workloads()}


def _totals(w) -> dict:
    """Forward totals over the supported layer calls (sum of count x feature)."""
    t = {"params": 0, "macs": 0, "flops": 0, "bytes_read": 0, "bytes_written": 0}
    unsupported = []
    for wl in w.layers:
        try:
            f = layer_features(wl.config)
        except Exception:  # noqa: BLE001 - recorded by type (n_unsupported)
            unsupported.append(wl.config.type)
            continue
        for k in ("macs", "flops", "bytes_read", "bytes_written"):
            t[k] += int(f.get(k, 0)) * wl.count
        t["params"] += int(f.get("params", 0)) * (len(wl.names) if wl.names else 1)
    t["n_unsupported"] = len(unsupported)
    t["unsupported_types"] = json.dumps(sorted(set(unsupported)))
    return t


def build_rows(ref: dict) -> list[dict]:
    rows = []
    idle = ref["idle_power_w_runs"]
    cuda = ref["torch"].split("+cu")[-1] if "+cu" in ref["torch"] else None
    cuda = f"{cuda[:-1]}.{cuda[-1]}" if cuda else None
    refs = model_refs()
    n_params = {}
    for r in ref["rows"]:
        dtype, opt = DTYPES[r["dtype"]], OPTIMIZERS[r.get("optimizer")]
        wkey = workload_key(r)
        mref = refs[r["model"]]
        if mref not in n_params:
            n_params[mref] = sum(p.numel() for p in resolve_model_on_meta(mref).parameters())
        if n_params[mref] != r["params"]:
            raise SystemExit(f"{r['model']}: rebuilt model has {n_params[mref]} parameters, the "
                             f"reference says {r['params']}")
        for i in range(len(r["energy_j_runs"])):
            e, t = float(r["energy_j_runs"][i]), float(r["time_s_runs"][i])
            meas = {"time_s": t, "energy_j": e, "energy_dynamic_j": e - idle[i] * t,
                    "power_w": float(r["power_w_runs"][i]), "idle_power_w": float(idle[i]),
                    "spread": float(r["within_session_spread_runs"][i]), "n_windows": 2,
                    "meter": "nvml_energy_counter", "meter_measured": True}
            env = {"gpu_name": ref["gpu"], "driver": ref["driver"], "torch_version": ref["torch"],
                   "cuda_version": cuda, "allow_tf32_matmul": False, "allow_tf32_cudnn": True,
                   "date": ref["date"], "protocol_version": PROTOCOL,
                   "session_id": f"h100-reference-s{i + 1}"}
            spec = {"kind": r["kind"], "model_ref": mref, "arch": r.get("arch") or r.get("source"),
                    "input": r["input"], "workload": wkey, "source": SOURCE_LABEL,
                    "source_optimizer": r.get("optimizer"), "source_dtype": r["dtype"],
                    "mean_over_sessions": {"energy_j": r["energy_j"], "time_s": r["time_s"]}}
            rows.append(schema.model_row(
                key=f"{wkey}|s{i + 1}", model_ref=mref, family=r["model"], spec=spec,
                input_shape=r["input"], batch=int(r["batch"]), mode=r["mode"], dtype=dtype,
                optimizer=opt, measurement=meas, env=env, hardware="h100", layer_counts={},
                totals={"params": int(r["params"])}, sweep_id=SWEEP_ID, task_key=wkey))
    return rows


def add_layer_summaries(rows: list[dict], workloads: dict) -> None:
    """Fill each row's layer counts and totals from its captured workload."""
    for row in rows:
        w = workloads[row["task_key"]]
        counts: dict = {}
        for wl in w.layers:
            k = wl.config.key()
            counts[k] = counts.get(k, 0) + wl.count
        t = _totals(w)
        t.pop("params")
        row.update(t)
        row["layer_counts"] = json.dumps(counts, sort_keys=True, separators=(",", ":"))
        row["n_layer_calls"] = int(sum(counts.values()))
        row["n_distinct_layers"] = len(counts)
        unknown = lower(w).unknown
        if unknown:
            print(f"  note: {row['task_key']}: layer types without a lowering rule: {unknown}")


def write_rows(out: Path, rows: list[dict]) -> None:
    out.mkdir(parents=True, exist_ok=True)
    table = schema.model_table(out)
    keep = [r for r in (table.read(raw=True) if table.exists() else [])
            if r.get("sweep_id") != SWEEP_ID]
    fd, tmp = tempfile.mkstemp(dir=out, prefix=".models.", suffix=".csv")
    os.close(fd)
    os.unlink(tmp)
    t2 = schema.CsvTable(tmp, schema.MODEL_COLUMNS)
    t2.append(keep + rows)
    os.chmod(tmp, 0o644)
    os.replace(tmp, table.path)
    for lock in out.glob(".models.*.lock"):      # the temporary table's lock file
        lock.unlink(missing_ok=True)


def write_meta(out: Path, rows: list[dict], n_workloads: int, ref: dict, source: Path) -> None:
    def upd(meta):
        meta.setdefault("sweeps", {})[SWEEP_ID] = {
            "source": SOURCE_LABEL, "file": source.name, "gpu": ref["gpu"],
            "driver": ref["driver"], "torch": ref["torch"], "date": ref["date"],
            "n_workloads": n_workloads, "n_rows": len(rows),
            "sessions": 3, "idle_power_w_runs": ref["idle_power_w_runs"],
            "imported_by": "experiments/reference/import_h100.py"}
        return meta
    schema.update_meta(out, upd)
    os.chmod(out / schema.META_FILE, 0o644)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--source", type=Path, default=default_source())
    ap.add_argument("--out", type=Path, default=ROOT / "datasets" / "h100")
    a = ap.parse_args(argv)
    if not a.source.is_file():
        print(f"error: reference file {a.source} not found", file=sys.stderr)
        return 2
    ref = json.loads(a.source.read_text())
    rows = build_rows(ref)
    write_rows(a.out, rows)
    rep = attach_workloads(a.out, rebuild=True)
    if rep["skipped"]:
        print(f"error: could not capture {len(rep['skipped'])} workloads: {rep['skipped']}",
              file=sys.stderr)
        return 1
    data = load_whole_model_data(a.out)
    wls = dict(zip(data.frame["key"], data.workloads, strict=True))
    add_layer_summaries(rows, wls)
    write_rows(a.out, rows)
    write_meta(a.out, rows, len(wls), ref, a.source)
    print(f"imported {len(wls)} workloads, {len(rows)} session rows into {a.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
