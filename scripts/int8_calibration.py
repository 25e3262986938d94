"""Calibration frames for INT8 post-training quantisation: degraded *training* crops (never a
validation photo), both degradation paths, as float32 N x 3 x H x W in [0, 1] in one .npy file.

Run with the project's venv: `python scripts/int8_calibration.py OUT.npy [--count 64] [--size 480 640]`.
scripts/quantize_int8.sh runs it and hands the file to NNCF.
"""
from __future__ import annotations

import argparse
import sys

import numpy as np


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out")
    parser.add_argument("--count", type=int, default=64)
    parser.add_argument("--size", type=int, nargs=2, default=(480, 640), metavar=("H", "W"))
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args(argv)
    from dap_led_ros.training.clean_photos import list_clean_photos, split_pool
    from dap_led_ros.training.datasets import SyntheticPairs
    from dap_led_ros.training.degradation_presets import camera_config, synthesis_config

    pool = split_pool(list_clean_photos())
    if not pool.train:
        print("int8_calibration: no clean training photos found", file=sys.stderr)
        return 1
    ds = SyntheticPairs(pool.train, synthesis_config("night"), crop=tuple(args.size), length=args.count,
                        seed=args.seed, augment=True, camera=camera_config("night"), camera_share=0.5)
    frames = np.stack([ds[i]["low"].numpy() for i in range(args.count)]).astype(np.float32)
    np.save(args.out, frames)
    print(f"int8_calibration: {frames.shape[0]} training crops {frames.shape[2]}x{frames.shape[3]} -> {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
