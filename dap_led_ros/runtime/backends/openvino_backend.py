"""OpenVINO backend: the same exported ONNX graphs as ONNX Runtime, compiled by OpenVINO for the CPU.

On x86 CPUs OpenVINO's CPU plugin (oneDNN kernels, fused attention) ran the DAP-LED graphs faster
than ONNX Runtime (docs/benchmarks.md, "CPU runtimes"). `precision: auto` (the default) runs bf16
where the CPU computes it natively (AMX, AVX512-BF16: OpenVINO's own choice there) and f32
elsewhere; the quality price of bf16 is measured in docs/benchmarks.md. `f32` keeps full precision.
"""
from __future__ import annotations

import json
import logging
import threading
from collections import OrderedDict
from pathlib import Path
from typing import Any

import numpy as np

from dap_led_ros.runtime.backends.base import Backend, BackendError, check_batch, pad_for_graph

log = logging.getLogger(__name__)

PRECISIONS = ("auto", "f32", "bf16", "f16")



class _Graph:
    """One graph: compiled with dynamic shapes, and again for each input shape seen twice.

    A graph compiled for fixed shapes ran 20-30 % faster than the dynamic one (docs/benchmarks.md),
    so a stream of one frame size gets its own compilation. It is made in the background, while the
    dynamic graph serves (no frame waits ~0.6 s for it), and at most `MAX_STATIC` are kept. Runs of
    one compiled graph are serialised (an infer request is not re-entrant)."""

    MAX_STATIC = 4

    def __init__(self, core: Any, path: Path, config: dict[str, Any]) -> None:
        self._core, self._path, self._config = core, path, config
        self._model = self._read()
        self.dynamic = self._Compiled(self._compile(self._model))
        self.outputs = len(self.dynamic.compiled.outputs)
        self._static: OrderedDict[tuple, _Graph._Compiled | None] = OrderedDict()  # None: compiling
        self._seen: set[tuple] = set()
        self._cond = threading.Condition()
        self.static_compiled = 0  # fixed-shape compilations made (for tests and diagnostics)

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
            raise BackendError(f"openvino cannot compile {self._path}: {str(exc).splitlines()[0][:300]}") from exc

    def _compile(self, model: Any) -> Any:
        try:
            return self._core.compile_model(model, "CPU", self._config)
        except Exception as exc:
            raise BackendError(f"openvino cannot compile {self._path}: {str(exc).splitlines()[0][:300]}") from exc

    def _compile_static(self, key: tuple, shapes: dict[str, list[int]]) -> None:
        try:
            model = self._read()
            model.reshape(shapes)
            compiled: _Graph._Compiled | None = self._Compiled(self._compile(model))
        except Exception:  # noqa: BLE001 - the dynamic graph keeps serving this shape
            log.warning("openvino: no fixed-shape graph for %s; the dynamic one serves it", shapes, exc_info=True)
            compiled = None
        with self._cond:
            if compiled is None:
                self._static.pop(key, None)
            else:
                self._static[key] = compiled
                self.static_compiled += 1
                while len(self._static) > self.MAX_STATIC:
                    self._static.popitem(last=False)
            self._cond.notify_all()

    def _for_shapes(self, feeds: dict[str, np.ndarray]) -> _Graph._Compiled:
        key = tuple((name, a.shape) for name, a in feeds.items())
        with self._cond:
            if key in self._static:
                compiled = self._static[key]
                if compiled is not None:
                    self._static.move_to_end(key)
                    return compiled
                return self.dynamic  # still compiling
            if key not in self._seen:
                if len(self._seen) > 64:  # many sizes (an evaluation set): forget the old ones
                    self._seen.clear()
                self._seen.add(key)
                return self.dynamic
            self._static[key] = None
        shapes = {name: list(a.shape) for name, a in feeds.items()}
        threading.Thread(target=self._compile_static, args=(key, shapes), daemon=True,
                         name="openvino-compile").start()
        return self.dynamic

    def run(self, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        return self._for_shapes(feeds).run(feeds)

    def wait_static(self, timeout: float = 60.0) -> None:
        """Until no fixed-shape compilation is under way (benchmarks, tests)."""
        with self._cond:
            self._cond.wait_for(lambda: all(c is not None for c in self._static.values()), timeout)


class OpenVinoBackend(Backend):
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
        from dap_led_ros.runtime.export import prior_graph_paths, read_metadata

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
        self._graph = _Graph(self._core, self.onnx_path, self.config)
        meta = read_metadata(self.onnx_path)
        self.pad_multiple = int(meta.get("dap_led.pad_multiple", 1))
        self.min_side = 1 if "dap_led.pad_multiple" in meta else int(meta.get("dap_led.min_side", 1))
        self.grids = json.loads(meta["dap_led.grids"]) if "dap_led.grids" in meta else []
        self._heat_path, self._prior_path = prior_graph_paths(self.onnx_path)
        self.supports_prior_input = self._heat_path.is_file() and self._prior_path.is_file() and bool(self.grids)
        self._heat_graph: _Graph | None = None
        self._prior_graph: _Graph | None = None

    def infer(self, x: np.ndarray) -> np.ndarray:
        x = check_batch(x)
        padded = pad_for_graph(x, self.pad_multiple, self.min_side)
        if padded is None:
            return self._graph.run({"image": x})[0]
        if self.supports_prior_input:  # heatmaps of the frame itself, as the PyTorch model computes them
            return self.infer_with_prior(x, self.heatmaps(x))
        return self._graph.run({"image": padded})[0][..., :x.shape[-2], :x.shape[-1]]

    def heatmaps(self, x: np.ndarray) -> list[np.ndarray]:
        if not self.supports_prior_input:
            return super().heatmaps(x)
        if self._heat_graph is None:
            self._heat_graph = _Graph(self._core, self._heat_path, self.config)
        return self._heat_graph.run({"image": check_batch(x)})

    def infer_with_prior(self, x: np.ndarray, prior_maps: list[np.ndarray]) -> np.ndarray:
        if not self.supports_prior_input:
            return super().infer_with_prior(x, prior_maps)
        if len(prior_maps) != len(self.grids):
            raise BackendError(f"expected {len(self.grids)} heatmaps (grids {self.grids}), got {len(prior_maps)}")
        if self._prior_graph is None:
            self._prior_graph = _Graph(self._core, self._prior_path, self.config)
        x = check_batch(x)
        padded = pad_for_graph(x, self.pad_multiple, self.min_side)
        feeds = {"image": x if padded is None else padded}
        for g, m in zip(self.grids, prior_maps):
            feeds[f"prior_g{g}"] = np.ascontiguousarray(m, dtype=np.float32)
        return self._prior_graph.run(feeds)[0][..., :x.shape[-2], :x.shape[-1]]

    def describe(self) -> str:
        threads = self._graph.dynamic.compiled.get_property("INFERENCE_NUM_THREADS") if self._graph else self.threads
        return (f"openvino {self._ov.__version__.split('-')[0]} (CPU, {self.precision}, threads {threads}, "
                f"{self.onnx_path})")

    def close(self) -> None:
        self._graph = None  # type: ignore[assignment]
        self._heat_graph = None
        self._prior_graph = None
