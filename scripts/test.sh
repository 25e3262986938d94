#!/usr/bin/env bash
# Set up .venv and run the test suite (CPU only; GPU/TensorRT tests skip with a reason).
# DAP_LED_ROS_DISTRO=jazzy: the same suite on ROS 2 Jazzy's wheels, in .venv-jazzy (scripts/setup.sh);
# e.g. `DAP_LED_ROS_DISTRO=jazzy scripts/test.sh -m ros` runs only the ROS tests there.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
source scripts/ros_distro.sh
export ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST
export ROS_LOG_DIR="$PWD/.cache/ros_log"
mkdir -p "$ROS_LOG_DIR"
exec "$VENV_DIR/bin/python" -m pytest test -q -rs --timeout=600 "$@"
