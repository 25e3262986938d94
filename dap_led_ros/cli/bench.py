"""`dap-led bench`: latency and frames/s per backend and frame size."""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from dataclasses import asdict
from pathlib import Path

from dap_led_ros.cli.args import parse_size, results_write_failed
from dap_led_ros.file_output import OutputError, atomic_output, prepare_folder, write_text
from dap_led_ros.runtime.bench import (
    DEFAULT_SIZES,
    default_variants,
    machine_info,
    markdown_table,
    plot,
    run_bench,
)


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("bench", help="benchmark every available backend at camera resolutions",
                       description="Measure p50/p95 latency, fps and peak memory of each available backend "
                                   "and frame size, with the speed ratio against torch from the same run. "
                                   "Writes bench.json, bench.md and bench.png (each whole or not at all; an "
                                   "earlier run's are replaced).",
                       epilog="exit status: 0 measured and written; 1 the results could not be written; 2 "
                              "nothing measured (bad option, unknown variant, --out-dir not writable).")
    p.add_argument("--model", default=None, help="checkpoint (.safetensors with its .yaml); default: shipped model")
    p.add_argument("--backends", nargs="*", default=None,
                   help="variant labels to run (default: all available: torch onnxruntime, plus torch-cuda "
                        "torch-cuda-fp16-graphs onnxruntime-cuda tensorrt-fp16 with a GPU)")
    p.add_argument("--sizes", type=parse_size, nargs="*", default=None, metavar="WxH",
                   help="frame sizes (default: 640x480 1280x720 1920x1080)")
    p.add_argument("--iters", type=int, default=10, help="timed runs per size (default: %(default)s)")
    p.add_argument("--warmup", type=int, default=2, help="untimed runs first (default: %(default)s)")
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--threads", type=int, default=0, help="CPU threads for CPU backends (0 = library default)")
    p.add_argument("--cache-dir", default=None, help="ONNX/engine cache (default: $DAP_LED_CACHE or ~/.cache)")
    p.add_argument("--out-dir", type=Path, default=Path("bench_results"), help="output folder (default: %(default)s)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if args.iters < 1 or args.warmup < 0 or args.batch < 1:
        print("error: need --iters >= 1, --warmup >= 0, --batch >= 1", file=sys.stderr)
        return 2
    variants = default_variants(args.threads)
    if args.backends:
        known = {v.label for v in variants}
        unknown = [b for b in args.backends if b not in known]
        if unknown:
            print(f"error: unknown or unavailable variant(s) {unknown}; available here: {sorted(known)}",
                  file=sys.stderr)
            return 2
        variants = [v for v in variants if v.label in args.backends]
    sizes = tuple(args.sizes) if args.sizes else DEFAULT_SIZES
    try:  # before the long measurement
        prepare_folder(args.out_dir, "--out-dir")
    except OutputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    info = machine_info()
    t0 = time.monotonic()
    results = run_bench(variants, sizes, args.model, args.iters, args.warmup, args.batch, args.cache_dir)
    info["load_avg_end"] = os.getloadavg()
    info["wall_seconds"] = round(time.monotonic() - t0, 1)
    doc = {"machine": info, "model": args.model or "default", "iters": args.iters, "warmup": args.warmup,
           "batch": args.batch, "command": " ".join(sys.argv), "results": [asdict(r) for r in results]}
    table = markdown_table(results)
    header = (f"Machine: {info['cpu']}, {info['logical_cpus']} logical CPUs, load average "
              f"{info['load_avg_start'][0]:.2f} at start, nice {info['niceness']}"
              + (f", GPU {info['gpu']}" if info.get("gpu") else "") + "\n\n")
    try:
        write_text(args.out_dir / "bench.json", json.dumps(doc, indent=2), force=True)
        write_text(args.out_dir / "bench.md", header + table + "\n", force=True)
        with atomic_output(args.out_dir / "bench.png", force=True) as tmp:
            plot(results, tmp)
    except OSError as exc:
        return results_write_failed(args.out_dir, exc)
    print(header + table)
    cpu_ok = [r for r in results if r.fps and r.variant in ("torch", "onnxruntime")]
    for size in dict.fromkeys(r.size for r in cpu_ok):
        best = max((r for r in cpu_ok if r.size == size), key=lambda r: r.fps or 0.0)
        print(f"fastest CPU backend at {size}: {best.variant} ({best.fps:.2f} fps)")
    print(f"wrote {args.out_dir}/bench.json, bench.md, bench.png")
    return 0


