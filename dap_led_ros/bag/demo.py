"""`dap-led demo --out out/demo`: the whole path on a night drive, end to end, on the CPU or a GPU.

1. a sample night-drive bag (`make-sample-bag`), or the bag given with --bag;
2. `dap-led bag` on it through the same Enhancer the ROS node uses (backend auto);
3. from the enhanced bag: a side-by-side MP4 (an animated PNG where OpenCV has no mp4v encoder)
   and a contact sheet;
4. the object detector on input vs. restored frames, drawn side by side (when
   `dap_led_ros.perception.detection` and its model are available);
5. the real night photos (../shared/data/real-night, or --real-night DIR) restored into
   OUT/real-night with a contact sheet and their detection overlay.
A summary.json lists what was written and the measured numbers.
"""
from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from dap_led_ros.bag.bag_enhance import BagEnhanceOptions, enhance_bag
from dap_led_ros.bag.bag_errors import BagError
from dap_led_ros.bag.bag_io import open_reader
from dap_led_ros.bag.frames import FrameDecodeError, frame_rgb
from dap_led_ros.bag.sample_bag import SampleBagConfig, make_sample_bag
from dap_led_ros.enhancer import Enhancer
from dap_led_ros.file_output import atomic_output, move_into_place, temporary_name, write_text
from dap_led_ros.imaging.image_io import ImageReadError, contact_sheet, list_images, read_image, write_image
from dap_led_ros.workspace import REAL_NIGHT_DIR

log = logging.getLogger(__name__)

REAL_NIGHT_ENV = "DAP_LED_REAL_NIGHT"
VIDEO_FOURCC = "mp4v"


@dataclass
class DemoResult:
    outputs: dict[str, str] = field(default_factory=dict)
    numbers: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def note(self, text: str) -> None:
        self.notes.append(text)
        print(text)


@dataclass
class _Pair:
    stamp: int
    before: np.ndarray
    after: np.ndarray


def _labelled(rgb: np.ndarray, text: str) -> np.ndarray:
    out = rgb.copy()
    cv2.putText(out, text, (8, 22), cv2.FONT_HERSHEY_SIMPLEX, 0.6, (0, 0, 0), 3, cv2.LINE_AA)
    cv2.putText(out, text, (8, 22), cv2.FONT_HERSHEY_SIMPLEX, 0.6, (255, 255, 0), 1, cv2.LINE_AA)
    return out


def side_by_side(before: np.ndarray, after: np.ndarray, labels: tuple[str, str]) -> np.ndarray:
    if after.shape != before.shape:
        after = cv2.resize(after, (before.shape[1], before.shape[0]), interpolation=cv2.INTER_AREA)
    return np.concatenate([_labelled(before, labels[0]), _labelled(after, labels[1])], axis=1)


class _VideoOut:
    """MP4 (mp4v) when OpenCV can encode it, else an animated PNG of (downscaled) frames."""

    def __init__(self, stem: Path, fps: float, max_apng_width: int = 960) -> None:
        self.stem, self.fps, self.max_apng_width = stem, fps, max_apng_width
        self.writer: cv2.VideoWriter | None = None
        self.fallback: list[np.ndarray] | None = None
        self.path: Path | None = None
        self._tmp: Path | None = None  # written here, renamed to `path` on close

    def add(self, rgb: np.ndarray) -> None:
        if self.writer is None and self.fallback is None:
            h, w = rgb.shape[:2]
            path = self.stem.with_suffix(".mp4")
            tmp = temporary_name(path)
            writer = cv2.VideoWriter(str(tmp), cv2.VideoWriter_fourcc(*VIDEO_FOURCC), self.fps, (w, h))
            if writer.isOpened():
                self.writer, self.path, self._tmp = writer, path, tmp
            else:
                log.warning("OpenCV cannot write %s video here; writing an animated PNG instead", VIDEO_FOURCC)
                self.fallback, self.path = [], self.stem.with_suffix(".png")
        if self.writer is not None:
            self.writer.write(cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
        else:
            s = min(1.0, self.max_apng_width / rgb.shape[1])
            self.fallback.append(cv2.resize(rgb, None, fx=s, fy=s, interpolation=cv2.INTER_AREA) if s < 1 else rgb)

    def close(self) -> Path | None:
        if self.writer is not None:
            self.writer.release()
            move_into_place(self._tmp, self.path, force=True)
        elif self.fallback:
            from PIL import Image

            frames = [Image.fromarray(f) for f in self.fallback]
            with atomic_output(self.path, force=True) as tmp:
                frames[0].save(tmp, format="PNG", save_all=True, append_images=frames[1:],
                               duration=round(1000 / self.fps), loop=0)
        return self.path


def _frame_rate(stamps: list[int], default: float = 15.0) -> float:
    if len(stamps) < 2:
        return default
    dt = float(np.median(np.diff(sorted(stamps)))) / 1e9
    return 1.0 / dt if dt > 0 else default


def _pairs_from_bag(enhanced_bag: Path, src_topic: str, out_topic: str, keep: set[int],
                    video: _VideoOut | None, labels: tuple[str, str]) -> list[_Pair]:
    """Stream (input, enhanced) frames of one topic through the video; return those at indices `keep`."""
    reader = open_reader(enhanced_bag)
    pending: dict[int, np.ndarray] = {}
    kept: list[_Pair] = []
    index = 0
    try:
        topics = [t.key for t in reader.topics if t.name in (src_topic, out_topic)]
        for record in reader.messages(topics):
            stamp = record.log_time
            try:
                rgb = frame_rgb(record.topic.msgtype, record.data)
            except FrameDecodeError:
                continue  # reported by the bag step already
            if record.topic.name == src_topic:
                pending[stamp] = rgb
                continue
            before = pending.pop(stamp, None)
            if before is None:
                continue
            if video is not None:
                video.add(side_by_side(before, rgb, labels))
            if index in keep:
                kept.append(_Pair(stamp, before, rgb))
            index += 1
    finally:
        reader.close()
    return kept


def _topic_stamps(bag: Path, topic: str) -> list[int]:
    reader = open_reader(bag)
    try:
        return [r.log_time for r in reader.messages([t.key for t in reader.topic(topic)])]
    finally:
        reader.close()


def _detector() -> tuple[Any, Any] | str:
    """(Detector, draw function), or why detection is not available."""
    try:
        from dap_led_ros.perception.detection import Detector, DetectorConfig, DetectorModelError, draw_detections
    except ImportError as exc:
        return f"detection overlay skipped: dap_led_ros.perception.detection is not available ({exc})"
    try:
        return Detector(DetectorConfig()), draw_detections
    except (DetectorModelError, ValueError, cv2.error) as exc:
        return f"detection overlay skipped: {exc}"


def _detection_sheet(pairs: list[tuple[str, np.ndarray, np.ndarray]], detector: Any, draw: Any,
                     width: int) -> tuple[np.ndarray, int, int]:
    """Rows of [input + boxes | restored + boxes]; returns the sheet and the total box counts."""
    rows, n_before, n_after = [], 0, 0
    for name, before, after in pairs:
        d0, d1 = detector.detect(before), detector.detect(after)
        n_before, n_after = n_before + len(d0), n_after + len(d1)
        rows.append((f"{name} [{len(d0)} -> {len(d1)} objects]", draw(before, d0), draw(after, d1)))
    return contact_sheet(rows, width=width, labels=("input", "restored")), n_before, n_after


def _real_night_dir(given: Path | None) -> Path | None:
    if given is not None:
        return given
    if os.environ.get(REAL_NIGHT_ENV):
        return Path(os.environ[REAL_NIGHT_ENV])
    return REAL_NIGHT_DIR if REAL_NIGHT_DIR.is_dir() else None


def run_demo(out: Path, enhancer: Enhancer, bag: Path | None = None, sample: SampleBagConfig | None = None,
             real_night: Path | None = None, sheet_frames: int = 6, detection: bool = True,
             batch: int = 4) -> DemoResult:
    out.mkdir(parents=True, exist_ok=True)
    result = DemoResult()
    backend = enhancer.backend.describe()
    result.numbers["backend"] = backend
    result.numbers["temporal"] = enhancer.cfg.temporal  # the bag's frames fused per topic

    # 1-2: bag in, enhanced bag out
    if bag is None:
        bag = make_sample_bag(out / "night_drive", sample or SampleBagConfig(), force=True)
        print(f"sample night drive: {bag}")
    enhanced_bag = out / f"{bag.name}_enhanced"
    summary = enhance_bag(bag, enhanced_bag, enhancer, BagEnhanceOptions(batch=batch, force=True))
    print(summary.report())
    result.outputs.update(input_bag=str(bag), enhanced_bag=str(enhanced_bag))
    result.numbers.update(frames=summary.frames, seconds=round(summary.seconds, 2), fps=round(summary.fps, 2),
                          failed_frames=len(summary.failures))
    if not summary.frames:
        raise BagError(f"no frame of {bag} could be enhanced")

    # 3: video and contact sheet of the first enhanced topic
    src_topic = sorted(t for t in summary.topic_map if summary.enhanced[t])[0]
    out_topic = summary.topic_map[src_topic]
    n = summary.enhanced[src_topic]
    keep = {round(i * (n - 1) / max(1, sheet_frames - 1)) for i in range(min(sheet_frames, n))}
    video = _VideoOut(out / "night_drive_side_by_side", _frame_rate(_topic_stamps(bag, src_topic)))
    pairs = _pairs_from_bag(enhanced_bag, src_topic, out_topic, keep, video, ("input", f"DAP-LED ({enhancer.backend_name})"))
    result.outputs["video"] = str(video.close())
    t0 = pairs[0].stamp if pairs else 0
    named = [(f"t={(p.stamp - t0) / 1e9:.2f}s", p.before, p.after) for p in pairs]
    sheet = out / "night_drive_contact_sheet.png"
    write_image(sheet, contact_sheet(named, width=1280))
    result.outputs["contact_sheet"] = str(sheet)

    # 4: detection before / after
    det = _detector() if detection else "detection overlay skipped (--no-detection)"
    if isinstance(det, str):
        result.note(det)
    else:
        img, n0, n1 = _detection_sheet(named, *det, width=1280)
        path = out / "night_drive_detections.png"
        write_image(path, img)
        result.outputs["detections"] = str(path)
        result.numbers["night_drive_objects"] = {"input": n0, "restored": n1}

    # 5: real night photos
    folder = _real_night_dir(real_night)
    if folder is None or not folder.is_dir():
        result.note(f"real night frames skipped: no folder (pass --real-night DIR or set {REAL_NIGHT_ENV})"
                    if folder is None else f"real night frames skipped: {folder} does not exist")
    else:
        _real_night(folder, out / "real-night", enhancer, det, result)
    write_text(out / "summary.json", json.dumps({"outputs": result.outputs, "numbers": result.numbers,
                                                 "notes": result.notes}, indent=2) + "\n", force=True)
    return result


def _real_night(folder: Path, out: Path, enhancer: Enhancer, det: Any, result: DemoResult) -> None:
    rows = []
    for path in list_images(folder):
        try:
            img = read_image(path)
        except ImageReadError as exc:
            result.note(f"skipped {path}: {exc}")
            continue
        restored = enhancer.enhance(img.rgb)  # a still: fused with nothing
        write_image(out / f"{path.stem}.png", restored)
        rows.append((path.stem, img.rgb, restored))
        print(f"real night: {path.name} -> {out / (path.stem + '.png')}")
    if not rows:
        result.note(f"real night frames skipped: no images in {folder}")
        return
    sheet = out / "contact_sheet.png"
    write_image(sheet, contact_sheet(rows, width=1280))
    result.outputs.update(real_night=str(out), real_night_contact_sheet=str(sheet))
    if not isinstance(det, str):
        img, n0, n1 = _detection_sheet(rows, *det, width=1280)
        write_image(out / "detections.png", img)
        result.outputs["real_night_detections"] = str(out / "detections.png")
        result.numbers["real_night_objects"] = {"input": n0, "restored": n1}
