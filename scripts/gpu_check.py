"""Every GPU path this machine has, against the CPU reference, in one JSON (scripts/gpu_check.sh).

Per shipped model: ONNX Runtime on the CPU with the float32 export is the reference; each path
found (torch CUDA fp32 / fp16, ONNX Runtime CUDA with the fp32 / fp16 graph, TensorRT strongly
typed fp16, TensorRT 10's weak fp16, the built engine run from its file alone) is timed (p50 over
`--iters`) and compared with it (PSNR, max abs, 0-1 scale). A path that is missing is recorded
as skipped with the reason, one that fails as failed with its error; the script goes on. Steps
that would start after `--budget-s` are skipped, so the whole run stays within its time.
"""
from __future__ import annotations

import argparse
import json
import platform
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from dap_led_ros.runtime.backends import create_backend, resolve_device
from dap_led_ros.runtime.backends.cuda_support import cuda_device_count
from dap_led_ros.runtime.backends.verify import psnr, smooth_test_image
from dap_led_ros.shipped_models import resolve_model


def _versions() -> dict[str, str]:
    out = {"python": platform.python_version(), "machine": platform.machine()}
    for name in ("numpy", "torch", "onnxruntime", "openvino", "tensorrt", "onnx"):
        try:
            out[name] = str(__import__(name).__version__)
        except Exception as exc:  # noqa: BLE001 - recorded, not fatal
            out[name] = f"absent ({type(exc).__name__})"
    try:
        import onnxruntime as ort

        out["onnxruntime_providers"] = ",".join(ort.get_available_providers())
    except ImportError:
        pass
    try:
        import torch

        if torch.cuda.is_available():
            out["gpu"] = torch.cuda.get_device_name(0)
            out["torch_cuda"] = str(torch.version.cuda)
    except ImportError:
        pass
    out["cuda_device_count"] = str(cuda_device_count())
    out["device_auto"] = resolve_device("auto")
    return out


def _time(backend: Any, x: np.ndarray, iters: int, warmup: int) -> tuple[np.ndarray, float]:
    for _ in range(warmup):
        backend.infer(x)
    times, out = [], None
    for _ in range(max(1, iters)):
        t0 = time.perf_counter()
        out = backend.infer(x)
        times.append((time.perf_counter() - t0) * 1e3)
    return out, float(np.median(times))


class Check:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.t0 = time.monotonic()
        self.report: dict[str, Any] = {"started": time.strftime("%Y-%m-%dT%H:%M:%S"), "versions": _versions(),
                                       "smoke": args.smoke, "models": {}}

    def over_budget(self) -> bool:
        return time.monotonic() - self.t0 > self.args.budget_s

    def run_path(self, rows: dict[str, Any], name: str, make: Callable[[], Any], refs: dict[str, np.ndarray],
                 inputs: dict[str, np.ndarray]) -> Any:
        """Time and compare one path; its row records ok / skipped / failed. Returns the backend."""
        if self.over_budget():
            rows[name] = {"status": "skipped", "reason": f"time budget {self.args.budget_s} s spent"}
            return None
        t0 = time.monotonic()
        try:
            backend = make()
        except Exception as exc:  # noqa: BLE001 - a missing library or device is a finding, not a crash
            rows[name] = {"status": "skipped", "reason": f"{type(exc).__name__}: {str(exc)[:400]}"}
            return None
        row: dict[str, Any] = {"status": "ok", "backend": backend.describe(), "load_s": round(time.monotonic() - t0, 2),
                               "sizes": {}}
        try:
            for size, x in inputs.items():
                out, p50 = _time(backend, x, self.args.iters, self.args.warmup)
                row["sizes"][size] = {"p50_ms": round(p50, 3), "psnr_db_vs_cpu_fp32": round(psnr(out, refs[size]), 2),
                                      "max_abs": float(np.abs(out.astype(np.float64) - refs[size]).max())}
        except Exception as exc:  # noqa: BLE001
            row.update(status="failed", error=f"{type(exc).__name__}: {exc}", trace=traceback.format_exc()[-1500:])
        rows[name] = row
        print(f"  {name}: {json.dumps(row)[:300]}", flush=True)
        return backend

    def model(self, model: str, sizes: list[tuple[int, int]]) -> None:
        from dap_led_ros.runtime.backends.engine_cache import cached_onnx
        from dap_led_ros.runtime.backends.tensorrt_config import EngineConfig

        cache = str(self.args.out / "cache")
        path = resolve_model(model, "cuda")
        graphs = {p: str(cached_onnx(path, root=cache, precision=p)) for p in ("fp32", "fp16")}
        inputs = {f"{w}x{h}": smooth_test_image(1, h, w, seed=i) for i, (h, w) in enumerate(sizes)}
        threads = {"threads": 1} if self.args.smoke else {}
        cpu = create_backend("onnxruntime", None, "cpu", engine=graphs["fp32"], **threads)
        refs = {k: cpu.infer(x) for k, x in inputs.items()}
        rows: dict[str, Any] = {}
        self.report["models"][model] = {"checkpoint": str(path or "shipped quality"), "graphs": graphs, "paths": rows}
        print(f"{model}: reference ONNX Runtime CPU fp32 ({', '.join(inputs)})", flush=True)
        self.run_path(rows, "onnxruntime-cpu-fp16", lambda: create_backend(
            "onnxruntime", None, "cpu", engine=graphs["fp16"], **threads), refs, inputs)
        self.run_path(rows, "torch-cuda-fp32", lambda: create_backend("torch", path, "cuda"), refs, inputs)
        self.run_path(rows, "torch-cuda-fp16", lambda: create_backend("torch", path, "cuda", fp16=True), refs, inputs)
        for p in ("fp32", "fp16"):
            self.run_path(rows, f"onnxruntime-cuda-{p}", lambda p=p: create_backend(
                "onnxruntime", None, "cuda", engine=graphs[p]), refs, inputs)
        cameras = [[w, h] for h, w in sizes]
        strong = EngineConfig(cameras=cameras, workspace_mib=4096)
        trt = self.run_path(rows, "tensorrt-fp16-strong", lambda: create_backend(
            "tensorrt", path, "cuda", engine_config=strong, cache_dir=cache, build=True), refs, inputs)
        if trt is not None:
            meta = json.loads(Path(str(trt.engine_path) + ".json").read_text())
            rows["tensorrt-fp16-strong"]["build_s"] = meta.get("build_seconds")
            rows["tensorrt-fp16-strong"]["engine"] = str(trt.engine_path)
            engine = str(trt.engine_path)
            trt.close()
            # The torch-free path: the engine file alone, no checkpoint.
            self.run_path(rows, "tensorrt-engine-file-alone", lambda: create_backend("tensorrt", None, "cuda",
                                                                                    engine=engine), refs, inputs)
            self.run_path(rows, "enhancer-auto-device-auto", lambda: _enhancer_backend(engine), refs, inputs)
        try:
            from dap_led_ros.runtime.backends.tensorrt_build import has_weak_fp16, import_tensorrt

            weak_ok = has_weak_fp16(import_tensorrt())
        except Exception:  # noqa: BLE001 - no TensorRT: recorded by the strong row
            weak_ok = False
        if weak_ok and not self.args.no_weak and model == self.args.models[0]:  # one weak build: time
            weak = EngineConfig(cameras=cameras, workspace_mib=4096, typing="weak")
            self.run_path(rows, "tensorrt-fp16-weak", lambda: create_backend(
                "tensorrt", path, "cuda", engine_config=weak, cache_dir=cache, build=True), refs, inputs)
        else:
            rows["tensorrt-fp16-weak"] = {"status": "skipped", "reason": "TensorRT without BuilderFlag.FP16 "
                                          "(11.x), absent, or --no-weak"}


def _enhancer_backend(engine: str) -> Any:
    """What `auto` on `device: auto` picks for the engine file (the node's default path)."""
    return create_backend("auto", engine, "auto")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, required=True, help="folder for gpu_check.json and the caches")
    ap.add_argument("--models", nargs="+", default=["realtime", "quality"])
    ap.add_argument("--iters", type=int, default=30)
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--budget-s", type=float, default=420.0, help="start no step after this many seconds")
    ap.add_argument("--no-weak", action="store_true", help="skip TensorRT 10's weakly typed build")
    ap.add_argument("--smoke", action="store_true", help="CPU-sized: one tiny size, 1 iteration")
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    sizes = [(48, 64)] if args.smoke else [(480, 640), (720, 1280), (640, 480)]
    if args.smoke:
        args.iters, args.warmup = 1, 0
    check = Check(args)
    for model in args.models:
        check.model(model, sizes)
    check.report["elapsed_s"] = round(time.monotonic() - check.t0, 1)
    (args.out / "gpu_check.json").write_text(json.dumps(check.report, indent=2))
    print(f"wrote {args.out / 'gpu_check.json'} in {check.report['elapsed_s']} s")


if __name__ == "__main__":
    main()
