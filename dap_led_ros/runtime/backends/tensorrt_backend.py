"""TensorRT backend: a cached FP16 engine run with execute_async_v3 on its own CUDA stream.

Given an engine file or an .onnx, it needs TensorRT, a CUDA binding (cuda_support.py) and numpy
(plus onnx for an .onnx): no torch. Without one it exports the checkpoint first (torch).

Input shapes are set per call (`set_input_shape`); the optimisation profile that covers the frame
is selected first. Host buffers are page-locked and copies are asynchronous on the stream.
"""
from __future__ import annotations

import logging
import threading
from dataclasses import replace
from pathlib import Path

import numpy as np

from dap_led_ros.runtime.backends.base import ENGINE_SUFFIXES, Backend, BackendError, pad_for_graph
from dap_led_ros.runtime.backends.cuda_support import DeviceBuffer, HostBuffer, device_index, open_cuda_memory
from dap_led_ros.runtime.backends.tensorrt_build import build_engine, default_timing_cache, import_tensorrt
from dap_led_ros.runtime.backends.tensorrt_config import EngineConfig, ProfileError, ShapeProfile, select_profile

log = logging.getLogger(__name__)

INPUT_NAME = "image"
OUTPUT_NAME = "restored"


class TensorRTBackend(Backend):
    """`engine`: a built engine (.engine/.plan, checked against its key JSON) or an .onnx to build
    from; None exports the checkpoint (in the precision `engine_config` asks for) and uses (or,
    with `build`, builds) the cached engine for its key. A given engine is compared with the
    checkpoint only when `model_path` is given."""

    name = "tensorrt"

    def __init__(self, model_path: str | None = None, device: str = "cuda", engine: str | None = None,
                 engine_config: EngineConfig | str | None = None, cache_dir: str | None = None,
                 build: bool = True, force_rebuild: bool = False, output: str | None = None,
                 cuda_memory: str = "auto", threads: int = 0) -> None:
        from dap_led_ros.runtime.backends.engine_cache import checkpoint_digest

        del threads  # CPU threads do not apply to TensorRT
        self._trt = import_tensorrt()
        device_index(device)
        self.mem = open_cuda_memory(device, cuda_memory)
        self.gpu_name, self.compute_capability = self.mem.identity()
        if isinstance(engine_config, (str, Path)):
            engine_config = EngineConfig.from_yaml(engine_config)
        cfg = engine_config or EngineConfig()
        cfg.validate()
        given_engine = engine is not None and Path(engine).suffix in ENGINE_SUFFIXES
        # A foreign ONNX file has no checkpoint to compare with; an engine file only when one is named.
        digest = checkpoint_digest(model_path) if engine is None or (given_engine and model_path) else None
        self.onnx_path: Path | None = None
        if given_engine:
            self.engine_path = self._check_given_engine(Path(engine), digest)
        else:
            if engine is not None and (Path(engine).suffix != ".onnx" or not Path(engine).is_file()):
                raise BackendError(f"engine must be an existing .onnx or {'/'.join(ENGINE_SUFFIXES)} file, "
                                   f"got {engine}")
            self.engine_path = self._cached_or_built_engine(model_path, engine, cfg, cache_dir, digest, build,
                                                            force_rebuild, output)
        self._load()

    def _check_given_engine(self, path: Path, digest: str | None) -> Path:
        """An engine given by path: its recorded build inputs must match this platform and checkpoint."""
        from dap_led_ros.runtime.backends.engine_cache import EngineKeyInputs, check_engine, read_engine_meta

        if not path.is_file():
            raise BackendError(f"TensorRT engine not found: {path}")
        recorded = EngineKeyInputs.from_json(read_engine_meta(path)["inputs"])
        expected = replace(recorded, tensorrt_version=self._trt.__version__, gpu_name=self.gpu_name,
                           compute_capability=self.compute_capability)
        check_engine(path, expected, checkpoint_sha256=digest)
        return path

    def _cached_or_built_engine(self, model_path: str | None, onnx: str | None, cfg: EngineConfig,
                                cache_dir: str | None, digest: str | None, build: bool, force_rebuild: bool,
                                output: str | None) -> Path:
        """The engine for this ONNX/platform/config key: from the cache, else built when allowed."""
        from dap_led_ros.runtime.backends.engine_cache import (
            EngineKeyInputs,
            StaleEngineError,
            cached_onnx,
            check_engine,
            engine_path_for,
            file_sha256,
        )

        self.onnx_path = Path(onnx) if onnx else cached_onnx(model_path, root=cache_dir,
                                                             precision=cfg.graph_precision())
        inputs = EngineKeyInputs(
            onnx_sha256=file_sha256(self.onnx_path), tensorrt_version=self._trt.__version__,
            gpu_name=self.gpu_name, compute_capability=self.compute_capability,
            profiles=tuple(p.as_tuple() for p in cfg.shape_profiles()), precision=cfg.precision,
            dla_core=cfg.dla_core, fp32_layers=cfg.fp32_layers(), typing=cfg.typing)
        path = Path(output) if output else engine_path_for(inputs, cache_dir)
        if path.is_file() and not force_rebuild:
            try:
                check_engine(path, inputs, checkpoint_sha256=digest)
                return path
            except StaleEngineError as exc:
                if not build:
                    raise
                log.warning("%s; rebuilding", exc)
        if not build:
            raise BackendError(f"no TensorRT engine for this checkpoint/GPU/profiles at {path}; "
                               "build it with `dap-led build-engine`")
        timing = Path(cfg.timing_cache).expanduser() if cfg.timing_cache else default_timing_cache(cache_dir, inputs)
        build_engine(self.onnx_path, path, cfg, inputs, timing_cache=timing, checkpoint_sha256=digest,
                     extra_meta={"pad_multiple": self._graph_pad_multiple()})
        return path

    def _load(self) -> None:
        trt = self._trt
        self._logger = trt.Logger(trt.Logger.WARNING)
        self._runtime = trt.Runtime(self._logger)
        with self.mem.activate():
            self.engine = self._runtime.deserialize_cuda_engine(self.engine_path.read_bytes())
            if self.engine is None:
                raise BackendError(f"TensorRT could not deserialize {self.engine_path} (built with another version?)")
            self.context = self.engine.create_execution_context()
        names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
        if INPUT_NAME not in names or OUTPUT_NAME not in names:
            raise BackendError(f"engine {self.engine_path} has tensors {names}; expected {INPUT_NAME!r} -> "
                               f"{OUTPUT_NAME!r} (a DAP-LED whole-network export)")
        self._in_dtype = np.dtype(trt.nptype(self.engine.get_tensor_dtype(INPUT_NAME)))
        self._out_dtype = np.dtype(trt.nptype(self.engine.get_tensor_dtype(OUTPUT_NAME)))
        self.profiles = []
        for i in range(self.engine.num_optimization_profiles):
            lo, opt, hi = self.engine.get_tensor_profile_shape(INPUT_NAME, i)
            self.profiles.append(ShapeProfile(*(tuple(int(d) for d in (s[0], s[2], s[3])) for s in (lo, opt, hi))))
        self._active_profile = -1
        # Frames below every profile's minimum, or too small for the graph's reflection padding,
        # are edge-padded first and cropped back (pad_for_graph), as the other backends do.
        self.min_side = min(max(p.min[1], p.min[2]) for p in self.profiles) if self.profiles else 1
        self.pad_multiple = self._pad_multiple()
        self._buffers: dict[str, tuple[HostBuffer, DeviceBuffer]] = {}
        self._lock = threading.Lock()

    def _graph_pad_multiple(self) -> int:
        """The exported graph's pad multiple (its ONNX metadata), 1 when unreadable."""
        from dap_led_ros.runtime.onnx_files import read_metadata

        try:
            return int(read_metadata(self.onnx_path).get("dap_led.pad_multiple", 1))
        except (OSError, ValueError, ImportError) as exc:
            log.warning("cannot read the pad multiple of %s (%s); small frames are padded to %d px only",
                        self.onnx_path, exc, getattr(self, "min_side", 1))
            return 1

    def _pad_multiple(self) -> int:
        """The graph's pad multiple: from the ONNX file, else as recorded beside the engine at build."""
        if self.onnx_path is not None:
            return self._graph_pad_multiple()
        from dap_led_ros.runtime.backends.engine_cache import read_engine_meta

        return int(read_engine_meta(self.engine_path).get("pad_multiple", 1))

    def _buffer(self, name: str, nbytes: int) -> tuple[HostBuffer, DeviceBuffer]:
        """Pinned host + device buffers of at least `nbytes`, grown on demand."""
        cur = self._buffers.get(name)
        if cur is None or cur[0].nbytes < nbytes:
            cur = (self.mem.host(nbytes), self.mem.device(nbytes))
            self._buffers[name] = cur
        return cur

    def infer(self, x: np.ndarray) -> np.ndarray:
        if x.ndim != 4 or x.shape[1] != 3:
            raise BackendError(f"expected a B x 3 x H x W array, got shape {x.shape}")
        padded = pad_for_graph(x, self.pad_multiple, self.min_side)
        if padded is not None:
            return self.infer(padded)[..., :x.shape[-2], :x.shape[-1]]
        b, _, h, w = x.shape
        try:
            profile = select_profile(self.profiles, b, h, w)
        except ProfileError as exc:
            raise BackendError(str(exc)) from exc
        with self._lock, self.mem.activate():
            stream = self.mem.stream_handle
            if profile != self._active_profile:
                self.context.set_optimization_profile_async(profile, stream)
                self._active_profile = profile
            if not self.context.set_input_shape(INPUT_NAME, tuple(x.shape)):
                raise BackendError(f"TensorRT rejected input shape {x.shape} for profile {profile}")
            out_shape = tuple(self.context.get_tensor_shape(OUTPUT_NAME))
            x = np.ascontiguousarray(x, dtype=self._in_dtype)
            host_in, dev_in = self._buffer(INPUT_NAME, x.nbytes)
            out_bytes = int(np.prod(out_shape)) * self._out_dtype.itemsize
            host_out, dev_out = self._buffer(OUTPUT_NAME, out_bytes)
            host_in.view(x.shape, self._in_dtype)[...] = x
            self.mem.copy_to_device(dev_in, host_in, x.nbytes)
            self.context.set_tensor_address(INPUT_NAME, dev_in.ptr)
            self.context.set_tensor_address(OUTPUT_NAME, dev_out.ptr)
            if not self.context.execute_async_v3(stream):
                raise BackendError("TensorRT execute_async_v3 failed (see the TensorRT log)")
            self.mem.copy_to_host(host_out, dev_out, out_bytes)
            self.mem.synchronize()
            return host_out.view(out_shape, self._out_dtype).astype(np.float32, copy=True)

    @property
    def runs_on_cpu(self) -> bool:
        return False

    @property
    def max_batch(self) -> int | None:
        """The largest batch of the engine's profiles (config/engine.yaml `max_batch`)."""
        return max((p.max[0] for p in self.profiles), default=1)

    def describe(self) -> str:
        return f"tensorrt {self._trt.__version__} ({self.engine_path.name}, {len(self.profiles)} profiles, " \
               f"buffers via {self.mem.name})"

    def close(self) -> None:
        with self._lock:
            self._buffers.clear()
            self.context = None
            self.engine = None
        self.mem.close()
