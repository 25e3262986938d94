#!/usr/bin/env bash
# Set up .venv and run the main job on the shipped default model; results go to out/demo.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
export ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST
export ROS_LOG_DIR="$PWD/.cache/ros_log"
FRAMES=../shared/data/real-night
[ -d "$FRAMES" ] || FRAMES=dap_led_ros/data/sample_night
exec .venv/bin/dap-led enhance "$FRAMES" out/demo/real-night --png --contact-sheet out/demo/real-night_contact_sheet.png "$@"
