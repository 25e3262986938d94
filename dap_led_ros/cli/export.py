"""`dap-led export`: the whole network (CLIP prior included) to ONNX, with a parity check."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from dap_led_ros.cli.args import parse_size
from dap_led_ros.runtime.export import (
    DEFAULT_OPSET,
    DEFAULT_PARITY_SIZES,
    ExportError,
    export_model,
    parity,
)


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("export", help="export the network (CLIP prior included) to ONNX",
                       description="Export the whole DAP-LED network to ONNX with dynamic batch/height/width, "
                                   "check it with onnx's checker and print its parity with PyTorch.")
    p.add_argument("--model", default=None, help="checkpoint (.safetensors with its .yaml); default: shipped model")
    p.add_argument("-o", "--output", type=Path, default=Path("dapled.onnx"), help="output .onnx (default: %(default)s)")
    p.add_argument("--opset", type=int, default=DEFAULT_OPSET, help="ONNX opset, >= 17 (default: %(default)s)")
    p.add_argument("--no-prior-graphs", action="store_true",
                   help="skip the heatmaps / restore-with-prior graphs used for prior-consistent tiling")
    p.add_argument("--check-sizes", type=parse_size, nargs="*", default=None, metavar="WxH",
                   help="sizes for the parity check (default: 517x333 640x480 128x96); none to skip")
    p.add_argument("--tolerance", type=float, default=1e-3, help="max abs difference allowed (default: %(default)s)")
    p.set_defaults(func=run)



def run(args: argparse.Namespace) -> int:
    from dap_led_ros.checkpoint import CheckpointError, load_checkpoint
    from dap_led_ros.runtime.backends.engine_cache import checkpoint_digest

    try:
        model, _, _ = load_checkpoint(args.model)
        digest = checkpoint_digest(args.model)
    except (CheckpointError, FileNotFoundError) as exc:
        print(f"error: cannot load the model: {exc}", file=sys.stderr)
        return 2
    try:
        exported = export_model(model, args.output, opset=args.opset, prior_graphs=not args.no_prior_graphs,
                                metadata={"dap_led.checkpoint_sha256": digest})
    except (ExportError, ValueError) as exc:
        print(f"error: export failed: {exc}", file=sys.stderr)
        return 1
    for p in (exported.restore, exported.heatmaps, exported.restore_with_prior):
        if p is not None:
            print(f"wrote {p} ({p.stat().st_size / 2**20:.1f} MiB, onnx.checker ok)")
    sizes = DEFAULT_PARITY_SIZES if args.check_sizes is None else tuple(args.check_sizes)
    if not sizes:
        return 0
    rows = parity(model, exported, sizes)
    print("parity vs PyTorch (ONNX Runtime CPU, FP32):")
    worst = 0.0
    for r in rows:
        print(f"  {r['graph']:<20} {r['size']:>10}  max abs {r['max_abs']:.2e}")
        worst = max(worst, float(r["max_abs"]))
    if worst > args.tolerance:
        print(f"error: max abs difference {worst:.2e} exceeds {args.tolerance:.0e}", file=sys.stderr)
        return 1
    print(f"ok: max abs difference {worst:.2e} <= {args.tolerance:.0e}")
    return 0


