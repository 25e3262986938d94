#!/usr/bin/env python3
"""The network alone on the CPU: p50 / p90 ms per 640x480 frame for each model on one backend
(the same `backend.infer` the Enhancer calls, after warm-up). For comparing architectures on the
fastest runtime (OpenVINO bf16 here) on a quiet machine; pause training runs first.

    python scripts/cpu_speed.py --model quality --model runs/nc/best.safetensors [--backend openvino]
"""
from __future__ import annotations

import argparse

import numpy as np


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", action="append", required=True, help="quality | realtime | CKPT (repeatable)")
    p.add_argument("--backend", default="openvino")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--size", default="640x480", help="WxH")
    p.add_argument("--iters", type=int, default=20)
    p.add_argument("--rounds", type=int, default=3, help="models are timed in turn this many times")
    args = p.parse_args()

    from dap_led_ros.runtime.backends import create_backend
    from dap_led_ros.runtime.bench import infer_times_ms

    w, h = (int(v) for v in args.size.split("x"))
    x = (np.random.default_rng(0).random((1, 3, h, w), dtype=np.float32) * 0.2)
    backends = {m: create_backend(args.backend, m, "cpu", threads=args.threads) for m in args.model}
    times: dict[str, list[float]] = {m: [] for m in args.model}
    for b in backends.values():
        for _ in range(3):
            b.infer(x)
    for _ in range(args.rounds):  # interleaved, so a slow spell of the machine hits every model
        for m, b in backends.items():
            times[m] += infer_times_ms(b, x, args.iters)
    for m, t in times.items():
        print(f"{m}: {args.backend} {args.threads} threads {args.size}: p50 {np.percentile(t, 50):.1f} ms, "
              f"p90 {np.percentile(t, 90):.1f} ms ({len(t)} runs)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
