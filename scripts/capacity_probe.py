#!/usr/bin/env python3
"""Where the shipped model's remaining error is, and what a bigger model costs to train here.

1. Scores the model on the synthetic validation set as it is and with OpenCV's non-local-means
   denoiser applied to its output (a diagnostic of residual noise, not a shipped stage).
2. Times AdamW training steps of the `tiny` and `small` variants on this machine's CPU.

    python scripts/capacity_probe.py [--model PATH] [--threads 2] [--skip-timing]
"""
from __future__ import annotations

import argparse
import time

import cv2
import numpy as np
import torch

from dap_led_ros.enhancer import Enhancer, EnhancerConfig
from dap_led_ros.model.config import ModelConfig
from dap_led_ros.model.dapled import DAPLED
from dap_led_ros.training.evaluate import synthetic_pairs
from dap_led_ros.training.metrics import psnr, ssim


def denoise_headroom(model: str | None, threads: int, size: tuple[int, int], seed: int, h: float,
                     count: int | None = None) -> None:
    enhancer = Enhancer(EnhancerConfig(model=model, backend="torch", threads=threads))
    cv2.setNumThreads(threads)
    scores, nlm_seconds = [], []
    for name, low, gt in synthetic_pairs(size, count, seed):
        out = enhancer.enhance(low)
        t0 = time.perf_counter()
        nlm = cv2.fastNlMeansDenoisingColored(out, None, h, h, 5, 15)
        nlm_seconds.append(time.perf_counter() - t0)
        scores.append((psnr(out, gt), ssim(out, gt), psnr(nlm, gt), ssim(nlm, gt)))
        print(f"{name:32s} model {scores[-1][0]:6.2f} dB {scores[-1][1]:.3f}   "
              f"+NLM {scores[-1][2]:6.2f} dB {scores[-1][3]:.3f}", flush=True)
    m = np.mean(scores, axis=0)
    print(f"mean over {len(scores)} pairs ({size[1]}x{size[0]}, seed {seed}): model {m[0]:.2f} dB / "
          f"{m[1]:.4f}; model + NLM (h={h:g}) {m[2]:.2f} dB / {m[3]:.4f}, "
          f"NLM {1000 * float(np.median(nlm_seconds)):.0f} ms per frame ({threads} threads)")


def step_times(threads: int, crop: int = 256, batch: int = 4, steps: int = 4) -> None:
    torch.set_num_threads(threads)
    x = torch.rand(batch, 3, crop, crop)
    for variant in ("tiny", "small"):
        net = DAPLED(ModelConfig.from_variant(variant))
        opt = torch.optim.AdamW(net.parameters(), 1e-4)
        times = []
        for _ in range(steps):
            t0 = time.perf_counter()
            loss = (net(x) - x).abs().mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
            times.append(time.perf_counter() - t0)
        params = sum(p.numel() for p in net.parameters()) / 1e6
        print(f"{variant}: {params:.2f} M parameters, {min(times[1:]):.2f} s per training step "
              f"(batch {batch} of {crop} px, {threads} threads; best of {steps - 1} after a warm-up)")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default=None, help="checkpoint (default: the shipped model)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--val-size", type=int, nargs=2, default=(400, 640), metavar=("H", "W"))
    p.add_argument("--val-seed", type=int, default=1234)
    p.add_argument("--count", type=int, default=None, help="validation pairs (default: all)")
    p.add_argument("--nlm-h", type=float, default=5.0, help="NLM filter strength (OpenCV h and hColor)")
    p.add_argument("--crop", type=int, default=256, help="training crop of the timed steps")
    p.add_argument("--batch", type=int, default=4, help="batch of the timed steps")
    p.add_argument("--steps", type=int, default=4, help="timed steps per variant (the first warms up)")
    p.add_argument("--skip-timing", action="store_true")
    args = p.parse_args(argv)
    if args.steps < 2:
        p.error("--steps must be >= 2 (the first one warms up)")
    denoise_headroom(args.model, args.threads, tuple(args.val_size), args.val_seed, args.nlm_h, args.count)
    if not args.skip_timing:
        step_times(args.threads, args.crop, args.batch, args.steps)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
