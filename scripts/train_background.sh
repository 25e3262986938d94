#!/usr/bin/env bash
# A training run in the background, niced, on one thread; resumable: the same command continues
# from OUT/state.pt (saved every `save_every` steps).
#   scripts/train_background.sh CONFIG OUT     (PID in $PID_FILE, default runs/TRAIN_PID)
set -euo pipefail
cd "$(dirname "$0")/.."
[ $# -eq 2 ] || { echo "usage: scripts/train_background.sh CONFIG OUT" >&2; exit 2; }
CONFIG=$1 OUT=$2
[ -f "$CONFIG" ] || { echo "train_background: no config $CONFIG" >&2; exit 2; }
PID_FILE=${PID_FILE:-runs/TRAIN_PID}
mkdir -p "$OUT" "$(dirname "$PID_FILE")"
if [ -f "$PID_FILE" ] && kill -0 "$(cat "$PID_FILE")" 2>/dev/null; then
  echo "train_background: already running as PID $(cat "$PID_FILE") ($PID_FILE)" >&2
  exit 1
fi
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1
setsid nohup nice -n 19 .venv/bin/dap-led train --config "$CONFIG" --out "$OUT" \
  --resume-or-start --no-progress >> "$OUT/train.out" 2>&1 < /dev/null &
echo $! > "$PID_FILE"
echo "train_background: PID $(cat "$PID_FILE"), log $OUT/log.jsonl, output $OUT/train.out"
