"""`dap-led perception-bench`: detector recall/precision/mAP@0.5 against darkness, noise and blur.

Frames: clean photographs and video frames from Debian packages (`scripts/setup_bench_media.sh`
puts them in data/bench/: OpenCV's `vtest.avi` street video, every `video_stride`-th frame, and
street/people photos of opencv-doc and labelme-examples), resized to `size`. Each frame carries a
bootstrap group: consecutive video frames share one (`video_group` source frames per group) so the
confidence intervals do not pretend that neighbouring frames are independent.

Reference: each detector's own detections on the clean frame (score >= `score_threshold`) of the
road classes (`ROAD_CLASSES`); no human labels. Each condition of the sweep (`night_camera`, an
independent degradation) degrades every clean frame once (seeded per frame and condition); every
method (the degraded input, auto-exposure, auto-exposure + CLAHE, each restoration model) turns it
into the frame the detector sees. Matching as in `downstream.match_detections` (same class, IoU >=
0.5, greedy by score), on detections down to `ap_floor`: precision and recall count the
detections >= `score_threshold`; AP@0.5 per class is the all-point interpolated area under the
precision/recall curve of all detections (VOC 2010+), mAP the mean over the classes with at least
`map_min_refs` reference boxes (a class with 1-2 boxes would swing it). Confidence intervals:
percentile bootstrap, `bootstrap` resamples of the groups with replacement (seeded).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator, Sequence

import cv2
import numpy as np

from dap_led_ros.imaging.image_io import read_image
from dap_led_ros.imaging.luma import mean_luma
from dap_led_ros.perception.detection import Detection
from dap_led_ros.perception.downstream import match_detections
from dap_led_ros.perception.night_camera import NightLevel, SensorModel, degrade
from dap_led_ros.runtime.detect_route import DetectRoute, for_detector

ROAD_CLASSES = ("person", "car", "bicycle", "motorcycle", "bus", "truck", "traffic light", "stop sign", "dog")
VIDEO_NAME = "vtest.avi"
PHOTO_SUFFIXES = (".jpg", ".jpeg", ".png")

# The default sweep: darkness (noise follows the photon count), then read noise and defocus at -6 EV.
DEFAULT_LEVELS = (
    NightLevel("-5 EV", 5.0),
    NightLevel("-6 EV", 6.0),
    NightLevel("-7 EV", 7.0),
    NightLevel("-8 EV", 8.0),
    NightLevel("-6 EV, read noise 12 e-", 6.0, read_noise=12.0),
    NightLevel("-6 EV, defocus 2 px", 6.0, defocus=2.0),
)

Method = Callable[[np.ndarray], np.ndarray]
Detect = Callable[[np.ndarray], list[Detection]]


class BenchMediaError(FileNotFoundError):
    """The benchmark's frames are missing or unreadable."""


@dataclass(frozen=True)
class BenchConfig:
    size: tuple[int, int] = (512, 384)   # frame width, height
    video_stride: int = 3                # every n-th video frame
    video_group: int = 30                # source video frames per bootstrap group
    score_threshold: float = 0.5         # reference boxes and the precision/recall operating point
    ap_floor: float = 0.05               # detections kept down to this score for AP
    map_min_refs: int = 10               # mAP over the classes with at least this many reference boxes
    iou_threshold: float = 0.5
    bootstrap: int = 1000
    seed: int = 2026
    sheet_frames: int = 3

    def validate(self) -> None:
        if min(self.size) < 32:
            raise ValueError(f"frame size must be at least 32 x 32, got {self.size}")
        if (self.video_stride < 1 or self.video_group < 1 or self.bootstrap < 10 or self.sheet_frames < 0
                or self.map_min_refs < 1):
            raise ValueError("need video_stride >= 1, video_group >= 1, bootstrap >= 10, sheet_frames >= 0, "
                             "map_min_refs >= 1")
        if not 0.0 < self.ap_floor <= self.score_threshold <= 1.0:
            raise ValueError(f"need 0 < ap_floor <= score_threshold <= 1, got {self.ap_floor} / "
                             f"{self.score_threshold}")
        if not 0.0 < self.iou_threshold <= 1.0:
            raise ValueError(f"iou_threshold must be in (0, 1], got {self.iou_threshold}")


@dataclass(frozen=True)
class BenchFrame:
    name: str
    group: str
    rgb: np.ndarray


# ---------------------------------------------------------------------------------------------
# Frames


def _fit(rgb: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Resized, aspect kept, to the largest size inside `size` (nothing cropped); sides even."""
    w, h = size
    s = min(w / rgb.shape[1], h / rgb.shape[0])
    nw, nh = max(2, round(rgb.shape[1] * s) // 2 * 2), max(2, round(rgb.shape[0] * s) // 2 * 2)
    return cv2.resize(rgb, (nw, nh), interpolation=cv2.INTER_AREA if s < 1 else cv2.INTER_LINEAR)


def video_frames(path: Path, cfg: BenchConfig) -> Iterator[BenchFrame]:
    cap = cv2.VideoCapture(str(path))
    if not cap.isOpened():
        raise BenchMediaError(f"cannot open the video {path}")
    try:
        index = 0
        while True:
            ok, bgr = cap.read()
            if not ok:
                break
            if index % cfg.video_stride == 0:
                yield BenchFrame(f"{path.stem}_{index:04d}", f"{path.stem}/{index // cfg.video_group}",
                                 _fit(np.ascontiguousarray(bgr[..., ::-1]), cfg.size))
            index += 1
    finally:
        cap.release()
    if index == 0:
        raise BenchMediaError(f"the video {path} has no readable frame")


def photo_group(stem: str) -> str:
    """Photos of one scene share a group: a name's part before its first '__' (the setup script
    names them `<scene>__<file>`)."""
    return stem.split("__", 1)[0]


def bench_frames(media: Path, cfg: BenchConfig) -> list[BenchFrame]:
    """The video's frames and the photos of `media/photos/`, resized to cfg.size."""
    cfg.validate()
    video, photos = media / VIDEO_NAME, media / "photos"
    if not video.is_file() and not photos.is_dir():
        raise BenchMediaError(f"{media} holds neither {VIDEO_NAME} nor photos/; run scripts/setup_bench_media.sh "
                              f"or give --media")
    frames = list(video_frames(video, cfg)) if video.is_file() else []
    if photos.is_dir():
        for p in sorted(photos.iterdir()):
            if p.suffix.lower() in PHOTO_SUFFIXES:
                frames.append(BenchFrame(p.stem, "photo/" + photo_group(p.stem), _fit(read_image(p).rgb, cfg.size)))
    if not frames:
        raise BenchMediaError(f"no frames in {media}")
    return frames


# ---------------------------------------------------------------------------------------------
# Scoring


@dataclass
class Scored:
    """One (condition, method, detector): every detection >= ap_floor with its match, per frame."""
    frame: list[int] = field(default_factory=list)
    cls: list[int] = field(default_factory=list)
    score: list[float] = field(default_factory=list)
    tp: list[bool] = field(default_factory=list)

    def add(self, frame: int, classes: dict[str, int], refs: Sequence[Detection], dets: Sequence[Detection],
            iou_threshold: float) -> None:
        m = match_detections(refs, dets, iou_threshold)
        for det, matched in [(d, True) for d, _ in m.tp] + [(d, False) for d in m.fp]:
            self.frame.append(frame)
            self.cls.append(classes[det.label])
            self.score.append(det.score)
            self.tp.append(matched)

    def arrays(self) -> tuple[np.ndarray, ...]:
        return (np.asarray(self.frame, np.int64), np.asarray(self.cls, np.int64),
                np.asarray(self.score, np.float64), np.asarray(self.tp, bool))


def average_precision(tp_w: np.ndarray, fp_w: np.ndarray, refs: np.ndarray) -> np.ndarray:
    """All-point interpolated AP per row. tp_w/fp_w: B x N weights of detections sorted by
    descending score (one row per bootstrap sample), refs: B reference counts. NaN where refs == 0."""
    ctp, cfp = np.cumsum(tp_w, axis=1), np.cumsum(fp_w, axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        recall = ctp / refs[:, None]
        precision = np.where(ctp + cfp > 0, ctp / np.maximum(ctp + cfp, 1e-12), 0.0)
    envelope = np.maximum.accumulate(precision[:, ::-1], axis=1)[:, ::-1]
    steps = np.diff(np.concatenate([np.zeros((len(refs), 1)), recall], axis=1), axis=1)
    ap = np.sum(steps * envelope, axis=1)
    return np.where(refs > 0, ap, np.nan)


def summarise(scored: Scored, ref_counts: np.ndarray, frame_group: np.ndarray, weights: np.ndarray,
              threshold: float, map_min_refs: int = 1, chunk: int = 200) -> dict[str, np.ndarray]:
    """Recall, precision and mAP for each row of `weights` (B x groups: how often each group is drawn).

    ref_counts: frames x classes reference boxes; frame_group: group index of each frame. Rows are
    done `chunk` at a time to bound the memory (B x detections of a class)."""
    frame, cls, score, tp = scored.arrays()
    frames = len(ref_counts)
    op = score >= threshold
    tp_frame = np.bincount(frame[tp & op], minlength=frames).astype(np.float64)
    fp_frame = np.bincount(frame[~tp & op], minlength=frames).astype(np.float64)
    order = {c: (lambda i: i[np.argsort(-score[i], kind="stable")])(np.nonzero(cls == c)[0])
             for c in range(ref_counts.shape[1]) if ref_counts[:, c].sum() >= map_min_refs}
    out: dict[str, list[np.ndarray]] = {"recall": [], "precision": [], "map50": []}
    for start in range(0, len(weights), chunk):
        fw = weights[start:start + chunk][:, frame_group]   # b x frames
        refs_c = fw @ ref_counts                              # b x classes
        tp_op, fp_op = fw @ tp_frame, fw @ fp_frame
        with np.errstate(invalid="ignore", divide="ignore"):
            out["recall"].append(tp_op / refs_c.sum(axis=1))
            out["precision"].append(np.where(tp_op + fp_op > 0, tp_op / np.maximum(tp_op + fp_op, 1e-12), np.nan))
        aps = []
        for c, idx in order.items():
            w = fw[:, frame[idx]]
            aps.append(average_precision(w * tp[idx], w * ~tp[idx], refs_c[:, c]))
        stacked = np.stack(aps, axis=1) if aps else np.full((len(fw), 1), np.nan)
        with np.errstate(invalid="ignore"):
            all_nan = np.isnan(stacked).all(axis=1)
            out["map50"].append(np.where(all_nan, np.nan, np.nanmean(np.where(all_nan[:, None], 0.0, stacked), axis=1)))
    return {k: np.concatenate(v) for k, v in out.items()}


def bootstrap_weights(groups: int, samples: int, seed: int) -> np.ndarray:
    """Row 0: every group once (the point estimate); then `samples` resamples with replacement."""
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, groups, size=(samples, groups))
    counts = np.zeros((samples, groups))
    np.add.at(counts, (np.arange(samples)[:, None], draws), 1.0)
    return np.concatenate([np.ones((1, groups)), counts], axis=0)


def interval(values: np.ndarray) -> dict[str, float]:
    """Point estimate (row 0) and the 2.5 / 97.5 percentiles of the resamples."""
    rest = values[1:][np.isfinite(values[1:])]
    lo, hi = (np.percentile(rest, [2.5, 97.5]) if len(rest) else (math.nan, math.nan))
    return {"value": float(values[0]), "lo": float(lo), "hi": float(hi)}


def paired_differences(rows: dict[tuple[str, str], dict[str, np.ndarray]], methods: list[str],
                       detectors: list[str]) -> dict:
    """For every detector and pair of methods (a listed after b): a - b of recall, precision and
    mAP, point estimate and 95 % interval over the same bootstrap resamples (paired: both methods
    saw the same frames in each resample, so the interval is that of the difference itself)."""
    out: dict = {}
    for dname in detectors:
        out[dname] = {}
        for i, a in enumerate(methods):
            for b in methods[:i]:
                ra, rb = rows[a, dname], rows[b, dname]
                with np.errstate(invalid="ignore"):
                    out[dname][f"{a} - {b}"] = {k: interval(ra[k] - rb[k]) for k in ra}
    return out


def routed(restore: Method, route: DetectRoute) -> Method:
    """What enhance_node's detect/image carries: `restore(x)` (at the route's detector level, if it
    has one) where the route restores x, else x."""
    rule = route.rule()
    return lambda x: for_detector(rule, restore(x)) if route.restores(x) else x


def last_call_cached(fn: Method) -> Method:
    """fn, remembering its last input and output: a routed method reuses the restoration the plain
    method just computed for the same degraded frame (run_bench hands every method the same array)."""
    last: list = [None, None]

    def call(x: np.ndarray) -> np.ndarray:
        if last[0] is not x:
            last[0], last[1] = x, fn(x)
        return last[1]
    return call


def level_seed_index(level: NightLevel, position: int) -> int:
    """A default condition's index in DEFAULT_LEVELS (so `--levels 2 3` degrades each frame exactly as
    the whole sweep does, and runs over parts merge into the same figures); else after them."""
    return DEFAULT_LEVELS.index(level) if level in DEFAULT_LEVELS else len(DEFAULT_LEVELS) + position


def frame_seed(seed: int, level: int, frame: int) -> np.random.Generator:
    return np.random.default_rng([seed, level, frame])


def run_bench(frames: Sequence[BenchFrame], levels: Sequence[NightLevel], methods: dict[str, Method],
              detectors: dict[str, Detect], cfg: BenchConfig, sensor: SensorModel = SensorModel(),
              depth: Callable[[np.ndarray], np.ndarray] | None = None,
              depth_score: Callable[[np.ndarray, np.ndarray], tuple[float, float]] | None = None,
              progress: Callable[[str], None] = lambda s: None) -> tuple[dict, list]:
    """The sweep: per condition, method and detector the bootstrap figures; and contact-sheet rows.

    Detectors are called with every frame and must return detections down to cfg.ap_floor."""
    cfg.validate()
    classes = {c: i for i, c in enumerate(ROAD_CLASSES)}
    group_names = sorted({f.group for f in frames})
    frame_group = np.asarray([group_names.index(f.group) for f in frames])
    refs: dict[str, list[list[Detection]]] = {}
    ref_counts: dict[str, np.ndarray] = {}
    for dname, detect in detectors.items():
        refs[dname] = [[d for d in detect(f.rgb) if d.label in classes and d.score >= cfg.score_threshold]
                       for f in frames]
        counts = np.zeros((len(frames), len(classes)))
        for i, rs in enumerate(refs[dname]):
            for r in rs:
                counts[i, classes[r.label]] += 1
        ref_counts[dname] = counts
    progress(f"references: {', '.join(f'{d} {int(c.sum())} boxes' for d, c in ref_counts.items())} "
             f"in {len(frames)} frames, {len(group_names)} groups")
    clean_depth = [depth(f.rgb) for f in frames] if depth is not None else None
    sheet_idx = sorted(range(len(frames)), key=lambda i: -len(refs[next(iter(detectors))][i]))[:cfg.sheet_frames]
    sheet: list = []
    weights = bootstrap_weights(len(group_names), cfg.bootstrap, cfg.seed)
    results: dict = {"frames": len(frames), "groups": len(group_names), "levels": {}}
    for li, level in enumerate(levels):
        scored = {(m, d): Scored() for m in methods for d in detectors}
        depth_vals: dict[str, list[tuple[float, float]]] = {m: [] for m in methods}
        lumas = []
        for fi, frame in enumerate(frames):
            low = degrade(frame.rgb, level, frame_seed(cfg.seed, level_seed_index(level, li), fi), sensor)
            lumas.append(mean_luma(low))
            # A routed method hands back the very array another method did (the input or the
            # restoration): its detections and depth are that method's, not computed again.
            seen: dict[int, tuple[np.ndarray, dict[str, list[Detection]], tuple[float, float] | None]] = {}
            for mname, method in methods.items():
                out = method(low)
                if id(out) not in seen:
                    found = {dname: [d for d in detect(out) if d.label in classes]
                             for dname, detect in detectors.items()}
                    agreement = (depth_score(depth(out), clean_depth[fi])
                                 if clean_depth is not None and depth_score is not None else None)
                    seen[id(out)] = (out, found, agreement)  # `out` kept alive: its id stays unique
                _, found, agreement = seen[id(out)]
                for dname, dets in found.items():
                    scored[mname, dname].add(fi, classes, refs[dname][fi], dets, cfg.iou_threshold)
                    if fi in sheet_idx and dname == next(iter(detectors)):
                        sheet.append((level.name, mname, frame.name, out, dets))
                if agreement is not None:
                    depth_vals[mname].append(agreement)
        lvl: dict = {"condition": level.describe(), "methods": {},
                     "input_luma": {"median": float(np.median(lumas)), "p5": float(np.percentile(lumas, 5)),
                                    "p95": float(np.percentile(lumas, 95))}}
        rows: dict[tuple[str, str], dict[str, np.ndarray]] = {}
        for mname in methods:
            lvl["methods"][mname] = {}
            for dname in detectors:
                rows[mname, dname] = summarise(scored[mname, dname], ref_counts[dname], frame_group, weights,
                                               cfg.score_threshold, cfg.map_min_refs)
                lvl["methods"][mname][dname] = {k: interval(v) for k, v in rows[mname, dname].items()}
            if clean_depth is not None:
                vals = np.asarray(depth_vals[mname], np.float64)
                lvl["methods"][mname]["depth"] = {"absrel": float(np.nanmean(vals[:, 0])),
                                                  "delta1": float(np.nanmean(vals[:, 1]))}
        lvl["differences"] = paired_differences(rows, list(methods), list(detectors))
        results["levels"][level.name] = lvl
        progress(f"{level.name}: " + "; ".join(
            f"{m} recall {lvl['methods'][m][next(iter(detectors))]['recall']['value']:.3f}" for m in methods))
    results["reference_boxes"] = {d: int(c.sum()) for d, c in ref_counts.items()}
    results["reference_classes"] = {d: {k: int(c[:, i].sum()) for k, i in classes.items() if c[:, i].sum()}
                                    for d, c in ref_counts.items()}
    heights = [r.box[3] - r.box[1] for rs in refs[next(iter(detectors))] for r in rs]
    results["reference_height_px"] = {"median": float(np.median(heights)) if heights else math.nan,
                                      "p10": float(np.percentile(heights, 10)) if heights else math.nan,
                                      "p90": float(np.percentile(heights, 90)) if heights else math.nan}
    clean_rows = [(frames[i].name, frames[i].rgb, refs[next(iter(detectors))][i]) for i in sheet_idx]
    return results, [clean_rows, sheet]


def _nan_for_none(obj):
    """A perception_bench.json value back as written: null -> NaN (json_ready's inverse)."""
    if obj is None:
        return math.nan
    if isinstance(obj, dict):
        return {k: _nan_for_none(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_nan_for_none(v) for v in obj]
    return obj


def merge_results(parts: Sequence[dict]) -> dict:
    """Runs of the same frames, detectors and settings over different conditions (`--levels`) as
    one result, conditions in `DEFAULT_LEVELS` order; ValueError when the runs do not match."""
    if not parts:
        raise ValueError("nothing to merge")
    parts = [_nan_for_none(p) for p in parts]
    same = ("frames", "groups", "reference_boxes", "reference_classes", "config")
    for part in parts[1:]:
        for key in same:
            if part.get(key) != parts[0].get(key):
                raise ValueError(f"the runs differ in {key!r}: {part.get(key)} vs {parts[0].get(key)}")
    levels: dict = {}
    for part in parts:
        for name, lvl in part["levels"].items():
            if name in levels:
                raise ValueError(f"condition {name!r} is in more than one run")
            levels[name] = lvl
    order = [lv.name for lv in DEFAULT_LEVELS]
    ordered = dict(sorted(levels.items(), key=lambda kv: order.index(kv[0]) if kv[0] in order else len(order)))
    return {**parts[0], "levels": ordered, "command": [p.get("command") for p in parts],
            "wall_s": [p.get("wall_s") for p in parts]}


BASELINES = ("degraded input", "auto-exposure", "auto-exposure + CLAHE")
_PLAIN_DARKNESS = {lv.name for lv in DEFAULT_LEVELS
                   if lv.read_noise == NightLevel(lv.name, lv.ev).read_noise and lv.defocus == 0}


def routing_thresholds(results: dict, baseline: str = BASELINES[0]) -> dict:
    """Per detector and restoration method, the `detect_restore_below` (runtime/detect_route.py)
    that this run supports: restoration must raise recall over the camera frame (paired 95 %
    interval above zero) at a darkness level and at every darker one. The darkness-only levels
    (no extra read noise or blur) are ordered by their input's median luma; the threshold lies
    midway between the brightest level where restoration helps and the next brighter one; 0 (never
    restore) when it does not help at the darkest; above the brightest level's luma (95th
    percentile) when it helps at every level. Needs at least two darkness levels in the run."""
    plain = sorted(((n, lvl) for n, lvl in results["levels"].items()
                    if n in _PLAIN_DARKNESS and "differences" in lvl and "input_luma" in lvl),
                   key=lambda kv: kv[1]["input_luma"]["median"])
    if len(plain) < 2:
        return {}
    first = plain[0][1]["methods"]
    restorers = [m for m in first if m not in BASELINES and " routed (" not in m]
    detectors = [d for d in first[baseline] if d != "depth"]
    lumas = [lvl["input_luma"] for _, lvl in plain]
    out: dict = {}
    for dname in detectors:
        out[dname] = {}
        for m in restorers:
            gains = [lvl["differences"][dname][f"{m} - {baseline}"]["recall"] for _, lvl in plain]
            helps = [g["lo"] > 0 for g in gains]
            j = next((i for i, h in enumerate(helps) if not h), len(helps))  # levels 0..j-1 all help
            if j == 0:
                threshold = 0.0
            elif j == len(plain):
                threshold = lumas[-1]["p95"]
            else:
                threshold = (lumas[j - 1]["median"] + lumas[j]["median"]) / 2
            out[dname][m] = {"threshold": round(threshold, 3), "helps_at": [n for n, _ in plain[:j]],
                             "gains": {n: g for (n, _), g in zip(plain, gains)}, "helps_everywhere": j == len(plain)}
    return out


# ---------------------------------------------------------------------------------------------
# Report


def _ci(v: dict[str, float]) -> str:
    if not math.isfinite(v["value"]):
        return "-"
    return f"{v['value']:.3f} [{v['lo']:.3f}, {v['hi']:.3f}]"


def markdown_report(results: dict, header: list[str]) -> str:
    """One table per detector: conditions x methods, recall / precision / mAP@0.5 with 95 % CIs."""
    lines = ["# dap-led perception-bench", "", *header, ""]
    first_level = next(iter(results["levels"].values()))
    methods = list(first_level["methods"])
    detectors = [d for d in first_level["methods"][methods[0]] if d != "depth"]
    for dname in detectors:
        cls = ", ".join(f"{k} {v}" for k, v in results["reference_classes"][dname].items())
        lines += [f"## {dname}: {results['reference_boxes'][dname]} reference boxes ({cls}) in "
                  f"{results['frames']} frames, {results['groups']} bootstrap groups", "",
                  "| condition | method | recall [95 % CI] | precision [95 % CI] | mAP@0.5 [95 % CI] |",
                  "|---|---|---|---|---|"]
        for lname, lvl in results["levels"].items():
            for m in methods:
                r = lvl["methods"][m][dname]
                lines.append(f"| {lname} | {m} | {_ci(r['recall'])} | {_ci(r['precision'])} | {_ci(r['map50'])} |")
        lines.append("")
    for dname in detectors:
        diffs = {n: lvl["differences"][dname] for n, lvl in results["levels"].items() if "differences" in lvl}
        if not diffs:
            continue
        base = methods[0]
        lines += [f"## {dname}: gain over {base}, paired (each resample scores both on the same frames)", "",
                  "| condition | method | recall gain [95 % CI] | precision change [95 % CI] | mAP@0.5 change [95 % CI] |",
                  "|---|---|---|---|---|"]
        for lname, d in diffs.items():
            for m in methods[1:]:
                r = d.get(f"{m} - {base}")
                if r is not None:
                    lines.append(f"| {lname} | {m} | {_ci(r['recall'])} | {_ci(r['precision'])} | {_ci(r['map50'])} |")
        lines.append("")
    routes = results.get("routing") or routing_thresholds(results)
    if any(routes.values()):
        lines += ["## Routing threshold this run supports (`detect_restore_below`, mean luma of the camera frame)",
                  "", "Restored below it: the recall gain over the degraded input is above zero (paired 95 % "
                  "interval) at that darkness and every darker one.", "",
                  "| detector | restoration | recall gain per darkness level [95 % CI] | threshold |", "|---|---|---|---|"]
        for dname, per_model in routes.items():
            for m, r in per_model.items():
                gains = "; ".join(f"{n} {_ci(g)}" for n, g in r["gains"].items())
                bound = ">= " if r["helps_everywhere"] else ""
                lines.append(f"| {dname} | {m} | {gains} | {bound}{r['threshold']:.3f} |")
        lines.append("")
    lumas = {n: lvl["input_luma"] for n, lvl in results["levels"].items() if "input_luma" in lvl}
    if lumas:  # what routing by darkness (runtime/detect_route.py) compares with its threshold
        lines += ["## Mean luma of the degraded input (BT.601, 0-1)", "",
                  "| condition | median | 5th-95th percentile |", "|---|---|---|"]
        lines += [f"| {n} | {v['median']:.4f} | {v['p5']:.4f}-{v['p95']:.4f} |" for n, v in lumas.items()]
        lines.append("")
    if "depth" in first_level["methods"][methods[0]]:
        lines += ["## Depth agreement with the clean frame (scale-and-shift aligned per frame)", "",
                  "| condition | method | AbsRel | delta < 1.25 |", "|---|---|---|---|"]
        for lname, lvl in results["levels"].items():
            for m in methods:
                d = lvl["methods"][m]["depth"]
                lines.append(f"| {lname} | {m} | {d['absrel']:.4f} | {d['delta1']:.4f} |")
        lines.append("")
    return "\n".join(lines)


def write_plot(results: dict, path: Path) -> None:
    """Per detector: recall, precision and mAP@0.5 against the condition, one line per method, 95 % CI bars."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    levels = list(results["levels"])
    first = results["levels"][levels[0]]["methods"]
    methods = list(first)
    detectors = [d for d in first[methods[0]] if d != "depth"]
    fig, axes = plt.subplots(len(detectors), 3, figsize=(15, 4.2 * len(detectors)), squeeze=False)
    x = np.arange(len(levels))
    for row, dname in zip(axes, detectors):
        for ax, key in zip(row, ("recall", "precision", "map50")):
            for k, m in enumerate(methods):
                vals = [results["levels"][lv]["methods"][m][dname][key] for lv in levels]
                y = np.array([v["value"] for v in vals])
                err = np.array([[v["value"] - v["lo"], v["hi"] - v["value"]] for v in vals]).T
                ax.errorbar(x + (k - len(methods) / 2) * 0.06, y, yerr=np.nan_to_num(err), marker="o",
                            capsize=3, label=m, linewidth=1.2, markersize=4)
            ax.set_xticks(x, [lv.replace(", ", "\n").replace("noise ", "noise\n").replace("defocus ", "defocus\n")
                              for lv in levels], fontsize=7)
            ax.set_ylim(0, 1)
            ax.set_title(f"{dname}: {'mAP@0.5' if key == 'map50' else key}", fontsize=9)
            ax.grid(alpha=0.3)
        row[0].legend(fontsize=7)
    fig.suptitle("detections vs the detector's own clean-frame detections (95 % bootstrap CIs over groups)",
                 fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def _panel(rgb: np.ndarray, dets: Sequence[Detection], caption: str, width: int = 256) -> np.ndarray:
    from dap_led_ros.perception.detection import draw_detections

    img = draw_detections(rgb, list(dets))
    img = cv2.resize(img, (width, max(1, round(img.shape[0] * width / img.shape[1]))), interpolation=cv2.INTER_AREA)
    cv2.rectangle(img, (0, 0), (img.shape[1], 15), (0, 0, 0), cv2.FILLED)
    cv2.putText(img, caption[:44], (3, 11), cv2.FONT_HERSHEY_SIMPLEX, 0.38, (255, 255, 255), 1, cv2.LINE_AA)
    return img


def contact_sheet(sheet: list, threshold: float) -> np.ndarray | None:
    """Rows (frame, condition) of [clean with references | each method's frame with its detections >= threshold]."""
    clean_rows, outputs = sheet
    if not clean_rows:
        return None
    clean = {name: _panel(rgb, refs, f"clean {name}: {len(refs)} refs") for name, rgb, refs in clean_rows}
    rows: dict[tuple[str, str], list[np.ndarray]] = {}
    for level, method, name, out, dets in outputs:
        kept = [d for d in dets if d.score >= threshold]
        rows.setdefault((name, level), [clean[name]]).append(_panel(out, kept, f"{level} {method}: {len(kept)}"))
    return np.concatenate([np.concatenate(p, axis=1) for p in rows.values()], axis=0)
