"""`dap-led bag IN OUT`: enhance the camera frames of a recording (see `dap_led_ros.bag.bag_enhance`)."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from dap_led_ros.bag.bag_enhance import BagEnhanceOptions, enhance_prepared, prepare
from dap_led_ros.bag.bag_errors import BagError, BagWriteError, write_failure_cause
from dap_led_ros.bag.bag_io import STORAGES
from dap_led_ros.bag.frames import CompressionSettings
from dap_led_ros.cli.args import add_backend_args, enhancer_from_args

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
                    "large, I/O error).")
    p.add_argument("input", type=Path, metavar="IN", help="rosbag2 folder (or a .db3/.mcap file)")
    p.add_argument("output", type=Path, metavar="OUT", help="new bag folder")
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
    add_backend_args(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    options = BagEnhanceOptions(topics=args.topics, storage=args.storage, batch=args.batch, force=args.force,
                                compression=CompressionSettings(args.jpeg_quality, args.png_level))
    try:
        bag = prepare(args.input, args.output, options)  # fail on a bad bag before loading the model
    except BagError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    enhancer = enhancer_from_args(args, temporal=not args.no_temporal)
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


