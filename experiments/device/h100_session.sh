#!/usr/bin/env bash
# One lent-GPU session: install the carried wheels, check the meter, run the GPU tests of the
# profiler, then the sweeps in priority order inside a time budget. Every sweep is resumable:
# rows measured in an earlier session (committed under datasets/h100) are skipped.
# Usage (device tool, carry [".whl"]):  bash experiments/device/h100_session.sh [BUDGET_S]
set -uo pipefail
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site:$PWD || exit 1
export PYTHONUNBUFFERED=1
BUDGET_S=${1:-480}
OUT=${OUT:-/tmp/out}
mkdir -p "$OUT"
nvidia-smi --query-gpu=name,driver_version,power.limit,clocks.sm,temperature.gpu --format=csv | tee "$OUT/gpu.txt"
python3 - <<'PY' 2>&1 | tee "$OUT/meter_check.txt"
from profiling.meters import get_meter
m = get_meter("nvml"); print(m.info()); e0 = m.energy_j(); import time; time.sleep(1.0); print("idle W ~", m.energy_j() - e0)
PY
start=$(date +%s)
# copy the committed dataset so resume skips what is already measured, then extend it
rm -rf /tmp/h100 && cp -r datasets/h100 /tmp/h100
for sweep in ${SWEEPS:-reference layers-smoke models-smoke layers mlp cnn transformer mixed}; do
    left=$(( BUDGET_S - ($(date +%s) - start) ))
    [ "$left" -gt 30 ] || break
    python3 -m predictor.cli sweep "$sweep" --out /tmp/h100 --meter nvml --time-budget-s "$left" \
        2>&1 | tail -n 5 | tee -a "$OUT/sweeps.log"
done
# bring back the CSVs (at most 8 files come back: keep to the dataset's own files)
cp /tmp/h100/*.csv /tmp/h100/meta.json "$OUT/" 2>/dev/null
ls -la "$OUT"
