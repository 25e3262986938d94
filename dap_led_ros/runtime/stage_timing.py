"""Per-stage wall times of the frame path (convert in, CCM prior, network, convert out, publish).

ROS-free and thread-safe: the frame path records with `measure(stage)`, diagnostics and benchmarks
read `summary()`. Each stage keeps its most recent `window` samples.
"""
from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np


class StageTimes:
    """Sliding windows of seconds per named stage."""

    def __init__(self, window: int = 200) -> None:
        if window < 1:
            raise ValueError(f"window must be >= 1, got {window}")
        self._window = window
        self._lock = threading.Lock()
        self._samples: dict[str, deque[float]] = {}

    def add(self, stage: str, seconds: float) -> None:
        with self._lock:
            self._samples.setdefault(stage, deque(maxlen=self._window)).append(seconds)

    @contextmanager
    def measure(self, stage: str) -> Iterator[None]:
        """Time the body as `stage` (recorded only when it finishes without raising)."""
        t = time.perf_counter()
        yield
        self.add(stage, time.perf_counter() - t)

    def summary(self) -> dict[str, dict[str, float]]:
        """{stage: {"p50_ms", "p95_ms", "mean_ms", "n"}} in the order stages were first seen."""
        with self._lock:
            snap = {k: np.asarray(v, np.float64) for k, v in self._samples.items()}
        return {k: {"p50_ms": 1000 * float(np.percentile(v, 50)), "p95_ms": 1000 * float(np.percentile(v, 95)),
                    "mean_ms": 1000 * float(v.mean()), "n": int(v.size)} for k, v in snap.items() if v.size}

    def clear(self) -> None:
        with self._lock:
            self._samples.clear()
