#!/usr/bin/env bash
# One GPU, about 10 minutes: train DAP-LED `small` (config/train_small_gpu.yaml: 8 minutes of
# training) and evaluate it (dap-led eval with the torch CUDA backend), results under OUT.
#   scripts/gpu_train.sh [OUT]                 # on a machine with an NVIDIA GPU and PyTorch
#   GPU_TRAIN_SMOKE=1 scripts/gpu_train.sh OUT # a few CPU steps of the same path (tests)
set -euo pipefail
cd "$(dirname "$0")/.."
OUT="${1:-runs/gpu_small}"
PY="${PYTHON:-.venv/bin/python}"
[ -x "$PY" ] || PY=python3
CONFIG=config/train_small_gpu.yaml
EXTRA=()
EVAL=(--backend torch --device cuda)
if [ "${GPU_TRAIN_SMOKE:-0}" = 1 ]; then
    # Same script, CPU-sized: the tiny variant, 2 steps of 32 px crops, one validation pair.
    mkdir -p "$OUT"
    "$PY" - "$CONFIG" "$OUT/smoke_config.yaml" <<'PYEOF'
import sys, yaml
cfg = yaml.safe_load(open(sys.argv[1]))
cfg.update(model={"variant": "tiny", "prior": {"grids": [1, 2]}}, device="cpu", amp=False, steps=2,
           batch_size=2, val_every=2, save_every=1, log_every=1, threads=1, time_budget_min=1)
cfg["data"].update(crop=32, epoch_length=4, workers=0, val_size=[32, 48], val_count=1, val2_count=1)
yaml.safe_dump(cfg, open(sys.argv[2], "w"))
PYEOF
    CONFIG="$OUT/smoke_config.yaml"
    EVAL=(--backend torch --device cpu --threads 1 --val-size 32 48 --val-count 1 --no-real)
fi
"$PY" -c "import torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available(), torch.cuda.get_device_name(0) if torch.cuda.is_available() else '')"
start=$(date +%s)
"$PY" -m dap_led_ros.cli train --config "$CONFIG" --out "$OUT/train" --no-progress "${EXTRA[@]}"
echo "training wall time: $(( $(date +%s) - start )) s"
"$PY" -m dap_led_ros.cli eval --model "$OUT/train/best.safetensors" --out-dir "$OUT/eval" "${EVAL[@]}"
echo "total wall time: $(( $(date +%s) - start )) s"
