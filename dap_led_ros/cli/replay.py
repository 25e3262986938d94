"""`dap-led replay BAG`: publish a bag into the live graph (see `dap_led_ros.bag.replay`)."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from dap_led_ros.bag.bag_errors import BagError
from dap_led_ros.bag.replay import (
    QOS_CHOICES,
    ReplayOptions,
    replay,
)
from dap_led_ros.cli.args import assignment


def add_parser(sub: argparse._SubParsersAction) -> None:
    d = ReplayOptions()
    p = sub.add_parser("replay", help="publish a bag's messages with their recorded timing",
                       description="Publish a rosbag2 bag's messages (as stored, no decoding) with their "
                                   "recorded timing: a pip-only stand-in for `ros2 bag play`. Topics recorded "
                                   "transient-local keep that durability. Ctrl-C or SIGTERM stops cleanly. "
                                   "Messages published per topic are checked against the bag's own counts. "
                                   "Exit status 0: done or stopped; 1: some messages of the bag were not "
                                   "published (listed); 2: refused before publishing (bad bag or options, "
                                   "message types not installed, subscribers not matched).")
    p.add_argument("bag", type=Path, metavar="BAG", help="rosbag2 folder (or a .db3/.mcap file)")
    p.add_argument("--rate", type=float, default=d.rate, help="playback speed factor (default: %(default)s)")
    p.add_argument("--loop", action="store_true", help="start over at the end")
    p.add_argument("--topics", nargs="+", default=None, metavar="TOPIC", help="topics to replay (default: all)")
    p.add_argument("--start-delay", type=float, default=d.start_delay, metavar="S",
                   help="seconds to wait after creating the publishers (default: %(default)s)")
    p.add_argument("--wait-subscribers", type=int, default=d.wait_subscribers, metavar="N",
                   help="before playing, wait until the replayed topics have N subscriptions in all, then "
                        "(reliable QoS) until each topic's first message is acknowledged by them")
    p.add_argument("--wait-timeout", type=float, default=d.wait_timeout, metavar="S",
                   help="give up waiting for subscribers after S seconds, 0 = never (default: %(default)s)")
    p.add_argument("--qos", choices=QOS_CHOICES, default=d.qos, help="publisher QoS (default: %(default)s)")
    p.add_argument("--depth", type=int, default=d.depth, help="queue depth of the reliable QoS (default: %(default)s)")
    p.add_argument("--drain-timeout", type=float, default=d.drain_timeout, metavar="S",
                   help="at the end, wait up to S seconds for reliable subscribers to acknowledge the last "
                        "messages (default: %(default)s)")
    p.add_argument("--remap", type=assignment("a remap like /from:=/to"), action="append", default=[],
                   metavar="FROM:=TO", help="publish bag topic FROM on TO (repeatable)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    options = ReplayOptions(rate=args.rate, loop=args.loop, topics=args.topics, start_delay=args.start_delay,
                            wait_subscribers=args.wait_subscribers, wait_timeout=args.wait_timeout,
                            qos=args.qos, depth=args.depth, remap=dict(args.remap),
                            drain_timeout=args.drain_timeout)
    try:
        stats = replay(args.bag, options)
    except BagError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(stats.report())
    return 1 if stats.missing() else 0


