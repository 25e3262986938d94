"""`dap-led average-weights`: the weighted mean of checkpoints of one network (a model soup)."""
from __future__ import annotations

import argparse
import sys

from dap_led_ros.checkpoint import CheckpointError


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("average-weights", help="average the weights of checkpoints of one network",
                       description="Write the weighted mean of the checkpoints' parameters as a new checkpoint "
                                   "(OUT.safetensors + OUT.yaml, its campaign record the union of theirs). Score it "
                                   "with `dap-led eval` and `dap-led ship-check` before shipping it.")
    p.add_argument("checkpoints", nargs="+", metavar="CKPT", help="two or more .safetensors of one network")
    p.add_argument("--weights", nargs="+", type=float, metavar="W",
                   help="one weight per checkpoint, normalised to sum 1 (default: equal)")
    p.add_argument("--out", required=True, help="output path (.safetensors, the .yaml beside it)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from dap_led_ros.training.weight_average import write_average

    try:
        path = write_average(args.checkpoints, args.out, args.weights)
    except CheckpointError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {path}")
    return 0
