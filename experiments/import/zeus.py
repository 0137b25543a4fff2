"""Import the Zeus (NSDI '23) power traces (``shared/extdata/zeus_nsdi23``) into ``datasets/<gpu>/``.

Source: J. You, J.-W. Chung, M. Chowdhury, "Zeus: Understanding and Optimizing GPU Energy
Consumption of DNN Training", NSDI 2023; github.com/ml-energy/zeus,
``examples/research_reproducibility/zeus_nsdi23/trace/summary_power_<gpu>.csv`` (commit in the
folder's ``SOURCE.md``), Apache-2.0.

Rows: the traces' rows at each card's **maximum power limit** (unconstrained GPU), for the
networks :mod:`predictor.bench.zeus_models` rebuilds (CIFAR-100 ShuffleNet V2, ImageNet
ResNet-50, SQuAD BERT-base at 384 tokens; DeepSpeech2, NCF and Sentiment140 BERT are not
rebuildable -- :data:`predictor.bench.zeus.SKIPPED_NETWORKS` -- and not imported).  A trace row
is one training epoch; a dataset row is its **per-step equivalent** at the row's batch:
``time_s = time_per_epoch x batch / samples_per_epoch`` (the epoch's time per ``batch``
samples, so data loading, the remainder step and per-epoch work are spread over the steps),
``energy_j = average_power x time_s`` (NVML GPU power via Zeus's monitor), ``power_w`` the
average power.  Workload: one eager fp32 ``train_step`` of the network at ``batch``; the
trace's optimizer is in ``spec.source_optimizer`` and the row's optimizer is the proxy
``predictor.bench.zeus`` uses (Adadelta -> adam).  ``torch_version`` "1.x": the traces ran
PyTorch 1.x (2021-22; per-tensor optimizer loops), minor version not published.  GPU: the
catalogue variant whose TDP equals the maximum power limit (``bench.zeus.resolve_gpu``:
V100 at 250 W -> v100-pcie, RTX 6000 -> quadro-rtx6000).

    python experiments/import/zeus.py [--source DIR] [--out-root datasets]
"""

from __future__ import annotations

import argparse
import re
import sys
from dataclasses import fields, replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import ROOT, totals, write_dataset  # noqa: E402

from predictor.bench.zeus import _OPT_PROXY, SKIPPED_NETWORKS, load_power_traces, resolve_gpu  # noqa: E402
from predictor.bench.zeus_models import ZEUS_NETWORKS, build_network, network_inputs  # noqa: E402
from profiling.dataset import schema  # noqa: E402

SOURCE = ("Zeus (You, Chung, Chowdhury, NSDI 2023), github.com/ml-energy/zeus "
          "examples/research_reproducibility/zeus_nsdi23/trace")
LICENCE = "Apache-2.0"
ATTRIBUTION = ("Zeus traces (J. You, J.-W. Chung, M. Chowdhury, NSDI 2023), "
               "github.com/ml-energy/zeus, Apache-2.0")
TORCH = "1.x"
PROTOCOL = ("Zeus NSDI'23 power trace: one training epoch per (batch size, power limit) in "
            "PyTorch 1.x (fp32, eager, per-tensor optimizer loops), GPU power from NVML via "
            "Zeus's monitor (GPU only), epoch time includes data loading; imported per-step "
            "equivalent: time_per_epoch x batch / samples, energy = average_power x that time")


def source_commit(folder: Path) -> str | None:
    m = re.search(r"HEAD\s+`([0-9a-f]{40})`", (folder / "SOURCE.md").read_text())
    return m.group(1) if m else None


def _capture(net, batch, opt):
    from predictor.engine.predict import capture_workload

    w = capture_workload(build_network(*net), network_inputs(*net, batch), "train_step", "fp32",
                         opt, cache=False)
    return replace(w, torch_version=TORCH) if "torch_version" in {f.name for f in fields(w)} else w


def gpu_rows(gpu, frame, commit, workloads, sums, models_built) -> tuple:
    pmax = float(frame["power_limit"].max())
    spec, note = resolve_gpu(gpu, pmax)
    sweep = f"zeus-nsdi23:{gpu}"
    out, skipped = [], {}
    for r in frame[frame["power_limit"] == pmax].to_dict("records"):
        net = (str(r["dataset"]), str(r["network"]))
        if net not in ZEUS_NETWORKS:
            k = f"{net[0]}/{net[1]}"
            skipped.setdefault(k, {"reason": SKIPPED_NETWORKS.get(net, "not rebuilt"), "rows": 0})
            skipped[k]["rows"] += 1
            continue
        b, opt_src = int(r["batch_size"]), str(r["optimizer"]).lower()
        opt = _OPT_PROXY[opt_src]
        # the trace's optimizer names the workload (Adadelta and Adam rows share a proxy)
        tk = f"zeus:{net[0]}/{net[1]}|b{b}|train_step|fp32|{opt_src}"
        if tk not in workloads:
            workloads[tk] = _capture(net, b, opt)
            sums[tk] = totals(workloads[tk])
            models_built.add(net)
        samples = ZEUS_NETWORKS[net]["samples"]
        t = float(r["time_per_epoch"]) * b / samples
        p = float(r["average_power"])
        inp = list(ZEUS_NETWORKS[net].get("input") or [ZEUS_NETWORKS[net]["seq_len"]])
        spec_json = {"kind": "transformer" if "seq_len" in ZEUS_NETWORKS[net] else "vision",
                     "network": f"{net[0]}/{net[1]}", "input": inp, "workload": tk,
                     "source_file": f"summary_power_{gpu}.csv",
                     "source_optimizer": opt_src, "optimizer_proxy": opt,
                     "time_per_epoch_s": float(r["time_per_epoch"]),
                     "samples_per_epoch": samples, "power_limit_w": pmax}
        meas = {"time_s": t, "energy_j": p * t, "power_w": p, "meter": "nvml_zeus_monitor",
                "meter_measured": True}
        env = {"gpu_name": spec.name, "torch_version": TORCH, "power_limit_w": pmax,
               "protocol_version": f"zeus-nsdi23-trace@{(commit or '')[:7]} (meta.json: protocol)",
               "session_id": sweep}
        row = schema.model_row(
            key=f"{tk}|pl{pmax:g}", model_ref=None, family=net[1], spec=spec_json,
            input_shape=inp, batch=b, mode="train_step", dtype="fp32", optimizer=opt,
            measurement=meas, env=env, hardware=spec.key, layer_counts={}, sweep_id=sweep,
            task_key=tk)
        row.update(sums[tk])
        row.update(memory_format="contiguous", source=SOURCE, licence=LICENCE,
                   attribution=ATTRIBUTION, source_commit=commit, layer_counts="{}")
        out.append(row)
    meta = {"source": SOURCE, "licence": LICENCE, "attribution": ATTRIBUTION,
            "repository": "github.com/ml-energy/zeus", "commit": commit,
            "file": f"examples/research_reproducibility/zeus_nsdi23/trace/summary_power_{gpu}.csv",
            "protocol": PROTOCOL, "gpu": spec.name, "gpu_note": note or None,
            "power_limit_w": pmax, "torch": TORCH, "n_rows": len(out),
            "what": f"train_step per-step equivalent of epochs at {pmax:g} W, time and GPU energy",
            "skipped_networks": skipped, "imported_by": "experiments/import/zeus.py"}
    return spec.key, sweep, out, meta


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--source", type=Path,
                    default=ROOT.parent / "shared" / "extdata" / "zeus_nsdi23")
    ap.add_argument("--out-root", type=Path, default=ROOT / "datasets")
    a = ap.parse_args(argv)
    traces = load_power_traces(a.source)
    commit = source_commit(a.source)
    workloads, sums, built = {}, {}, set()
    for gpu, frame in traces.items():
        hw, sweep, rows, meta = gpu_rows(gpu, frame, commit, workloads, sums, built)
        used = {r["task_key"] for r in rows}
        sizes = write_dataset(a.out_root / hw, rows, {k: workloads[k] for k in used}, {sweep},
                              {sweep: meta})
        print(f"{gpu} -> {hw}: {sizes}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
