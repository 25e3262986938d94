#!/usr/bin/env python3
"""Time and compare whole-frame, exact-tile and blended-tile restoration of one image.

    .venv/bin/python scripts/tiling_accuracy.py IMAGE [--size 2560x1440] [--threads 1]

Prints seconds per mode and the max / mean difference (in 1/255) of each tiled mode from the
whole-frame output (docs/architecture.md quotes its figures).
"""
from __future__ import annotations

import argparse
import sys
import time

import cv2
import numpy as np

from dap_led_ros.cli.args import frame_size
from dap_led_ros.enhancer import Enhancer, EnhancerConfig
from dap_led_ros.imaging.image_io import ImageReadError, read_image


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("image")
    p.add_argument("--size", type=frame_size, default=None, help="resize to WxH first (default: as is)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--tile-size", type=int, default=EnhancerConfig.tile_size)
    p.add_argument("--tile-overlap", type=int, default=EnhancerConfig.tile_overlap)
    args = p.parse_args(argv)
    try:
        rgb = read_image(args.image).rgb
    except ImageReadError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.size:
        rgb = cv2.resize(rgb, args.size, interpolation=cv2.INTER_CUBIC)
    tiles = dict(tile_size=args.tile_size, tile_overlap=args.tile_overlap)
    modes = {"whole": dict(tile_max_pixels=rgb.shape[0] * rgb.shape[1]),
             "exact": dict(tile_max_pixels=1, tile_mode="exact", **tiles),
             "blend": dict(tile_max_pixels=1, tile_mode="blend", **tiles)}
    out = {}
    for name, kw in modes.items():
        enhancer = Enhancer(EnhancerConfig(backend="torch", threads=args.threads, **kw))
        t0 = time.perf_counter()
        out[name] = enhancer.enhance(rgb).astype(int)
        print(f"{name}: {time.perf_counter() - t0:.1f} s", flush=True)
    h, w = rgb.shape[:2]
    for name in ("exact", "blend"):
        d = np.abs(out[name] - out["whole"])
        print(f"{name} vs whole ({w}x{h}): max {d.max()}/255, mean {d.mean():.4f}/255")
    return 0


if __name__ == "__main__":
    sys.exit(main())
