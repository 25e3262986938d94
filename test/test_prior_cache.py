"""CCM heatmap reuse across video frames, and the per-stage timing of the frame path."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from dap_led_ros.enhancer import Enhancer, EnhancerConfig
from dap_led_ros.runtime.prior_cache import PriorCache
from dap_led_ros.runtime.stage_timing import StageTimes
from dap_led_ros.training.clean_photos import list_clean_photos, load_clean_photo

torch.set_num_threads(1)


def _counter():
    calls = []

    def compute():
        calls.append(1)
        return [np.full((1, 4, 1, 1), len(calls), np.float32)]
    return calls, compute


def test_every_one_recomputes_each_frame_and_every_n_reuses_up_to_n():
    frame = np.full((24, 32, 3), 60, np.uint8)
    calls, compute = _counter()
    cache = PriorCache(every=1)
    for _ in range(3):
        cache.maps(frame, compute)
    assert len(calls) == 3 and cache.reused == 0
    calls, compute = _counter()
    cache = PriorCache(every=3)
    got = [int(cache.maps(frame, compute)[0].ravel()[0]) for _ in range(7)]
    assert got == [1, 1, 1, 2, 2, 2, 3] and (cache.computed, cache.reused) == (3, 4)


def test_a_moved_frame_or_a_new_size_recomputes_at_once():
    calls, compute = _counter()
    cache = PriorCache(every=10, change=0.03)
    frame = np.full((24, 32, 3), 40, np.uint8)
    cache.maps(frame, compute)
    cache.maps(frame + 3, compute)  # 3/255 = 0.012: the same scene
    assert len(calls) == 1
    cache.maps(frame * 3, compute)  # exposure step: 80/255
    assert len(calls) == 2
    cache.maps(np.full((48, 32, 3), 120, np.uint8), compute)
    assert len(calls) == 3
    cache.reset()
    cache.maps(np.full((48, 32, 3), 120, np.uint8), compute)
    assert len(calls) == 4
    with pytest.raises(ValueError):
        PriorCache(every=0)
    with pytest.raises(ValueError):
        EnhancerConfig(prior_change=-1).validate()


def test_reused_heatmaps_cost_little_on_a_moving_night_sequence():
    """A slow pan over a dark street: heatmaps reused on 4 frames give (almost) the same output."""
    photo = next(r for r in list_clean_photos() if r.name == "mvtb/road")
    dark = (load_clean_photo(photo, 400).astype(np.float32) * 0.15).astype(np.uint8)
    frames = [np.ascontiguousarray(dark[20:212, 6 * i:6 * i + 256]) for i in range(8)]
    every_frame = Enhancer(EnhancerConfig(backend="torch", threads=1))
    reused = Enhancer(EnhancerConfig(backend="torch", threads=1, prior_every=4))
    worst = np.inf
    for f in frames:
        a, b = every_frame.enhance(f).astype(np.float64), reused.enhance(f).astype(np.float64)
        mse = float(((a - b) ** 2).mean())
        worst = min(worst, np.inf if mse == 0 else 10 * np.log10(255.0**2 / mse))
    assert (reused.prior_cache.computed, reused.prior_cache.reused) == (2, 6)
    assert worst >= 45.0  # dB between the outputs; measured ~80 dB
    assert list(every_frame.stages.summary()) == ["convert_in", "network", "convert_out"]  # one graph
    assert list(reused.stages.summary()) == ["convert_in", "prior", "network", "convert_out"]


def test_stage_times_summarise_each_stage_and_skip_failures():
    times = StageTimes(window=3)
    for s in (0.001, 0.002, 0.003, 0.004):
        times.add("network", s)
    with times.measure("prior"):
        pass
    with pytest.raises(RuntimeError):
        with times.measure("encode"):
            raise RuntimeError("boom")
    summary = times.summary()
    assert list(summary) == ["network", "prior"]
    assert summary["network"]["n"] == 3 and summary["network"]["p50_ms"] == pytest.approx(3.0)
    times.clear()
    assert times.summary() == {}
