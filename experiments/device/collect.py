#!/usr/bin/env python3
"""Merge what a lent-GPU call brought back into ``datasets/<hw>/`` (run it here, then commit).

    python experiments/device/collect.py /work/.device/<...>/files_at      # the run tool's files_at
    python experiments/device/collect.py SRC --datasets datasets --hardware h200

SRC holds the call's ``layers.csv``, ``models.csv``, ``tasks.csv`` and ``meta.json`` (any may be
missing). The hardware id comes from the rows (``--hardware`` must agree if given). Rows are
appended atomically to ``datasets/<hw>/`` unless already there: layers and models by
``(sweep_id, key)``, tasks by ``(sweep_id, key, status)``; so collecting the same files twice,
or two calls that both started from the same committed state, adds each measurement once.
``meta.json`` gains the call's sessions and calls; its sweep counts are recomputed. Then the
dataset card (``README.md``) is regenerated and ``plan.csv`` written: every task of the lent-GPU
plan's sweeps (and of any other sweep with rows) in measuring order with its state (``ok``,
``error`` or ``todo``), so anyone can see what the next lent GPU will measure.
"""

from __future__ import annotations

import argparse
import csv
import io
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

PLAN_SWEEPS = ("refset", "host-launch", "gpu-eff", "gpu-eff-tf32")  # h200_measure.py's default order, first part
PLAN_COLUMNS = ("order", "sweep_id", "key", "kind", "family", "mode", "dtype", "optimizer", "batch", "status",
                "session_id", "elapsed_s")


def _hardware(tables: dict, meta: dict, given: str | None) -> str:
    from profiling.errors import ExanteError

    ids = {r["hardware"] for name in ("layers", "models") for r in tables[name] if r.get("hardware")}
    if meta.get("hardware"):
        ids.add(meta["hardware"])
    if len(ids) > 1:
        raise ExanteError(f"the files hold several hardware ids {sorted(ids)}; collect one hardware at a time")
    if given and ids and given not in ids:
        raise ExanteError(f"--hardware {given!r} but the rows say {sorted(ids)[0]!r}")
    hw = given or (ids.pop() if ids else None)
    if not hw:
        raise ExanteError("no hardware id in the rows or meta.json; pass --hardware")
    if not all(c.isalnum() or c in "-_" for c in hw):
        raise ExanteError(f"bad hardware id {hw!r}: letters, digits, '-' and '_' only")
    return hw


def merge(src: str, datasets: str, hardware: str | None = None) -> dict:
    """Merge the files in ``src`` into ``datasets/<hw>``; returns counts of what was added."""
    from profiling.dataset import schema
    from profiling.errors import ExanteError

    if not os.path.isdir(src):
        raise ExanteError(f"{src} is not a folder (give the folder the device call's files were copied to)")
    t_src = {"layers": schema.layer_table(src), "models": schema.model_table(src), "tasks": schema.task_table(src)}
    tables = {k: t.read() for k, t in t_src.items()}
    meta = schema.read_json(os.path.join(src, schema.META_FILE), default={}) or {}
    if not any(tables.values()) and not meta:
        raise ExanteError(f"{src} holds none of {schema.LAYER_FILE}, {schema.MODEL_FILE}, {schema.TASK_FILE}, "
                          f"{schema.META_FILE}")
    hw = _hardware(tables, meta, hardware)
    dest = os.path.join(datasets, hw)
    os.makedirs(dest, exist_ok=True)
    t_dst = {"layers": schema.layer_table(dest), "models": schema.model_table(dest), "tasks": schema.task_table(dest)}
    added = {}
    for name in tables:
        cols = ("sweep_id", "key", "status") if name == "tasks" else ("sweep_id", "key")
        have = {tuple(r.get(c) or "" for c in cols) for r in t_dst[name].read(raw=True)}
        new = []
        for r in t_src[name].read(raw=True):  # raw strings: the bytes measured, unchanged
            k = tuple(r.get(c) or "" for c in cols)
            if k not in have:
                have.add(k)
                new.append(r)
        _append_raw(t_dst[name], new)
        added[name] = len(new)
    done = {}
    for r in t_dst["tasks"].read():
        done.setdefault(r["sweep_id"], set()).add(r["key"])

    def upd(m: dict) -> None:
        m.setdefault("hardware", hw)
        m["schema_version"] = meta.get("schema_version", m.get("schema_version"))
        for section in ("sessions", "calls"):
            m.setdefault(section, {}).update(meta.get(section) or {})
        for sid, sw in (meta.get("sweeps") or {}).items():
            cur = m.setdefault("sweeps", {}).setdefault(sid, {})
            cur.update({k: v for k, v in sw.items() if k not in ("sessions", "started")})
            cur.setdefault("started", sw.get("started"))
            cur["sessions"] = sorted(set(cur.get("sessions") or []) | set(sw.get("sessions") or []))
        for sid, cur in (m.get("sweeps") or {}).items():
            cur["n_tasks_done"] = len(done.get(sid, ()))
        m["updated"] = meta.get("updated", m.get("updated"))

    schema.update_meta(dest, upd)
    from profiling.sweeps import write_dataset_card

    write_dataset_card(dest)
    plan = write_plan(dest)
    return {"hardware": hw, "dest": dest, **added, "plan": plan}


def _append_raw(table, rows: list[dict]) -> None:
    """Append rows read raw (strings) with the table's own atomic append, values unchanged."""
    if not rows:
        return
    from profiling.dataset.atomic import file_lock, write_atomic_chunks

    with file_lock(table.path):
        table.check_header()
        exists = table.exists()
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        if not exists:
            w.writerow(table.columns)
        for r in rows:
            w.writerow([r.get(c) or "" for c in table.columns])
        old = open(table.path, "rb").read() if exists else b""
        if old and not old.endswith(b"\n"):
            old += b"\n"
        write_atomic_chunks(table.path, [old, buf.getvalue().encode("utf-8")])


def write_plan(dest: str) -> dict:
    """``plan.csv``: every task of the plan's sweeps (+ any sweep with rows) with its state."""
    from profiling.dataset import schema
    from profiling.sweeps import SWEEPS

    rows = schema.task_table(dest).read()
    state: dict = {}
    for r in rows:  # an ok row wins over an error row of the same task
        k = (r["sweep_id"], r["key"])
        if k not in state or r["status"] == "ok":
            state[k] = r
    names = list(PLAN_SWEEPS) + sorted({r["sweep_id"] for r in rows if r["sweep_id"] in SWEEPS} - set(PLAN_SWEEPS))
    out, summary, order = [], {}, 0
    for name in names:
        counts = {"ok": 0, "error": 0, "todo": 0}
        for t in SWEEPS[name].tasks():
            order += 1
            r = state.get((name, t.key))
            status = r["status"] if r else "todo"
            counts[status] = counts.get(status, 0) + 1
            out.append({"order": order, "sweep_id": name, "key": t.key, "kind": t.kind, "family": t.family,
                        "mode": t.mode, "dtype": t.dtype, "optimizer": t.optimizer or "", "batch": t.batch,
                        "status": status, "session_id": (r or {}).get("session_id") or "",
                        "elapsed_s": (r or {}).get("elapsed_s") or ""})
        summary[name] = counts
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=PLAN_COLUMNS, lineterminator="\n")
    w.writeheader()
    w.writerows(out)
    schema.write_bytes_atomic(os.path.join(dest, "plan.csv"), buf.getvalue().encode("utf-8"))
    return summary


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("src", help="folder with the call's layers.csv, models.csv, tasks.csv, meta.json")
    p.add_argument("--datasets", default=os.path.join(ROOT, "datasets"), help="datasets root (default: the repo's)")
    p.add_argument("--hardware", default=None, help="hardware id (default: from the rows)")
    args = p.parse_args(argv)
    from profiling.errors import ExanteError

    try:
        res = merge(args.src, args.datasets, args.hardware)
    except ExanteError as exc:
        print(f"collect: error: {exc}", file=sys.stderr)
        return 2
    print(f"collect: {res['dest']}: added {res['layers']} layer, {res['models']} model, {res['tasks']} task rows")
    for name, c in res["plan"].items():
        print(f"  {name:14s} ok {c['ok']:4d}  error {c['error']:3d}  todo {c['todo']:4d}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
