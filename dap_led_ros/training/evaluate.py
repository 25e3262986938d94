"""`dap-led eval`: score the model against baselines; writes a Markdown table, a plot and contact sheets.

Full-reference rows (PSNR / SSIM against the ground truth, see `metrics.py`), on
- the seeded synthetic validation set (photos that training never sees; 640x400 by default),
- the second validation set: other photos (the Debian pool's held-out share) degraded by the
  RAW-domain camera model (`camera_synthesis`), when that pool is installed,
- paired folders (`--pairs INPUT_DIR TARGET_DIR`, matched by relative file name),
- a LOL-Blur folder (`--lolblur ROOT [--lolblur-split test]`),
each with the rows: identity (the input itself), classical auto-exposure, the `use_prior=false`
ablation (`--ablation CKPT`) and the model; on the two synthetic sets also the model's output
denoised by OpenCV's non-local means (`DAP-LED + NLM`): a gain there is noise the model left. No-reference figures (brightness, noise, sharpness)
on real night frames (`--real DIR`, default `../shared/data/real-night` when present) for the
input, auto-exposure and the model. The networks run through the `Enhancer`, so `--backend`
and friends apply.
"""
from __future__ import annotations

import json
import logging
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable

import cv2
import numpy as np

from dap_led_ros.file_output import atomic_output, write_text
from dap_led_ros.imaging.image_io import ImageReadError, list_images, read_image, write_image
from dap_led_ros.imaging.srgb import srgb_decode, srgb_encode
from dap_led_ros.training.detail_sheet import detail_sheet
from dap_led_ros.training.metrics import (
    NoReferenceFigures,
    level_error,
    mean_psnr,
    no_reference,
    psnr,
    psnr_level_fitted,
    ssim,
)
from dap_led_ros.training.validation_sets import ValidationSource, load_set

log = logging.getLogger(__name__)

_LUMA_709 = np.array([0.2126, 0.7152, 0.0722], dtype=np.float32)

Method = Callable[[np.ndarray], np.ndarray]


def auto_exposure(rgb: np.ndarray, target: float = 0.18, max_gain: float = 64.0) -> np.ndarray:
    """Classical auto-exposure: one global gain in linear light so the mean luminance reaches
    `target` (18 % grey), never darkening and at most `max_gain`; then sRGB re-encoding (clipped)."""
    lin = srgb_decode(rgb)
    mean = float((lin @ _LUMA_709).mean())
    gain = float(np.clip(target / max(mean, 1e-6), 1.0, max_gain))
    return srgb_encode(lin * gain)


def auto_exposure_clahe(rgb: np.ndarray, clip_limit: float = 2.0, tiles: int = 8) -> np.ndarray:
    """`auto_exposure`, then contrast-limited adaptive histogram equalisation (CLAHE) of the
    lightness (CIE L*a*b* L channel, `tiles` x `tiles` tiles), colours kept."""
    lab = cv2.cvtColor(auto_exposure(rgb), cv2.COLOR_RGB2LAB)
    lab[..., 0] = cv2.createCLAHE(clipLimit=clip_limit, tileGridSize=(tiles, tiles)).apply(lab[..., 0])
    return cv2.cvtColor(lab, cv2.COLOR_LAB2RGB)


@dataclass
class PairScores:
    psnr: list[float] = field(default_factory=list)
    psnr_fit: list[float] = field(default_factory=list)  # level fitted to the ground truth
    ssim: list[float] = field(default_factory=list)
    level: list[float] = field(default_factory=list)  # mean luma(output) - mean luma(ground truth), 0-255
    seconds: list[float] = field(default_factory=list)

    def add(self, out: np.ndarray, gt: np.ndarray, seconds: float) -> None:
        self.psnr.append(psnr(out, gt))
        self.psnr_fit.append(psnr_level_fitted(out, gt))
        self.ssim.append(ssim(out, gt))
        self.level.append(level_error(out, gt))
        self.seconds.append(seconds)

    def summary(self) -> dict[str, float]:
        # Every frame counts, an exactly restored one at the cap (it used to be left out, which
        # ranked a model that hands clean frames back untouched below one that nearly does).
        return {"psnr": mean_psnr(self.psnr), "psnr_level_fitted": mean_psnr(self.psnr_fit),
                "ssim": float(np.mean(self.ssim)),
                "exposure_error": float(np.mean(np.abs(self.level))), "exposure_bias": float(np.mean(self.level)),
                "n": len(self.psnr), "ms_per_frame": 1000 * float(np.mean(self.seconds))}


def _timed(method: Method, img: np.ndarray) -> tuple[np.ndarray, float]:
    t = time.perf_counter()
    out = method(img)
    return out, time.perf_counter() - t


def nlm_denoise(rgb: np.ndarray) -> np.ndarray:
    """OpenCV's coloured non-local means (h = 5, 5 px patches, 15 px search; the settings of
    scripts/capacity_probe.py): the leftover-noise probe."""
    return cv2.fastNlMeansDenoisingColored(np.ascontiguousarray(rgb), None, 5, 5, 5, 15)


def score_pairs(pairs: Iterable[tuple[str, np.ndarray, np.ndarray]], methods: dict[str, Method],
                samples: list | None = None, max_samples: int = 6,
                post: dict[str, tuple[str, Method]] | None = None) -> dict[str, dict[str, float]]:
    """PSNR/SSIM of every method over (name, low, gt) pairs; keeps a few outputs in `samples`.

    post: extra rows {row: (method, fn)} scoring fn applied to that method's output (timed together).
    """
    post = post or {}
    scores = {name: PairScores() for name in [*methods, *post]}
    for name, low, gt in pairs:
        outs = {}
        for m, fn in methods.items():
            out, sec = _timed(fn, low)
            scores[m].add(out, gt, sec)
            outs[m] = out
        for row, (m, fn) in post.items():
            out, sec = _timed(fn, outs[m])
            scores[row].add(out, gt, sec + scores[m].seconds[-1])
        if samples is not None and len(samples) < max_samples:
            samples.append((name, low, outs, gt))
    return {m: s.summary() for m, s in scores.items()}


def _numbered_pairs(ds) -> Iterable[tuple[str, np.ndarray, np.ndarray]]:
    """(NNN_photo-name, low, high) of every item of a synthetic dataset."""
    for i in range(len(ds)):
        item = ds[i]
        yield f"{i:03d}_{item['name'].replace('/', '_')}", _to_rgb8(item["low"]), _to_rgb8(item["high"])


def synthetic_pairs(size: tuple[int, int], count: int | None, seed: int) -> Iterable[tuple[str, np.ndarray, np.ndarray]]:
    from dap_led_ros.training.datasets import synthetic_validation_set

    return _numbered_pairs(synthetic_validation_set(size=size, n=count, seed=seed))


def camera_pairs(size: tuple[int, int], count: int | None, seed: int) -> Iterable[tuple[str, np.ndarray, np.ndarray]]:
    """The second validation set (ValueError when the Debian photo pool is not installed)."""
    from dap_led_ros.training.datasets import camera_validation_set

    return _numbered_pairs(camera_validation_set(size=size, n=count, seed=seed))


def score_well_exposed(photos: Iterable[tuple[str, np.ndarray]], methods: dict[str, Method]) -> dict[str, dict]:
    """How much each method changes frames that need no help (target = input).

    psnr: PSNR(output, input) of the squared error pooled over all frames (finite unless every
    frame comes back unchanged); level_shift_mean / level_shift_max: the mean grey level's
    absolute change per frame (0..255), averaged / worst.
    """
    rows: dict[str, dict[str, list]] = {m: {"mse": [], "shift": [], "sec": []} for m in methods}
    for _, img in photos:
        level = float(img.mean())
        for m, fn in methods.items():
            out, sec = _timed(fn, img)
            rows[m]["mse"].append(float(np.mean((out.astype(np.float64) - img.astype(np.float64)) ** 2)))
            rows[m]["shift"].append(abs(float(out.mean()) - level))
            rows[m]["sec"].append(sec)
    def pooled_psnr(mse: list[float]) -> float:
        m = float(np.mean(mse)) if mse else float("nan")
        return math.inf if m == 0 else 10 * math.log10(255.0 ** 2 / m)

    return {m: {"psnr": pooled_psnr(r["mse"]),
                "level_shift_mean": float(np.mean(r["shift"])) if r["shift"] else float("nan"),
                "level_shift_max": float(np.max(r["shift"])) if r["shift"] else float("nan"),
                "n": len(r["mse"]), "ms_per_frame": 1000 * float(np.mean(r["sec"])) if r["sec"] else 0.0}
            for m, r in rows.items()}


def set_frames(source: ValidationSource, skipped: Callable[[str], None] | None = None
               ) -> Iterable[tuple[str, np.ndarray, np.ndarray]] | None:
    """(name, low, target) RGB uint8 frames of a paired set (synthesized items numbered), or None
    when an optional set cannot be made (`validation_sets.load_set`)."""
    data = load_set(source, skipped)
    if data is None:
        return None
    return _numbered_pairs(data) if source.synthesized else folder_pairs(data)


def score_sets(sources: Iterable[ValidationSource], methods: dict[str, Method], sheet_rows: int = 6,
               nlm: bool = True, skipped: Callable[[str], None] | None = None) -> tuple[dict, dict[str, list]]:
    """The `dap-led eval` figures of every set: {"paired": {title: rows}, "real": ..., and
    "well_exposed" when scored}, and the contact-sheet samples per set tag.

    nlm: the synthesized sets also get a `DAP-LED + NLM` row. The real frames are scored without
    the identity method (their "input" row is the frames themselves).
    """
    results: dict = {"paired": {}, "real": None}
    sheets: dict[str, list] = {}
    post = {"DAP-LED + NLM": ("DAP-LED", nlm_denoise)} if nlm else {}
    for src in sources:
        if src.tag == "well_exposed":
            results["well_exposed"] = {"what": src.title, "rows": score_well_exposed(src.load(), methods)}
        elif src.tag == "real":
            folder = src.load()
            sheets["real"] = []
            figs, n = score_real(folder, {k: v for k, v in methods.items() if k != "identity"}, sheets["real"],
                                 sheet_rows)
            if n:
                results["real"] = {"folder": str(folder), "n": n, "figures": figs}
        else:
            sheets[src.tag] = []
            frames = set_frames(src, skipped)
            if frames is not None:
                results["paired"][src.title] = score_pairs(frames, methods, sheets[src.tag], sheet_rows,
                                                           post if src.synthesized else None)
    return results, sheets


def folder_pairs(dataset) -> Iterable[tuple[str, np.ndarray, np.ndarray]]:
    for i in range(len(dataset)):
        item = dataset[i]
        yield item["name"], _to_rgb8(item["low"]), _to_rgb8(item["high"])


def _to_rgb8(t) -> np.ndarray:
    return np.clip(t.numpy().transpose(1, 2, 0) * 255.0 + 0.5, 0, 255).astype(np.uint8)


def score_real(folder: Path, methods: dict[str, Method], samples: list, max_samples: int = 6
               ) -> tuple[dict[str, dict[str, float]], int]:
    """Mean no-reference figures per method ("input" = the frames themselves)."""
    figs: dict[str, list[NoReferenceFigures]] = {"input": [], **{m: [] for m in methods}}
    files = list_images(folder)
    for path in files:
        try:
            rgb = read_image(path).rgb
        except ImageReadError as exc:
            log.warning("skipping %s", exc)
            continue
        figs["input"].append(no_reference(rgb))
        outs = {}
        for m, fn in methods.items():
            outs[m] = fn(rgb)
            figs[m].append(no_reference(outs[m]))
        if len(samples) < max_samples:
            samples.append((path.stem, rgb, outs, None))
    summary = {m: {k: float(np.mean([getattr(f, k) for f in fl])) for k in NoReferenceFigures.__dataclass_fields__}
               for m, fl in figs.items() if fl}
    return summary, len(figs["input"])


# ---------------------------------------------------------------------------------------------
# Output


def grid_sheet(samples: list, columns: list[str], panel_width: int = 320) -> np.ndarray:
    """Rows of [input | method outputs... | ground truth] panels with captions; RGB uint8."""
    rows = []
    for name, low, outs, gt in samples:
        imgs = [("input " + name, low)] + [(c, outs[c]) for c in columns] + ([("ground truth", gt)] if gt is not None else [])
        h = max(1, round(low.shape[0] * panel_width / low.shape[1]))
        panels = []
        for caption, img in imgs:
            p = cv2.resize(img, (panel_width, h), interpolation=cv2.INTER_AREA)
            cv2.putText(p, caption[:40], (5, 16), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (255, 255, 0), 1, cv2.LINE_AA)
            panels.append(p)
        rows.append(np.concatenate(panels, axis=1))
    width = max(r.shape[1] for r in rows)
    rows = [np.pad(r, ((0, 2), (0, width - r.shape[1]), (0, 0))) for r in rows]
    return np.concatenate(rows, axis=0)


def _fmt(v: float, digits: int) -> str:
    return "inf" if not math.isfinite(v) else f"{v:.{digits}f}"


def markdown_report(results: dict, command: str) -> str:
    lines = ["# dap-led eval", "", f"Command: `{command}`", "",
             f"Machine: {results['machine']}", ""]
    for ds_name, rows in results["paired"].items():
        lines += [f"## {ds_name}", "", "| method | PSNR (dB) | PSNR level-fitted (dB) | SSIM | frames | ms/frame |",
                  "|---|---|---|---|---|---|"]
        for m, s in rows.items():
            lines.append(f"| {m} | {_fmt(s['psnr'], 2)} | {_fmt(s.get('psnr_level_fitted', math.nan), 2)} "
                         f"| {_fmt(s['ssim'], 4)} | {s['n']} | {s['ms_per_frame']:.0f} |")
        lines.append("")
    if results["paired"]:
        lines += ["PSNR level-fitted: each output scaled by one gain per colour channel in linear light "
                  "(least squares against the ground truth) before scoring: the error left when brightness and "
                  "white balance are not counted.", ""]
        lines += exposure_table(results["paired"])
    cross = [t for t in results["paired"] if t.startswith("Cross-model split")]
    if len(cross) == 2:
        lines += ["## Cross-model split (development metric)", "",
                  "A model trained on path 1 only (`data.camera_share: 0`) is scored on the path-2 set, one trained "
                  "on path 2 only (`camera_share: 1`) on the path-1 set; a model trained on both is scored on both "
                  "(neither is held out). Same held-out photos, seed and `night` degradations in both sets.", "",
                  "| method | path 1 PSNR / level-fitted / SSIM | path 2 PSNR / level-fitted / SSIM |", "|---|---|---|"]
        a, b = (results["paired"][t] for t in cross)
        for m in a:
            cells = [f"{_fmt(r[m]['psnr'], 2)} / {_fmt(r[m].get('psnr_level_fitted', math.nan), 2)} / "
                     f"{_fmt(r[m]['ssim'], 4)}" for r in (a, b)]
            lines.append(f"| {m} | {cells[0]} | {cells[1]} |")
        lines.append("")
    if results.get("well_exposed"):
        we = results["well_exposed"]
        lines += [f"## Well-exposed frames: {we['what']} (target = the input)", "",
                  "| method | PSNR(output, input) (dB) | mean level shift (grey levels) | worst level shift | frames |",
                  "|---|---|---|---|---|"]
        for m, r in we["rows"].items():
            lines.append(f"| {m} | {_fmt(r['psnr'], 2)} | {r['level_shift_mean']:.1f} | {r['level_shift_max']:.1f} "
                         f"| {r['n']} |")
        lines.append("")
    if results.get("real"):
        real = results["real"]
        lines += [f"## Real night frames (no reference): {real['folder']} ({real['n']} frames)", "",
                  "| method | brightness | noise sigma | relative noise | sharpness (1/4 scale) | fine detail |",
                  "|---|---|---|---|---|---|"]
        for m, f in real["figures"].items():
            lines.append(f"| {m} | {f['brightness']:.3f} | {f['noise_sigma']:.4f} | {f['relative_noise']:.4f} "
                         f"| {f['sharpness']:.4f} | {f['fine_detail']:.4f} |")
        lines += ["", "brightness: mean luma in [0, 1]; noise sigma: robust (median) Immerkaer noise estimate of the luma; "
                  "relative noise: noise sigma / brightness (lower = less noisy for its brightness); sharpness: "
                  "std of the Laplacian of the histogram-equalised luma at 1/4 scale (invariant to gain and tone "
                  "curve, blind to pixel noise; lower = blurrier); fine detail: the same at full resolution "
                  "(noise included). See dap_led_ros/training/metrics.py.", ""]
    return "\n".join(lines)


def exposure_table(paired: dict[str, dict[str, dict]]) -> list[str]:
    """Markdown lines: the exposure error and bias of every method on every paired set (none when
    the rows carry no exposure figures, e.g. results of an older run)."""
    sets = {t: rows for t, rows in paired.items() if any("exposure_error" in r for r in rows.values())}
    if not sets:
        return []
    methods = list(dict.fromkeys(m for rows in sets.values() for m in rows))
    lines = ["## Exposure (the output's mean level against the ground truth's)", "",
             "| method | " + " | ".join(sets) + " |", "|---" * (len(sets) + 1) + "|"]
    for m in methods:
        cells = [f"{r[m]['exposure_error']:.1f} ({r[m]['exposure_bias']:+.1f})" if "exposure_error" in r.get(m, {})
                 else "" for r in sets.values()]
        lines.append(f"| {m} | " + " | ".join(cells) + " |")
    return lines + ["", "Exposure error: mean over frames of |mean BT.601 luma(output) - mean luma(ground truth)| "
                        "in grey levels (0-255); in brackets its signed mean (> 0: too bright, < 0: too dark). "
                        "The exposure rule: docs/evaluation.md.", ""]


def write_plot(results: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    paired = results["paired"]
    n = len(paired) + (1 if results.get("real") else 0)
    fig, axes = plt.subplots(1, max(1, n), figsize=(5 * max(1, n), 4), squeeze=False)
    for ax, (ds_name, rows) in zip(axes[0], paired.items()):
        names = list(rows)
        vals = [rows[m]["psnr"] if math.isfinite(rows[m]["psnr"]) else 0.0 for m in names]
        ax.bar(names, vals, color="tab:blue")
        ax.set_title(f"{ds_name}: PSNR (dB)")
        ax.tick_params(axis="x", rotation=30)
        for i, v in enumerate(vals):
            ax.text(i, v, f"{v:.1f}", ha="center", va="bottom", fontsize=8)
    if results.get("real"):
        ax = axes[0][-1]
        figs = results["real"]["figures"]
        keys = ("brightness", "relative_noise", "sharpness", "fine_detail")
        ref = figs["input"]
        width = 0.8 / len(figs)
        for i, (m, f) in enumerate(figs.items()):
            ax.bar(np.arange(len(keys)) + i * width, [f[k] / max(ref[k], 1e-9) for k in keys], width, label=m)
        ax.set_xticks(np.arange(len(keys)) + 0.4 - width / 2, keys)
        ax.set_title("real night: figure / input figure")
        ax.axhline(1.0, color="k", lw=0.5)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def write_results(out_dir: Path, report: str, results: dict, sheets: dict[str, list], columns: list[str]) -> None:
    """evaluation.md, eval.json, eval_plot.png and contact_sheet_<set>.png, each written whole or not at all."""
    write_text(out_dir / "evaluation.md", report, force=True)
    write_text(out_dir / "eval.json", json.dumps(results, indent=2, default=str), force=True)
    with atomic_output(out_dir / "eval_plot.png", force=True) as tmp:
        write_plot(results, tmp)
    for name, samples in sheets.items():
        if samples:
            write_image(out_dir / f"contact_sheet_{name}.png", grid_sheet(samples, columns), force=True)
    if sheets.get("real"):  # blur is judged on details: enlarged crops where the frames have edges
        write_image(out_dir / "contact_sheet_real_detail.png", detail_sheet(sheets["real"], columns), force=True)


def cpu_count() -> int:
    import os

    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def describe_machine(backend: str) -> str:
    """The results' `machine` line: processor, usable CPU cores, the backend's description."""
    import platform

    return f"{platform.processor() or platform.machine()}, {cpu_count()} CPU cores, backend {backend}"
