"""`dap-led detect IN OUT`: objects in an image or a folder of images, as JSON and overlays."""
from __future__ import annotations

import argparse
import json
import logging
import sys
from dataclasses import fields
from pathlib import Path

from tqdm import tqdm

from dap_led_ros.cli.args import frame_size
from dap_led_ros.file_output import OutputError, existing, prepare_folder, same_file, write_text
from dap_led_ros.imaging.image_io import (
    list_images,
    list_unsupported_images,
    read_image,
    unsupported_reason,
    write_image,
)
from dap_led_ros.perception.detection import (
    Detector,
    DetectorConfig,
    DetectorModelError,
    draw_detections,
)
from dap_led_ros.perception.detector_layouts import LAYOUTS

log = logging.getLogger(__name__)
_DEFAULTS = {f.name: f for f in fields(DetectorConfig)}


def add_parser(sub: argparse._SubParsersAction) -> None:
    d = DetectorConfig()
    p = sub.add_parser(
        "detect", help="detect objects in an image or a folder (JSON + overlay per image)",
        description="For each image, OUT/<name>.json = {\"detections\": [{\"label\", \"score\", \"box\": "
                    "[x0, y0, x1, y1] in pixels}]} and the overlay OUT/<name>.png. A folder keeps its "
                    "relative names. Inputs are never modified; outputs are written whole or not at all, "
                    "and existing ones are replaced only with --force.",
        epilog="exit status: 0 every image done; 1 some failed (each named); 2 nothing done (bad input, "
               "refused output, model that cannot be loaded).")
    p.add_argument("input", type=Path, help="image file or folder")
    p.add_argument("output", type=Path, help="output folder")
    p.add_argument("--model", default=d.model,
                   help="ONNX detector (YOLO v5/v8/v11, TF object detection API SSD, boxes/scores/labels); "
                        "default: the shipped SSD-MobileNet-v2 COCO")
    p.add_argument("--layout", default=d.layout, choices=("auto",) + LAYOUTS, help="output layout (default: %(default)s)")
    p.add_argument("--labels", default=d.labels, help="class names file (.txt, .yaml, .json); default: the model's")
    p.add_argument("--score", type=float, default=d.score_threshold, help="score threshold (default: %(default)s)")
    p.add_argument("--nms-iou", type=float, default=d.nms_iou, help="NMS IoU for raw YOLO outputs (default: %(default)s)")
    p.add_argument("--classes", default="", help="comma-separated labels to keep (default: all)")
    p.add_argument("--input-size", type=frame_size, default=None, metavar="WxH",
                   help="network input size (default: the model's, else the layout's)")
    p.add_argument("--device", default=d.device, help="cpu | cuda[:N] | tensorrt[:N] (default: %(default)s)")
    p.add_argument("--threads", type=int, default=d.threads, help="ONNX Runtime threads (0: its default)")
    p.add_argument("--no-overlay", action="store_true", help="write the JSON files only")
    p.add_argument("--force", action="store_true", help="replace outputs that exist")
    p.set_defaults(func=run)


class Refused(Exception):
    """The command cannot run as asked; nothing has been written."""


def _inside(path: Path, folder: Path) -> bool:
    return path == folder or folder in path.parents


def plan(src: Path, out: Path, overlay: bool, force: bool) -> list[tuple[Path, Path, Path | None]]:
    """(image, json, overlay) triples, after every check that can fail before the model loads."""
    if not src.exists():
        raise Refused(f"input {src} does not exist")
    if out.exists() and not out.is_dir():
        raise Refused(f"output {out} is a file; OUT is a folder")
    if src.is_file():
        reason = unsupported_reason(src)
        if reason:
            raise Refused(f"{src}: {reason}")
        images, base = [src], src.parent
    else:
        if _inside(out.resolve(), src.resolve()):
            raise Refused(f"the output folder {out} must not be the input folder {src} or lie inside it")
        images, base = list_images(src), src
        for path in list_unsupported_images(src):
            print(f"skipped {path}: {unsupported_reason(path)}", file=sys.stderr)
        if not images:
            raise Refused(f"no images found in {src}")
    jobs, seen = [], {}
    for image in images:
        stem = out / image.relative_to(base).with_suffix("")
        doc, drawn = stem.with_suffix(".json"), (stem.with_suffix(".png") if overlay else None)
        if doc in seen:
            raise Refused(f"{seen[doc]} and {image} would both be written to {doc}; rename one")
        seen[doc] = image
        jobs.append((image, doc, drawn))
    targets = [t for _, doc, drawn in jobs for t in (doc, drawn) if t is not None]
    for target in existing(targets):
        if any(same_file(target, image) for image in images):
            raise Refused(f"the output {target} is an input image; choose another output folder")
    present = existing(targets)
    if present and not force:
        raise Refused(f"{len(present)} output(s) exist already ({present[0]}...); pass --force to replace them")
    return jobs


def detector_config(args: argparse.Namespace) -> DetectorConfig:
    width, height = args.input_size or (0, 0)
    return DetectorConfig(model=args.model, layout=args.layout, labels=args.labels,
                          score_threshold=args.score, nms_iou=args.nms_iou,
                          classes=[c.strip() for c in args.classes.split(",") if c.strip()],
                          input_width=width, input_height=height, device=args.device,
                          threads=args.threads)


def run(args: argparse.Namespace) -> int:
    try:
        jobs = plan(args.input, args.output, not args.no_overlay, args.force)
        cfg = detector_config(args)
        cfg.validate()
        prepare_folder(args.output, "OUT")
        detector = Detector(cfg)
    except (Refused, OutputError, ValueError, DetectorModelError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    failed, found = [], 0
    for image, doc, drawn in tqdm(jobs, desc="detect", unit="img", disable=len(jobs) < 2):
        try:
            rgb = read_image(image).rgb
            detections = detector.detect(rgb)
            body = {"image": str(image), "width": rgb.shape[1], "height": rgb.shape[0],
                    "model": detector.describe(),
                    "detections": [{"label": d.label, "class_id": d.class_id, "score": round(d.score, 4),
                                    "box": [round(v, 1) for v in d.box]} for d in detections]}
            doc.parent.mkdir(parents=True, exist_ok=True)
            write_text(doc, json.dumps(body, indent=1) + "\n", force=args.force)
            if drawn is not None:
                write_image(drawn, draw_detections(rgb, detections), force=args.force)
        except Exception as exc:  # noqa: BLE001 - one bad image must not stop the others
            failed.append(f"{image}: {exc}")
            tqdm.write(f"error: {failed[-1]}", file=sys.stderr)
            log.debug("%s failed", image, exc_info=True)
            continue
        found += len(detections)
        labels = ", ".join(f"{d.label} {d.score:.2f}" for d in detections[:6])
        tqdm.write(f"{image}: {len(detections)} objects{': ' + labels if labels else ''}")
    print(f"detected {found} objects in {len(jobs) - len(failed)}/{len(jobs)} images with "
          f"{detector.describe()} -> {args.output}")
    if failed:
        print(f"{len(failed)} failed:\n  " + "\n  ".join(failed), file=sys.stderr)
    return 1 if failed else 0
