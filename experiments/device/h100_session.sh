#!/usr/bin/env bash
# One call on a lent GPU machine: install the carried wheels, show the GPU, run the self-test
# (experiments/device/gpu_selftest.py, ~90 s; skip with SELFTEST=0), then the sweeps in priority
# order inside a time budget. Every sweep is resumable: rows already in datasets/<hw>/ (what an
# earlier call brought back, copied there by the session) are skipped, and the sweeps continue
# whatever the self-test found (they record their own errors in tasks.csv).
#
# Device tool:  run(command="bash experiments/device/h100_session.sh", carry=[".whl"], timeout_s=600)
#   BUDGET_S (1st arg, default 530): seconds for the WHOLE command, self-test included; keep it
#            >= 60 s under timeout_s (process start-up + the task in flight when the budget ends).
#   SWEEPS="reference layers-smoke layers:180 ..." (env): which sweeps, in order (names of
#            profiling.sweeps.SWEEPS), each optionally capped at NAME:SECONDS (else it may use all
#            the time left, and the sweeps after it get none).
#   SELFTEST=0 (env): no self-test (later calls of the same session).
#   METER=replay (env): a dry run of this script on a machine without a GPU (rows labelled replay,
#            hardware id cpu-dryrun); the default is nvml.
# Files back under $OUT (7, the tool brings back at most 8): session.log, selftest.json,
# selftest.tsv, layers.csv, models.csv, tasks.csv, meta.json. The dataset files are refreshed
# after every sweep, so a call killed at its limit still brings back what was measured.
# After the call: copy layers.csv, models.csv, tasks.csv and meta.json into datasets/<hw>/ (hw
# is printed below: h100, or h200 if the tool fell back to one) before the next call.
set -uo pipefail
T0=$(date +%s)
BUDGET_S=${1:-530}
OUT=${OUT:-/tmp/out}
mkdir -p "$OUT"
LOG="$OUT/session.log"
: > "$LOG"
say() { echo "$@" | tee -a "$LOG"; }
left() { echo $(( BUDGET_S - ($(date +%s) - T0) )); }

python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site .whl/*.whl 2>&1 | tee -a "$LOG"
[ "${PIPESTATUS[0]}" -eq 0 ] || { say "wheel install failed (carry .whl? run experiments/device/fetch_wheels.sh here)"; exit 1; }
export PYTHONPATH=/tmp/site:$PWD
export PYTHONUNBUFFERED=1
export TQDM_MININTERVAL=15  # fewer progress-bar refreshes in the log (tqdm >= 4.66 reads TQDM_* defaults)

nvidia-smi --query-gpu=name,driver_version,power.limit,clocks.sm,clocks.max.sm,temperature.gpu,memory.used,memory.total \
    --format=csv 2>&1 | tee -a "$LOG"
METER=${METER:-nvml}

SWEEPS=${SWEEPS:-layers-smoke:90 models-smoke:120 reference:150 layers:240 layers-train:240 mlp:180 cnn:150 transformer:150 mixed:150 attention:150 mlp-seed004:150}
# hardware id from the GPU name (an H200 fallback must not land in datasets/h100); sweep names checked
# before any device time is spent on them
HW=$(python3 - "$SWEEPS" "$METER" <<'PY' 2>>"$LOG"
import sys
import torch
from profiling.profiler import hardware_id
from profiling.sweeps import SWEEPS
bad = [w for w in sys.argv[1].split() if w.split(":", 1)[0] not in SWEEPS
       or (":" in w and not w.split(":", 1)[1].isdigit())]
if bad:
    sys.exit(f"unknown sweep(s) {bad}; accepted: {' '.join(SWEEPS)}")
if sys.argv[2] == "replay":
    print("cpu-dryrun")
elif not torch.cuda.is_available():
    sys.exit("torch sees no CUDA device")
else:
    print(hardware_id(torch.cuda.get_device_name(0)))
PY
) || { tail -n 3 "$LOG"; say "pre-flight failed"; exit 1; }
DATA=/tmp/exante-$HW
say "hardware id: $HW (dataset folder datasets/$HW), sweeps: $SWEEPS, budget ${BUDGET_S}s"

if [ "${SELFTEST:-1}" != 0 ]; then
    timeout -s INT -k 10 200 python3 experiments/device/gpu_selftest.py --out "$OUT" --budget-s 150 2>&1 | tee -a "$LOG"
    say "selftest exit ${PIPESTATUS[0]} (0 = all OK; the sweeps run anyway and record their own errors)"
fi

# the dataset: the committed/copied rows (resume skips them), unless this warm machine already
# holds a longer copy from an earlier call of this session
n_repo=$( (wc -l < "datasets/$HW/tasks.csv") 2>/dev/null || echo 0)
n_here=$( (wc -l < "$DATA/tasks.csv") 2>/dev/null || echo 0)
if [ ! -d "$DATA" ] || [ "$n_here" -lt "$n_repo" ]; then
    rm -rf "$DATA" && mkdir -p "$DATA"
    [ -d "datasets/$HW" ] && cp -r "datasets/$HW/." "$DATA/"
fi
rm -f "$DATA"/*.lock
say "dataset $DATA: $(ls "$DATA" | tr '\n' ' ') (tasks.csv lines: repo $n_repo, here $n_here)"

bring_back() { cp -f "$DATA"/layers.csv "$DATA"/models.csv "$DATA"/tasks.csv "$DATA"/meta.json "$OUT/" 2>/dev/null; }

for item in $SWEEPS; do
    sweep=${item%%:*}
    cap=""; [ "$item" != "$sweep" ] && cap=${item#*:}
    l=$(left)
    if [ "$l" -lt 75 ]; then say "== budget spent ($l s left): not starting $sweep"; break; fi
    b=$(( l - 40 ))  # start-up, idle power and the task in flight when the budget ends
    if [ -n "$cap" ] && [ "$cap" -lt "$b" ]; then b=$cap; fi
    say "== sweep $sweep: --time-budget-s $b ($(date -u +%H:%M:%S), $l s left)"
    timeout -s INT -k 10 $(( l - 10 )) python3 -m predictor.cli sweep "$sweep" --out "$DATA" --meter "$METER" \
        --hardware "$HW" --time-budget-s "$b" 2>&1 | tr '\r' '\n' | grep -v '^ *$' >> "$LOG"
    rc=${PIPESTATUS[0]}
    tail -n 10 "$LOG"
    say "sweep $sweep exit $rc"
    bring_back
done
bring_back
python3 - "$DATA" <<'PY' 2>&1 | tee -a "$LOG"
import json, sys
from profiling.sweeps import dataset_card_stats
s = dataset_card_stats(sys.argv[1])
keep = ("n_layer_rows", "n_model_rows", "n_reference_rows", "n_distinct_layer_configs", "layers_by_exec",
        "layers_by_mode", "models_by_family", "tasks_ok", "tasks_error", "spread_layers", "spread_models",
        "additivity_ratio", "reference_drift", "sweeps")
print(json.dumps({k: s.get(k) for k in keep}, indent=1, default=str))
PY
say "done in $(( $(date +%s) - T0 )) s"
ls -la "$OUT"
