"""`dap-led build-engine`: a TensorRT engine from the ONNX export, cached by its key."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from dap_led_ros.file_output import OutputError, prepare_folder
from dap_led_ros.runtime.backends.base import BackendError
from dap_led_ros.runtime.backends.tensorrt_config import TYPINGS, EngineConfig


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("build-engine", help="build a TensorRT engine (FP16 by default; cached by its key)",
                       description="Build a TensorRT engine from the ONNX export of a checkpoint with one "
                                   "optimisation profile per camera resolution in the engine config. The engine "
                                   "is cached by a key of ONNX hash, TensorRT version, GPU, profiles and "
                                   "precision and rebuilt only when the key changes.")
    p.add_argument("--model", default=None,
                   help="quality | realtime | a checkpoint (.safetensors with its .yaml); default: the quality "
                        "model, which enhance_node's model: auto runs on a GPU")
    p.add_argument("--onnx", default=None,
                   help="use this ONNX file instead of exporting the checkpoint (`dap-led export --precision fp16` "
                        "for an fp16 engine with typing: strong)")
    p.add_argument("--config", default=None, help="engine YAML (see config/engine.yaml); default: built-in defaults")
    p.add_argument("--output", default=None, help="engine path (default: in the cache, named by its key)")
    p.add_argument("--device", default="cuda", help="cuda | cuda:N (default: %(default)s)")
    p.add_argument("--precision", choices=("fp16", "fp32"), default=None, help="override the config's precision")
    p.add_argument("--typing", choices=TYPINGS, default=None,
                   help="override the config's typing: strong (TensorRT 10 and 11; fp16 from the float16 export) "
                        "or weak (TensorRT 10's FP16 builder flag over the float32 export)")
    p.add_argument("--dla-core", type=int, default=None, help="override the config's DLA core (Jetson)")
    p.add_argument("--workspace-mib", type=int, default=None, help="override the config's workspace limit")
    p.add_argument("--cache-dir", default=None, help="cache folder (default: $DAP_LED_CACHE or ~/.cache/dap_led_ros)")
    p.add_argument("--force", action="store_true", help="rebuild even when a matching engine exists")
    p.add_argument("--reference", default=None,
                   help="--verify against this float32 ONNX (default: the --onnx file when float32, else the "
                        "checkpoint's float32 export, which needs torch)")
    p.add_argument("--verify", action="store_true",
                   help="compare the engine with ONNX Runtime FP32 at each camera size (PSNR)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from dap_led_ros.runtime.backends.engine_cache import StaleEngineError

    try:
        cfg = EngineConfig.from_yaml(args.config) if args.config else EngineConfig()
        overrides = {"precision": args.precision, "typing": args.typing, "dla_core": args.dla_core,
                     "workspace_mib": args.workspace_mib}
        for k, v in overrides.items():
            if v is not None:
                setattr(cfg, k, v)
        cfg.validate()
    except (OSError, ValueError) as exc:
        print(f"error: engine config: {exc}", file=sys.stderr)
        return 2
    if args.output is not None:
        try:  # before the long build
            prepare_folder(Path(args.output).parent, "the folder of --output")
        except OutputError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
    from dap_led_ros.runtime.backends.tensorrt_backend import TensorRTBackend

    try:
        from dap_led_ros.shipped_models import resolve_model

        model = resolve_model(args.model, "cuda") if args.onnx is None or args.model else None
        backend = TensorRTBackend(model, device=args.device, engine=args.onnx,
                                  engine_config=cfg, cache_dir=args.cache_dir, build=True,
                                  force_rebuild=args.force, output=args.output)
    except (BackendError, StaleEngineError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"engine: {backend.engine_path}")
    print("profiles (batch, height, width): " + "; ".join(
        f"min {p.min} opt {p.opt} max {p.max}" for p in backend.profiles))
    if args.verify:
        from dap_led_ros.runtime.backends.onnxruntime_backend import OnnxRuntimeBackend
        from dap_led_ros.runtime.backends.tensorrt_build import onnx_precision
        from dap_led_ros.runtime.backends.verify import compare_backends

        # The float32 graph: the one built from, else the checkpoint's float32 export.
        fp32 = args.reference or (str(backend.onnx_path) if onnx_precision(backend.onnx_path) == "fp32" else None)
        reference = OnnxRuntimeBackend(model, device="cpu", engine=fp32, cache_dir=args.cache_dir)
        sizes = [(p.opt[1], p.opt[2]) for p in backend.profiles]
        for row in compare_backends(backend, reference, sizes):
            print(f"  {row['size']:>10}: PSNR vs FP32 {row['psnr_db']:.1f} dB, max abs {row['max_abs']:.2e}")
        reference.close()
    backend.close()
    return 0


