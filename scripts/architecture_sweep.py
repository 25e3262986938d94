#!/usr/bin/env python3
"""Quality per CPU-second: DAP-LED variants trained for the same wall-clock budget, then timed.

Every variant of `config/architecture_sweep.yaml` keeps the DAP-LED structure (4-level
encoder-decoder, CLIP heatmaps, CeTB modulation in the decoder) and is trained from scratch with
the sweep's base recipe for `budget_min` minutes of its CPU time (one thread each), then
scored on the validation sets and timed on 640x480 frames through ONNX Runtime. Training is
resumable (run it again after a stop); timing is a separate phase because it must run on an
otherwise idle machine.

    nice -n 10 python scripts/architecture_sweep.py train [--only NAME ...]   # runs/arch/<name>/
    python scripts/architecture_sweep.py time    [--threads 2]       # pause other jobs first
    python scripts/architecture_sweep.py report                      # docs/architecture_sweep.{json,png}
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
SWEEP = ROOT / "config" / "architecture_sweep.yaml"
RUNS = ROOT / "runs" / "arch"
RESULTS = ROOT / "docs" / "architecture_sweep.json"
PLOT = ROOT / "docs" / "images" / "architecture_sweep.png"


def load_sweep() -> dict:
    return yaml.safe_load(SWEEP.read_text())


def _results() -> dict:
    return json.loads(RESULTS.read_text()) if RESULTS.is_file() else {}


def _save_results(res: dict) -> None:
    RESULTS.write_text(json.dumps(res, indent=2, sort_keys=True) + "\n")


def train_variants(only: list[str] | None) -> int:
    sweep = load_sweep()
    for name, model in sweep["variants"].items():
        if only and name not in only:
            continue
        out = RUNS / name
        out.mkdir(parents=True, exist_ok=True)
        cfg = {**sweep["base"], "model": {"variant": "tiny", **model},
               "time_budget_min": sweep["budget_min"]}
        (out / "sweep_config.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
        cmd = [sys.executable, "-m", "dap_led_ros.cli", "train", "--config", str(out / "sweep_config.yaml"),
               "--out", str(out), "--no-progress"]
        if (out / "state.pt").is_file():
            cmd += ["--resume", str(out / "state.pt")]
        print(f"[sweep] {name}: {' '.join(cmd)}", flush=True)
        rc = subprocess.call(cmd, cwd=ROOT)
        if rc:
            print(f"[sweep] {name} failed with exit {rc}", file=sys.stderr)
            return rc
        rows = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
        val = [r for r in rows if "val_psnr" in r][-1]
        res = _results()
        res.setdefault(name, {}).update({
            "model": model, "steps": val["step"], "budget_min": sweep["budget_min"],
            **{k: val[k] for k in val if k.endswith(("_psnr", "_ssim"))}})
        _save_results(res)
    return 0


def time_variants(threads: int, iters: int) -> int:
    import numpy as np

    from dap_led_ros.enhancer import Enhancer, EnhancerConfig

    res = _results()
    frame = (np.random.default_rng(0).random((480, 640, 3)) * 255).astype(np.uint8)
    for name in load_sweep()["variants"]:
        ckpt = RUNS / name / "last.safetensors"
        if not ckpt.is_file():
            print(f"[sweep] {name}: no checkpoint yet, not timed")
            continue
        enhancer = Enhancer(EnhancerConfig(model=str(ckpt), backend="onnxruntime", threads=threads))
        try:
            for _ in range(2):
                enhancer.enhance(frame)
            times = []
            for _ in range(iters):
                t = time.perf_counter()
                enhancer.enhance(frame)
                times.append(time.perf_counter() - t)
        finally:
            enhancer.close()
        ms = 1000 * float(np.median(times))
        res.setdefault(name, {}).update({"ms_640x480_onnxruntime": round(ms, 1), "threads": threads})
        print(f"[sweep] {name}: {ms:.0f} ms per 640x480 frame (ONNX Runtime, {threads} threads)")
    _save_results(res)
    return 0


def report() -> int:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    res = _results()
    rows = [(n, r) for n, r in res.items() if "val_psnr" in r and "ms_640x480_onnxruntime" in r]
    if not rows:
        print("nothing to report: train and time the variants first", file=sys.stderr)
        return 1
    fig, ax = plt.subplots(figsize=(6.5, 4.2))
    for key, marker in (("val_psnr", "o"), ("val2_psnr", "s")):
        pts = [(r["ms_640x480_onnxruntime"], r[key], n) for n, r in rows if key in r]
        if not pts:
            continue
        ax.scatter([p[0] for p in pts], [p[1] for p in pts], marker=marker,
                   label={"val_psnr": "synthetic validation set", "val2_psnr": "camera-model set"}[key])
        for x, y, n in pts:
            ax.annotate(n, (x, y), textcoords="offset points", xytext=(4, 3), fontsize=7)
    budget = rows[0][1].get("budget_min")
    ax.set_xlabel("ms per 640x480 frame, ONNX Runtime on this CPU")
    ax.set_ylabel("PSNR (dB)")
    ax.set_title(f"DAP-LED variants after {budget} CPU-minutes of training each (from scratch)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    PLOT.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(PLOT, dpi=110)
    print(f"wrote {PLOT}")
    for n, r in sorted(rows, key=lambda t: t[1]["ms_640x480_onnxruntime"]):
        print(f"{n:24s} {r['ms_640x480_onnxruntime']:7.0f} ms  val {r['val_psnr']:.2f} dB"
              + (f"  val2 {r['val2_psnr']:.2f} dB" if "val2_psnr" in r else "") + f"  ({r['steps']} steps)")
    return 0


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("phase", choices=("train", "time", "report"))
    p.add_argument("--only", nargs="*", default=None, help="variant names (default: all)")
    p.add_argument("--threads", type=int, default=2, help="ONNX Runtime threads for the time phase")
    p.add_argument("--iters", type=int, default=10)
    args = p.parse_args()
    if args.phase == "train":
        return train_variants(args.only)
    if args.phase == "time":
        return time_variants(args.threads, args.iters)
    return report()


if __name__ == "__main__":
    sys.exit(main())
