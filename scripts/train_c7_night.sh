#!/usr/bin/env bash
# Campaign cycle 7 (config/train_tiny_campaign_c7_night.yaml) in the background (train_background.sh).
#   scripts/train_c7_night.sh [OUT]     (default runs/c7_night; PID in runs/TRAIN_PID)
exec "$(dirname "$0")/train_background.sh" config/train_tiny_campaign_c7_night.yaml "${1:-runs/c7_night}"
