"""`dap-led make-sample-bag OUT`: the synthetic night drive."""
from __future__ import annotations

import argparse
import importlib
import sys
from pathlib import Path

from dap_led_ros.bag.bag_errors import BagError, BagWriteError
from dap_led_ros.bag.bag_io import (
    STORAGES,
)
from dap_led_ros.bag.sample_bag import (
    CAMERA_INFO_TOPIC,
    COMPRESSED_TOPIC,
    IMAGE_TOPIC,
    IMU_TOPIC,
    SampleBagConfig,
    make_sample_bag,
)
from dap_led_ros.cli.args import frame_size
from dap_led_ros.cli.bag import EXIT_WRITE_FAILED

_LIBRARY = importlib.import_module("dap_led_ros.bag.sample_bag")  # its docstring is the command's description


def add_parser(sub: argparse._SubParsersAction) -> None:
    d = SampleBagConfig()
    p = sub.add_parser("make-sample-bag", help="write a short synthetic night-drive bag",
                       description=_LIBRARY.__doc__.split("\n\n")[0] + " Camera motion over a clean photo, "
                       "night degradations from the synthesis, camera_info and an IMU topic.")
    p.add_argument("output", type=Path, metavar="OUT", help="new bag folder")
    p.add_argument("--frames", type=int, default=d.frames, help="camera frames (default: %(default)s)")
    p.add_argument("--size", type=frame_size, default=(d.width, d.height), metavar="WxH",
                   help=f"frame size (default: {d.width}x{d.height})")
    p.add_argument("--fps", type=float, default=d.fps, help="camera rate (default: %(default)s)")
    p.add_argument("--storage", choices=sorted(STORAGES), default=d.storage, help="default: %(default)s")
    p.add_argument("--compressed", action="store_true",
                   help=f"record JPEG CompressedImage on {COMPRESSED_TOPIC} instead of Image on {IMAGE_TOPIC}")
    p.add_argument("--seed", type=int, default=d.seed, help="default: %(default)s")
    p.add_argument("--photo", default=d.photo, help="clean photo to drive through (default: %(default)s)")
    p.add_argument("--force", action="store_true", help="replace OUT if it exists")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    cfg = SampleBagConfig(frames=args.frames, width=args.size[0], height=args.size[1], fps=args.fps,
                          seed=args.seed, photo=args.photo, compressed=args.compressed, storage=args.storage)
    try:
        out = make_sample_bag(args.output, cfg, force=args.force)
    except BagWriteError as exc:  # storing OUT failed (disk full...): as `dap-led bag`
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_WRITE_FAILED
    except BagError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    topic = COMPRESSED_TOPIC if cfg.compressed else IMAGE_TOPIC
    print(f"wrote {out} ({cfg.storage}): {cfg.frames} frames {cfg.width}x{cfg.height} on {topic}, "
          f"{CAMERA_INFO_TOPIC}, {IMU_TOPIC}")
    return 0


