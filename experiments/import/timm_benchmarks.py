"""Import timm's published step times (``shared/extdata/timm_benchmarks``) into ``datasets/<gpu>/``.

Source: timm (Ross Wightman et al.), ``results/benchmark-*.csv`` of
github.com/huggingface/pytorch-image-models at the commit in the folder's ``SOURCE.md``,
Apache-2.0.  One row per (file, benchmark row): ``time_s`` = the published step time
(``*_step_time`` ms / 1000) of the whole batch, ``energy_j`` empty (time only), ``batch``,
``input_shape`` [3, img, img], ``mode`` (infer -> inference, train -> train_step with SGD),
``dtype`` fp16 (``amp`` = autocast float16), ``memory_format`` (nchw -> contiguous,
nhwc -> channels_last), ``torch_version``/``cuda_version`` from the file name, ``hardware``
the catalogue id.  The workload of every row is captured here (timm model on ``meta``,
:mod:`predictor.bench.timm_workloads`, cache ``--cache``) and stored once per ``task_key``
(``timm:<model>|<img>|b<batch>|<mode>|fp16``: one workload serves both memory formats and
every torch version) in ``workloads.jsonl.gz``.  Rows whose model cannot be built here are not
imported; they are listed in ``meta.json`` (``failures``: model -> error).  Rows timm left
without a time (out of memory) are not rows.

    python experiments/import/timm_benchmarks.py [--source DIR] [--out-root datasets]
                                                 [--cache DIR]

Re-runnable: the rows of each file's sweep id (``timm:<file stem>``) are replaced.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import ROOT, totals, write_dataset  # noqa: E402

from predictor.bench.timm_results import read_benchmark_file  # noqa: E402
from predictor.bench.timm_workloads import (  # noqa: E402
    TimmBuildError,
    default_cache_dir,
    timm_version,
    timm_workload,
)
from predictor.carbon.hardware import lookup  # noqa: E402
from profiling.dataset import schema  # noqa: E402

SOURCE = "timm (Ross Wightman et al.), results/benchmark-*.csv"
LICENCE = "Apache-2.0"
ATTRIBUTION = "timm (Ross Wightman et al.), results/benchmark-*.csv, Apache-2.0"
PROTOCOL = ("timm benchmark.py: one GPU, torch.cuda events around each step, 10 warm-up then "
            "40-50 timed steps, torch.randn inputs already on the GPU, random weights; infer: "
            "eval() + inference_mode + autocast(float16), ms per batch; train: train() + "
            "autocast(float16) forward + cross-entropy + backward + optimizer.step() "
            "(create_optimizer_v2 default: SGD Nesterov momentum 0.9), no gradient scaler; "
            "batch halved on out-of-memory")


def default_source() -> Path:
    return ROOT.parent / "shared" / "extdata" / "timm_benchmarks"


def source_commit(folder: Path) -> str | None:
    m = re.search(r"commit\s+`([0-9a-f]{40})`", (folder / "SOURCE.md").read_text())
    return m.group(1) if m else None


def task_key(model: str, img: int, batch: int, mode: str, dtype: str) -> str:
    return f"timm:{model}|{img}|b{batch}|{mode}|{dtype}"


def file_rows(bf, commit, cache, workloads, sums, failures, progress) -> list[dict]:
    spec_hw = lookup(bf.hardware)
    sweep = f"timm:{bf.path.stem}"
    out = []
    for r in bf.rows:
        tk = task_key(r.model, r.img_size, r.batch, bf.mode, bf.dtype)
        if tk not in workloads:
            try:
                workloads[tk] = timm_workload(r.model, r.img_size, r.batch, bf.mode, bf.dtype,
                                              cache_dir=cache)
            except TimmBuildError as exc:
                failures.setdefault(r.model, str(exc)[:500])
                continue
            sums[tk] = totals(workloads[tk])
        w = workloads[tk]
        built = next((n for n in w.notes if n.startswith("timm ")), None)
        spec = {"kind": "vision", "model_ref": f"timm:{r.model}", "input": [3, r.img_size, r.img_size],
                "workload": tk, "source_file": bf.path.name,
                "built_as": built, "published_gmacs": r.gmacs,
                "published_param_count_m": r.param_count_m}
        meas = {"time_s": r.step_time_s, "energy_j": None, "meter": "cuda_events",
                "meter_measured": True}
        env = {"gpu_name": spec_hw.name, "torch_version": bf.torch_version,
               "cuda_version": bf.cuda_version,
               "protocol_version": f"timm-benchmark.py@{(commit or '')[:7]} (meta.json: protocol)",
               "session_id": sweep}
        row = schema.model_row(
            key=f"{tk}|{bf.memory_format}|torch{bf.torch_version}", model_ref=f"timm:{r.model}",
            family=r.model, spec=spec, input_shape=[3, r.img_size, r.img_size], batch=r.batch,
            mode=bf.mode, dtype=bf.dtype, optimizer="sgd" if bf.mode == "train_step" else None,
            measurement=meas, env=env, hardware=bf.hardware, layer_counts={}, sweep_id=sweep,
            task_key=tk)
        row.update(sums[tk])
        row.update(memory_format=bf.memory_format, source=SOURCE, licence=LICENCE,
                   attribution=ATTRIBUTION, source_commit=commit, layer_counts="{}")
        out.append(row)
    if progress:
        print(f"  {bf.path.name}: {len(out)} of {len(bf.rows)} rows imported", flush=True)
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--source", type=Path, default=default_source())
    ap.add_argument("--out-root", type=Path, default=ROOT / "datasets")
    ap.add_argument("--cache", type=Path, default=None,
                    help="timm workload cache (default ~/.cache/exante/timm)")
    a = ap.parse_args(argv)
    files = sorted(a.source.glob("benchmark-*.csv"))
    if not files:
        print(f"error: no benchmark-*.csv in {a.source}", file=sys.stderr)
        return 2
    commit = source_commit(a.source)
    cache = a.cache or default_cache_dir()
    by_hw: dict = {}
    for f in files:
        bf = read_benchmark_file(f)
        by_hw.setdefault(bf.hardware, []).append(bf)
    for hw, bfs in by_hw.items():
        workloads, sums, rows, metas = {}, {}, [], {}
        for bf in bfs:
            failures: dict = {}
            rs = file_rows(bf, commit, cache, workloads, sums, failures, True)
            rows += rs
            metas[f"timm:{bf.path.stem}"] = {
                "source": SOURCE, "licence": LICENCE, "attribution": ATTRIBUTION,
                "repository": "github.com/huggingface/pytorch-image-models",
                "file": f"results/{bf.path.name}", "commit": commit, "protocol": PROTOCOL,
                "what": f"{bf.mode} step time, {bf.dtype} autocast, {bf.memory_format}, torch "
                        f"{bf.torch_version}, CUDA {bf.cuda_version}",
                "gpu": lookup(hw).name, "torch": bf.torch_version, "cuda": bf.cuda_version,
                "n_rows": len(rs), "n_rows_in_file": len(bf.rows),
                "untimed_rows_not_imported": [m for _, m in (bf.untimed or [])],
                "failures": failures, "timm_version_of_capture": timm_version(),
                "energy": "none (time only; energy_j empty)",
                "imported_by": "experiments/import/timm_benchmarks.py"}
        used = {r["task_key"] for r in rows}
        sizes = write_dataset(a.out_root / hw, rows, {k: workloads[k] for k in used},
                              set(metas), metas)
        print(f"{hw}: {sizes}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
