"""`dap-led enhance INPUT OUTPUT`: restore an image file or a folder of them."""
from __future__ import annotations

import argparse
import logging
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path

from tqdm import tqdm

from dap_led_ros.cli.args import add_backend_args, add_burst_arg, enhancer_from_args
from dap_led_ros.file_output import OutputError, existing, os_error_text, same_file
from dap_led_ros.imaging.image_io import (
    contact_sheet,
    list_images,
    list_unsupported_images,
    read_image,
    unsupported_reason,
    writable_suffix_error,
    write_image,
)

log = logging.getLogger(__name__)

EXIT_STATUS = ("exit status: 0 every image written; 1 some images failed (each named with its cause, the "
               "others written); 2 nothing done: bad input, an output refused (it would replace an input, "
               "it exists and --force is not given, its suffix is not an image format) or the model cannot "
               "be loaded.")


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("enhance", help="restore an image or a folder of images",
                       description="Restore night frames. A folder in gives a folder out with the same "
                                   "relative names (PNG when --png). Inputs are never modified; outputs are "
                                   "written whole or not at all, and existing ones are replaced only with "
                                   "--force. 16-bit images are restored at 8 bits (a warning says so). "
                                   "GIF and other unsupported formats are refused (listed as skipped in a "
                                   "folder).",
                       epilog=EXIT_STATUS)
    p.add_argument("input", type=Path, help="image file or folder")
    p.add_argument("output", help="output file, or folder (an existing one, or a name ending in /)")
    p.add_argument("--contact-sheet", type=Path, default=None, help="also write a side-by-side PNG here")
    p.add_argument("--png", action="store_true", help="write every output as .png")
    p.add_argument("--force", action="store_true",
                   help="replace outputs (and the contact sheet) that exist; an input is never replaced")
    p.add_argument("--temporal", action="store_true",
                   help="the images are consecutive frames of one video (in path order): fuse each restored "
                        "frame with the previous ones (as the node does; a frame that fails restarts the history)")
    add_burst_arg(p)
    add_backend_args(p)
    p.set_defaults(func=run)


class Refused(Exception):
    """The command cannot run as asked; nothing has been written."""


@dataclass
class Plan:
    jobs: list[tuple[Path, Path]]
    skipped: list[tuple[Path, str]] = field(default_factory=list)


def _shown(paths: list, limit: int = 5) -> str:
    more = f" and {len(paths) - limit} more" if len(paths) > limit else ""
    return ", ".join(str(p) for p in paths[:limit]) + more


def _inside(path: Path, folder: Path) -> bool:
    return path == folder or folder in path.parents


def _single_job(src: Path, output: str, png: bool) -> Path:
    reason = unsupported_reason(src)
    if reason:
        raise Refused(f"{src}: {reason}")
    out = Path(output)
    if out.is_dir() or output.endswith(("/", os.sep)):
        out = out / src.name
    return out.with_suffix(".png") if png else out


def _folder_plan(src: Path, output: str, png: bool) -> Plan:
    out = Path(output)
    if out.exists() and not out.is_dir():
        raise Refused(f"{out} is a file; a folder input needs an output folder")
    if _inside(out.resolve(), src.resolve()) or (out.exists() and same_file(out, src)):
        raise Refused(f"the output folder {out} must not be the input folder {src} or lie inside it "
                      f"(the results would mix with, or replace, the inputs): choose a folder beside it")
    skipped = [(p, unsupported_reason(p) or "") for p in list_unsupported_images(src)]
    jobs = [(f, (out / f.relative_to(src)).with_suffix(".png" if png else f.suffix)) for f in list_images(src)]
    return Plan(jobs, skipped)


def plan(args: argparse.Namespace) -> Plan:
    """The (input, output) pairs to restore, after every check that can fail before the model loads."""
    src: Path = args.input
    if not src.exists():
        raise Refused(f"input {src} does not exist")
    if src.is_file():
        result = Plan([(src, _single_job(src, args.output, args.png))])
    else:
        result = _folder_plan(src, args.output, args.png)
    if not result.jobs:
        note = f" ({len(result.skipped)} of unsupported formats: {_shown([p for p, _ in result.skipped])})" \
            if result.skipped else ""
        raise Refused(f"no images found in {src}{note}")
    outputs = [dst for _, dst in result.jobs]
    bad = sorted({reason for reason in map(writable_suffix_error, outputs) if reason})
    if bad:
        raise Refused(bad[0] + (f" (and {len(bad) - 1} more outputs)" if len(bad) > 1 else ""))
    seen: dict[Path, Path] = {}
    for s, dst in result.jobs:
        if dst in seen:
            raise Refused(f"{seen[dst]} and {s} would both be written to {dst}; rename one (or drop --png)")
        seen[dst] = s
    inputs = [s for s, _ in result.jobs]
    sheet = args.contact_sheet
    targets = outputs + ([sheet] if sheet is not None else [])
    if sheet is not None:
        reason = writable_suffix_error(sheet)
        if reason:
            raise Refused(f"--contact-sheet: {reason}")
        if sheet in seen or any(same_file(sheet, d) for d in existing(outputs)):
            raise Refused(f"the contact sheet {sheet} is also an image output; choose another name")
    _refuse_inputs_as_outputs(targets, inputs, src)
    for dst in existing(targets):
        if dst.is_dir() and not dst.is_symlink():
            raise Refused(f"{dst} is a folder; it cannot be replaced by an image")
    if not args.force:
        present = existing(targets)
        if len(present) == 1:
            raise Refused(f"{present[0]} exists; pass --force to replace it")
        if present:
            raise Refused(f"{len(present)} of the {len(targets)} outputs exist already ({_shown(present)}); "
                          f"pass --force to replace them")
    return result


def _refuse_inputs_as_outputs(targets: list[Path], inputs: list[Path], src: Path) -> None:
    """Refused when an output names an input file (the same path, through a link or a hard link)."""
    if src.is_file():
        hit = [t for t in targets if same_file(t, src)]
    else:
        ids = set()
        for p in inputs:
            st = p.stat()
            ids.add((st.st_dev, st.st_ino))
        resolved = {p.resolve() for p in inputs}
        hit = []
        for t in targets:
            if t.resolve() in resolved:
                hit.append(t)
            elif os.path.lexists(t):
                try:
                    st = t.stat()
                except OSError:
                    continue
                if (st.st_dev, st.st_ino) in ids:
                    hit.append(t)
    if hit:
        raise Refused(f"the output {hit[0]} is an input file; writing it would destroy the input: "
                      f"choose another output" + (f" ({len(hit) - 1} more outputs like it)" if len(hit) > 1 else ""))


def _cause(src: Path, dst: Path, exc: Exception) -> str:
    """One line for a failed image: the file, then the real cause."""
    if isinstance(exc, OSError):
        return f"{src}: cannot write {dst}: {os_error_text(exc)}"
    text = str(exc).strip() or type(exc).__name__
    if not isinstance(exc, (ValueError, RuntimeError)):
        text = f"{type(exc).__name__}: {text}"
    return text if text.startswith(str(src)) else f"{src}: {text}"


def run(args: argparse.Namespace) -> int:
    try:
        todo = plan(args)
    except (Refused, OutputError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    for path, reason in todo.skipped:
        print(f"skipped {path}: {reason}", file=sys.stderr)
    enhancer = enhancer_from_args(args, temporal=args.temporal, burst=args.burst)
    if enhancer is None:
        return 2
    failed: list[str] = []
    sheet_error = None
    sheet = []
    jobs = todo.jobs
    # --temporal / --burst: the frames are one video stream; a frame that fails splits it, so the
    # frames after it start a new history (a new segment, which the stream sees as a new frame_id).
    video = enhancer.stream("frames")
    segment = 0
    try:
        for src, dst in tqdm(jobs, desc="enhance", unit="img", disable=len(jobs) < 2):
            try:
                img = read_image(src)
                if img.bit_depth > 8:
                    tqdm.write(f"warning: {src}: {img.bit_depth}-bit input processed at 8 bits; "
                               f"{dst} is 8-bit", file=sys.stderr)
                out = video.enhance(img.rgb, frame_id=f"segment {segment}") if args.temporal or args.burst \
                    else enhancer.enhance(img.rgb)
                write_image(dst, out, alpha=img.alpha, grayscale=img.grayscale, force=args.force)
            except Exception as exc:  # noqa: BLE001 - one bad image must not stop the others
                segment += 1
                failed.append(_cause(src, dst, exc))
                tqdm.write(f"error: {failed[-1]}", file=sys.stderr)
                log.debug("%s failed", src, exc_info=True)
                continue
            if args.contact_sheet is not None and len(sheet) < 12:
                sheet.append((src.stem, img.rgb, out))
        if args.contact_sheet is not None and sheet:
            try:
                write_image(args.contact_sheet, contact_sheet(sheet), force=args.force)
                print(f"contact sheet: {args.contact_sheet}")
            except (OSError, ValueError) as exc:
                sheet_error = _cause(Path("contact sheet"), args.contact_sheet, exc)
                print(f"error: {sheet_error}", file=sys.stderr)
        backend = enhancer.backend.describe()
    finally:
        enhancer.close()
    print(f"enhanced {len(jobs) - len(failed)}/{len(jobs)} images with {backend} -> {args.output}")
    if todo.skipped:
        print(f"skipped {len(todo.skipped)} file(s) of unsupported formats: "
              f"{_shown([p for p, _ in todo.skipped])}", file=sys.stderr)
    if failed:
        print(f"{len(failed)} failed:\n  " + "\n  ".join(failed), file=sys.stderr)
    return 1 if failed or sheet_error else 0
