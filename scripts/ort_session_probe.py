#!/usr/bin/env python3
"""Which ONNX Runtime CPU session options pay on this machine? Times a checkpoint's fused export
at 640x480 under each setting, interleaved round by round (so a load change hits all alike):
intra-op threads, spinning worker threads, graph optimisation level, and IO binding with a
pre-allocated output. Pause other CPU work (training) while it runs.

    python scripts/ort_session_probe.py [--model quality|realtime|CKPT] [--rounds 8]
"""
from __future__ import annotations

import argparse
import time

import numpy as np


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="quality")
    p.add_argument("--rounds", type=int, default=8)
    p.add_argument("--size", default="640x480")
    args = p.parse_args()

    import onnxruntime as ort

    from dap_led_ros.runtime.backends.engine_cache import cached_onnx
    from dap_led_ros.shipped_models import resolve_model

    path = str(cached_onnx(resolve_model(args.model, "cpu")))
    w, h = (int(v) for v in args.size.split("x"))
    x = np.random.default_rng(0).random((1, 3, h, w), dtype=np.float32) * 0.3
    level = ort.GraphOptimizationLevel

    def session(threads: int, spin: bool, opt) -> ort.InferenceSession:
        so = ort.SessionOptions()
        so.intra_op_num_threads = threads
        so.inter_op_num_threads = 1
        so.graph_optimization_level = opt
        so.add_session_config_entry("session.intra_op.allow_spinning", "1" if spin else "0")
        return ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])

    settings = {
        "2 threads, no spinning, all opts (backend default)": (2, False, level.ORT_ENABLE_ALL, False),
        "2 threads, spinning": (2, True, level.ORT_ENABLE_ALL, False),
        "1 thread, no spinning": (1, False, level.ORT_ENABLE_ALL, False),
        "2 threads, extended opts": (2, False, level.ORT_ENABLE_EXTENDED, False),
        "2 threads, basic opts": (2, False, level.ORT_ENABLE_BASIC, False),
        "2 threads, IO binding": (2, False, level.ORT_ENABLE_ALL, True),
    }
    runners = {}
    for name, (threads, spin, opt, bind) in settings.items():
        s = session(threads, spin, opt)
        if bind:
            binding = s.io_binding()
            binding.bind_cpu_input("image", x)
            out = np.empty((1, 3, h, w), np.float32)
            binding.bind_output(s.get_outputs()[0].name, "cpu", 0, np.float32, out.shape, out.ctypes.data)
            runners[name] = (lambda s=s, b=binding: s.run_with_iobinding(b))
        else:
            runners[name] = (lambda s=s: s.run(None, {"image": x}))
        runners[name]()  # warm-up
    times: dict[str, list[float]] = {n: [] for n in runners}
    for _ in range(args.rounds):
        for name, run in runners.items():
            t = time.perf_counter()
            run()
            times[name].append(time.perf_counter() - t)
    base = np.median(times[next(iter(times))])
    print(f"{path}\n{args.size}, {args.rounds} interleaved rounds, median ms (vs the first row):")
    for name, ts in times.items():
        m = float(np.median(ts))
        print(f"  {name:52s} {1000 * m:7.1f} ms  {m / base:5.2f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
