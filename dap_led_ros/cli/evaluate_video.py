"""`dap-led eval --video`: temporal fusion vs per-frame restoration on synthetic night sequences."""
from __future__ import annotations

import argparse
import itertools
import json
import shlex
import sys
from dataclasses import replace

from dap_led_ros.cli.args import enhancer_config_from_args, results_write_failed
from dap_led_ros.enhancer import Enhancer
from dap_led_ros.file_output import OutputError, atomic_output, prepare_folder, write_text
from dap_led_ros.imaging.image_io import write_image


def add_video_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("video (--video)")
    g.add_argument("--video", action="store_true",
                   help="score temporal fusion against per-frame restoration on synthetic night sequences "
                        "(camera motion over held-out photos, a moving object, fresh noise per frame)")
    g.add_argument("--video-count", type=int, default=8, help="sequences (default: %(default)s)")
    g.add_argument("--video-frames", type=int, default=12, help="frames per sequence (default: %(default)s)")
    g.add_argument("--video-seed", type=int, default=2468, help="seed of the sequences (default: %(default)s)")
    g.add_argument("--video-noise-gain", type=float, default=1.0, metavar="G",
                   help="sensor gain on the sampled noise: shot-noise variance x G, read noise x sqrt(G) "
                        "(a shorter exposure pushed brighter; default: %(default)s = the still-photo synthesis)")
    g.add_argument("--video-bound", type=int, default=8, metavar="DRAWS",
                   help="noise draws of each middle frame for the averaging bound (0 = skip; default: %(default)s)")


def run_video(args: argparse.Namespace) -> int:
    from dap_led_ros.training.evaluate import auto_exposure, cpu_count, grid_sheet
    from dap_led_ros.training.video_eval import score_sequences, video_report, write_video_plot
    from dap_led_ros.training.video_sequences import SequenceConfig, synthetic_sequences

    h, w = args.val_size
    if args.video_count < 1 or args.video_frames < 2 or args.video_bound < 0:
        print(f"error: need --video-count >= 1, --video-frames >= 2 and --video-bound >= 0, got "
              f"{args.video_count}/{args.video_frames}/{args.video_bound}", file=sys.stderr)
        return 2
    seq_cfg = SequenceConfig(size=(h, w), frames=args.video_frames, noise_gain=args.video_noise_gain)
    try:
        seq_cfg.validate()
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    try:
        prepare_folder(args.out_dir, "--out-dir")
    except OutputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    try:
        cfg = enhancer_config_from_args(args)
        enhancer = Enhancer(replace(cfg, temporal=True))  # enhance: a still; a stream: fused video
        backend_text = enhancer.backend.describe()
    except (ValueError, RuntimeError, FileNotFoundError) as exc:
        print(f"error: cannot load a model: {exc}", file=sys.stderr)
        return 2

    sequences = itertools.count()

    def fusing():  # each sequence is a video stream of its own
        return enhancer.stream(f"sequence {next(sequences)}").enhance

    # Burst restoration: the same backend behind two more Enhancers (input merged; merged and fused).
    burst = Enhancer(replace(cfg, temporal=False, burst=True), backend=enhancer.backend)
    burst_fused = Enhancer(replace(cfg, temporal=True, burst=True), backend=enhancer.backend)

    def bursting(enh: Enhancer):
        return lambda: enh.stream(f"sequence {next(sequences)}").enhance

    methods = {"auto-exposure": lambda: auto_exposure, "DAP-LED frame by frame": lambda: enhancer.enhance,
               "DAP-LED + temporal fusion": fusing, "DAP-LED burst": bursting(burst),
               "DAP-LED burst + temporal fusion": bursting(burst_fused)}
    samples: list = []
    try:
        results = score_sequences(synthetic_sequences(seq_cfg, args.video_count, args.video_seed), methods, samples,
                                  bound=(enhancer.enhance, args.video_bound) if args.video_bound > 0 else None)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    finally:
        enhancer.close()
    stages = enhancer.stages.summary()
    rows = results["rows"]
    a, b = rows["DAP-LED frame by frame"], rows["DAP-LED + temporal fusion"]
    network_ms = stages.get("network", {}).get("mean_ms", float("nan"))
    fusion_ms = stages.get("temporal", {}).get("mean_ms", float("nan"))
    results["fusion"] = {"psnr_gain_db": b["psnr"] - a["psnr"], "ssim_gain": b["ssim"] - a["ssim"],
                         "object_rmse_change": b["object_rmse"] - a["object_rmse"],
                         "fusion_ms": fusion_ms, "network_ms": network_ms, "cost_share": fusion_ms / network_ms}
    results["gains"] = {name: {"psnr_gain_db": rows[name]["psnr"] - a["psnr"], "ssim_gain": rows[name]["ssim"] - a["ssim"],
                               "object_rmse_change": rows[name]["object_rmse"] - a["object_rmse"]}
                        for name in ("DAP-LED burst", "DAP-LED burst + temporal fusion")}
    results["what"] = (f"{args.video_count} synthetic sequences x {args.video_frames} frames at {w}x{h} "
                       f"(seed {args.video_seed}, noise gain {args.video_noise_gain:g}); backend {backend_text}, "
                       f"{cpu_count()} CPU cores")
    if enhancer.exposure.active:  # both DAP-LED rows carry the rule: a still's gain, a stream's steadied one
        results["what"] += (f"; DAP-LED rows with the exposure rule: target level {cfg.target_level:g}, strength "
                            f"{cfg.target_strength:g}, smoothing {cfg.exposure_smoothing:g}")
        results["exposure_rule"] = {"target_level": cfg.target_level, "target_strength": cfg.target_strength,
                                    "exposure_smoothing": cfg.exposure_smoothing}
    report = video_report(results, "dap-led " + " ".join(shlex.quote(x) for x in sys.argv[1:]))
    out = args.out_dir
    try:
        write_text(out / "video.md", report, force=True)
        write_text(out / "video.json", json.dumps(results, indent=2), force=True)
        with atomic_output(out / "video_plot.png", force=True) as tmp:
            write_video_plot(results, tmp)
        if samples:
            write_image(out / "contact_sheet_video.png", grid_sheet(samples[:6], list(methods)), force=True)
    except (OSError, ValueError) as exc:
        return results_write_failed(out, exc)
    print(report)
    print(f"wrote {out / 'video.md'}, video.json, video_plot.png and contact_sheet_video.png")
    return 0
