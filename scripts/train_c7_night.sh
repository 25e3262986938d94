#!/usr/bin/env bash
# Campaign cycle 7 (config/train_tiny_campaign_c7_night.yaml) in the background, niced, on one
# thread. Resumable: the same command continues from OUT/state.pt (saved every 50 steps).
#   scripts/train_c7_night.sh [OUT]     (default runs/c7_night; PID in runs/TRAIN_PID)
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-runs/c7_night}
PID_FILE=${PID_FILE:-runs/TRAIN_PID}
mkdir -p "$OUT" "$(dirname "$PID_FILE")"
if [ -f "$PID_FILE" ] && kill -0 "$(cat "$PID_FILE")" 2>/dev/null; then
  echo "train_c7_night: already running as PID $(cat "$PID_FILE")" >&2
  exit 1
fi
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1
setsid nohup nice -n 19 .venv/bin/dap-led train --config config/train_tiny_campaign_c7_night.yaml --out "$OUT" \
  --resume-or-start --no-progress >> "$OUT/train.out" 2>&1 < /dev/null &
echo $! > "$PID_FILE"
echo "train_c7_night: PID $(cat "$PID_FILE"), log $OUT/log.jsonl, output $OUT/train.out"
