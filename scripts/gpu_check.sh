#!/usr/bin/env bash
# One GPU, under 10 minutes: every GPU path the machine has (torch CUDA fp32/fp16, ONNX Runtime
# CUDA with the fp32/fp16 export, TensorRT strongly typed fp16 and, on 10.x, weak fp16, the
# engine file run alone), each compared with ONNX Runtime fp32 on the CPU; one JSON of figures,
# OUT/gpu_check.json (scripts/gpu_check.py). TensorRT and onnxruntime-gpu may be absent: their
# rows say skipped and why.
#   scripts/gpu_check.sh [OUT]                    # on a machine with an NVIDIA GPU
#   GPU_CHECK_SMOKE=1 scripts/gpu_check.sh OUT    # the same script on the CPU, tiny sizes (tests)
set -euo pipefail
cd "$(dirname "$0")/.."
OUT="${1:-runs/gpu_check}"
[ $# -gt 0 ] && shift   # the rest goes to gpu_check.py (e.g. --no-weak, --iters 50)
PY="${PYTHON:-.venv/bin/python}"
[ -x "$PY" ] || PY=python3
ARGS=()
if [ "${GPU_CHECK_SMOKE:-0}" = 1 ]; then
    ARGS=(--smoke --models realtime --budget-s 120)
fi
mkdir -p "$OUT"
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv || \
    echo "nvidia-smi: not found"
export DAP_LED_CACHE="$OUT/cache"   # exports and engines of this run stay under OUT
timeout "${GPU_CHECK_TIMEOUT_S:-570}" "$PY" scripts/gpu_check.py --out "$OUT" "${ARGS[@]}" "$@"
