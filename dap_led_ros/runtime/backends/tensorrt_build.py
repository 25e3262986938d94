"""Build a TensorRT engine from the ONNX export with the TensorRT Python API (10.x and 11.x).

Strongly typed by default: the FP16 engine comes from the float16 export (`dap-led export
--precision fp16`: float32 normalisations, reductions and softmax), as TensorRT 11 requires; on
TensorRT 10, `typing: weak` keeps the older FP16 builder flag with FP32 precision constraints.
One optimisation profile per camera resolution, a workspace limit, a timing cache per TensorRT
version and GPU, and an optional DLA core (fixed shapes only). The engine lands in the cache
under its key (see engine_cache.py).
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


def tensorrt_major(trt: Any) -> int:
    """The major version of the imported TensorRT module (10, 11, ...)."""
    try:
        return int(str(trt.__version__).split(".")[0])
    except ValueError as exc:
        raise BackendError(f"unreadable TensorRT version {trt.__version__!r}") from exc


def has_weak_fp16(trt: Any) -> bool:
    """Whether this TensorRT still has weakly typed FP16 (BuilderFlag.FP16: 10.x, removed in 11)."""
    return hasattr(trt.BuilderFlag, "FP16") and hasattr(trt.BuilderFlag, "OBEY_PRECISION_CONSTRAINTS")


def network_flags(trt: Any, strongly_typed: bool) -> int:
    """create_network flags: STRONGLY_TYPED where asked and the enum has it (11.x types every
    network strongly and accepts the flag); explicit batch is the only mode since TensorRT 10."""
    flag = getattr(getattr(trt, "NetworkDefinitionCreationFlag", None), "STRONGLY_TYPED", None)
    if not strongly_typed or flag is None:
        return 0
    return 1 << int(flag)


def onnx_precision(onnx_path: str | Path) -> str:
    """fp16 or fp32: the export's recorded precision, else what the graph's types say."""
    from dap_led_ros.runtime.onnx_files import read_metadata

    recorded = read_metadata(onnx_path).get("dap_led.precision")
    if recorded:
        return recorded
    import onnx

    from dap_led_ros.runtime.float16_graph import graph_precision

    return graph_precision(onnx.load(str(onnx_path), load_external_data=False))


def build_typing(trt: Any, cfg: EngineConfig, graph: str) -> str:
    """'strong' or 'weak' for building `cfg` from a graph of precision `graph`, or BackendError
    saying why this TensorRT or this graph cannot give the engine asked for."""
    major = tensorrt_major(trt)
    if cfg.typing == "weak":
        if cfg.precision == "fp32":
            return "strong"  # nothing to lower: the same engine either way
        if not has_weak_fp16(trt):
            raise BackendError(f"TensorRT {trt.__version__} removed weakly typed FP16 (BuilderFlag.FP16); "
                               "set typing: strong in the engine config (the default) and build from "
                               "`dap-led export --precision fp16`")
        if graph != "fp32":
            raise BackendError("typing: weak lowers a float32 graph; this ONNX is already float16")
        return "weak"
    if graph != cfg.precision:
        hint = ("export it with `dap-led export --precision fp16`" if cfg.precision == "fp16"
                else "export it with `--precision fp32`")
        raise BackendError(f"a strongly typed {cfg.precision} engine needs a {cfg.precision} graph, this ONNX is "
                           f"{graph}: {hint}" + ("" if major >= 11 else ", or set typing: weak (TensorRT 10)"))
    return "strong"


def timing_cache_name(key_inputs: Any) -> str:
    """A timing cache file per TensorRT version and GPU, as the engine is keyed: tactics timed
    on one GPU or version are not offered to another."""
    import hashlib

    ident = "|".join((key_inputs.tensorrt_version, key_inputs.gpu_name, key_inputs.compute_capability))
    return f"timing-{hashlib.sha256(ident.encode()).hexdigest()[:16]}.cache"


def default_timing_cache(root: str | Path | None = None, key_inputs: Any = None) -> Path:
    """<cache>/engines/timing-<TensorRT version + GPU>.cache."""
    from dap_led_ros.runtime.backends.engine_cache import cache_root

    return cache_root(root) / "engines" / timing_cache_name(key_inputs)


def _weak_fp16(trt: Any, builder: Any, network: Any, config: Any, cfg: EngineConfig) -> list[str]:
    """TensorRT 10's weakly typed FP16: the builder flag and FP32 precision constraints."""
    if not getattr(builder, "platform_has_fast_fp16", True):  # deprecated in 10, removed in 11
        log.warning("this GPU has no fast FP16; the FP16 engine may not be faster than FP32")
    config.set_flag(trt.BuilderFlag.FP16)
    marked = mark_fp32_layers(network, cfg, trt.float32, (trt.float32, trt.float16))
    if marked:
        config.set_flag(trt.BuilderFlag.OBEY_PRECISION_CONSTRAINTS)
    log.info("weakly typed FP16: %d layers kept in FP32 by precision constraints", len(marked))
    return marked


def build_engine(onnx_path: str | Path, engine_path: str | Path, cfg: EngineConfig, key_inputs: Any,
                 timing_cache: str | Path | None = None, checkpoint_sha256: str | None = None,
                 extra_meta: dict[str, Any] | None = None) -> dict[str, Any]:
    """Build and write the engine plus its key JSON; returns the metadata written.

    Strongly typed (the graph's own precisions) unless cfg.typing is weak and this TensorRT has
    weak FP16 (10.x). The timing cache is one per TensorRT version and GPU.
    """
    from dap_led_ros.runtime.backends.engine_cache import write_engine_meta

    trt = import_tensorrt()
    cfg.validate()
    onnx_path, engine_path = Path(onnx_path), Path(engine_path)
    typing = build_typing(trt, cfg, onnx_precision(onnx_path))
    t0 = time.monotonic()
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = builder.create_network(network_flags(trt, typing == "strong"))
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise BackendError(f"TensorRT cannot parse {onnx_path}: {errors}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, cfg.workspace_mib << 20)
    marked = _weak_fp16(trt, builder, network, config, cfg) if typing == "weak" else []

    if network.num_inputs != 1:
        raise BackendError(f"{onnx_path} has {network.num_inputs} inputs; build engines from the "
                           "whole-network graph (image -> restored)")
    input_name = network.get_input(0).name
    for p in cfg.shape_profiles():
        profile = builder.create_optimization_profile()
        profile.set_shape(input_name, *p.nchw())
        config.add_optimization_profile(profile)

    if cfg.dla_core >= 0:  # validate() refused dynamic profiles
        if builder.num_DLA_cores <= cfg.dla_core:
            raise BackendError(f"DLA core {cfg.dla_core} requested but this device has {builder.num_DLA_cores}")
        config.default_device_type = trt.DeviceType.DLA
        config.DLA_core = cfg.dla_core
        config.set_flag(trt.BuilderFlag.GPU_FALLBACK)

    cache_file = Path(timing_cache) if timing_cache else default_timing_cache(key_inputs=key_inputs)
    cache_blob = cache_file.read_bytes() if cache_file.is_file() else b""
    timing = config.create_timing_cache(cache_blob)
    if not config.set_timing_cache(timing, ignore_mismatch=False):
        log.warning("timing cache %s was made by another TensorRT or GPU; timing from scratch", cache_file)
        timing = config.create_timing_cache(b"")
        config.set_timing_cache(timing, ignore_mismatch=False)

    log.warning("building a TensorRT %s engine (%s typing) from %s: this takes minutes", cfg.precision, typing,
                onnx_path)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise BackendError("TensorRT failed to build the engine (see the TensorRT log above)")
    engine_path.parent.mkdir(parents=True, exist_ok=True)
    write_bytes(engine_path, bytes(memoryview(serialized)), force=True)
    cache_file.parent.mkdir(parents=True, exist_ok=True)
    write_bytes(cache_file, bytes(memoryview(config.get_timing_cache().serialize())), force=True)
    extra = {"checkpoint_sha256": checkpoint_sha256, "onnx_path": str(onnx_path),
             "build_seconds": round(time.monotonic() - t0, 1), "built_at": time.strftime("%Y-%m-%dT%H:%M:%S"),
             "typing": typing, "fp32_layer_count": len(marked), "timing_cache": str(cache_file),
             **(extra_meta or {})}
    write_engine_meta(engine_path, key_inputs, extra)
    log.info("engine written to %s in %.0f s", engine_path, extra["build_seconds"])
    return extra


# --- `dap-led build-engine` ---------------------------------------------------------------------
