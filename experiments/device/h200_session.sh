#!/usr/bin/env bash
# One prepared call on a lent GPU (an H200; 15 min of device time per task, 1-2 of them for the
# machine's start): install the carried wheels, show the GPU, then experiments/device/h200_measure.py
# (a short self-test of what is new, then the sweeps in value order inside the budget, resumable,
# the dataset files copied to $OUT after every task). Everything it prints goes to $OUT/session.log.
#
# Device tool (from the repo root here, after experiments/device/fetch_wheels.sh once):
#   run(command="bash experiments/device/h200_session.sh 540", carry=[".whl"], timeout_s=560)
# then here:  python experiments/device/collect.py <files_at>   (merges into datasets/<hw>/, commit it)
#
#   $1 LIMIT_S (default 540): wall-clock seconds for this whole script; keep it ~20 s under timeout_s.
#   env PLAN="refset:300 host-launch:90 ..." sweeps in order (name[:cap_s]; default in h200_measure.py)
#   env SELFTEST_S=0 no self-test (default 40 s cap); METER (default nvml-changes)
#   env DEVICE=cpu METER=replay-changes HARDWARE=cpu-dryrun: a dry run on a machine without a GPU
#       (tests/test_device_session.py runs it that way, with TASKS=regex, PROTOCOL=json, DATASETS=dir,
#       WORK=dir, SKIP_WHEELS=1 and PYTHON=the interpreter)
set -uo pipefail
T0=$(date +%s)
LIMIT_S=${1:-540}
OUT=${OUT:-/tmp/out}
mkdir -p "$OUT"
LOG="$OUT/session.log"
: > "$LOG"
say() { echo "$@" | tee -a "$LOG"; }

PY=${PYTHON:-python3}
if [ "${SKIP_WHEELS:-0}" = 1 ]; then
    export PYTHONPATH=$PWD
elif ls .whl/*.whl >/dev/null 2>&1; then
    "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
        --target /tmp/site .whl/*.whl 2>&1 | tee -a "$LOG"
    [ "${PIPESTATUS[0]}" -eq 0 ] || say "WARNING: wheel install failed"
    export PYTHONPATH=/tmp/site:$PWD
else
    say "WARNING: no .whl/*.whl carried (run experiments/device/fetch_wheels.sh here, carry [\".whl\"]);" \
        "without fvcore the layer features fail and layer sweeps record errors"
    export PYTHONPATH=$PWD
fi
export PYTHONUNBUFFERED=1

if [ "${DEVICE:-cuda}" != cpu ]; then
    nvidia-smi --query-gpu=name,driver_version,power.limit,clocks.sm,clocks.max.sm,temperature.gpu,memory.used,memory.total \
        --format=csv 2>&1 | tee -a "$LOG"
fi
ARGS=(--out "$OUT" --meter "${METER:-nvml-changes}" --selftest-s "${SELFTEST_S:-40}")
[ -n "${DEVICE:-}" ] && ARGS+=(--device "$DEVICE")
[ -n "${HARDWARE:-}" ] && ARGS+=(--hardware "$HARDWARE")
[ -n "${PLAN:-}" ] && ARGS+=(--plan "$PLAN")
[ -n "${DATASETS:-}" ] && ARGS+=(--datasets "$DATASETS")
[ -n "${WORK:-}" ] && ARGS+=(--work "$WORK")
[ -n "${TASKS:-}" ] && ARGS+=(--tasks "$TASKS")
[ -n "${PROTOCOL:-}" ] && ARGS+=(--protocol "$PROTOCOL")
used=$(( $(date +%s) - T0 ))
budget=$(( LIMIT_S - used - 15 ))  # python start-up, the last copy and the summary
say "h200_session: ${used} s used before the measuring process; its budget ${budget} s, hard limit $(( LIMIT_S - used - 3 )) s"
timeout -s INT -k 10 $(( LIMIT_S - used - 3 )) "$PY" experiments/device/h200_measure.py --budget-s "$budget" "${ARGS[@]}" \
    2>&1 | tee -a "$LOG"
rc=${PIPESTATUS[0]}
say "h200_session: exit $rc after $(( $(date +%s) - T0 )) s"
ls -la "$OUT" | tee -a "$LOG"
exit "$rc"
