"""`dap-led`: the command-line front end. Each subcommand lives in its own module of this package;
nothing outside `cli/` imports it."""
from __future__ import annotations

import argparse
import importlib
import logging
import sys

# Command name -> module exposing `add_parser(subparsers)` (which sets `func`). Only the module of
# the command being run is imported, so `dap-led pipeline` does not pay for torch and friends.
COMMANDS: dict[str, str] = {
    "enhance": "dap_led_ros.cli.enhance",
    "detect": "dap_led_ros.cli.detect",
    "model-info": "dap_led_ros.cli.model_info",
    "train": "dap_led_ros.cli.train",
    "eval": "dap_led_ros.cli.evaluate",
    "perception-bench": "dap_led_ros.cli.perception_bench",
    "export": "dap_led_ros.cli.export",
    "build-engine": "dap_led_ros.cli.build_engine",
    "bench": "dap_led_ros.cli.bench",
    "bench-node": "dap_led_ros.cli.bench_node",
    "bag": "dap_led_ros.cli.bag",
    "make-sample-bag": "dap_led_ros.cli.sample_bag",
    "replay": "dap_led_ros.cli.replay",
    "demo": "dap_led_ros.cli.demo",
    "pipeline": "dap_led_ros.cli.pipeline",
    "average-weights": "dap_led_ros.cli.average_weights",
    "ship-check": "dap_led_ros.cli.ship_check",
}


def _requested_command(argv: list[str]) -> str | None:
    return next((a for a in argv if not a.startswith("-")), None)


def build_parser(argv: list[str] | None = None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="dap-led", description=__doc__)
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    wanted = _requested_command(sys.argv[1:] if argv is None else argv)
    modules = [COMMANDS[wanted]] if wanted in COMMANDS else list(dict.fromkeys(COMMANDS.values()))
    for name in modules:
        importlib.import_module(name).add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser(argv).parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)  # as given (perception-bench --jobs re-runs it)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(levelname)s %(name)s: %(message)s")
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except OSError as exc:  # a file or device the command could not use: its cause, not a traceback
        from dap_led_ros.file_output import os_error_text

        logging.getLogger(__name__).debug("%s failed", args.command, exc_info=True)
        where = f" ({exc.filename})" if getattr(exc, "filename", None) else ""
        print(f"error: {os_error_text(exc)}{where}", file=sys.stderr)
        return 1

