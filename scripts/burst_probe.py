"""Probe: burst restoration (merge the aligned *input* frames before the network) against per-frame
restoration and today's fusion of restored frames, on `dap-led eval --video`'s synthetic sequences.

The merge is the fusion's own algorithm (runtime/temporal_fusion.py: DIS flow, per-pixel rejection
where the aligned history disagrees, running mean over 8 frames) run on the input scaled to a mean
level of 0.35 (so its tolerances see a bright frame), then scaled back. The network is the shipped
default. Prints, per sequence, the inputs' and outputs' level-fitted PSNR, then PSNR / SSIM /
moving-object RMSE / flicker per method (docs/evaluation.md, "Burst restoration").

    .venv/bin/python scripts/burst_probe.py NOISE_GAIN SEQUENCES [TOLERANCE]
"""
import itertools
import sys

import cv2
import numpy as np

from dap_led_ros.enhancer import Enhancer, EnhancerConfig
from dap_led_ros.runtime.temporal_fusion import FusionSettings, TemporalFusion
from dap_led_ros.training.metrics import psnr_level_fitted
from dap_led_ros.training.video_eval import score_sequences
from dap_led_ros.training.video_sequences import SequenceConfig, synthetic_sequences

LUMA = np.array([0.299, 0.587, 0.114], np.float32)


class InputMerge:
    """One stream's merged input: the fusion run on the gain-normalised frames."""

    def __init__(self, tolerance: float, target: float = 0.35) -> None:
        self.fusion = TemporalFusion(FusionSettings(exposure_smoothing=1.0, tolerance=tolerance))
        self.target = target

    def __call__(self, rgb: np.ndarray) -> np.ndarray:
        x = rgb.astype(np.float32) / 255.0
        level = float(cv2.resize(x, (64, 48), interpolation=cv2.INTER_AREA).dot(LUMA).mean())
        gain = min(64.0, max(1.0, self.target / max(level, 1e-4)))
        # not clipped: lights above the scaled range keep their values (the fusion takes any floats)
        merged = self.fusion.fuse(x * gain) / gain
        return np.clip(merged * 255 + 0.5, 0, 255).astype(np.uint8)


def main() -> None:
    noise_gain, count = float(sys.argv[1]), int(sys.argv[2])
    tolerance = float(sys.argv[3]) if len(sys.argv) > 3 else FusionSettings.tolerance
    enhancer = Enhancer(EnhancerConfig(temporal=True))
    names = itertools.count()
    cfg = SequenceConfig(noise_gain=noise_gain)

    def burst():
        merge = InputMerge(tolerance)
        return lambda rgb: enhancer.enhance(merge(rgb))

    def burst_and_fusion():
        merge, stream = InputMerge(tolerance), enhancer.stream(f"b{next(names)}")
        return lambda rgb: stream.enhance(merge(rgb))

    methods = {"frame": lambda: enhancer.enhance, "fusion": lambda: enhancer.stream(f"f{next(names)}").enhance,
               "burst": burst, "burst+fusion": burst_and_fusion}
    for seq in synthetic_sequences(cfg, count, 2468):
        merge, fits = InputMerge(tolerance), []
        for low, gt in zip(seq.degraded, seq.clean):
            m = merge(low)
            fits.append((psnr_level_fitted(low, gt), psnr_level_fitted(m, gt),
                         psnr_level_fitted(enhancer.enhance(low), gt), psnr_level_fitted(enhancer.enhance(m), gt)))
        f = np.mean(fits[1:], axis=0)
        print(f"{seq.name}: input {f[0]:.2f} -> merged {f[1]:.2f} dB; output {f[2]:.2f} -> from merged "
              f"{f[3]:.2f} dB (level-fitted, frames 2..)")
    results = score_sequences(synthetic_sequences(cfg, count, 2468), methods)
    gt = results["ground_truth"]
    for name, r in results["rows"].items():
        print(f"{name:14s} PSNR {r['psnr']:.2f} SSIM {r['ssim']:.4f} object RMSE {r['object_rmse']:.2f} "
              f"level change {r['level_change'] / gt['level_change']:.2f}x warped error "
              f"{r['warped_error'] / gt['warped_error']:.2f}x {r['ms_per_frame']:.0f} ms/frame")


if __name__ == "__main__":
    main()
