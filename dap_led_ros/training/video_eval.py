"""`dap-led eval --video`: temporal fusion against per-frame restoration on synthetic night video.

For every sequence of `video_sequences` (held-out photos, camera motion, a moving object, fresh
noise per frame) and every method it reports
- PSNR / SSIM against the clean frames (set mean of per-frame figures, capped as in `metrics`),
- the moving object's RMSE (grey levels, pooled over the object's pixels in every frame): a ghost
  of the object's earlier positions raises it,
- two flicker figures, beside the same figures of the clean frames:
  level change: mean |mean grey level(t) - mean grey level(t-1)| (0-255);
  warped error: mean |frame(t) - frame(t-1) warped onto t| (0-255) over the pixels whose flow
  stays inside the frame, the flow computed once on the clean frames (DIS, medium preset) and
  used for every method, so the figure scores the method and not its flow;
- the exposure error: mean |mean luma(output) - mean luma(clean frame)| (0-255) and its signed
  mean, as `dap-led eval` reports it for stills (`metrics.level_error`),
- the time per frame, and for temporal fusion the fusion stage's time against the network's.
Methods: classical auto-exposure, DAP-LED frame by frame, DAP-LED with temporal fusion (the
Enhancer's `temporal` path, the one the node and the bag tool run), and burst restoration (the
Enhancer's `burst` path: the aligned *input* frames merged before the network), alone and fused.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable

import cv2
import numpy as np

from dap_led_ros.imaging.luma import BT601
from dap_led_ros.training.metrics import level_error, mean_psnr, psnr, ssim
from dap_led_ros.training.video_sequences import VideoSequence

Method = Callable[[np.ndarray], np.ndarray]
_GREY = np.asarray(BT601, np.float32)


def clean_flows(clean: list[np.ndarray]) -> list[tuple[np.ndarray, np.ndarray]]:
    """(map, valid) per consecutive pair: map (H x W x 2 float32) takes frame t's pixels to their
    place in frame t-1; valid marks pixels whose place lies inside frame t-1."""
    dis = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM)
    out = []
    for cur, prev in zip(clean[1:], clean[:-1]):
        flow = dis.calc(cv2.cvtColor(cur, cv2.COLOR_RGB2GRAY), cv2.cvtColor(prev, cv2.COLOR_RGB2GRAY), None)
        h, w = flow.shape[:2]
        gy, gx = np.mgrid[0:h, 0:w].astype(np.float32)
        m = np.stack([gx + flow[..., 0], gy + flow[..., 1]], axis=-1)
        valid = (m[..., 0] >= 0) & (m[..., 0] <= w - 1) & (m[..., 1] >= 0) & (m[..., 1] <= h - 1)
        out.append((m, valid))
    return out


def flicker(frames: list[np.ndarray], flows: list[tuple[np.ndarray, np.ndarray]]) -> tuple[float, float]:
    """(level change, warped error) of a sequence, both in grey levels 0-255."""
    levels = [float((f.astype(np.float32) @ _GREY).mean()) for f in frames]
    level_change = float(np.mean(np.abs(np.diff(levels))))
    errors = []
    for (cur, prev), (m, valid) in zip(zip(frames[1:], frames[:-1]), flows):
        warped = cv2.remap(prev.astype(np.float32), m[..., 0], m[..., 1], cv2.INTER_LINEAR)
        errors.append(float(np.abs(cur.astype(np.float32) - warped)[valid].mean()))
    return level_change, float(np.mean(errors))


@dataclass
class _Rows:
    psnr: list[float] = field(default_factory=list)
    ssim: list[float] = field(default_factory=list)
    object_se: list[float] = field(default_factory=list)   # summed squared error inside the object
    object_px: int = 0
    level: list[float] = field(default_factory=list)       # per sequence
    trace: list[float] = field(default_factory=list)       # mean grey level per frame, first sequence
    warped: list[float] = field(default_factory=list)
    exposure: list[float] = field(default_factory=list)    # level_error per frame
    seconds: list[float] = field(default_factory=list)

    def summary(self) -> dict[str, float]:
        return {"psnr": mean_psnr(self.psnr), "ssim": float(np.mean(self.ssim)),
                "object_rmse": math.sqrt(sum(self.object_se) / max(1, self.object_px)),
                "level_change": float(np.mean(self.level)), "warped_error": float(np.mean(self.warped)),
                "exposure_error": float(np.mean(np.abs(self.exposure))), "exposure_bias": float(np.mean(self.exposure)),
                "ms_per_frame": 1000 * float(np.mean(self.seconds)), "frames": len(self.psnr)}


def _mean8(frames: list[np.ndarray]) -> np.ndarray:
    return np.clip(np.mean([f.astype(np.float64) for f in frames], axis=0) + 0.5, 0, 255).astype(np.uint8)


def averaging_bound(seq: VideoSequence, method: Method, draws: int) -> tuple[float, float, float, float]:
    """(PSNR of one output, PSNR of the mean of `draws` outputs, PSNR of the output of the mean of
    `draws` inputs, PSNR of the output of the noise-free input) of the middle frame degraded with
    independent noise draws: what a perfectly aligned average of restored frames, or of input
    frames, could reach, and what removing every bit of noise before the network would."""
    t = len(seq.clean) // 2
    inputs = [seq.redraw(t, k) for k in range(draws)]
    outs = [method(x) for x in inputs]
    return (float(np.mean([psnr(o, seq.clean[t]) for o in outs])), psnr(_mean8(outs), seq.clean[t]),
            psnr(method(_mean8(inputs)), seq.clean[t]), psnr(method(seq.noise_free(t)), seq.clean[t]))


def score_sequences(sequences: Iterable[VideoSequence], methods: dict[str, Callable[[], Method]],
                    samples: list | None = None, bound: tuple[Method, int] | None = None) -> dict:
    """Figures per method over all sequences. `methods` maps a row name to a factory called once
    per sequence (a fresh history for each); `samples` gets (name, low, {method: out}, gt) of the
    middle frame of each sequence; `bound` = (per-frame method, draws) adds `averaging_bound`."""
    rows = {name: _Rows() for name in methods}
    truth = _Rows()
    names = []
    one, many, merged, free = [], [], [], []
    for seq in sequences:
        if bound is not None:
            a, b, c, d = averaging_bound(seq, *bound)
            one.append(a)
            many.append(b)
            merged.append(c)
            free.append(d)
        names.append(seq.name)
        flows = clean_flows(seq.clean)
        lv, we = flicker(seq.clean, flows)
        if not truth.trace:
            truth.trace = [float((f.astype(np.float32) @ _GREY).mean()) for f in seq.clean]
        truth.level.append(lv)
        truth.warped.append(we)
        mid = len(seq.clean) // 2
        outs_mid = {}
        for name, factory in methods.items():
            fn = factory()
            r = rows[name]
            outs = []
            for low, gt, mask in zip(seq.degraded, seq.clean, seq.object_masks):
                t = time.perf_counter()
                out = fn(low)
                r.seconds.append(time.perf_counter() - t)
                r.psnr.append(psnr(out, gt))
                r.ssim.append(ssim(out, gt))
                r.exposure.append(level_error(out, gt))
                d = out[mask].astype(np.float64) - gt[mask].astype(np.float64)
                r.object_se.append(float((d * d).sum()))
                r.object_px += d.size
                outs.append(out)
            lv, we = flicker(outs, flows)
            if not r.trace:
                r.trace = [float((o.astype(np.float32) @ _GREY).mean()) for o in outs]
            r.level.append(lv)
            r.warped.append(we)
            outs_mid[name] = outs[mid]
        if samples is not None:
            samples.append((seq.name, seq.degraded[mid], outs_mid, seq.clean[mid]))
    out = {"sequences": names, "rows": {n: r.summary() for n, r in rows.items()},
           "ground_truth": {"level_change": float(np.mean(truth.level)), "warped_error": float(np.mean(truth.warped))},
           "level_traces": {"ground truth": truth.trace, **{n: r.trace for n, r in rows.items()}}}
    if bound is not None:
        out["averaging_bound"] = {"draws": bound[1], "one_psnr": mean_psnr(one), "mean_psnr": mean_psnr(many),
                                  "gain_db": mean_psnr(many) - mean_psnr(one),
                                  "input_mean_psnr": mean_psnr(merged),
                                  "input_gain_db": mean_psnr(merged) - mean_psnr(one),
                                  "noise_free_psnr": mean_psnr(free),
                                  "noise_free_gain_db": mean_psnr(free) - mean_psnr(one)}
    return out


def _f(v: float, digits: int = 2) -> str:
    return "n/a" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.{digits}f}"


def video_report(results: dict, command: str) -> str:
    """Markdown: the table, the ground truth's flicker, the fusion's gain and cost."""
    gt = results["ground_truth"]
    lines = [f"# Video evaluation\n\n`{command}`\n", f"{results['what']}\n",
             "| method | PSNR | SSIM | moving object RMSE | level change | warped error | exposure error (bias) "
             "| ms/frame |", "|---|---|---|---|---|---|---|---|"]
    for name, r in results["rows"].items():
        lines.append(f"| {name} | {_f(r['psnr'])} | {_f(r['ssim'], 4)} | {_f(r['object_rmse'])} | "
                     f"{_f(r['level_change'], 3)} ({_f(r['level_change'] / gt['level_change'])}x) | "
                     f"{_f(r['warped_error'], 3)} ({_f(r['warped_error'] / gt['warped_error'])}x) | "
                     f"{_f(r['exposure_error'], 1)} ({r['exposure_bias']:+.1f}) | {_f(r['ms_per_frame'], 1)} |")
    lines.append(f"| ground truth (clean frames) | | | | {_f(gt['level_change'], 3)} | "
                 f"{_f(gt['warped_error'], 3)} | | |")
    gain = results.get("fusion")
    if gain:
        lines += ["", f"Temporal fusion vs frame by frame: **{gain['psnr_gain_db']:+.2f} dB** PSNR, "
                      f"{gain['ssim_gain']:+.4f} SSIM, moving-object RMSE {gain['object_rmse_change']:+.2f} grey levels; "
                      f"fusion stage {_f(gain['fusion_ms'], 1)} ms per frame = {100 * gain['cost_share']:.1f} % "
                      f"of the network's {_f(gain['network_ms'], 1)} ms."]
    for name, g in results.get("gains", {}).items():
        lines.append(f"{name} vs frame by frame: **{g['psnr_gain_db']:+.2f} dB** PSNR, {g['ssim_gain']:+.4f} SSIM, "
                     f"moving-object RMSE {g['object_rmse_change']:+.2f} grey levels.")
    ab = results.get("averaging_bound")
    if ab:
        lines += ["", f"Averaging bound: the middle frame of each sequence degraded {ab['draws']} times with "
                      f"independent noise, restored frame by frame and averaged (perfect alignment, no motion): "
                      f"{ab['mean_psnr']:.2f} dB against {ab['one_psnr']:.2f} dB for one output "
                      f"(**{ab['gain_db']:+.2f} dB**): the most any average of restored frames can add here. "
                      f"The same draws averaged *before* the network (a perfect burst merge) and restored: "
                      f"{_f(ab.get('input_mean_psnr', math.nan))} dB (**{ab.get('input_gain_db', math.nan):+.2f} dB**); "
                      f"the frame without any sensor noise (blur, darkness and JPEG kept) restored: "
                      f"{_f(ab.get('noise_free_psnr', math.nan))} dB ({ab.get('noise_free_gain_db', math.nan):+.2f} dB)."]
    lines += ["", "Level change: mean |mean grey level(t) - (t-1)|; warped error: mean |frame(t) - "
                  "frame(t-1) warped by the clean frames' flow|, both 0-255, (x) = times the clean frames' figure; "
                  "exposure error: mean |mean luma(output) - mean luma(clean frame)| (0-255), signed mean in brackets."]
    return "\n".join(lines) + "\n"


def write_video_plot(results: dict, path: Path) -> None:
    """Left: the mean grey level per frame of the first sequence, per method and for the clean
    frames; right: both flicker figures per method as multiples of the clean frames'."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    for name, trace in results["level_traces"].items():
        left.plot(trace, marker="o", ms=3, lw=2.5 if name == "ground truth" else 1.2,
                  color="k" if name == "ground truth" else None, label=name)
    left.set_xlabel("frame")
    left.set_ylabel("mean grey level (0-255)")
    left.set_title(f"{results['sequences'][0]}: level per frame")
    left.legend(fontsize=8)
    gt = results["ground_truth"]
    names = list(results["rows"])
    x = np.arange(len(names))
    for i, (key, label) in enumerate((("level_change", "level change"), ("warped_error", "warped error"))):
        vals = [results["rows"][n][key] / gt[key] for n in names]
        right.bar(x + 0.4 * i, vals, 0.4, label=label)
        for xi, v in zip(x, vals):
            right.text(xi + 0.4 * i, v, f"{v:.2f}", ha="center", va="bottom", fontsize=8)
    right.axhline(1.0, color="k", lw=0.8)
    right.axhline(1.5, color="k", lw=0.8, ls="--")
    right.set_xticks(x + 0.2, names, rotation=15, fontsize=8)
    right.set_title("flicker / clean frames' flicker (dashed: 1.5x)")
    right.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
