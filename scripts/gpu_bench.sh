#!/usr/bin/env bash
# One GPU, a few minutes: `dap-led bench` of the shipped quality and real-time models on every
# backend the machine has (torch CUDA fp32, torch CUDA fp16 + CUDA graphs, ONNX Runtime's CUDA
# provider when onnxruntime-gpu is installed, TensorRT fp16 when `tensorrt` imports) at 640x480
# and 1120x640; figures under OUT (bench.json / bench.md per model) for docs/benchmarks.md.
#   scripts/gpu_bench.sh [OUT]                  # on a machine with an NVIDIA GPU and PyTorch
#   GPU_BENCH_SMOKE=1 scripts/gpu_bench.sh OUT  # the same path on the CPU, tiny sizes (tests)
set -euo pipefail
cd "$(dirname "$0")/.."
OUT="${1:-runs/gpu_bench}"
PY="${PYTHON:-.venv/bin/python}"
[ -x "$PY" ] || PY=python3
SIZES=(640x480 1120x640)
ITERS=(--iters 50 --warmup 10)
if [ "${GPU_BENCH_SMOKE:-0}" = 1 ]; then
    SIZES=(64x48)
    ITERS=(--iters 1 --warmup 0 --threads 1)
fi
mkdir -p "$OUT"
"$PY" -c "import torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available(), torch.cuda.get_device_name(0) if torch.cuda.is_available() else '')"
"$PY" -c "import onnxruntime as o; print('onnxruntime', o.__version__, o.get_available_providers())" || true
"$PY" -c "import tensorrt as t; print('tensorrt', t.__version__)" 2>/dev/null || echo "tensorrt: not importable (its rows are skipped)"
for model in quality realtime; do
    "$PY" -m dap_led_ros.cli bench --model "$model" --sizes "${SIZES[@]}" "${ITERS[@]}" --out-dir "$OUT/$model"
done
