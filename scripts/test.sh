#!/usr/bin/env bash
# Set up .venv and run the test suite (CPU only; GPU/TensorRT tests skip with a reason).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
export ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST
export ROS_LOG_DIR="$PWD/.cache/ros_log"
mkdir -p "$ROS_LOG_DIR"
exec .venv/bin/python -m pytest test -q -rs --timeout=600 "$@"
