"""`dap-led`: the command-line front end. Each subcommand lives in its own module."""
from __future__ import annotations

import argparse
import importlib
import logging
import sys

# Modules exposing `add_parser(subparsers)` and `run(args) -> int`.
SUBCOMMANDS: list[str] = [
    "dap_led_ros.enhance_cli",
    "dap_led_ros.model_info",
    "dap_led_ros.train",
    "dap_led_ros.evaluate",
    "dap_led_ros.export",
    "dap_led_ros.bench",
    "dap_led_ros.bag.bag_enhance",
    "dap_led_ros.bag.sample_bag",
    "dap_led_ros.bag.replay",
    "dap_led_ros.demo",
    "dap_led_ros.pipeline",
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="dap-led", description=__doc__)
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in SUBCOMMANDS:
        importlib.import_module(name).add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(levelname)s %(name)s: %(message)s")
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
