"""`dap-led export`: the whole network (CLIP prior included) to ONNX, with a parity check."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from dap_led_ros.cli.args import parse_size
from dap_led_ros.file_output import (
    OutputError,
    check_new_output,
    move_into_place,
    os_error_text,
    prepare_folder,
    same_file,
    temporary_folder,
)
from dap_led_ros.runtime.export import (
    DEFAULT_OPSET,
    DEFAULT_PARITY_SIZES,
    ExportedModel,
    PRECISIONS,
    ExportError,
    export_model,
    parity,
    prior_graph_paths,
)


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("export", help="export the network (CLIP prior included) to ONNX",
                       description="Export the whole DAP-LED network to ONNX with dynamic batch/height/width, "
                                   "check it with onnx's checker and print its parity with PyTorch. With the "
                                   "CLIP prior, X.heatmaps.onnx and X.prior.onnx are written beside X.onnx; "
                                   "each file appears complete or not at all.",
                       epilog="exit status: 0 exported and within tolerance; 1 the export failed or its parity "
                              "exceeds --tolerance (fp16: falls below --min-psnr); 2 nothing written (bad output path, an output exists "
                              "without --force, model not loadable).")
    p.add_argument("--model", default=None, help="checkpoint (.safetensors with its .yaml); default: shipped model")
    p.add_argument("-o", "--output", type=Path, default=Path("dapled.onnx"), help="output .onnx (default: %(default)s)")
    p.add_argument("--opset", type=int, default=DEFAULT_OPSET, help="ONNX opset, >= 17 (default: %(default)s)")
    p.add_argument("--no-prior-graphs", action="store_true",
                   help="skip the heatmaps / restore-with-prior graphs used for prior-consistent tiling")
    p.add_argument("--check-sizes", type=parse_size, nargs="*", default=None, metavar="WxH",
                   help="sizes for the parity check (default: 517x333 640x480 128x96); none to skip")
    p.add_argument("--precision", choices=PRECISIONS, default="fp32",
                   help="fp32, or fp16: float16 graphs with float32 normalisations, reductions and softmax "
                        "and float32 inputs/outputs, for strongly typed TensorRT builds (default: %(default)s)")
    p.add_argument("--tolerance", type=float, default=1e-3,
                   help="fp32: max abs difference allowed (default: %(default)s)")
    p.add_argument("--min-psnr", type=float, default=40.0,
                   help="fp16: least PSNR against PyTorch float32 allowed, dB (default: %(default)s)")
    p.add_argument("--force", action="store_true", help="replace output files that exist")
    p.set_defaults(func=run)



def _output_paths(output: Path, prior_graphs: bool) -> list[Path]:
    return [output, *prior_graph_paths(output)] if prior_graphs else [output]


def _check_outputs(paths: list[Path], force: bool, model: str | None) -> None:
    """OutputError unless every graph path may be written (and none is the checkpoint)."""
    for path in paths:
        if model is not None and Path(model).exists() and same_file(path, model):
            raise OutputError(f"{path} is the checkpoint being exported; choose another output")
        check_new_output(path, force)


def _export(model, args: argparse.Namespace, digest: str) -> ExportedModel:
    """Export into a hidden folder beside the output, then move each finished graph into place."""
    with temporary_folder(args.output) as work:
        staged = export_model(model, work / args.output.name, opset=args.opset,
                              prior_graphs=not args.no_prior_graphs,
                              metadata={"dap_led.checkpoint_sha256": digest}, precision=args.precision)
        final = ExportedModel(restore=args.output, metadata=staged.metadata)
        if staged.heatmaps is not None and staged.restore_with_prior is not None:
            final.heatmaps, final.restore_with_prior = prior_graph_paths(args.output)
        pairs = [(staged.heatmaps, final.heatmaps), (staged.restore_with_prior, final.restore_with_prior),
                 (staged.restore, final.restore)]  # the whole-network graph last: it names the export
        for tmp, dst in pairs:
            if tmp is not None:
                move_into_place(tmp, dst, args.force)
    return final


def run(args: argparse.Namespace) -> int:
    from dap_led_ros.checkpoint import CheckpointError, load_checkpoint
    from dap_led_ros.runtime.backends.engine_cache import checkpoint_digest

    output: Path = args.output
    if output.suffix != ".onnx":
        print(f"error: the output must be a .onnx file, got {output}", file=sys.stderr)
        return 2
    try:  # before the model loads: the folder can be written, no output would be replaced unasked
        prepare_folder(output.parent)
        _check_outputs(_output_paths(output, not args.no_prior_graphs), args.force, args.model)
    except OutputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    try:
        model, _, _ = load_checkpoint(args.model)
        digest = checkpoint_digest(args.model)
    except (CheckpointError, FileNotFoundError) as exc:
        print(f"error: cannot load the model: {exc}", file=sys.stderr)
        return 2
    try:
        exported = _export(model, args, digest)
    except OutputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"error: cannot write {output}: {os_error_text(exc)}", file=sys.stderr)
        return 1
    except (ExportError, ValueError) as exc:
        print(f"error: export failed: {exc}", file=sys.stderr)
        return 1
    for p in (exported.restore, exported.heatmaps, exported.restore_with_prior):
        if p is not None:
            print(f"wrote {p} ({p.stat().st_size / 2**20:.1f} MiB, onnx.checker ok)")
    if exported.heatmaps is None:
        stale = [p for p in prior_graph_paths(output) if p.exists()]
        if stale:
            print(f"warning: {', '.join(map(str, stale))} beside {output} are not part of this export "
                  f"(left from an earlier one); remove them", file=sys.stderr)
    sizes = DEFAULT_PARITY_SIZES if args.check_sizes is None else tuple(args.check_sizes)
    if not sizes:
        return 0
    rows = parity(model, exported, sizes)
    print(f"parity vs PyTorch float32 (ONNX Runtime CPU, {args.precision} graphs):")
    worst = 0.0
    for r in rows:
        print(f"  {r['graph']:<20} {r['size']:>10}  max abs {r['max_abs']:.2e}  PSNR {r['psnr_db']:.1f} dB")
        worst = max(worst, float(r["max_abs"]))
    if args.precision == "fp16":
        lowest = min(float(r["psnr_db"]) for r in rows)
        if lowest < args.min_psnr:
            print(f"error: PSNR {lowest:.1f} dB is below {args.min_psnr:.1f} dB", file=sys.stderr)
            return 1
        print(f"ok: PSNR >= {lowest:.1f} dB (>= {args.min_psnr:.1f}); max abs difference {worst:.2e}")
        return 0
    if worst > args.tolerance:
        print(f"error: max abs difference {worst:.2e} exceeds {args.tolerance:.0e}", file=sys.stderr)
        return 1
    print(f"ok: max abs difference {worst:.2e} <= {args.tolerance:.0e}")
    return 0


