#!/usr/bin/env bash
# Reliability run: the fuzz, flood, soak and fault-injection tests in long mode (pytest --long),
# then docs/reliability.md's "Last run" tables rebuilt from what they measured.
#   scripts/reliability.sh            long mode (>= 10,000 generated cases; 13 min on 2 cores)
#   scripts/reliability.sh --quick    the CI sample of the same tests (minutes)
# Extra arguments go to pytest. The report JSON and JUnit XML stay under runs/reliability/.
set -euo pipefail
cd "$(dirname "$0")/.."
MODE=--long
if [ "${1:-}" = "--quick" ]; then MODE=""; shift; fi
scripts/setup.sh >/dev/null
export ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST
export ROS_LOG_DIR="$PWD/.cache/ros_log"
mkdir -p "$ROS_LOG_DIR" runs/reliability
export DAP_LED_RELIABILITY_REPORT="$PWD/runs/reliability/report.json"
TESTS=$(.venv/bin/python scripts/reliability_report.py --list-tests)
set +e
# shellcheck disable=SC2086
.venv/bin/python -m pytest $TESTS -q -rs --timeout=3600 $MODE \
  --junitxml=runs/reliability/junit.xml "$@"
rc=$?
set -e
.venv/bin/python scripts/reliability_report.py --report runs/reliability/report.json \
  --junit runs/reliability/junit.xml --doc docs/reliability.md
exit $rc
