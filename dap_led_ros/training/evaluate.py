"""`dap-led eval`: score the model against baselines; writes a Markdown table, a plot and contact sheets.

Full-reference rows (PSNR / SSIM against the ground truth, see `metrics.py`), on
- the seeded synthetic validation set (photos that training never sees; 640x400 by default),
- paired folders (`--pairs INPUT_DIR TARGET_DIR`, matched by relative file name),
- a LOL-Blur folder (`--lolblur ROOT [--lolblur-split test]`),
each with the rows: identity (the input itself), classical auto-exposure, the `use_prior=false`
ablation (`--ablation CKPT`) and the model. No-reference figures (brightness, noise, sharpness)
on real night frames (`--real DIR`, default `../shared/data/real-night` when present) for the
input, auto-exposure and the model. The networks run through the `Enhancer`, so `--backend`
and friends apply.
"""
from __future__ import annotations

import argparse
import json
import logging
import math
import platform
import shlex
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable

import cv2
import numpy as np

from dap_led_ros.cli.enhance import add_backend_args, enhancer_config_from_args
from dap_led_ros.enhancer import Enhancer
from dap_led_ros.imaging.image_io import ImageReadError, list_images, read_image, write_image
from dap_led_ros.training.metrics import NoReferenceFigures, no_reference, psnr, ssim
from dap_led_ros.training.synthesis import srgb_decode, srgb_encode

log = logging.getLogger(__name__)

DEFAULT_REAL_DIR = Path(__file__).resolve().parents[2] / "shared" / "data" / "real-night"
_LUMA_709 = np.array([0.2126, 0.7152, 0.0722], dtype=np.float32)

Method = Callable[[np.ndarray], np.ndarray]


def auto_exposure(rgb: np.ndarray, target: float = 0.18, max_gain: float = 64.0) -> np.ndarray:
    """Classical auto-exposure: one global gain in linear light so the mean luminance reaches
    `target` (18 % grey), never darkening and at most `max_gain`; then sRGB re-encoding (clipped)."""
    lin = srgb_decode(rgb)
    mean = float((lin @ _LUMA_709).mean())
    gain = float(np.clip(target / max(mean, 1e-6), 1.0, max_gain))
    return srgb_encode(lin * gain)


@dataclass
class PairScores:
    psnr: list[float] = field(default_factory=list)
    ssim: list[float] = field(default_factory=list)
    seconds: list[float] = field(default_factory=list)

    def add(self, out: np.ndarray, gt: np.ndarray, seconds: float) -> None:
        self.psnr.append(psnr(out, gt))
        self.ssim.append(ssim(out, gt))
        self.seconds.append(seconds)

    def summary(self) -> dict[str, float]:
        finite = [p for p in self.psnr if math.isfinite(p)]
        return {"psnr": float(np.mean(finite)) if finite else math.inf, "ssim": float(np.mean(self.ssim)),
                "n": len(self.psnr), "ms_per_frame": 1000 * float(np.mean(self.seconds))}


def _timed(method: Method, img: np.ndarray) -> tuple[np.ndarray, float]:
    t = time.perf_counter()
    out = method(img)
    return out, time.perf_counter() - t


def score_pairs(pairs: Iterable[tuple[str, np.ndarray, np.ndarray]], methods: dict[str, Method],
                samples: list | None = None, max_samples: int = 6) -> dict[str, dict[str, float]]:
    """PSNR/SSIM of every method over (name, low, gt) pairs; keeps a few outputs in `samples`."""
    scores = {name: PairScores() for name in methods}
    for name, low, gt in pairs:
        outs = {}
        for m, fn in methods.items():
            out, sec = _timed(fn, low)
            scores[m].add(out, gt, sec)
            outs[m] = out
        if samples is not None and len(samples) < max_samples:
            samples.append((name, low, outs, gt))
    return {m: s.summary() for m, s in scores.items()}


def synthetic_pairs(size: tuple[int, int], count: int | None, seed: int) -> Iterable[tuple[str, np.ndarray, np.ndarray]]:
    from dap_led_ros.training.datasets import synthetic_validation_set

    ds = synthetic_validation_set(size=size, n=count, seed=seed)
    for i in range(len(ds)):
        item = ds[i]
        yield f"{i:03d}_{item['name'].replace('/', '_')}", _to_rgb8(item["low"]), _to_rgb8(item["high"])


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
        lines += [f"## {ds_name}", "", "| method | PSNR (dB) | SSIM | frames | ms/frame |", "|---|---|---|---|---|"]
        for m, s in rows.items():
            lines.append(f"| {m} | {_fmt(s['psnr'], 2)} | {_fmt(s['ssim'], 4)} | {s['n']} | {s['ms_per_frame']:.0f} |")
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
                  "(noise included). See dap_led_ros/metrics.py.", ""]
    return "\n".join(lines)


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


# ---------------------------------------------------------------------------------------------
# CLI


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("eval", help="PSNR/SSIM and no-reference figures vs baselines",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out-dir", type=Path, required=True, help="folder for evaluation.md, eval.json, plot, sheets")
    p.add_argument("--ablation", default=None, help="use_prior=false checkpoint to score beside the model")
    p.add_argument("--pairs", nargs=2, type=Path, metavar=("INPUT_DIR", "TARGET_DIR"), default=None,
                   help="paired folders matched by relative file name")
    p.add_argument("--lolblur", type=Path, default=None, help="LOL-Blur root (low_blur_noise/, high_sharp_scaled/)")
    p.add_argument("--lolblur-split", default=None, help="'test' when the root holds train/ and test/")
    p.add_argument("--no-synthetic", action="store_true", help="skip the synthetic validation set")
    p.add_argument("--val-size", nargs=2, type=int, default=[400, 640], metavar=("H", "W"))
    p.add_argument("--val-count", type=int, default=None, help="synthetic pairs (default: two per validation photo)")
    p.add_argument("--val-seed", type=int, default=1234)
    p.add_argument("--real", type=Path, default=None,
                   help=f"real night frames for no-reference figures (default: {DEFAULT_REAL_DIR} when present)")
    p.add_argument("--no-real", action="store_true", help="skip the real night frames")
    p.add_argument("--sheet-rows", type=int, default=6, help="rows per contact sheet")
    add_backend_args(p)
    p.set_defaults(func=run)


def _methods(args: argparse.Namespace) -> tuple[dict[str, Method], list[Enhancer]]:
    cfg = enhancer_config_from_args(args)
    model = Enhancer(cfg)
    methods: dict[str, Method] = {"identity": lambda x: x, "auto-exposure": auto_exposure}
    enhancers = [model]
    if args.ablation:
        from dataclasses import replace

        abl = Enhancer(replace(cfg, model=str(args.ablation), engine=None))
        enhancers.append(abl)
        methods["ablation (use_prior=false)"] = abl.enhance
    methods["DAP-LED"] = model.enhance
    return methods, enhancers


def run(args: argparse.Namespace) -> int:
    if args.pairs:
        for d in args.pairs:
            if not d.is_dir():
                print(f"error: paired folder {d} does not exist", file=sys.stderr)
                return 2
    real_dir = args.real if args.real is not None else (DEFAULT_REAL_DIR if DEFAULT_REAL_DIR.is_dir() else None)
    if args.no_real:
        real_dir = None
    elif args.real is not None and not args.real.is_dir():
        print(f"error: real-frame folder {args.real} does not exist", file=sys.stderr)
        return 2
    try:
        methods, enhancers = _methods(args)
    except (ValueError, RuntimeError, FileNotFoundError) as exc:
        print(f"error: cannot load a model: {exc}", file=sys.stderr)
        return 2
    out_dir: Path = args.out_dir
    out_dir.mkdir(parents=True, exist_ok=True)
    results: dict = {"machine": f"{platform.processor() or platform.machine()}, {_cpu_count()} CPU cores, "
                                f"backend {enhancers[0].backend.describe()}",
                     "paired": {}, "real": None}
    sheets: dict[str, list] = {}
    try:
        if not args.no_synthetic:
            h, w = args.val_size
            key = f"Synthetic validation set ({w}x{h}, seed {args.val_seed})"
            sheets["synthetic"] = []
            results["paired"][key] = score_pairs(synthetic_pairs((h, w), args.val_count, args.val_seed), methods,
                                                 sheets["synthetic"], args.sheet_rows)
        if args.pairs:
            from dap_led_ros.training.datasets import PairedFolder

            ds = PairedFolder(args.pairs[0], args.pairs[1])
            sheets["pairs"] = []
            results["paired"][f"Paired folders {args.pairs[0]} -> {args.pairs[1]}"] = score_pairs(
                folder_pairs(ds), methods, sheets["pairs"], args.sheet_rows)
        if args.lolblur:
            from dap_led_ros.training.datasets import LolBlurFolder

            ds = LolBlurFolder(args.lolblur, split=args.lolblur_split)
            sheets["lolblur"] = []
            results["paired"][f"LOL-Blur {args.lolblur}"] = score_pairs(folder_pairs(ds), methods,
                                                                         sheets["lolblur"], args.sheet_rows)
        if real_dir is not None:
            sheets["real"] = []
            real_methods = {k: v for k, v in methods.items() if k != "identity"}
            figs, n = score_real(real_dir, real_methods, sheets["real"], args.sheet_rows)
            if n:
                results["real"] = {"folder": str(real_dir), "n": n, "figures": figs}
    except (FileNotFoundError, ValueError, ImageReadError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    finally:
        for e in enhancers:
            e.close()
    if not results["paired"] and not results["real"]:
        print("error: nothing to evaluate (no synthetic set, pairs, LOL-Blur or real frames)", file=sys.stderr)
        return 2
    command = "dap-led " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    report = markdown_report(results, command)
    (out_dir / "evaluation.md").write_text(report)
    (out_dir / "eval.json").write_text(json.dumps(results, indent=2, default=str))
    write_plot(results, out_dir / "eval_plot.png")
    for name, samples in sheets.items():
        if samples:
            cols = [m for m in methods if m != "identity"]
            write_image(out_dir / f"contact_sheet_{name}.png", grid_sheet(samples, cols))
    print(report)
    print(f"wrote {out_dir / 'evaluation.md'}, eval.json, eval_plot.png and contact sheets")
    return 0


def _cpu_count() -> int:
    import os

    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
