#!/usr/bin/env bash
# The three life-cycle experiments in ONE device call, each resumable, inside one time budget.
#
#   bash experiments/lifecycle/run_gpu.sh [BUDGET_S]        (default 560 s; use timeout_s=600)
#
# Results are written under WORK (default /tmp/exante_lifecycle: it survives between calls on a
# warm machine, so a second call resumes) and, after each script, its 8 primary files are copied
# flat to $OUT (the device tool brings back at most 8 files):
#   training_runs.csv validate_status.json linearity_runs.csv linearity_status.json predictions.json
#   wide_vs_deep.csv wide_vs_deep_models.csv wide_vs_deep_status.json
# The summaries, fits and plots are rebuilt afterwards on any machine with --analyse-only (see
# README.md). PRIOR=<folder holding those 8 files from an earlier call> resumes on a fresh machine.
# HARDWARE (default h100), ARTIFACT_DIR (folder with <hardware>.joblib/.json), METER (default
# nvml), DEVICE (default cuda) and EXTRA (more arguments, e.g. "--smoke" for a CPU dry run) are
# passed on. If pandas / scikit-learn / fvcore are missing and carried wheels exist in .whl/, they
# are installed into /tmp/site first (as experiments/device/h100_session.sh does).
set -uo pipefail
T0=$(date +%s)
cd "$(dirname "$0")/../.."
BUDGET_S=${1:-560}
OUT_DIR=${OUT:-/tmp/out}
WORK=${WORK:-/tmp/exante_lifecycle}
HARDWARE=${HARDWARE:-h100}
METER=${METER:-nvml}
DEVICE=${DEVICE:-cuda}
export PYTHONUNBUFFERED=1
left() { echo $(( BUDGET_S - ($(date +%s) - T0) )); }
min() { if [ "$1" -lt "$2" ]; then echo "$1"; else echo "$2"; fi; }

if ! python3 -c "import pandas, sklearn, fvcore, joblib" 2>/dev/null && ls .whl/*.whl >/dev/null 2>&1; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site .whl/*.whl \
        && export PYTHONPATH=/tmp/site:$PWD
fi
LC_FILES="training_runs.csv validate_status.json linearity_runs.csv linearity_status.json predictions.json"
WVD_FILES="wide_vs_deep.csv wide_vs_deep_models.csv wide_vs_deep_status.json"
mkdir -p "$WORK/lifecycle" "$WORK/wide_vs_deep" "$OUT_DIR"
if [ -n "${PRIOR:-}" ]; then
    for f in $LC_FILES; do [ -f "$PRIOR/$f" ] && [ ! -f "$WORK/lifecycle/$f" ] && cp "$PRIOR/$f" "$WORK/lifecycle/"; done
    for f in $WVD_FILES; do [ -f "$PRIOR/$f" ] && [ ! -f "$WORK/wide_vs_deep/$f" ] && cp "$PRIOR/$f" "$WORK/wide_vs_deep/"; done
fi
export_primary() {
    for f in $LC_FILES; do [ -f "$WORK/lifecycle/$f" ] && cp "$WORK/lifecycle/$f" "$OUT_DIR/"; done
    for f in $WVD_FILES; do [ -f "$WORK/wide_vs_deep/$f" ] && cp "$WORK/wide_vs_deep/$f" "$OUT_DIR/"; done
    return 0
}
ART=()
[ -n "${ARTIFACT_DIR:-}" ] && ART=(--artifact-dir "$ARTIFACT_DIR")
# shellcheck disable=SC2206
common=(--hardware "$HARDWARE" --meter "$METER" --device "$DEVICE" "${ART[@]}" ${EXTRA:-})
rc=0
b=$(min 120 $(( $(left) - 30 )))
python3 experiments/lifecycle/validate_training.py --out "$WORK/lifecycle" --time-budget-s "$b" "${common[@]}" || rc=$?
export_primary
b=$(min 180 $(( $(left) - 180 )))
python3 experiments/lifecycle/linearity.py --out "$WORK/lifecycle" --time-budget-s "$b" "${common[@]}" || rc=$?
export_primary
b=$(min 210 $(( $(left) - 15 )))
python3 experiments/wide_vs_deep/run.py --out "$WORK/wide_vs_deep" --time-budget-s "$b" "${common[@]}" || rc=$?
export_primary
ls -la "$OUT_DIR"
echo "run_gpu.sh: $(( $(date +%s) - T0 )) s, exit $rc"
exit $rc
