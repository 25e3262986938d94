"""`dap-led eval --downstream`: does restoration help the detector (and a depth model)?

The detector (the shipped SSD-MobileNet-v2 COCO, `perception.detection`) runs on the clean frame
of every validation pair and on each method's frame (the degraded input, classical auto-exposure,
DAP-LED). The clean frame's detections (score >= the threshold) are the reference; there is no
human annotation, so the figures say how much of what the detector finds in daylight it still
finds, not how good the detector is.

Matching: a method's detections, best score first, each take the unused reference box of the same
class with the highest IoU, if that IoU is >= 0.5; a matched detection is a true positive (TP), an
unmatched one a false positive (FP), an unmatched reference a false negative (FN). Precision =
TP / (TP + FP), recall = TP / references, per class and over all classes.

False positive on a light source: an FP whose box has >= 1 % of its pixels near-saturated (max of
R, G, B >= 250) in the degraded input. In both synthesis paths a dark frame stays near-saturated
only where the light sources (boosted highlights, the synthetic point lights, lamps) and their
motion streaks are, so this counts the boxes that glare or a streak produced.

Depth (with a depth model): the model runs on the clean frame and on each method's frame. Per
frame, the method's map is scaled so that its median over the valid pixels equals the clean map's
(median scale alignment; a relative model's scale is arbitrary), then compared in depth units
(1 / disparity for disparity models): AbsRel = mean |d - d_ref| / d_ref and delta < 1.25 = the
share of pixels with max(d / d_ref, d_ref / d) < 1.25. Valid pixels: finite in both maps and
(disparity) clean-frame disparity >= 1 % of its 95th percentile, i.e. depth capped at 100x the
near range, the aligned prediction clipped to the same floor; (depth) clean depth > 0, prediction
clipped at a tiny positive floor. Mean of the per-frame figures per method.
"""
from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Sequence

import cv2
import numpy as np

from dap_led_ros.file_output import atomic_output, write_text
from dap_led_ros.imaging.image_io import write_image
from dap_led_ros.perception.detection import Detection, draw_detections

Method = Callable[[np.ndarray], np.ndarray]
FrameSource = tuple[str, Iterable[tuple[str, np.ndarray, np.ndarray]]]  # set name, (name, degraded, clean)


@dataclass(frozen=True)
class DownstreamConfig:
    iou_threshold: float = 0.5
    light_level: int = 250           # near-saturated: max(R, G, B) >= this in the degraded input
    light_fraction: float = 0.01     # an FP covers a light source when this share of its box is near-saturated
    min_class_refs: int = 5          # per-class rows for classes with at least this many reference boxes
    depth_floor: float = 0.01        # disparity models: valid where disparity >= this x its 95th percentile
    sheet_rows: int = 4

    def validate(self) -> None:
        if not 0.0 < self.iou_threshold <= 1.0:
            raise ValueError(f"iou_threshold must be in (0, 1], got {self.iou_threshold}")
        if not 0 <= self.light_level <= 255 or not 0.0 < self.light_fraction <= 1.0:
            raise ValueError(f"need 0 <= light_level <= 255 and 0 < light_fraction <= 1, "
                             f"got {self.light_level} / {self.light_fraction}")
        if self.min_class_refs < 1 or self.sheet_rows < 0 or not 0.0 < self.depth_floor < 1.0:
            raise ValueError("need min_class_refs >= 1, sheet_rows >= 0 and 0 < depth_floor < 1")


# ---------------------------------------------------------------------------------------------
# Detection matching


def iou(a: Sequence[float], b: Sequence[float]) -> float:
    """Intersection over union of two (x1, y1, x2, y2) boxes; 0 when either is empty."""
    iw = min(a[2], b[2]) - max(a[0], b[0])
    ih = min(a[3], b[3]) - max(a[1], b[1])
    if iw <= 0 or ih <= 0:
        return 0.0
    inter = iw * ih
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


@dataclass
class Match:
    tp: list[tuple[Detection, Detection]] = field(default_factory=list)  # (detection, its reference)
    fp: list[Detection] = field(default_factory=list)
    fn: list[Detection] = field(default_factory=list)


def match_detections(refs: Sequence[Detection], dets: Sequence[Detection], iou_threshold: float = 0.5) -> Match:
    """Greedy matching: detections by descending score, each to the unused same-class reference
    of highest IoU (first such reference on ties) when that IoU >= iou_threshold."""
    used = [False] * len(refs)
    out = Match()
    for det in sorted(dets, key=lambda d: -d.score):
        best, best_iou = -1, iou_threshold
        for i, ref in enumerate(refs):
            if used[i] or ref.label != det.label:
                continue
            v = iou(det.box, ref.box)
            if v > best_iou or (v == best_iou and best < 0):
                best, best_iou = i, v
        if best >= 0:
            used[best] = True
            out.tp.append((det, refs[best]))
        else:
            out.fp.append(det)
    out.fn = [r for r, u in zip(refs, used) if not u]
    return out


def light_mask(degraded: np.ndarray, level: int = 250) -> np.ndarray:
    """H x W bool: near-saturated pixels (max of R, G, B >= level) of the degraded frame."""
    return degraded.max(axis=2) >= level


def covers_light(box: Sequence[float], mask: np.ndarray, fraction: float = 0.01) -> bool:
    """Whether at least `fraction` of the box's pixels (rounded to whole pixels, at least one) are in the mask."""
    h, w = mask.shape
    x1, y1 = max(0, int(math.floor(box[0]))), max(0, int(math.floor(box[1])))
    x2, y2 = min(w, int(math.ceil(box[2]))), min(h, int(math.ceil(box[3])))
    if x2 <= x1 or y2 <= y1:
        return False
    inside = mask[y1:y2, x1:x2]
    return bool(inside.sum() >= max(1.0, fraction * inside.size))


@dataclass
class Counts:
    refs: int = 0
    tp: int = 0
    fp: int = 0
    fp_light: int = 0
    fn: int = 0

    @property
    def precision(self) -> float:
        return self.tp / (self.tp + self.fp) if self.tp + self.fp else math.nan

    @property
    def recall(self) -> float:
        return self.tp / self.refs if self.refs else math.nan

    def add(self, other: "Counts") -> None:
        for k in ("refs", "tp", "fp", "fp_light", "fn"):
            setattr(self, k, getattr(self, k) + getattr(other, k))

    def to_dict(self) -> dict[str, float]:
        return {**asdict(self), "precision": self.precision, "recall": self.recall}


def frame_counts(refs: Sequence[Detection], dets: Sequence[Detection], mask: np.ndarray | None,
                 cfg: DownstreamConfig) -> dict[str, Counts]:
    """Counts of one frame per class label (every label among refs and dets)."""
    m = match_detections(refs, dets, cfg.iou_threshold)
    per: dict[str, Counts] = {}
    for r in refs:
        per.setdefault(r.label, Counts()).refs += 1
    for det, _ in m.tp:
        per[det.label].tp += 1
    for det in m.fp:
        c = per.setdefault(det.label, Counts())
        c.fp += 1
        if mask is not None and covers_light(det.box, mask, cfg.light_fraction):
            c.fp_light += 1
    for r in m.fn:
        per[r.label].fn += 1
    return per


@dataclass
class DetectionTally:
    """Per-class counts of one method summed over frames."""
    classes: dict[str, Counts] = field(default_factory=dict)

    def add(self, per_class: dict[str, Counts]) -> None:
        for label, c in per_class.items():
            self.classes.setdefault(label, Counts()).add(c)

    def overall(self) -> Counts:
        total = Counts()
        for c in self.classes.values():
            total.add(c)
        return total

    def to_dict(self) -> dict:
        return {"overall": self.overall().to_dict(),
                "classes": {k: c.to_dict() for k, c in sorted(self.classes.items())}}


# ---------------------------------------------------------------------------------------------
# Depth agreement


DEPTH_ALIGNMENTS = ("median", "scale-shift")


def depth_agreement(pred: np.ndarray, ref: np.ndarray, output: str = "disparity",
                    floor: float = 0.01, align: str = "median") -> tuple[float, float]:
    """(AbsRel, delta < 1.25) of `pred` against `ref` after alignment (module docstring).

    output: "disparity" (big = near; compared as 1 / disparity) or "depth". align: "median"
    (one scale: medians equal) or "scale-shift" (least-squares scale and shift in the model's
    own units, as MiDaS-style relative models are evaluated). NaN, NaN when no pixel is valid.
    """
    if align not in DEPTH_ALIGNMENTS:
        raise ValueError(f"align must be one of {DEPTH_ALIGNMENTS}, got {align!r}")
    if pred.shape != ref.shape:
        raise ValueError(f"depth maps differ in shape: {pred.shape} vs {ref.shape}")
    pred, ref = pred.astype(np.float64), ref.astype(np.float64)
    valid = np.isfinite(pred) & np.isfinite(ref) & (ref > 0)
    if output == "disparity" and valid.any():
        valid &= ref >= floor * np.percentile(ref[valid], 95)
    if not valid.any():
        return math.nan, math.nan
    p, r = pred[valid], ref[valid]
    if align == "scale-shift":
        design = np.stack([p, np.ones_like(p)], axis=1)
        (scale, shift), *_ = np.linalg.lstsq(design, r, rcond=None)
        p = scale * p + shift
    else:
        med = float(np.median(p))
        p = p * (float(np.median(r)) / med) if med > 0 else np.zeros_like(p)
    lo = float(r.min()) if output == "disparity" else 1e-6 * float(r.max())
    p = np.maximum(p, lo)  # a disparity below the cap (or a depth <= 0) reads as the cap
    if output == "disparity":
        p, r = 1.0 / p, 1.0 / r
    absrel = float(np.mean(np.abs(p - r) / r))
    delta = float(np.mean(np.maximum(p / r, r / p) < 1.25))
    return absrel, delta


@dataclass
class DepthTally:
    absrel: list[float] = field(default_factory=list)
    delta: list[float] = field(default_factory=list)

    def add(self, absrel: float, delta: float) -> None:
        if math.isfinite(absrel):
            self.absrel.append(absrel)
            self.delta.append(delta)

    def to_dict(self) -> dict[str, float]:
        n = len(self.absrel)
        return {"absrel": float(np.mean(self.absrel)) if n else math.nan,
                "delta1": float(np.mean(self.delta)) if n else math.nan, "frames": n}


# ---------------------------------------------------------------------------------------------
# The run


def _panel(rgb: np.ndarray, dets: Sequence[Detection], caption: str) -> np.ndarray:
    """The frame with its boxes and a caption line at the bottom, at 320 px wide (grid_sheet's panel width)."""
    img = draw_detections(rgb, list(dets))
    scale = 320 / img.shape[1]
    img = cv2.resize(img, (320, max(1, round(img.shape[0] * scale))), interpolation=cv2.INTER_AREA)
    y = img.shape[0] - 6
    cv2.rectangle(img, (0, y - 14), (img.shape[1], img.shape[0]), (0, 0, 0), cv2.FILLED)
    cv2.putText(img, caption, (4, y), cv2.FONT_HERSHEY_SIMPLEX, 0.42, (255, 255, 255), 1, cv2.LINE_AA)
    return img


def evaluate_set(pairs: Iterable[tuple[str, np.ndarray, np.ndarray]], methods: dict[str, Method],
                 detect: Callable[[np.ndarray], list[Detection]], cfg: DownstreamConfig,
                 depth: Callable[[np.ndarray], np.ndarray] | None = None, depth_output: str = "disparity",
                 samples: list | None = None) -> dict:
    """Detection (and depth) figures of every method over (name, degraded, clean) pairs.

    samples: filled with up to cfg.sheet_rows (reference count, name, panels) of the frames with
    the most reference boxes (the earlier frame on ties), for `downstream_sheet`.
    """
    cfg.validate()
    det_tally = {m: DetectionTally() for m in methods}
    depth_tally = {m: DepthTally() for m in methods} if depth is not None else None
    frames = refs_total = 0
    for name, low, clean in pairs:
        refs = detect(clean)
        mask = light_mask(low, cfg.light_level)
        ref_depth = depth(clean) if depth is not None else None
        panels = [("clean = reference", refs, clean)]
        for m, fn in methods.items():
            out = fn(low)
            dets = detect(out)
            per = frame_counts(refs, dets, mask, cfg)
            det_tally[m].add(per)
            c = DetectionTally(per).overall()
            panels.append((f"{m}: TP {c.tp} FP {c.fp} ({c.fp_light} light) FN {c.fn}", dets, out))
            if depth_tally is not None:
                depth_tally[m].add(*depth_agreement(depth(out), ref_depth, depth_output, cfg.depth_floor))
        frames += 1
        refs_total += len(refs)
        if samples is not None and cfg.sheet_rows and refs:
            samples.append((len(refs), -frames, name, [_panel(img, d, cap) for cap, d, img in panels]))
            samples.sort(reverse=True)
            del samples[cfg.sheet_rows:]
    result = {"frames": frames, "reference_boxes": refs_total,
              "detection": {m: t.to_dict() for m, t in det_tally.items()}}
    if depth_tally is not None:
        result["depth"] = {m: t.to_dict() for m, t in depth_tally.items()}
    return result


def downstream_sheet(samples: list) -> np.ndarray:
    """Rows of [clean | each method] panels with boxes and counts; RGB uint8."""
    rows = [np.concatenate(panels, axis=1) for _, _, _, panels in samples]
    width = max(r.shape[1] for r in rows)
    rows = [np.pad(r, ((0, 2), (0, width - r.shape[1]), (0, 0))) for r in rows]
    return np.concatenate(rows, axis=0)


# ---------------------------------------------------------------------------------------------
# Report


def _f(v: float, digits: int = 3) -> str:
    return "-" if not math.isfinite(v) else f"{v:.{digits}f}"


def _row(first: list[str], c: dict) -> str:
    return "| " + " | ".join([*first, str(c["refs"]), str(c["tp"]), str(c["fp"]), str(c["fp_light"]),
                              str(c["fn"]), _f(c["precision"]), _f(c["recall"])]) + " |"


def combined(sets: dict[str, dict]) -> dict[str, dict]:
    """Overall counts per method over all sets."""
    total: dict[str, Counts] = {}
    for s in sets.values():
        for m, t in s["detection"].items():
            o = t["overall"]
            total.setdefault(m, Counts()).add(Counts(o["refs"], o["tp"], o["fp"], o["fp_light"], o["fn"]))
    return {m: c.to_dict() for m, c in total.items()}


def json_ready(obj):
    """`obj` with NaN and infinities as None (strict JSON)."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: json_ready(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_ready(v) for v in obj]
    return obj


def markdown_report(results: dict, cfg: DownstreamConfig) -> str:
    head = "| precision | recall |"
    cols = "| reference boxes | TP | FP | FP on lights | FN " + head
    lines = ["# dap-led eval --downstream", "", f"Command: `{results['command']}`", "",
             f"Machine: {results['machine']}", "", f"Detector: {results['detector']}; reference = its detections "
             f"on the clean frame (score >= {results['score_threshold']}); match: same class, IoU >= "
             f"{cfg.iou_threshold}, greedy by score, each reference once. FP on lights: an FP box with >= "
             f"{100 * cfg.light_fraction:g} % of its pixels near-saturated (max RGB >= {cfg.light_level}) in the "
             "degraded input.", ""]
    for set_name, s in results["sets"].items():
        lines += [f"## {set_name}: {s['frames']} frames, {s['reference_boxes']} reference boxes", "",
                  "| method " + cols, "|---" * 8 + "|"]
        lines += [_row([m], t["overall"]) for m, t in s["detection"].items()]
        labels = sorted({k for t in s["detection"].values() for k, c in t["classes"].items()
                         if c["refs"] >= cfg.min_class_refs})
        if labels:
            lines += ["", f"Per class (classes with >= {cfg.min_class_refs} reference boxes):", "",
                      "| class | method " + cols, "|---" * 9 + "|"]
            lines += [_row([k, m], t["classes"][k]) for k in labels for m, t in s["detection"].items()]
        if s.get("depth"):
            lines += ["", f"Depth agreement with the clean frame ({results['depth_model']}, median scale "
                      "alignment per frame):", "", "| method | AbsRel | delta < 1.25 | frames |", "|---|---|---|---|"]
            lines += [f"| {m} | {_f(d['absrel'], 4)} | {_f(d['delta1'], 4)} | {d['frames']} |"
                      for m, d in s["depth"].items()]
        lines.append("")
    if len(results["sets"]) > 1:
        lines += ["## All sets together", "", "| method " + cols, "|---" * 8 + "|"]
        lines += [_row([m], c) for m, c in combined(results["sets"]).items()]
        lines.append("")
    return "\n".join(lines)


def write_downstream_plot(results: dict, path: Path) -> None:
    """Precision and recall per method (bars), one panel per set and one for all sets together."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = {f"{k.split(':')[0].split(' (')[0]} ({s['reference_boxes']} boxes)":
              {m: t["overall"] for m, t in s["detection"].items()} for k, s in results["sets"].items()}
    if len(results["sets"]) > 1:
        panels[f"all sets ({sum(s['reference_boxes'] for s in results['sets'].values())} boxes)"] = \
            results["all_sets"]
    fig, axes = plt.subplots(1, len(panels), figsize=(4.5 * len(panels), 3.6), squeeze=False)
    for ax, (title, rows) in zip(axes[0], panels.items()):
        x = np.arange(len(rows))
        for off, key, colour in ((-0.2, "precision", "tab:blue"), (0.2, "recall", "tab:orange")):
            vals = [0.0 if not math.isfinite(r[key]) else r[key] for r in rows.values()]
            ax.bar(x + off, vals, 0.4, label=key, color=colour)
            for xi, v in zip(x + off, vals):
                ax.text(xi, v, f"{v:.2f}", ha="center", va="bottom", fontsize=7)
        ax.set_xticks(x, list(rows), fontsize=8)
        ax.set_ylim(0, 1)
        ax.set_title(title, fontsize=9)
    axes[0][0].legend(fontsize=8)
    fig.suptitle(f"detector vs its clean-frame detections (score >= {results['score_threshold']}, IoU >= "
                 f"{results['config']['iou_threshold']})", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def write_outputs(out_dir: Path, results: dict, sheets: dict[str, list], cfg: DownstreamConfig) -> str:
    """downstream.md, downstream.json (with the config and all sets together), downstream_plot.png
    and one sheet per set, each file written whole or not at all; returns the report."""
    results = {**results, "config": asdict(cfg), "all_sets": combined(results["sets"])}
    report = markdown_report(results, cfg)
    write_text(out_dir / "downstream.md", report, force=True)
    write_text(out_dir / "downstream.json", json.dumps(json_ready(results), indent=2), force=True)
    with atomic_output(out_dir / "downstream_plot.png", force=True) as tmp:
        write_downstream_plot(results, tmp)
    for tag, samples in sheets.items():
        if samples:
            write_image(out_dir / f"downstream_sheet_{tag}.png", downstream_sheet(samples), force=True)
    return report
