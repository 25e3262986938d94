"""OpenVINO backend: the same exported ONNX graphs as ONNX Runtime, compiled by OpenVINO for the CPU.

On x86 CPUs OpenVINO's CPU plugin (oneDNN kernels, fused attention) ran the DAP-LED graphs faster
than ONNX Runtime (docs/benchmarks.md, "CPU runtimes"). `precision: auto` (the default) runs bf16
where the CPU computes it natively (AMX, AVX512-BF16: OpenVINO's own choice there) and f32
elsewhere; the quality price of bf16 is measured in docs/benchmarks.md. `f32` keeps full precision.
"""
from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from pathlib import Path
from typing import Any

import numpy as np

from dap_led_ros.runtime.backends.base import BackendError
from dap_led_ros.runtime.backends.onnx_graphs import RESTORE, OnnxGraphBackend

log = logging.getLogger(__name__)

PRECISIONS = ("auto", "f32", "bf16", "f16")



class _Graph:
    """One graph, compiled for each input shape it runs on (at most `MAX_STATIC` kept, the least
    recently used dropped).

    A graph compiled for fixed shapes ran 20-30 % faster than the dynamic-shape one
    (docs/benchmarks.md), and one compilation per shape keeps every frame of a stream on the same
    kernels: the same frame gives the same bytes (bf16 kernels of two compilations differ in the
    last bit). The first frame of a new size waits for its compilation (~0.6 s here). Runs of one
    compiled graph are serialised (an infer request is not re-entrant)."""

    MAX_STATIC = 4

    def __init__(self, core: Any, path: Path, config: dict[str, Any]) -> None:
        self._core, self._path, self._config = core, path, config
        self._read()  # a file OpenVINO cannot read fails here, not at the first frame
        self._static: OrderedDict[tuple, _Graph._Compiled] = OrderedDict()
        self._lock = threading.Lock()
        self.static_compiled = 0  # compilations made (for tests and diagnostics)

    class _Compiled:
        def __init__(self, compiled: Any) -> None:
            self.compiled = compiled
            self.request = compiled.create_infer_request()
            self.lock = threading.Lock()

        def run(self, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
            with self.lock:
                # share_outputs=False: the results are copies the next run cannot overwrite.
                result = self.request.infer(feeds, share_inputs=True, share_outputs=False)
                return [result[out] for out in self.compiled.outputs]

    def _read(self) -> Any:
        try:
            return self._core.read_model(str(self._path))
        except Exception as exc:  # OpenVINO raises RuntimeError subclasses of its own
            raise BackendError(f"openvino cannot read {self._path}: {_first_line(exc)}") from exc

    def _compile_for(self, feeds: dict[str, np.ndarray]) -> _Graph._Compiled:
        model = self._read()
        model.reshape({name: list(a.shape) for name, a in feeds.items()})
        try:
            return self._Compiled(self._core.compile_model(model, "CPU", self._config))
        except Exception as exc:
            raise BackendError(f"openvino cannot compile {self._path}: {_first_line(exc)}") from exc

    def run(self, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        key = tuple((name, a.shape) for name, a in feeds.items())
        with self._lock:  # one compilation at a time; other shapes' runs wait for it
            compiled = self._static.get(key)
            if compiled is None:
                compiled = self._static[key] = self._compile_for(feeds)
                self.static_compiled += 1
                while len(self._static) > self.MAX_STATIC:
                    self._static.popitem(last=False)
            else:
                self._static.move_to_end(key)
        return compiled.run(feeds)


def _first_line(exc: BaseException) -> str:
    """OpenVINO's messages start with source locations: the first line that says something."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    said = [line for line in lines if not line.startswith("Exception from src/")]
    return (said or lines or [type(exc).__name__])[0][:300]


class OpenVinoBackend(OnnxGraphBackend):
    """Runs the exported graphs with OpenVINO. `engine` = an .onnx file; else the checkpoint's cached export."""

    name = "openvino"

    def __init__(self, model_path: str | None = None, device: str = "cpu", threads: int = 0,
                 engine: str | None = None, cache_dir: str | None = None, precision: str = "auto") -> None:
        if device != "cpu":
            raise BackendError(f"the openvino backend runs on the CPU, not on device {device!r}")
        if precision not in PRECISIONS:
            raise BackendError(f"openvino precision {precision!r}: choose from {', '.join(PRECISIONS)}")
        try:
            import openvino as ov
        except ImportError as exc:
            raise BackendError(f"openvino is not installed: {exc}") from exc
        from dap_led_ros.runtime.backends.engine_cache import onnx_graph
        from dap_led_ros.runtime.onnx_files import read_metadata

        self._ov = ov
        self.device = device
        self.threads = int(threads)
        self.onnx_path = onnx_graph(model_path, engine, cache_dir, self.name)
        self._core = ov.Core()
        if precision == "auto":
            native_bf16 = "BF16" in self._core.get_property("CPU", "OPTIMIZATION_CAPABILITIES")
            precision = "bf16" if native_bf16 else "f32"
        self.precision = precision
        self.config: dict[str, Any] = {
            "PERFORMANCE_HINT": "LATENCY",  # one stream: a frame at a time, all threads on it
            "INFERENCE_PRECISION_HINT": precision,
            # Threads are not pinned to cores: the node's other threads and other nodes share them.
            "ENABLE_CPU_PINNING": False,
        }
        if self.threads > 0:
            self.config["INFERENCE_NUM_THREADS"] = self.threads
        self._graphs = {RESTORE: _Graph(self._core, self.onnx_path, self.config)}  # tiling graphs on first use
        self._read_graph_metadata(read_metadata(self.onnx_path))

    def _run_graph(self, graph: str, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        runner = self._graphs.get(graph)
        if runner is None:
            runner = self._graphs[graph] = _Graph(self._core, self.graph_paths[graph], self.config)
        return runner.run(feeds)

    def describe(self) -> str:
        threads = self.threads or "auto"
        return (f"openvino {self._ov.__version__.split('-')[0]} (CPU, {self.precision}, threads {threads}, "
                f"{self.onnx_path})")

    def close(self) -> None:
        self._graphs.clear()
