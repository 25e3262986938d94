"""`dap-led model-info`: parameters and GFLOPs of each named configuration."""
from __future__ import annotations

import argparse

from dap_led_ros.cli import frame_size
from dap_led_ros.model.config import VARIANTS, ModelConfig


def complexity(cfg: ModelConfig, height: int = 480, width: int = 640) -> dict[str, float]:
    """Parameter counts (millions) and forward GFLOPs (multiply-add = 2 FLOPs) at H x W."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from dap_led_ros.model import build_model

    model = build_model(cfg).eval()
    params = sum(p.numel() for p in model.parameters())
    clip = sum(p.numel() for p in model.prior.visual.parameters()) if model.prior is not None else 0
    counter = FlopCounterMode(display=False)
    with torch.no_grad(), counter:
        model(torch.rand(1, 3, height, width))
    return {"params_m": params / 1e6, "clip_params_m": clip / 1e6, "gflops": counter.get_total_flops() / 1e9}


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
