"""Newest-frame-wins processing on a worker thread, for one camera or several, with statistics.

ROS-free. A node's subscription callback calls `submit(frame)` (with `key=` the camera when the
worker serves several) and returns at once. Each camera (key) has one waiting slot: a frame
submitted while that camera's older frame still waits replaces it (counted as dropped), so latency
stays bounded whatever the input rate. When the worker is free and a frame waits, it gives the
other cameras up to `batch_window_s` (counted from when the longest-waiting camera's slot filled)
to deliver too, then runs `process` once on every waiting frame: one (key, frame) per camera, in
the order of `keys`. With one camera (the default, key "") every call gets one frame.

Two stages: an item whose result is a callable (the rest of its work: convert, encode, publish)
finishes on a second thread, in item order, while the first takes the next frames into the network,
so the two overlap (ONNX Runtime and numpy release the GIL). A batch's rests start only after the
previous batch's rests are done; nothing processed is dropped.
"""
from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import numpy as np

T = TypeVar("T")

# process([(key, frame), ...]) -> None (all done) or, per item: None (done), a callable (its rest,
# run on the second stage) or an Exception instance (the item failed)
Process = Callable[[list[tuple[str, Any]]], "list[object] | None"]


@dataclass(frozen=True)
class WorkerStats:
    """A snapshot of a camera's (or all cameras') counters; rates and latencies cover the recent window."""

    received: int           # frames submitted
    processed: int          # frames whose processing finished without raising
    dropped: int            # frames replaced by a newer one before they were processed
    failed: int             # frames whose processing raised
    fps_in: float           # submitted frames per second
    fps_out: float          # processed frames per second
    latency_p50_s: float | None  # submit -> processed, median (None before the first frame)
    latency_p95_s: float | None
    busy: bool              # a frame is in progress right now
    recent_received: int = 0  # frames submitted in the last window
    recent_dropped: int = 0   # frames dropped in the last window

    @property
    def drop_share(self) -> float:
        """Share of the last window's submitted frames that were dropped (newest frame wins)."""
        return self.recent_dropped / self.recent_received if self.recent_received else 0.0


@dataclass(frozen=True)
class BatchStats:
    """A snapshot of the batching; sizes cover the batches taken in the recent window."""

    batches: int         # process calls since construction
    recent_batches: int  # batches taken in the last window
    mean_size: float     # mean items per batch in the last window (0.0 when none)
    max_size: int        # largest batch in the last window (0 when none)


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
        self.last_taken = float("-inf")  # when the worker last took a frame of this camera
        self.in_flight = 0  # items taken into a batch and not finished or failed yet


# (key, frame, received_at) of one item taken into a batch
_Item = tuple[str, object, float]


def per_frame(process: Callable[[Any], object]) -> Process:
    """A `process` for the worker from one that takes a single frame: called once per item, its
    result or exception becomes that item's."""
    def run(items: list[tuple[str, Any]]) -> list[object]:
        results: list[object] = []
        for _, frame in items:
            try:
                results.append(process(frame))
            except Exception as exc:  # noqa: BLE001 - that frame fails, the others go on
                results.append(exc)
        return results
    return run


class FrameWorker(Generic[T]):
    """Runs `process(items)` on the newest frame of every waiting camera, off the caller's thread.

    process: called on the worker thread with [(key, frame), ...], one per camera taken, in the
        order of `keys`. Returns None (all done) or a list aligned with the items, each entry None
        (done; so is any other non-callable value), a callable (the item's rest, run on the second
        stage's thread) or an Exception instance (the item failed). When it raises, or returns a
        list of another length, every item of the batch fails with that exception. `per_frame`
        adapts a callable that takes one frame.
    keys: the cameras, in the order items are passed; default one camera, key "".
    batch_window_s: how long a waiting frame may wait for the other cameras' frames; 0 takes
        whatever waits at once.
    max_batch: most items per batch (0: no limit); the cameras served least recently go first
        (ties: the longest waiting), so cameras triggered together share the worker evenly.
    on_error: called with (key, frame, exception) on the worker or second-stage thread; its own
        exceptions are swallowed.
    window_s: span of the fps, latency and batch-size statistics.
    """

    def __init__(self, process: Process, *, keys: Sequence[str] = ("",), batch_window_s: float = 0.0,
                 max_batch: int = 0, name: str = "frame-worker",
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
        self._name = name
        self._process = process
        self._on_error = on_error
        self._batch_window_s = float(batch_window_s)
        self._max_batch = int(max_batch)
        self._window_s = window_s
        self._slots = {key: _Slot(key, window_s, latency_samples) for key in keys}
        self._total = _Counters(window_s, latency_samples)
        self._batches = 0
        self._sizes: deque[tuple[float, int]] = deque()  # (taken at, size) of the recent batches
        self._cond = threading.Condition()
        self._stopping = False
        self._thread: threading.Thread | None = None
        self._finisher: threading.Thread | None = None
        self._handoff: Any = None      # a batch's rests waiting for the finisher
        self._first_done = False       # the first stage has exited; the finisher drains and exits

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
            for slot in self._slots.values():
                if slot.pending is not None:
                    slot.pending = None
                    slot.dropped += 1
                    self._total.dropped += 1
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

    def submit(self, frame: T, received_at: float | None = None, *, key: str = "") -> bool:
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

    # ------------------------------------------------------------------ first stage

    def _run(self) -> None:
        try:
            while True:
                batch = self._next_batch()
                if batch is None:
                    return
                self._run_batch(batch)
                del batch  # do not hold the last frames while waiting for the next ones
        finally:
            with self._cond:
                self._first_done = True
                self._cond.notify_all()

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
                # Least recently served first (ties: longest waiting, then key order), then back to key
                # order. Longest-waiting alone favours the cameras whose frames arrive first in each
                # trigger: with four cameras triggered together, two were served twice as often.
                chosen = {id(slot) for slot in sorted(waiting, key=lambda s: (s.last_taken, s.waiting_since))
                          [:self._max_batch]}
                waiting = [slot for slot in waiting if id(slot) in chosen]
            batch: list[_Item] = []
            now = time.monotonic()
            for slot in waiting:
                frame, received_at = slot.pending
                slot.pending = None
                slot.in_flight += 1
                slot.last_taken = now
                batch.append((slot.key, frame, received_at))
            self._batches += 1
            self._sizes.append((now, len(batch)))
            self._trim_sizes(now)
            return batch

    def _run_batch(self, batch: list[_Item]) -> None:
        try:
            results = self._process([(key, frame) for key, frame, _ in batch])
            results = [None] * len(batch) if results is None else list(results)
            if len(results) != len(batch):
                raise ValueError(f"{self._name}: process returned {len(results)} results "
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
            with self._cond:  # once the finisher has taken the batch before
                while self._handoff is not None:
                    self._cond.wait()
                self._handoff = rests
                self._cond.notify_all()

    # ------------------------------------------------------------------ second stage

    def _finish_loop(self) -> None:
        while True:
            with self._cond:
                while self._handoff is None and not self._first_done:
                    self._cond.wait()
                if self._handoff is None:
                    return
                rests, self._handoff = self._handoff, None
                self._cond.notify_all()
            for key, frame, rest, received_at in rests:
                try:
                    rest()
                except Exception as exc:  # noqa: BLE001 - one bad frame must not end the worker
                    self._failed(key, frame, exc)
                else:
                    self._finished(key, received_at)
            del rests

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
