"""`dap-led demo`: the whole path on a sample drive and the real night photos."""
from __future__ import annotations

import argparse
import importlib
import sys
from pathlib import Path

from dap_led_ros.bag.bag_enhance import BagEnhanceOptions
from dap_led_ros.bag.bag_errors import BagError
from dap_led_ros.bag.demo import (
    REAL_NIGHT_ENV,
    run_demo,
)
from dap_led_ros.bag.sample_bag import SampleBagConfig
from dap_led_ros.cli.args import add_backend_args, enhancer_from_args, frame_size
from dap_led_ros.file_output import OutputError, prepare_folder

_LIBRARY = importlib.import_module("dap_led_ros.bag.demo")  # its docstring is the command's description


def add_parser(sub: argparse._SubParsersAction) -> None:
    d = SampleBagConfig()
    p = sub.add_parser("demo", help="end-to-end demo: night-drive bag -> enhanced bag, video, sheets, detections",
                       description=_LIBRARY.__doc__.split("\n", 1)[1], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, default=Path("out/demo"), help="output folder (default: %(default)s)")
    p.add_argument("--bag", type=Path, default=None, help="use this bag instead of generating the sample drive")
    p.add_argument("--frames", type=int, default=d.frames, help="sample drive length (default: %(default)s)")
    p.add_argument("--size", type=frame_size, default=f"{d.width}x{d.height}", metavar="WxH", help="sample drive frame size")
    p.add_argument("--seed", type=int, default=d.seed, help="sample drive seed (default: %(default)s)")
    p.add_argument("--real-night", type=Path, default=None, metavar="DIR",
                   help=f"real night photos to restore (default: ${REAL_NIGHT_ENV}, else ../shared/data/real-night)")
    p.add_argument("--sheet-frames", type=int, default=6, help="frames on the contact sheet (default: %(default)s)")
    p.add_argument("--no-detection", action="store_true", help="skip the detector overlay")
    p.add_argument("--batch", type=int, default=BagEnhanceOptions().batch, help="frames per backend call")
    p.add_argument("--no-temporal", action="store_true",
                   help="restore the drive frame by frame (default: temporal fusion per topic, as the node does)")
    add_backend_args(p)
    p.set_defaults(func=run)


def _inside(path: Path, folder: Path) -> bool:
    return path == folder or folder in path.parents


def run(args: argparse.Namespace) -> int:
    w, h = args.size
    if args.sheet_frames < 1:
        print("error: --sheet-frames must be >= 1", file=sys.stderr)
        return 2
    if args.bag is not None and _inside(args.out.resolve(), args.bag.resolve()):
        print(f"error: --out {args.out} must not be the input bag {args.bag} or lie inside it", file=sys.stderr)
        return 2
    try:  # before the model loads
        prepare_folder(args.out, "--out")
    except OutputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    enhancer = enhancer_from_args(args, temporal=not args.no_temporal)
    if enhancer is None:
        return 2
    try:
        result = run_demo(args.out, enhancer, bag=args.bag,
                          sample=SampleBagConfig(frames=args.frames, width=w, height=h, seed=args.seed),
                          real_night=args.real_night, sheet_frames=args.sheet_frames,
                          detection=not args.no_detection, batch=args.batch)
    except BagError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    finally:
        enhancer.close()
    print("\ndemo outputs:")
    for key, value in result.outputs.items():
        print(f"  {key}: {value}")
    print(f"  summary: {args.out / 'summary.json'}")
    return 0


