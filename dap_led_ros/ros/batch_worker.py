"""One model for several cameras: newest-frame-wins batching on a worker thread, with statistics.

ROS-free. Each camera (a key) has one waiting slot: a frame submitted while that camera's older
frame still waits replaces it (counted as dropped for that key). When the worker is free and a
frame waits, it gives the other cameras up to `batch_window_s` (counted from when the
longest-waiting camera's slot filled) to deliver too, then runs `process_batch` once on every
waiting frame: one (key, frame) per camera, in the order of `keys`.

Two stages as in FrameWorker: an item whose result is a callable (the rest of its work: convert,
encode, publish) finishes on a second thread, in item order, while the worker runs the next batch.
A batch's rests start only after the previous batch's rests are done.
"""
from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

import numpy as np

from dap_led_ros.ros.frame_worker import TwoStageWorker, WorkerStats, _RateMeter

T = TypeVar("T")


@dataclass(frozen=True)
class BatchStats:
    """A snapshot of the batching; sizes cover the batches taken in the recent window."""

    batches: int         # process_batch calls since construction
    recent_batches: int  # batches taken in the last window
    mean_size: float     # mean items per batch in the last window (0.0 when none)
    max_size: int        # largest batch in the last window (0 when none)


class _Counters:
    """Counters, rates and latencies of one camera, or of all of them together."""

    def __init__(self, window_s: float, latency_samples: int) -> None:
        self.received = self.processed = self.dropped = self.failed = 0
        self.in_rate = _RateMeter(window_s)
        self.out_rate = _RateMeter(window_s)
        self.drop_rate = _RateMeter(window_s)
        self.latencies: deque[float] = deque(maxlen=latency_samples)

    def snapshot(self, now: float, busy: bool) -> WorkerStats:
        lat = np.asarray(self.latencies, dtype=np.float64)
        return WorkerStats(
            received=self.received, processed=self.processed, dropped=self.dropped, failed=self.failed,
            fps_in=self.in_rate.rate(now), fps_out=self.out_rate.rate(now),
            latency_p50_s=float(np.percentile(lat, 50)) if lat.size else None,
            latency_p95_s=float(np.percentile(lat, 95)) if lat.size else None,
            busy=busy, recent_received=self.in_rate.count(now), recent_dropped=self.drop_rate.count(now))


class _Slot(_Counters):
    """One camera: its waiting frame and its counters."""

    def __init__(self, key: str, window_s: float, latency_samples: int) -> None:
        super().__init__(window_s, latency_samples)
        self.key = key
        self.pending: tuple[object, float] | None = None  # (frame, received_at)
        self.waiting_since = 0.0  # when the slot filled; a replacing frame keeps this time
        self.in_flight = 0  # items taken into a batch and not finished or failed yet


# (key, frame, received_at) of one item taken into a batch
_Item = tuple[str, object, float]


class BatchFrameWorker(TwoStageWorker, Generic[T]):
    """Runs `process_batch(items)` on the newest frame of every waiting camera, off the caller's thread.

    process_batch: called on the worker thread with [(key, frame), ...], one per camera taken, in
        the order of `keys`. Returns None (all done) or a list aligned with the items, each entry
        None (done; so is any other non-callable value), a callable (the item's rest, run on the
        second stage's thread) or an Exception instance (the item failed). When it raises, or
        returns a list of another length, every item of the batch fails with that exception.
    keys: the cameras, in the order items are passed.
    batch_window_s: how long a waiting frame may wait for the other cameras' frames; 0 takes
        whatever waits at once.
    max_batch: most items per batch (0: no limit); the longest-waiting cameras go first.
    on_error: called with (key, frame, exception) on the worker or second-stage thread; its own
        exceptions are swallowed.
    window_s: span of the fps, latency and batch-size statistics.
    """

    def __init__(self, process_batch: Callable[[list[tuple[str, T]]], list[object] | None], *,
                 keys: Sequence[str], batch_window_s: float = 0.005, max_batch: int = 0,
                 name: str = "batch-worker",
                 on_error: Callable[[str, T, BaseException], None] | None = None,
                 window_s: float = 5.0, latency_samples: int = 200) -> None:
        keys = list(keys)
        if not keys:
            raise ValueError(f"{name}: keys must name at least one camera")
        if len(set(keys)) != len(keys):
            raise ValueError(f"{name}: keys must be unique, got {keys}")
        if not batch_window_s >= 0:
            raise ValueError(f"{name}: batch_window_s must be >= 0, got {batch_window_s}")
        if max_batch < 0:
            raise ValueError(f"{name}: max_batch must be >= 0 (0 = no limit), got {max_batch}")
        super().__init__(name)
        self._process_batch = process_batch
        self._on_error = on_error
        self._batch_window_s = float(batch_window_s)
        self._max_batch = int(max_batch)
        self._window_s = window_s
        self._slots = {key: _Slot(key, window_s, latency_samples) for key in keys}
        self._total = _Counters(window_s, latency_samples)
        self._batches = 0
        self._sizes: deque[tuple[float, int]] = deque()  # (taken at, size) of the recent batches

    # ------------------------------------------------------------------ control

    def _discard_waiting(self) -> None:
        for slot in self._slots.values():
            if slot.pending is not None:
                slot.pending = None
                slot.dropped += 1
                self._total.dropped += 1

    def submit(self, key: str, frame: T, received_at: float | None = None) -> bool:
        """Queue `frame` for camera `key`, replacing that camera's waiting frame if any.

        received_at: time.monotonic() when the frame arrived (default: now); latency counts
            from there. Returns True when an older waiting frame of this key was dropped for
            this one, False otherwise (also when the worker is stopped and the frame is discarded).
        Raises KeyError for a key not given to the constructor.
        """
        slot = self._slots.get(key)
        if slot is None:
            raise KeyError(f"{self._name}: unknown camera key {key!r} (known: {', '.join(self._slots)})")
        now = time.monotonic()
        with self._cond:
            for c in (slot, self._total):
                c.received += 1
                c.in_rate.add(now)
            if self._stopping or self._thread is None:
                slot.dropped += 1
                self._total.dropped += 1
                return False
            replaced = slot.pending is not None
            if replaced:
                for c in (slot, self._total):
                    c.dropped += 1
                    c.drop_rate.add(now)
            else:
                slot.waiting_since = now
            slot.pending = (frame, now if received_at is None else received_at)
            self._cond.notify_all()  # both stages wait on this condition
            return replaced

    # ------------------------------------------------------------------ statistics

    def stats(self) -> WorkerStats:
        """All cameras together."""
        now = time.monotonic()
        with self._cond:
            busy = any(slot.in_flight for slot in self._slots.values())
            return self._total.snapshot(now, busy)

    def stats_by_key(self) -> dict[str, WorkerStats]:
        """One snapshot per camera, in the order of `keys`; busy: an item of it is in progress."""
        now = time.monotonic()
        with self._cond:
            return {key: slot.snapshot(now, slot.in_flight > 0) for key, slot in self._slots.items()}

    def batch_stats(self) -> BatchStats:
        now = time.monotonic()
        with self._cond:
            self._trim_sizes(now)
            sizes = [size for _, size in self._sizes]
            return BatchStats(batches=self._batches, recent_batches=len(sizes),
                              mean_size=sum(sizes) / len(sizes) if sizes else 0.0,
                              max_size=max(sizes, default=0))

    def _trim_sizes(self, now: float) -> None:
        while self._sizes and now - self._sizes[0][0] > self._window_s:
            self._sizes.popleft()

    # ------------------------------------------------------------------ worker thread

    def _next_batch(self) -> list[_Item] | None:
        """Waits for a batch (see the class doc) and takes it; None once stopping."""
        with self._cond:
            while True:
                if self._stopping:
                    return None
                waiting = [slot for slot in self._slots.values() if slot.pending is not None]
                if not waiting:
                    self._cond.wait()
                    continue
                if len(waiting) == len(self._slots) or 0 < self._max_batch <= len(waiting):
                    break
                left = min(slot.waiting_since for slot in waiting) + self._batch_window_s - time.monotonic()
                if left <= 0:
                    break
                self._cond.wait(left)
            if 0 < self._max_batch < len(waiting):
                # Longest-waiting first (ties: key order), so no camera starves; then back to key order.
                chosen = {id(slot) for slot in sorted(waiting, key=lambda s: s.waiting_since)[:self._max_batch]}
                waiting = [slot for slot in waiting if id(slot) in chosen]
            batch: list[_Item] = []
            for slot in waiting:
                frame, received_at = slot.pending
                slot.pending = None
                slot.in_flight += 1
                batch.append((slot.key, frame, received_at))
            now = time.monotonic()
            self._batches += 1
            self._sizes.append((now, len(batch)))
            self._trim_sizes(now)
            return batch

    def _first_stage(self) -> None:
        while True:
            batch = self._next_batch()
            if batch is None:
                return
            self._run_batch(batch)
            del batch  # do not hold the last frames while waiting for the next ones

    def _run_batch(self, batch: list[_Item]) -> None:
        try:
            results = self._process_batch([(key, frame) for key, frame, _ in batch])
            results = [None] * len(batch) if results is None else list(results)
            if len(results) != len(batch):
                raise ValueError(f"{self._name}: process_batch returned {len(results)} results "
                                 f"for {len(batch)} items")
        except Exception as exc:  # noqa: BLE001 - one bad batch must not end the worker
            results = [exc] * len(batch)
        rests = []
        for (key, frame, received_at), result in zip(batch, results):
            if isinstance(result, BaseException):
                self._failed(key, frame, result)
            elif callable(result):
                rests.append((key, frame, result, received_at))
            else:
                self._finished(key, received_at)
        if rests:
            self._hand_over(rests)  # once the finisher is done with the batch before

    def _finish(self, rests: list[tuple[str, T, Callable[[], object], float]]) -> None:
        for key, frame, rest, received_at in rests:
            try:
                rest()
            except Exception as exc:  # noqa: BLE001 - one bad frame must not end the worker
                self._failed(key, frame, exc)
            else:
                self._finished(key, received_at)

    def _failed(self, key: str, frame: T, exc: BaseException) -> None:
        with self._cond:
            slot = self._slots[key]
            slot.failed += 1
            slot.in_flight -= 1
            self._total.failed += 1
        if self._on_error is not None:
            try:
                self._on_error(key, frame, exc)
            except Exception:  # noqa: BLE001 - a failing error handler is not fatal
                pass

    def _finished(self, key: str, received_at: float) -> None:
        done = time.monotonic()
        with self._cond:
            slot = self._slots[key]
            slot.in_flight -= 1
            for c in (slot, self._total):
                c.processed += 1
                c.out_rate.add(done)
                c.latencies.append(done - received_at)
