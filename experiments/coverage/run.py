"""Capture coverage on real model zoos: torchvision, a timm sample, Hugging Face configs.

For every model, built on ``meta`` from its MODEL_REF (no weights, no download):

* **fully covered**: the capture ran (on meta, or after the CPU fallback for refs) and every
  recorded layer has a feature function (no unsupported rows);
* **FLOPs agreement**: Σ count·2·macs over the matmul-like layers (Linear, Conv*, matmul,
  bmm, addmm, einsum, sdpa, MultiheadAttention, RNNs; module and functional forms) against
  ``torch.utils.flop_counter.FlopCounterMode`` run on the same meta model and inputs (it
  counts exactly those ops; it has no formula for ``grouped_mm``, the experts of
  mixture-of-experts layers, so those calls are left out of both sides and kept in the
  record's ``flops``); "within 1 %" is |ours − ref| ≤ 1 % of ref;
* **capture time**: wall time of the capture (``capture_with_cpu_fallback``), after a
  warm-up capture; the machine is shared, so times are indicative.

Usage (needs torchvision, timm and transformers: ``pip install -e ".[models]"``)::

    python experiments/coverage/run.py                      # all zoos, prints the table
    python experiments/coverage/run.py --zoos hf --limit 3  # a quick look
    python experiments/coverage/run.py --json out.json --readme README.md

``--readme`` rewrites the block between ``<!-- coverage-table:start -->`` and
``<!-- coverage-table:end -->`` with the generated table (never hand-typed).
"""

from __future__ import annotations

import argparse
import json
import platform
import random
import statistics
import sys
import time
import traceback
import warnings
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from profiling.capture.core import MetaTruthMode, capture  # noqa: E402
from profiling.features.api import features_for_capture  # noqa: E402
from profiling.model_refs import (  # noqa: E402
    capture_with_cpu_fallback,
    hf_example_inputs,
    import_torchvision,
    resolve_model_on_meta,
)

MATMUL_TYPES = frozenset({
    "Linear", "NonDynamicallyQuantizableLinear", "LazyLinear", "Bilinear", "F.linear",
    "F.bilinear", "Conv1d", "Conv2d", "Conv3d", "ConvTranspose1d", "ConvTranspose2d",
    "ConvTranspose3d", "LazyConv1d", "LazyConv2d", "LazyConv3d", "F.conv1d", "F.conv2d",
    "F.conv3d", "F.conv_transpose1d", "F.conv_transpose2d", "F.conv_transpose3d",
    "matmul", "mm", "bmm", "mv", "dot", "addmm", "baddbmm", "addbmm", "addmv", "einsum",
    "sdpa", "MultiheadAttention", "grouped_mm", "F.grouped_mm", "LSTM", "GRU", "RNN",
})

# 25 Hugging Face model types, built from transformers' default configs (decoder-only LMs,
# encoders, encoder-decoders, mixture-of-experts, a vision transformer)
HF_TYPES = ("gpt2", "bert", "roberta", "distilbert", "albert", "electra", "deberta-v2",
            "xlm-roberta", "llama", "mistral", "qwen2", "qwen3", "gemma", "gemma2", "phi",
            "phi3", "gpt_neox", "opt", "bloom", "falcon", "mixtral", "qwen2_moe", "t5",
            "bart", "vit")
INPUT_SIZE = {"inception_v3": (3, 299, 299)}


def torchvision_refs() -> list:
    tv = import_torchvision()
    return [f"torchvision:{n}" for n in sorted(tv.models.list_models(module=tv.models))]


def timm_refs(n: int, seed: int = 0) -> list:
    import timm

    names = sorted(timm.list_models())
    picked = sorted(random.Random(seed).sample(names, min(n, len(names))))
    return [f"timm:{m}" for m in picked]


def example_inputs_for(ref: str, model, batch: int, seq_len: int):
    scheme, _, name = ref.partition(":")
    if scheme == "hf":
        return hf_example_inputs(model, batch, seq_len)
    shape = INPUT_SIZE.get(name)
    if scheme == "timm":
        cfg = getattr(model, "pretrained_cfg", None) or {}
        shape = tuple(cfg.get("input_size") or (3, 224, 224))
    return torch.zeros((batch, *(shape or (3, 224, 224))), device="meta")


# FlopCounterMode has no formula for torch._grouped_mm (mixture-of-experts experts): the
# comparison leaves those calls out on our side too, and the record keeps both sums
NOT_IN_FLOP_COUNTER = frozenset({"grouped_mm", "F.grouped_mm"})


def matmul_flops(table, exclude=frozenset()) -> int:
    return sum(2 * r["macs"] * r["count"] for r in table.rows
               if r.get("supported") and r["type"] in MATMUL_TYPES and r["type"] not in exclude)


def reference_flops(model, inputs) -> int | None:
    from torch.utils.flop_counter import FlopCounterMode

    # without no_grad: FlopCounterMode's module tracker asserts on some models under it
    # ("Expected gradient function to be set"); on meta the autograd graph costs nothing
    try:
        with FlopCounterMode(display=False) as fc, MetaTruthMode():
            if isinstance(inputs, dict):
                model(**inputs)
            else:
                model(inputs)
        return int(fc.get_total_flops())
    except Exception:           # noqa: BLE001 - the reference cannot run on meta
        return None


def run_one(ref: str, batch: int, seq_len: int) -> dict:
    rec: dict = {"ref": ref, "zoo": ref.split(":")[0]}
    t0 = time.perf_counter()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model = resolve_model_on_meta(ref)
        model.eval()
    except Exception as exc:    # noqa: BLE001
        rec.update(status="build failed", error=f"{type(exc).__name__}: {exc}"[:300])
        return rec
    rec["build_s"] = time.perf_counter() - t0
    inputs = example_inputs_for(ref, model, batch, seq_len)
    t0 = time.perf_counter()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            cap, note = capture_with_cpu_fallback(model, inputs)
    except Exception as exc:    # noqa: BLE001
        rec.update(status="capture failed", error=f"{type(exc).__name__}: {exc}"[:300])
        return rec
    rec["capture_s"] = time.perf_counter() - t0
    rec["cpu_fallback"] = note is not None
    table = features_for_capture(cap, warn=False)
    rec["unsupported"] = sorted({u["type"] for u in table.unsupported})
    rec["status"] = "ok"
    rec["covered"] = not table.unsupported
    rec["flops"] = matmul_flops(table)
    rec["flops_comparable"] = ours = matmul_flops(table, NOT_IN_FLOP_COUNTER)
    rec["ref_flops"] = None if note else reference_flops(model, inputs)
    if rec["ref_flops"] is not None:
        ref_f = rec["ref_flops"]
        rec["flops_rel_err"] = abs(ours - ref_f) / ref_f if ref_f else (
            0.0 if ours == 0 else 1.0)
    return rec


def summarize(records: list) -> list:
    rows = []
    for zoo in ("torchvision", "timm", "hf"):
        rs = [r for r in records if r["zoo"] == zoo]
        if not rs:
            continue
        ok = [r for r in rs if r["status"] == "ok"]
        cmp_ = [r for r in ok if r.get("flops_rel_err") is not None]
        times = [r["capture_s"] for r in ok if not r.get("cpu_fallback")]
        rows.append({
            "zoo": zoo, "models": len(rs), "captured": len(ok),
            "covered": sum(r["covered"] for r in ok),
            "compared": len(cmp_),
            "within_1pct": sum(r["flops_rel_err"] <= 0.01 for r in cmp_),
            "cpu_fallback": sum(bool(r.get("cpu_fallback")) for r in ok),
            "median_capture_s": statistics.median(times) if times else None,
            "max_capture_s": max(times) if times else None,
        })
    return rows


def render(rows: list, meta: dict) -> str:
    head = ("| zoo | models | captured | fully covered | FLOPs within 1 % of FlopCounterMode "
            "| CPU fallback | capture time median / max |")
    out = [head, "|---|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        pct = 100.0 * r["covered"] / r["models"]
        agree = (f"{r['within_1pct']} / {r['compared']} "
                 f"({100.0 * r['within_1pct'] / r['compared']:.1f} %)" if r["compared"] else "–")
        t = (f"{1e3 * r['median_capture_s']:.0f} ms / {r['max_capture_s']:.2f} s"
             if r["median_capture_s"] is not None else "–")
        out.append(f"| {r['zoo']} | {r['models']} | {r['captured']} | {r['covered']} "
                   f"({pct:.1f} %) | {agree} | {r['cpu_fallback']} | {t} |")
    out.append("")
    out.append(f"Generated by `python experiments/coverage/run.py {meta['argv']}` on "
               f"{meta['date']} (torch {meta['torch']}, torchvision {meta['torchvision']}, "
               f"timm {meta['timm']}, transformers {meta['transformers']}; timm: a "
               f"seeded sample of {meta['timm_sample']} of {meta['timm_total']} models; "
               f"batch {meta['batch']}, HF sequence length {meta['seq_len']}; shared 2-core "
               "CPU, times indicative).")
    return "\n".join(out)


def write_readme(path: Path, text: str) -> None:
    start, end = "<!-- coverage-table:start -->", "<!-- coverage-table:end -->"
    src = path.read_text()
    if start not in src or end not in src:
        raise SystemExit(f"{path} has no {start} ... {end} block")
    a, b = src.index(start) + len(start), src.index(end)
    path.write_text(src[:a] + "\n" + text + "\n" + src[b:])


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--zoos", default="torchvision,timm,hf")
    ap.add_argument("--timm-sample", type=int, default=200)
    ap.add_argument("--batch", type=int, default=2)
    ap.add_argument("--seq-len", type=int, default=128)
    ap.add_argument("--limit", type=int, default=None, help="models per zoo (a quick look)")
    ap.add_argument("--json", type=Path, default=None, help="write every record here")
    ap.add_argument("--readme", type=Path, default=None, help="rewrite its coverage block")
    ap.add_argument("--from-json", type=Path, nargs="+", default=None,
                    help="render the records of earlier --json runs (e.g. shards) instead")
    ap.add_argument("--shard", default=None, help="K/N: run every N-th model from the K-th")
    args = ap.parse_args(argv)
    zoos = [z.strip() for z in args.zoos.split(",") if z.strip()]
    torchvision = import_torchvision()      # before timm, which imports torchvision
    import timm
    import transformers

    refs: list = []
    if "torchvision" in zoos:
        refs += torchvision_refs()[: args.limit]
    if "timm" in zoos:
        refs += timm_refs(args.timm_sample)[: args.limit]
    if "hf" in zoos:
        refs += [f"hf:{t}" for t in HF_TYPES][: args.limit]
    # warm-up: the first meta forward of a process pays a one-time cost (once per process)
    capture(torch.nn.Linear(4, 4).to("meta"), torch.zeros(2, 4, device="meta"))
    if args.shard:
        k, n = (int(v) for v in args.shard.split("/"))
        refs = refs[k::n]
    records = []
    if args.from_json:
        for path in args.from_json:
            records += json.loads(path.read_text())["records"]
        order = {"torchvision": 0, "timm": 1, "hf": 2}
        records.sort(key=lambda r: (order.get(r["zoo"], 3), r["ref"]))
        refs = []
    for i, ref in enumerate(refs, 1):
        try:
            rec = run_one(ref, args.batch, args.seq_len)
        except Exception:           # noqa: BLE001 - a bug of the harness itself: recorded, keep going
            rec = {"ref": ref, "zoo": ref.split(":")[0], "status": "harness error",
                   "error": traceback.format_exc(limit=3)[-300:]}
        records.append(rec)
        if args.json and (i % 10 == 0 or i == len(refs)):     # progress survives a stop
            args.json.write_text(json.dumps({"records": records}, indent=1, default=str))
        flag = "" if rec.get("status") == "ok" and rec.get("covered") and (
            rec.get("flops_rel_err") is None or rec["flops_rel_err"] <= 0.01) else "  <--"
        print(f"[{i}/{len(refs)}] {ref}: {rec.get('status')} "
              f"unsupported={rec.get('unsupported', '-')} err={rec.get('flops_rel_err', '-')}"
              f" {rec.get('error', '')[:160]}{flag}", file=sys.stderr, flush=True)
    meta = {
        "argv": " ".join(a for a in (argv if argv is not None else sys.argv[1:])
                         if not a.startswith(("/", "--readme", "--from-json", "--json"))
                         and not a.endswith((".json", ".md"))),
        "date": time.strftime("%Y-%m-%d"), "torch": torch.__version__,
        "torchvision": torchvision.__version__, "timm": timm.__version__,
        "transformers": transformers.__version__, "timm_sample": args.timm_sample,
        "timm_total": len(timm.list_models()), "batch": args.batch, "seq_len": args.seq_len,
        "python": platform.python_version(),
    }
    rows = summarize(records)
    text = render(rows, meta)
    print(text)
    bad = [r for r in records if not (r.get("status") == "ok" and r.get("covered"))
           or (r.get("flops_rel_err") or 0) > 0.01]
    if bad:
        print("\nnot fully covered or FLOPs off by > 1 %:")
        for r in bad:
            print(f"  {r['ref']}: {r.get('status')} unsupported={r.get('unsupported')} "
                  f"flops={r.get('flops')} ref={r.get('ref_flops')} {r.get('error', '')[:200]}")
    if args.json:
        args.json.write_text(json.dumps({"meta": meta, "summary": rows, "records": records},
                                        indent=1, default=str))
    if args.readme:
        write_readme(args.readme, text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
