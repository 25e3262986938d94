"""Build a TensorRT engine from the ONNX export with the TensorRT Python API, and `dap-led build-engine`.

FP16 with precision constraints that keep normalisation, softmax and reduction layers in FP32,
one optimisation profile per camera resolution, a workspace limit, a persistent timing cache and
an optional DLA core. The engine lands in the cache under its key (see engine_cache.py).
"""
from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

from dap_led_ros.file_output import write_bytes
from dap_led_ros.runtime.backends.base import BackendError
from dap_led_ros.runtime.backends.tensorrt_config import EngineConfig

log = logging.getLogger(__name__)


def import_tensorrt() -> Any:
    try:
        import tensorrt as trt
    except ImportError as exc:
        raise BackendError(f"TensorRT is not installed ({exc}); on Jetson it comes with JetPack "
                           "(python3-libnvinfer), on desktops `pip install tensorrt`") from exc
    return trt


def stays_fp32(layer_type: str, layer_name: str, cfg: EngineConfig) -> bool:
    """Whether the precision constraints keep this layer in FP32."""
    return layer_type in cfg.fp32_layer_types or any(p in layer_name for p in cfg.fp32_name_patterns)


def mark_fp32_layers(network: Any, cfg: EngineConfig, fp32: Any, float_types: tuple[Any, ...]) -> list[str]:
    """Pin precision and output types of matching float layers to FP32; returns their names.

    `fp32` is trt.float32 and `float_types` the floating TensorRT types (the function is
    written against the layer interface only, so it is testable without TensorRT).
    Layers with integer or boolean outputs (shapes, indices) are left alone.
    """
    marked = []
    for i in range(network.num_layers):
        layer = network.get_layer(i)
        if not stays_fp32(layer.type.name, layer.name, cfg):
            continue
        outputs = [layer.get_output(j) for j in range(layer.num_outputs)]
        if not outputs or any(t.dtype not in float_types for t in outputs):
            continue
        layer.precision = fp32
        for j in range(layer.num_outputs):
            layer.set_output_type(j, fp32)
        marked.append(layer.name)
    return marked


def default_timing_cache(root: str | Path | None = None) -> Path:
    from dap_led_ros.runtime.backends.engine_cache import cache_root

    return cache_root(root) / "engines" / "timing.cache"


def build_engine(onnx_path: str | Path, engine_path: str | Path, cfg: EngineConfig, key_inputs: Any,
                 timing_cache: str | Path | None = None, checkpoint_sha256: str | None = None) -> dict[str, Any]:
    """Build and write the engine plus its key JSON; returns the metadata written."""
    from dap_led_ros.runtime.backends.engine_cache import write_engine_meta

    trt = import_tensorrt()
    cfg.validate()
    onnx_path, engine_path = Path(onnx_path), Path(engine_path)
    t0 = time.monotonic()
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = builder.create_network(0)  # explicit batch is the only mode in TensorRT 10
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise BackendError(f"TensorRT cannot parse {onnx_path}: {errors}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, cfg.workspace_mib << 20)

    marked: list[str] = []
    if cfg.precision == "fp16":
        if not hasattr(trt.BuilderFlag, "FP16"):
            raise BackendError(f"TensorRT {trt.__version__} has no FP16 builder flag (weakly typed FP16 "
                               "builds were removed); use precision fp32 or TensorRT 10")
        if not getattr(builder, "platform_has_fast_fp16", True):  # deprecated in TensorRT 10
            log.warning("this GPU has no fast FP16; the FP16 engine may not be faster than FP32")
        config.set_flag(trt.BuilderFlag.FP16)
        marked = mark_fp32_layers(network, cfg, trt.float32, (trt.float32, trt.float16))
        if marked:
            config.set_flag(trt.BuilderFlag.OBEY_PRECISION_CONSTRAINTS)
        log.info("precision constraints: %d layers kept in FP32", len(marked))

    if network.num_inputs != 1:
        raise BackendError(f"{onnx_path} has {network.num_inputs} inputs; build engines from the "
                           "whole-network graph (image -> restored)")
    input_name = network.get_input(0).name
    for p in cfg.shape_profiles():
        profile = builder.create_optimization_profile()
        profile.set_shape(input_name, *p.nchw())
        config.add_optimization_profile(profile)

    if cfg.dla_core >= 0:
        if builder.num_DLA_cores <= cfg.dla_core:
            raise BackendError(f"DLA core {cfg.dla_core} requested but this device has {builder.num_DLA_cores}")
        config.default_device_type = trt.DeviceType.DLA
        config.DLA_core = cfg.dla_core
        config.set_flag(trt.BuilderFlag.GPU_FALLBACK)

    cache_file = Path(timing_cache) if timing_cache else default_timing_cache()  # reused across builds
    cache_blob = cache_file.read_bytes() if cache_file.is_file() else b""
    timing = config.create_timing_cache(cache_blob)
    config.set_timing_cache(timing, ignore_mismatch=True)

    log.info("building TensorRT %s engine from %s (this takes minutes)", cfg.precision, onnx_path)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise BackendError("TensorRT failed to build the engine (see the TensorRT log above)")
    engine_path.parent.mkdir(parents=True, exist_ok=True)
    write_bytes(engine_path, bytes(memoryview(serialized)), force=True)
    write_bytes(cache_file, bytes(memoryview(config.get_timing_cache().serialize())), force=True)
    extra = {"checkpoint_sha256": checkpoint_sha256, "onnx_path": str(onnx_path),
             "build_seconds": round(time.monotonic() - t0, 1), "built_at": time.strftime("%Y-%m-%dT%H:%M:%S"),
             "fp32_layer_count": len(marked), "timing_cache": str(cache_file)}
    write_engine_meta(engine_path, key_inputs, extra)
    log.info("engine written to %s in %.0f s", engine_path, extra["build_seconds"])
    return extra


# --- `dap-led build-engine` ---------------------------------------------------------------------
