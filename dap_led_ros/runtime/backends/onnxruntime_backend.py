"""ONNX Runtime backend: CPU (tuned session options) or the CUDA execution provider."""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from dap_led_ros.runtime.backends.base import BackendError
from dap_led_ros.runtime.backends.onnx_graphs import RESTORE, OnnxGraphBackend

log = logging.getLogger(__name__)



class OnnxRuntimeBackend(OnnxGraphBackend):
    """Runs the exported graphs. `engine` = an .onnx file; else the checkpoint's cached export."""

    name = "onnxruntime"

    def __init__(self, model_path: str | None = None, device: str = "cpu", threads: int = 0,
                 engine: str | None = None, cache_dir: str | None = None) -> None:
        try:
            import onnxruntime as ort
        except ImportError as exc:
            raise BackendError(f"onnxruntime is not installed: {exc}") from exc
        self._ort = ort
        self.device = device
        self.providers = self._providers(device)
        from dap_led_ros.runtime.backends.engine_cache import onnx_graph

        self.onnx_path = onnx_graph(model_path, engine, cache_dir, self.name)
        self.options = self._session_options(threads)
        # The CPU arena keeps its peak: after a run whose input shapes differ from the session's
        # previous run, unused arena chunks go back to the system. A steady stream of one size
        # never pays for it (returning memory after every run cost ~19 % at 640x480).
        self._shrink = ort.RunOptions()
        self._shrink.add_run_config_entry("memory.enable_memory_arena_shrinkage", "cpu:0")
        self._last_shapes: dict[int, tuple[tuple[int, ...], ...]] = {}
        self.session = self._session(self.onnx_path)
        self._read_graph_metadata(self.session.get_modelmeta().custom_metadata_map)
        self._tiling_sessions: dict[str, object] = {}  # the heatmaps and prior graphs, opened on first use

    def _providers(self, device: str) -> list:
        available = self._ort.get_available_providers()
        if device == "cpu":
            return ["CPUExecutionProvider"]
        if device.startswith("cuda"):
            if "CUDAExecutionProvider" not in available:
                raise BackendError("onnxruntime has no CUDAExecutionProvider (install onnxruntime-gpu); "
                                   f"available: {', '.join(available)}")
            index = int(device.split(":", 1)[1]) if ":" in device else 0
            return [("CUDAExecutionProvider", {"device_id": index}), "CPUExecutionProvider"]
        raise BackendError(f"unsupported device {device!r} for onnxruntime (use cpu, cuda or cuda:N)")

    def _session_options(self, threads: int):
        opts = self._ort.SessionOptions()
        opts.graph_optimization_level = self._ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        opts.execution_mode = self._ort.ExecutionMode.ORT_SEQUENTIAL
        opts.inter_op_num_threads = 1
        if threads > 0:
            opts.intra_op_num_threads = threads
        # Idle worker threads sleep instead of spinning: on a CPU shared with other nodes (and
        # here with training) spinning cost 30 % latency at 640x480 with 2 threads (docs/benchmarks.md).
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
        opts.log_severity_level = 3
        return opts

    def _session(self, path: Path):
        try:
            session = self._ort.InferenceSession(str(path), self.options, providers=self.providers)
        except Exception as exc:  # onnxruntime raises its own exception types
            raise BackendError(f"onnxruntime cannot load {path}: {exc}") from exc
        wanted = self.providers[0][0] if isinstance(self.providers[0], tuple) else self.providers[0]
        if wanted not in session.get_providers():
            raise BackendError(f"onnxruntime could not enable {wanted} (CUDA/cuDNN libraries missing?); "
                               f"session runs on {session.get_providers()}")
        return session

    def _run(self, session, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        shapes = tuple(v.shape for v in feeds.values())
        changed = self._last_shapes.get(id(session)) != shapes
        self._last_shapes[id(session)] = shapes
        return session.run(None, feeds, self._shrink if changed else None)

    def _run_graph(self, graph: str, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        if graph == RESTORE:
            return self._run(self.session, feeds)
        session = self._tiling_sessions.get(graph)
        if session is None:
            session = self._tiling_sessions[graph] = self._session(self.graph_paths[graph])
        return self._run(session, feeds)

    @property
    def runs_on_cpu(self) -> bool:
        return self.session is None or self.session.get_providers()[0] == "CPUExecutionProvider"

    def describe(self) -> str:
        threads = self.options.intra_op_num_threads or "default"
        provider = self.session.get_providers()[0]
        return f"onnxruntime {self._ort.__version__} ({provider}, threads {threads}, {self.onnx_path})"

    def close(self) -> None:
        self._last_shapes.clear()
        self.session = None
        self._tiling_sessions.clear()
