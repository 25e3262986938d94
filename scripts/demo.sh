#!/usr/bin/env bash
# Set up .venv and run the main job on the shipped default model: the night-drive bag demo
# (sample bag -> enhanced bag -> video, contact sheet, detections before/after) plus the real
# night frames in ../shared/data/real-night when present. Results in out/demo.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
export ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST
export ROS_LOG_DIR="$PWD/.cache/ros_log"
exec .venv/bin/dap-led demo --out out/demo "$@"
