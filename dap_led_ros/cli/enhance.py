"""`dap-led enhance INPUT OUTPUT`: restore an image file or a folder of them."""
from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from tqdm import tqdm

from dap_led_ros.cli.args import add_backend_args, enhancer_from_args
from dap_led_ros.imaging.image_io import ImageReadError, contact_sheet, list_images, read_image, write_image

log = logging.getLogger(__name__)


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
