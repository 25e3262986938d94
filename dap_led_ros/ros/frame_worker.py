"""Newest-frame-wins processing on a worker thread, with throughput and latency statistics.

ROS-free. A node's subscription callback calls `submit(frame)` and returns at once; one worker
thread runs the processing callable on the newest submitted frame. A frame submitted while
another one is still waiting replaces it (the replaced one is counted as dropped), so the queue
never holds more than one frame and latency stays bounded whatever the input rate.

Two stages: when the callable returns a callable (the rest of the frame's work: convert, encode,
publish), that runs on a second thread while the first takes the next frame into the network, so
the two overlap (ONNX Runtime and numpy release the GIL). Frames finish in the order they were
processed; a frame whose rest is still waiting holds back the next one (nothing processed is dropped).
"""
from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import numpy as np

T = TypeVar("T")


@dataclass(frozen=True)
class WorkerStats:
    """A snapshot of the worker's counters; rates and latencies cover the recent window."""

    received: int           # frames submitted
    processed: int          # frames the callable finished without raising
    dropped: int            # frames replaced by a newer one before they were processed
    failed: int             # frames whose processing raised
    fps_in: float           # submitted frames per second
    fps_out: float          # processed frames per second
    latency_p50_s: float | None  # submit -> processed, median (None before the first frame)
    latency_p95_s: float | None
    busy: bool              # a frame is being processed right now
    recent_received: int = 0  # frames submitted in the last window
    recent_dropped: int = 0   # frames dropped in the last window

    @property
    def drop_share(self) -> float:
        """Share of the last window's submitted frames that were dropped (newest frame wins)."""
        return self.recent_dropped / self.recent_received if self.recent_received else 0.0


class _RateMeter:
    """Events per second of the recent events, right for slow streams too.

    Kept: the events of the last `window_s`, and at least the newest two of the last
    `horizon_s`. The rate is the number of intervals between the kept events over the time
    they span; once no event came for longer than their mean interval, the open interval counts
    too, so a stalled stream decays (as 1 / silence) and reads 0 after `horizon_s`.
    A 0.22 Hz stream reads 0.22 (a plain 5 s window would hold one event and read 0).
    """

    def __init__(self, window_s: float, horizon_s: float = 60.0) -> None:
        self.window_s = window_s
        self.horizon_s = max(horizon_s, window_s)
        self._times: deque[float] = deque()

    def add(self, t: float) -> None:
        self._times.append(t)
        self._trim(t)

    def rate(self, now: float) -> float:
        self._trim(now)
        n = len(self._times)
        if n < 2:
            return 0.0
        first, last = self._times[0], self._times[-1]
        mean = (last - first) / (n - 1)
        span = (last - first) + max(0.0, now - last - mean)
        return (n - 1) / max(span, 1e-3)

    def count(self, now: float) -> int:
        """Events in the last `window_s`."""
        self._trim(now)
        return sum(1 for t in self._times if now - t <= self.window_s)

    def _trim(self, now: float) -> None:
        times = self._times
        while times and (now - times[0] > self.horizon_s
                         or (now - times[0] > self.window_s and len(times) > 2)):
            times.popleft()


class TwoStageWorker:
    """The two threads every worker has: the first stage (`_first_stage`, which hands items on with
    `_hand_over`) and a finisher that runs each handed-over item (`_finish`), one at a time and in
    order, started and stopped together. Subclasses also say what `stop` discards (`_discard_waiting`)."""

    def __init__(self, name: str) -> None:
        self._name = name
        self._cond = threading.Condition()
        self._stopping = False
        self._thread: threading.Thread | None = None
        self._finisher: threading.Thread | None = None
        self._handoff: Any = None      # an item waiting for the finisher
        self._first_done = False       # the first stage has exited; the finisher drains and exits
        self._finishing = False        # the finisher is on an item

    # ------------------------------------------------------------------ subclass hooks

    def _first_stage(self) -> None:
        """The first thread's loop; returns once stopping."""
        raise NotImplementedError

    def _finish(self, item: Any) -> None:
        """Run one handed-over item (finisher thread); must not raise."""
        raise NotImplementedError

    def _discard_waiting(self) -> None:
        """Drop what waits for the first stage (called by stop, holding the condition)."""

    # ------------------------------------------------------------------ control

    def start(self) -> None:
        with self._cond:
            if self._thread is not None:
                raise RuntimeError(f"{self._name} already started")
            self._stopping = False
            self._first_done = False
            # Daemons: a process exiting on a signal never waits for an inference in flight.
            self._thread = threading.Thread(target=self._run, name=self._name, daemon=True)
            self._finisher = threading.Thread(target=self._finish_loop, name=f"{self._name}-finish", daemon=True)
            self._thread.start()
            self._finisher.start()

    def stop(self, timeout: float | None = 10.0) -> bool:
        """Discard what waits, let the work in progress (and what it handed over) finish, join the
        threads. Returns False when a thread was still running after `timeout` seconds, or when
        called from the work itself (the threads then exit after the work in progress)."""
        with self._cond:
            threads = [t for t in (self._thread, self._finisher) if t is not None]
            self._stopping = True
            self._discard_waiting()
            self._cond.notify_all()
        if not threads:
            return True
        if threading.current_thread() in threads:
            return False
        deadline = None if timeout is None else time.monotonic() + timeout
        for t in threads:  # the first stage, then the finisher (which drains what it was handed)
            t.join(None if deadline is None else max(0.0, deadline - time.monotonic()))
            if t.is_alive():
                return False
        with self._cond:
            self._thread = self._finisher = None
        return True

    @property
    def running(self) -> bool:
        with self._cond:
            return self._thread is not None and not self._stopping

    # ------------------------------------------------------------------ threads

    def _run(self) -> None:
        try:
            self._first_stage()
        finally:
            with self._cond:
                self._first_done = True
                self._cond.notify_all()

    def _hand_over(self, item: Any) -> None:
        """Give `item` to the finisher, once it has taken the one before."""
        with self._cond:
            while self._handoff is not None:
                self._cond.wait()
            self._handoff = item
            self._cond.notify_all()

    def _finish_loop(self) -> None:
        while True:
            with self._cond:
                while self._handoff is None and not self._first_done:
                    self._cond.wait()
                if self._handoff is None:
                    return
                item, self._handoff = self._handoff, None
                self._finishing = True
                self._cond.notify_all()
            self._finish(item)
            with self._cond:
                self._finishing = False
            del item


class FrameWorker(TwoStageWorker, Generic[T]):
    """Runs `process(frame)` on the newest submitted frame, one at a time, off the caller's thread.

    process: the work; its exceptions are counted as failed and handed to `on_error`
        (the worker keeps running). It may return a callable, the rest of the work, which runs on
        the second stage's thread (its exceptions are handled alike).
    on_error: called on the worker thread with (frame, exception); default: ignore.
    window_s: span of the fps and latency statistics.
    """

    def __init__(self, process: Callable[[T], None], *, name: str = "frame-worker",
                 on_error: Callable[[T, BaseException], None] | None = None,
                 window_s: float = 5.0, latency_samples: int = 200) -> None:
        super().__init__(name)
        self._process = process
        self._on_error = on_error
        self._pending: tuple[T, float] | None = None
        self._busy = False
        self._received = self._processed = self._dropped = self._failed = 0
        self._in_rate = _RateMeter(window_s)
        self._out_rate = _RateMeter(window_s)
        self._drop_rate = _RateMeter(window_s)
        self._latencies: deque[float] = deque(maxlen=latency_samples)

    # ------------------------------------------------------------------ control

    def _discard_waiting(self) -> None:
        if self._pending is not None:
            self._pending = None
            self._dropped += 1

    def submit(self, frame: T, received_at: float | None = None) -> bool:
        """Queue `frame` for processing, replacing the waiting one if any.

        received_at: time.monotonic() when the frame arrived (default: now); latency counts
            from there. Returns True when an older waiting frame was dropped for this one,
            False otherwise (also when the worker is stopped and the frame is discarded).
        """
        now = time.monotonic()
        with self._cond:
            self._received += 1
            self._in_rate.add(now)
            if self._stopping or self._thread is None:
                self._dropped += 1
                return False
            replaced = self._pending is not None
            if replaced:
                self._dropped += 1
                self._drop_rate.add(now)
            self._pending = (frame, now if received_at is None else received_at)
            self._cond.notify_all()  # both stages wait on this condition
            return replaced

    # ------------------------------------------------------------------ statistics

    def stats(self) -> WorkerStats:
        now = time.monotonic()
        with self._cond:
            lat = np.asarray(self._latencies, dtype=np.float64)
            return WorkerStats(
                received=self._received, processed=self._processed, dropped=self._dropped,
                failed=self._failed, fps_in=self._in_rate.rate(now),
                fps_out=self._out_rate.rate(now),
                latency_p50_s=float(np.percentile(lat, 50)) if lat.size else None,
                latency_p95_s=float(np.percentile(lat, 95)) if lat.size else None,
                busy=self._busy or self._finishing or self._handoff is not None,
                recent_received=self._in_rate.count(now), recent_dropped=self._drop_rate.count(now))

    # ------------------------------------------------------------------ worker thread

    def _next(self) -> tuple[T, float] | None:
        with self._cond:
            while self._pending is None and not self._stopping:
                self._cond.wait()
            if self._stopping:
                return None
            item, self._pending = self._pending, None
            self._busy = True
            return item

    def _first_stage(self) -> None:
        while True:
            item = self._next()
            if item is None:
                return
            frame, received_at = item
            del item
            rest = self._attempt(frame, lambda: self._process(frame))
            if callable(rest):
                self._hand_over((frame, rest, received_at))
            elif rest is not _FAILED:
                self._finished(received_at)
            with self._cond:
                self._busy = False
            del frame, rest  # do not hold the last frame while waiting for the next one

    def _finish(self, item: tuple[T, Callable[[], object], float]) -> None:
        frame, rest, received_at = item
        if self._attempt(frame, rest) is not _FAILED:
            self._finished(received_at)

    def _attempt(self, frame: T, work: Callable[[], object]) -> object:
        """`work()`'s result, or _FAILED after counting and reporting its exception."""
        try:
            return work()
        except Exception as exc:  # noqa: BLE001 - one bad frame must not end the worker
            with self._cond:
                self._failed += 1
            if self._on_error is not None:
                try:
                    self._on_error(frame, exc)
                except Exception:  # noqa: BLE001 - a failing error handler is not fatal
                    pass
            return _FAILED

    def _finished(self, received_at: float) -> None:
        done = time.monotonic()
        with self._cond:
            self._processed += 1
            self._out_rate.add(done)
            self._latencies.append(done - received_at)


_FAILED = object()
