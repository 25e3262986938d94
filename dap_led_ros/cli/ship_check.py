"""`dap-led ship-check`: is a candidate at least as good as the shipped model on every figure?"""
from __future__ import annotations

import argparse
import sys

from dap_led_ros.training.ship_check import ReportError, compare_reports, markdown_table, read_report, verdict


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("ship-check", help="compare two `dap-led eval` reports figure by figure",
                       description="Compare the model rows of two `dap-led eval` reports (eval.json or its folder): "
                                   "every paired set's PSNR, level-fitted PSNR and SSIM, well-exposed frames, the "
                                   "real frames' relative noise and sharpness. Exit status 0 when the candidate "
                                   "is at least as good on every figure, 1 when not, 2 on unreadable input.")
    p.add_argument("candidate", help="the candidate's eval.json (or its --out-dir)")
    p.add_argument("baseline", help="the shipped model's eval.json (or its --out-dir)")
    p.add_argument("--tolerance", type=float, default=0.0,
                   help="a shortfall this small (in each figure's own unit) still counts as a tie (default: 0)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    try:
        rows = compare_reports(read_report(args.candidate), read_report(args.baseline))
    except ReportError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(markdown_table(rows, args.tolerance))
    ok, short = verdict(rows, args.tolerance)
    print()
    if ok:
        print(f"ship: at least as good on all {len(rows)} figures")
        return 0
    print(f"do not ship: short on {len(short)} of {len(rows)} figures: "
          + "; ".join(f"{r.short_where}: {r.figure} {r.delta:+.4f}" for r in short))
    return 1
