"""PSNR of the float16 export against the float32 export (ONNX Runtime, CPU) on the synthetic
validation set, per shipped model: `python scripts/fp16_export_check.py [--frames N] [--threads T]`."""
from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import numpy as np
import onnxruntime as ort

from dap_led_ros.checkpoint import load_checkpoint
from dap_led_ros.runtime.backends.verify import psnr
from dap_led_ros.runtime.export import export_model
from dap_led_ros.shipped_models import resolve_model
from dap_led_ros.training.datasets import synthetic_validation_set


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--frames", type=int, default=None, help="validation frames (default: the whole set)")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = args.threads
    frames = synthetic_validation_set(size=(400, 640), n=args.frames, seed=1234)
    report = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name in ("realtime", "quality"):
            model, _, _ = load_checkpoint(resolve_model(name, "cpu"))
            sessions = {p: ort.InferenceSession(str(export_model(model, Path(tmp) / f"{name}-{p}.onnx",
                                                                 prior_graphs=False, precision=p).restore),
                                                opts, providers=["CPUExecutionProvider"]) for p in ("fp32", "fp16")}
            vs_fp32, vs_clean = [], {"fp32": [], "fp16": []}
            for i in range(len(frames)):
                x = np.ascontiguousarray(np.asarray(frames[i]["low"], dtype=np.float32)[None])
                clean = np.asarray(frames[i]["high"], dtype=np.float32)[None]
                out = {p: s.run(None, {"image": x})[0] for p, s in sessions.items()}
                vs_fp32.append(psnr(out["fp16"], out["fp32"]))
                for p in out:
                    vs_clean[p].append(psnr(out[p], clean))
            report[name] = {"frames": len(frames), "psnr_fp16_vs_fp32_min": min(vs_fp32),
                            "psnr_fp16_vs_fp32_mean": float(np.mean(vs_fp32)),
                            **{f"psnr_vs_clean_{p}": float(np.mean(v)) for p, v in vs_clean.items()}}
            print(name, json.dumps(report[name]))
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
