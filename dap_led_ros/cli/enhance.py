"""`dap-led enhance INPUT OUTPUT`: restore an image file or a folder of them."""
from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from tqdm import tqdm

from dap_led_ros.enhancer import TILE_MODES, Enhancer, EnhancerConfig
from dap_led_ros.imaging.image_io import ImageReadError, contact_sheet, list_images, read_image, write_image

log = logging.getLogger(__name__)


def _at_least(minimum: int):
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got '{text}'") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be >= {minimum}, got {value}")
        return value
    return parse


def add_backend_args(p: argparse.ArgumentParser) -> None:
    """Options shared by every command that runs the network."""
    d = EnhancerConfig()
    p.add_argument("--model", default=d.model, help="checkpoint (.safetensors with its .yaml); default: shipped model")
    p.add_argument("--backend", default=d.backend, help="auto | torch | onnxruntime | tensorrt (default: %(default)s)")
    p.add_argument("--device", default=d.device, help="auto | cpu | cuda | cuda:N (default: %(default)s)")
    p.add_argument("--engine", default=d.engine, help="ONNX model / TensorRT engine path for those backends")
    p.add_argument("--threads", type=_at_least(0), default=d.threads, help="CPU threads (0 = library default)")
    p.add_argument("--max-pixels", type=_at_least(1), default=d.max_pixels, help="tile frames larger than this")
    p.add_argument("--tile-size", type=int, default=d.tile_size)
    p.add_argument("--tile-overlap", type=int, default=d.tile_overlap,
                   help="blend: overlap of neighbouring tiles; exact: context halo (default: %(default)s)")
    p.add_argument("--tile-mode", choices=TILE_MODES, default=d.tile_mode,
                   help="exact: tiles reproduce a whole-frame pass (torch, ~5x the time of blend); "
                        "blend: independent tiles blended (default: %(default)s)")


def enhancer_config_from_args(args: argparse.Namespace) -> EnhancerConfig:
    return EnhancerConfig(model=args.model, backend=args.backend, device=args.device, engine=args.engine,
                          threads=args.threads, max_pixels=args.max_pixels, tile_size=args.tile_size,
                          tile_overlap=args.tile_overlap, tile_mode=args.tile_mode)


def enhancer_from_args(args: argparse.Namespace) -> Enhancer | None:
    """The Enhancer the options ask for, or None after printing why it cannot be loaded."""
    try:
        return Enhancer(enhancer_config_from_args(args))
    except (ValueError, RuntimeError, FileNotFoundError) as exc:
        print(f"error: cannot load the model: {exc}", file=sys.stderr)
        return None


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("enhance", help="restore an image or a folder of images",
                       description="Restore night frames. A folder in gives a folder out with the same "
                                   "relative names (PNG when --png).")
    p.add_argument("input", type=Path, help="image file or folder")
    p.add_argument("output", type=Path, help="output file or folder")
    p.add_argument("--contact-sheet", type=Path, default=None, help="also write a side-by-side PNG here")
    p.add_argument("--png", action="store_true", help="write every output as .png")
    add_backend_args(p)
    p.set_defaults(func=run)


def _jobs(src: Path, dst: Path, png: bool) -> list[tuple[Path, Path]]:
    if src.is_file():
        out = dst / src.name if dst.is_dir() else dst
        return [(src, out.with_suffix(".png") if png else out)]
    files = list_images(src)
    return [(f, (dst / f.relative_to(src)).with_suffix(".png" if png else f.suffix)) for f in files]


def run(args: argparse.Namespace) -> int:
    if not args.input.exists():
        print(f"error: input {args.input} does not exist", file=sys.stderr)
        return 2
    jobs = _jobs(args.input, args.output, args.png)
    if not jobs:
        print(f"error: no images found in {args.input}", file=sys.stderr)
        return 2
    enhancer = enhancer_from_args(args)
    if enhancer is None:
        return 2
    failed: list[str] = []
    sheet = []
    for src, dst in tqdm(jobs, desc="enhance", unit="img", disable=len(jobs) < 2):
        try:
            img = read_image(src)
            out = enhancer.enhance(img.rgb)
            write_image(dst, out, alpha=img.alpha, grayscale=img.grayscale)
        except (ImageReadError, ValueError, OSError) as exc:
            failed.append(f"{src}: {exc}")
            tqdm.write(f"error: {exc}", file=sys.stderr)
            continue
        if args.contact_sheet is not None and len(sheet) < 12:
            sheet.append((src.stem, img.rgb, out))
    if args.contact_sheet is not None and sheet:
        write_image(args.contact_sheet, contact_sheet(sheet))
        print(f"contact sheet: {args.contact_sheet}")
    print(f"enhanced {len(jobs) - len(failed)}/{len(jobs)} images with {enhancer.backend.describe()} -> {args.output}")
    if failed:
        print(f"{len(failed)} failed:\n  " + "\n  ".join(failed), file=sys.stderr)
        return 1
    return 0
