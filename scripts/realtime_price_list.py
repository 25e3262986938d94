#!/usr/bin/env python3
"""The quality price of the real-time levers, on both validation sets (ONNX Runtime, CPU).

For each model: PSNR/SSIM of every validation frame restored on its own (the float reference;
frames capped at 60 dB as in the set means),
and the price of reusing the CCM heatmaps on video: each frame becomes a 4-frame pan (4 px per
frame, cropped), frame 0's heatmaps serve frames 1-3 (`prior_every: 4`), scored against the same
frames with their own heatmaps. The overlap lever runs the same arithmetic (no price); INT8 was
measured apart (scripts/int8_probe.py). Writes JSON with --out.

    python scripts/realtime_price_list.py --model quality --model realtime [--count 9] [--out F]
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

PAN = 4          # frames per pan sequence
STEP = 4         # px per frame


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", action="append", required=True, help="quality | realtime | CKPT (repeatable)")
    p.add_argument("--count", type=int, default=None, help="frames per set (default: the whole set)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out", type=Path, default=None)
    args = p.parse_args()

    from dap_led_ros.enhancer import Enhancer, EnhancerConfig, to_input, to_rgb8
    from dap_led_ros.training.evaluate import camera_pairs, synthetic_pairs
    from dap_led_ros.training.metrics import PSNR_CAP_DB, psnr, ssim

    def capped(a, b) -> float:  # as the set means count a frame (metrics.mean_psnr)
        return min(psnr(a, b), PSNR_CAP_DB)

    size = (400 + PAN * STEP, 640 + PAN * STEP)  # room for the pan; each frame is cropped to 640x400
    sets = {"synthetic": list(synthetic_pairs(size, args.count, 1234)),
            "camera": list(camera_pairs(size, args.count, 4321))}
    results: dict[str, dict] = {}
    for model in args.model:
        e = Enhancer(EnhancerConfig(model=model, backend="onnxruntime", device="cpu", threads=args.threads))
        b = e.backend
        row: dict[str, dict] = {}
        for set_name, pairs in sets.items():
            own_p, own_s, reuse_p, reuse_s, d_own = [], [], [], [], []
            for _, low, high in pairs:
                frames = [(low[k * STEP // 2:k * STEP // 2 + 400, k * STEP:k * STEP + 640],
                           high[k * STEP // 2:k * STEP // 2 + 400, k * STEP:k * STEP + 640]) for k in range(PAN)]
                first = to_input(np.ascontiguousarray(frames[0][0]))
                kept = b.heatmaps(first)
                for k, (lo, hi) in enumerate(frames):
                    x = to_input(np.ascontiguousarray(lo))
                    own = to_rgb8(b.infer_with_prior(x, b.heatmaps(x))[0])
                    if k == 0:
                        own_p.append(capped(own, hi))
                        own_s.append(ssim(own, hi))
                        continue
                    reused = to_rgb8(b.infer_with_prior(x, kept)[0])
                    reuse_p.append(capped(reused, hi) - capped(own, hi))
                    reuse_s.append(ssim(reused, hi) - ssim(own, hi))
                    d_own.append(capped(reused, own))
            row[set_name] = {"frames": len(pairs), "psnr": float(np.mean(own_p)), "ssim": float(np.mean(own_s)),
                             "prior_reuse_dpsnr": float(np.mean(reuse_p)), "prior_reuse_dssim": float(np.mean(reuse_s)),
                             "prior_reuse_vs_own_psnr_min": float(np.min(d_own))}
            r = row[set_name]
            print(f"{model:>12s} {set_name:9s} {r['frames']:3d} frames: {r['psnr']:.2f} dB / {r['ssim']:.4f}; "
                  f"heatmaps reused over a {PAN}-frame pan: {r['prior_reuse_dpsnr']:+.3f} dB, "
                  f"{r['prior_reuse_dssim']:+.4f} SSIM (output vs own-heatmap output >= "
                  f"{r['prior_reuse_vs_own_psnr_min']:.1f} dB)", flush=True)
        results[model] = row
        e.close()
    if args.out:
        args.out.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
