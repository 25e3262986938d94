"""Enhancer.enhance_batch_deferred: frames of one size batched (within the backend's limit), each
stream its own fusion history and heatmap cache; the multi-camera node's path, without ROS."""
from __future__ import annotations

import numpy as np

from dap_led_ros.enhancer import Enhancer, EnhancerConfig
from dap_led_ros.runtime.backends.base import Backend


class Recorder(Backend):
    """Doubles the input (clipped), records each call's batch size; heatmaps count their calls."""

    name = "recorder"
    supports_prior_input = True

    def __init__(self, max_batch: int | None = None) -> None:
        self.calls: list[int] = []
        self.heat_calls = 0
        self._max_batch = max_batch

    @property
    def max_batch(self) -> int | None:
        return self._max_batch

    def infer(self, x: np.ndarray) -> np.ndarray:
        assert self._max_batch is None or x.shape[0] <= self._max_batch
        self.calls.append(x.shape[0])
        return np.clip(x * 2.0, 0.0, 1.0)

    def heatmaps(self, x: np.ndarray) -> list[np.ndarray]:
        self.heat_calls += 1
        return [np.full((x.shape[0], 4, 1, 1), float(x.mean()), np.float32)]

    def infer_with_prior(self, x: np.ndarray, prior_maps: list[np.ndarray]) -> np.ndarray:
        return self.infer(x)


def frames(n: int, h: int = 16, w: int = 24) -> list[np.ndarray]:
    return [np.full((h, w, 3), 10 * (i + 1), np.uint8) for i in range(n)]


def test_one_size_goes_in_one_call_other_sizes_alone_and_results_keep_their_order():
    backend = Recorder()
    enhancer = Enhancer(EnhancerConfig(), backend=backend)
    batch = frames(3) + [np.full((8, 8, 3), 50, np.uint8)]
    rests = enhancer.enhance_batch_deferred(batch)
    assert sorted(backend.calls) == [1, 3]  # the network ran now, before any rest is called
    out = [rest() for rest in rests]
    for f, o in zip(batch, out):
        assert o.shape == f.shape and int(o[0, 0, 0]) == min(255, 2 * int(f[0, 0, 0]))


def test_an_engine_built_for_smaller_batches_gets_chunks():
    backend = Recorder(max_batch=2)
    out = Enhancer(EnhancerConfig(), backend=backend).enhance_batch(frames(5))
    assert backend.calls == [2, 2, 1] and len(out) == 5


def test_each_stream_has_its_own_fusion_history():
    backend = Recorder()
    enhancer = Enhancer(EnhancerConfig(temporal=True), backend=backend)
    cams = [enhancer.stream("front"), enhancer.stream("rear")]
    for _ in range(3):
        enhancer.enhance_batch(frames(2), cams)
    assert all(s.history is not None for s in cams)
    enhancer.enhance_batch(frames(2))  # stills: no stream
    assert set(enhancer.streams) == {"front", "rear"}
    enhancer.close_stream("front")
    assert enhancer.stream("front").history is None and cams[1].history is not None


def test_heatmap_reuse_is_per_stream():
    backend = Recorder()
    enhancer = Enhancer(EnhancerConfig(prior_every=4), backend=backend)
    a, b = frames(2, 16, 24)[0], np.full((20, 24, 3), 200, np.uint8)  # two sizes: one by one
    for _ in range(4):
        enhancer.enhance_batch([a, b], [enhancer.stream("front"), enhancer.stream("rear")])
    caches = {name: stream.prior for name, stream in enhancer.streams.items()}
    assert (caches["front"].computed, caches["front"].reused) == (1, 3)
    assert (caches["rear"].computed, caches["rear"].reused) == (1, 3)
    assert backend.heat_calls == 2
