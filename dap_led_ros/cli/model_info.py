"""`dap-led model-info`: parameters and GFLOPs per model configuration."""
from __future__ import annotations

import argparse

from dap_led_ros.cli.args import frame_size
from dap_led_ros.model.config import VARIANTS, ModelConfig
from dap_led_ros.model.info import complexity


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("model-info", help="parameters and GFLOPs per model configuration")
    p.add_argument("--size", type=frame_size, default="640x480", metavar="WxH",
                   help="frame size for the FLOP count (default: %(default)s)")
    p.add_argument("--variants", nargs="*", default=sorted(VARIANTS))
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    w, h = args.size
    print(f"| variant | use_prior | params (M) | of which CLIP encoder (M) | GFLOPs @ {w}x{h} |")
    print("|---|---|---|---|---|")
    for name in args.variants:
        for prior in (True, False):
            c = complexity(ModelConfig.from_variant(name, use_prior=prior), h, w)
            print(f"| {name} | {prior} | {c['params_m']:.2f} | {c['clip_params_m']:.2f} | {c['gflops']:.1f} |")
    return 0


