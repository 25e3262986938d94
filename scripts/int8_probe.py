#!/usr/bin/env python3
"""Does static INT8 (QDQ) pay on this CPU? Quantises the restoration graph of a checkpoint's ONNX
export with ONNX Runtime and compares it with float: speed at 640x480 and PSNR against the float
output on the synthetic validation set.

Calibration: training crops (never the validation photos) through both degradation paths. Conv
and MatMul are quantised (per-channel weights, QUInt8 activations); LayerNorm, softmax, the CLIP
prior graph and the output convolution stay float.

    python scripts/int8_probe.py [--model CKPT] [--threads 2] [--calibration 16] [--iters 10]
"""
from __future__ import annotations

import argparse
import contextlib
import tempfile
import time
from pathlib import Path

import numpy as np


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default=None)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--calibration", type=int, default=16, help="calibration crops")
    p.add_argument("--iters", type=int, default=10)
    args = p.parse_args()

    import onnx
    import onnxruntime as ort
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    from dap_led_ros.runtime.backends.engine_cache import cached_onnx
    from dap_led_ros.runtime.export import prior_graph_paths
    from dap_led_ros.training.camera_synthesis import CameraConfig
    from dap_led_ros.training.clean_photos import list_clean_photos, split_pool
    from dap_led_ros.training.datasets import SyntheticPairs
    from dap_led_ros.training.evaluate import synthetic_pairs
    from dap_led_ros.training.metrics import psnr

    heat_path, prior_path = prior_graph_paths(cached_onnx(args.model))
    so = ort.SessionOptions()
    so.intra_op_num_threads = args.threads
    so.add_session_config_entry("session.intra_op.allow_spinning", "0")
    heat = ort.InferenceSession(str(heat_path), so, providers=["CPUExecutionProvider"])
    fp32 = ort.InferenceSession(str(prior_path), so, providers=["CPUExecutionProvider"])
    names = [i.name for i in fp32.get_inputs()]

    def feed(x: np.ndarray) -> dict[str, np.ndarray]:
        return {names[0]: x, **dict(zip(names[1:], heat.run(None, {"image": x})))}

    train = split_pool(list_clean_photos()).train
    calib = SyntheticPairs(train, crop=(256, 256), length=args.calibration, seed=99,
                           camera=CameraConfig(), camera_share=0.5)
    feeds = [feed(calib[i]["low"][None].numpy()) for i in range(len(calib))]

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self._it = iter(feeds)

        def get_next(self):
            return next(self._it, None)

    graph = onnx.load(str(prior_path))
    last_conv = [n.name for n in graph.graph.node if n.op_type == "Conv"][-1]
    with tempfile.TemporaryDirectory() as tmp:
        pre, q = Path(tmp) / "pre.onnx", Path(tmp) / "int8.onnx"
        t = time.perf_counter()
        with contextlib.chdir(tmp):  # ONNX Runtime's quantiser writes scratch files into the cwd
            quant_pre_process(str(prior_path), str(pre), skip_symbolic_shape=True)
            quantize_static(str(pre), str(q), Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                            activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                            op_types_to_quantize=["Conv", "MatMul"], nodes_to_exclude=[last_conv])
        print(f"quantised in {time.perf_counter() - t:.0f} s ({len(feeds)} calibration crops)")
        int8 = ort.InferenceSession(str(q), so, providers=["CPUExecutionProvider"])

        x = np.random.default_rng(0).random((1, 3, 480, 640), dtype=np.float32) * 0.3
        f = feed(x)
        times: dict[str, list[float]] = {"float": [], "int8": []}
        for s in (fp32, int8):
            s.run(None, f)
        for _ in range(args.iters):  # interleaved, so drift of the machine hits both alike
            for name, s in (("float", fp32), ("int8", int8)):
                t = time.perf_counter()
                s.run(None, f)
                times[name].append(time.perf_counter() - t)
        for name, ts in times.items():
            print(f"{name:6s} restoration graph 640x480: p50 {1000 * np.median(ts):.0f} ms "
                  f"({args.threads} threads, {args.iters} runs)")
        gaps = []
        for _, low, gt in synthetic_pairs((400, 640), None, 1234):
            xi = (low.astype(np.float32) / 255).transpose(2, 0, 1)[None]
            fi = feed(xi)
            a = np.clip(fp32.run(None, fi)[0][0].transpose(1, 2, 0) * 255 + 0.5, 0, 255).astype(np.uint8)
            b = np.clip(int8.run(None, fi)[0][0].transpose(1, 2, 0) * 255 + 0.5, 0, 255).astype(np.uint8)
            gaps.append(psnr(b, gt) - psnr(a, gt))
        print(f"int8 - float PSNR on the synthetic validation set: {np.mean(gaps):+.2f} dB "
              f"(worst {min(gaps):+.2f}, {len(gaps)} frames)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
