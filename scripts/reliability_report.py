#!/usr/bin/env python3
"""Builds docs/reliability.md's "Last run" section from a reliability run (scripts/reliability.sh).

Inputs: the JSON that test/conftest.py writes when DAP_LED_RELIABILITY_REPORT is set (generated
cases per area, figures the tests recorded) and pytest's JUnit XML (what passed, how long it took).
The section between the two markers in the doc is replaced; the rest of the doc is left as written.

    python scripts/reliability_report.py --list-tests
    python scripts/reliability_report.py --report R.json --junit J.xml --doc docs/reliability.md
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import sys
import xml.etree.ElementTree as ET
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BEGIN, END = "<!-- reliability:last-run:begin -->", "<!-- reliability:last-run:end -->"

# The tests of a reliability run: fuzzing, floods, soaks and injected faults.
TEST_FILES = (
    "test/test_fuzz_conversion.py",
    "test/test_fuzz_node_input.py",
    "test/test_fuzz_bag_metadata.py",
    "test/test_memory_soak.py",
    "test/test_node_hardening.py",
    "test/test_small_frames.py",
    "test/test_cli_files.py",
    "test/test_bag_hardening.py",
)


def _junit_rows(path: Path) -> dict[str, dict[str, float]]:
    """Per test file: tests, failed, skipped, seconds."""
    rows: dict[str, dict[str, float]] = defaultdict(lambda: {"tests": 0, "failed": 0, "skipped": 0, "seconds": 0.0})
    for case in ET.parse(path).getroot().iter("testcase"):
        # classname: "test.test_x" or "test.test_x.TestClass" (rootdir-relative path, dotted)
        parts = (case.get("classname") or "?").split(".")
        name = next((q for q in parts if q.startswith("test_")), parts[-1])
        row = rows[f"test/{name}.py"]
        row["tests"] += 1
        row["seconds"] += float(case.get("time") or 0.0)
        if case.find("failure") is not None or case.find("error") is not None:
            row["failed"] += 1
        elif case.find("skipped") is not None:
            row["skipped"] += 1
    return dict(rows)


def _fmt(v: object) -> str:
    if isinstance(v, float):
        return f"{v:.3g}" if abs(v) < 100 else f"{v:.0f}"
    return str(v)


def render(report: dict, junit: dict[str, dict[str, float]]) -> str:
    mode = "long (`scripts/reliability.sh`)" if report.get("long") else "CI sample (`scripts/reliability.sh --quick`)"
    total = sum(junit[f]["tests"] for f in junit)
    failed = sum(junit[f]["failed"] for f in junit)
    cases = report.get("cases", {})
    lines = [
        BEGIN,
        f"Last run: {datetime.date.today().isoformat()}, {mode}, {os.cpu_count()} CPUs, "
        f"Python {platform.python_version()}: {total} tests, {failed} failed, "
        f"pytest exit status {report.get('exitstatus')}.",
        "",
        "| generated cases | count |",
        "|---|---|",
        *[f"| {area} | {n:,} |" for area, n in sorted(cases.items())],
        f"| **all areas** | **{sum(cases.values()):,}** |",
        "",
        "| test file | tests | failed | skipped | seconds |",
        "|---|---|---|---|---|",
        *[f"| `{f}` | {r['tests']:.0f} | {r['failed']:.0f} | {r['skipped']:.0f} | {r['seconds']:.0f} |"
          for f, r in sorted(junit.items())],
        "",
        "| measured figure | value |",
        "|---|---|",
        *[f"| `{k}` | {_fmt(v)} |" for k, v in sorted(report.get("figures", {}).items())],
        END,
    ]
    return "\n".join(lines)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--list-tests", action="store_true", help="print the run's test files and exit")
    p.add_argument("--report", type=Path)
    p.add_argument("--junit", type=Path)
    p.add_argument("--doc", type=Path, default=ROOT / "docs" / "reliability.md")
    args = p.parse_args()
    if args.list_tests:
        print(" ".join(f for f in TEST_FILES if (ROOT / f).is_file()))
        return 0
    if not (args.report and args.junit and args.report.is_file() and args.junit.is_file()):
        print("error: need --report and --junit files from a reliability run", file=sys.stderr)
        return 2
    section = render(json.loads(args.report.read_text()), _junit_rows(args.junit))
    doc = args.doc.read_text() if args.doc.is_file() else f"# Reliability\n\n{BEGIN}\n{END}\n"
    if BEGIN not in doc or END not in doc:
        print(f"error: {args.doc} lacks the markers {BEGIN} ... {END}", file=sys.stderr)
        return 2
    head, rest = doc.split(BEGIN, 1)
    tmp = args.doc.with_name(f".{args.doc.name}.tmp")
    tmp.write_text(head + section + rest.split(END, 1)[1])
    tmp.replace(args.doc)
    print(section)
    return 0


if __name__ == "__main__":
    sys.exit(main())
