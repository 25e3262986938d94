"""`dap-led bag IN OUT`: enhance the camera frames of a recording (see `dap_led_ros.bag.bag_enhance`)."""
from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

from dap_led_ros.bag.bag_enhance import BagEnhanceOptions, enhance_prepared, prepare
from dap_led_ros.bag.bag_errors import BagError, BagWriteError, write_failure_cause
from dap_led_ros.bag.bag_io import STORAGES
from dap_led_ros.bag.frames import CompressionSettings
from dap_led_ros.cli.args import add_backend_args, add_burst_arg, enhancer_config_from_args, enhancer_from_args

EXIT_WRITE_FAILED = 3  # OUT could not be stored (disk full, file too large, I/O error); no OUT left


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "bag", help="enhance the camera frames of a rosbag2 recording",
        description="Copy a rosbag2 bag (sqlite3 or mcap) and add an enhanced copy of every colour or mono "
                    "camera frame: Image on <ns>/enhanced/image, CompressedImage on <ns>/enhanced/image/compressed "
                    "(same codec), with the original header, log time, send time and sequence; <ns>/camera_info "
                    "is copied to <ns>/enhanced/camera_info. Every input message is kept byte for byte with its "
                    "topic metadata, and the per-topic counts are checked against the input's storage; depth, "
                    "other encodings and transports are copied untouched. Each image topic is a video of its own: "
                    "its frames are fused with that topic's previous ones (temporal fusion; its history restarts "
                    "when the log time goes back or jumps by more than 1 s), unless --no-temporal. "
                    "Exit status 0: done; 1: some frames could not be decoded (listed, copied unchanged; OUT is "
                    "written); 2: nothing written (bad input, a count that does not add up, OUT not allowed, "
                    "model not loadable); 3: nothing written because storing OUT failed (disk full, file too "
                    "large, I/O error). "
                    "Several bags (a fleet: several INs, a glob, a list file or a folder holding bags) run as Ray "
                    "tasks, OUT/<bag name> each; a finished OUT/<name> is skipped (resume) unless --force; exit "
                    "status 0: all done or skipped; 1: some bag failed or had frames that could not be decoded; "
                    "2: bad arguments or no bags.")
    p.add_argument("input", nargs="+", metavar="IN",
                   help="rosbag2 folder (or a .db3/.mcap file); for a fleet: several of them, a glob ('drives/*'), "
                        "a list file (.txt/.list: one bag per line, # comments) or a folder holding bags")
    p.add_argument("output", type=Path, metavar="OUT", help="new bag folder (a fleet: the folder the bags go in)")
    d = BagEnhanceOptions()
    p.add_argument("--topics", nargs="+", default=None, metavar="TOPIC",
                   help="image topics to enhance (default: every colour/mono camera topic); only these are decoded")
    p.add_argument("--force", action="store_true",
                   help="replace OUT if it is a bag folder (written before); never any other folder or file")
    p.add_argument("--storage", choices=sorted(STORAGES), default=d.storage, help="default: the input's")
    p.add_argument("--batch", type=int, default=d.batch, help="frames per backend call (default: %(default)s)")
    p.add_argument("--jpeg-quality", type=int, default=d.compression.jpeg_quality,
                   help="quality of re-encoded JPEG frames (default: %(default)s)")
    p.add_argument("--png-level", type=int, default=d.compression.png_level,
                   help="compression level of re-encoded PNG frames (default: %(default)s)")
    p.add_argument("--no-temporal", action="store_true",
                   help="restore every frame on its own (default: fuse each frame with its topic's previous ones, "
                        "aligned by optical flow, where they agree: steadier video)")
    add_burst_arg(p)
    p.add_argument("--ray-address", default=None, metavar="ADDRESS",
                   help="fleet: run on this Ray cluster (e.g. ray://head:10001 or head:6379) instead of an embedded "
                        "local Ray; the bags and OUT must be on storage every node sees")
    p.add_argument("--workers", type=int, default=None,
                   help="fleet: CPUs of the embedded local Ray, i.e. bags at once with one thread each "
                        "(default: this machine's cores)")
    add_backend_args(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from dap_led_ros.bag import fleet

    if fleet.is_fleet(args.input):
        return run_fleet(args)
    if args.ray_address is not None or args.workers is not None:
        print("error: --ray-address and --workers are for several bags (a fleet), not for one",
              file=sys.stderr)
        return 2
    args.input = Path(args.input[0])
    return run_one(args)


def run_fleet(args: argparse.Namespace) -> int:
    """Every bag as a Ray task into OUT/<name>; the summary table on stdout."""
    from dap_led_ros.bag import fleet

    settings = fleet.FleetSettings(
        options=BagEnhanceOptions(topics=args.topics, storage=args.storage, batch=args.batch, force=args.force,
                                  compression=CompressionSettings(args.jpeg_quality, args.png_level)),
        enhancer=dataclasses.replace(enhancer_config_from_args(args), temporal=not args.no_temporal,
                                     burst=args.burst),
        workers=args.workers, ray_address=args.ray_address)
    try:
        report = fleet.run_fleet(fleet.plan_fleet(args.input, args.output, settings), settings)
    except fleet.FleetError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(report.table())
    return report.exit_code


def run_one(args: argparse.Namespace) -> int:
    options = BagEnhanceOptions(topics=args.topics, storage=args.storage, batch=args.batch, force=args.force,
                                compression=CompressionSettings(args.jpeg_quality, args.png_level))
    try:
        bag = prepare(args.input, args.output, options)  # fail on a bad bag before loading the model
    except BagError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    enhancer = enhancer_from_args(args, temporal=not args.no_temporal, burst=args.burst)
    if enhancer is None:
        bag.close()
        return 2
    try:
        summary = enhance_prepared(bag, args.output, enhancer, options)
    except BagWriteError as exc:  # nothing wrong with IN: the output could not be stored
        print(f"error: cannot write {args.output}: {exc.cause}; nothing was written", file=sys.stderr)
        return EXIT_WRITE_FAILED
    except BagError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"error: cannot write {args.output}: {write_failure_cause(exc)}; nothing was written", file=sys.stderr)
        return EXIT_WRITE_FAILED
    finally:
        enhancer.close()
    print(summary.report())
    return 1 if summary.failures else 0


