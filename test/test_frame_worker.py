"""FrameWorker with one camera: newest frame wins, counters, errors and stopping (no ROS)."""
from __future__ import annotations

import threading

import pytest

from dap_led_ros.ros.frame_worker import FrameWorker, _RateMeter, per_frame

WAIT = 10.0  # generous bound for thread hand-offs; nothing here measures speed


class Gate:
    """A `process` callable that records frames and blocks each one until released."""

    def __init__(self, blocking: bool = True) -> None:
        self.seen: list[object] = []
        self.started = threading.Semaphore(0)
        self.done = threading.Semaphore(0)
        self._release = threading.Event()
        if not blocking:
            self._release.set()

    def __call__(self, frame: object) -> None:
        self.seen.append(frame)
        self.started.release()
        assert self._release.wait(WAIT)
        if isinstance(frame, Exception):
            raise frame
        self.done.release()

    def release(self) -> None:
        self._release.set()


@pytest.fixture
def gate_worker():
    gate = Gate()
    errors: list[tuple[object, BaseException]] = []
    worker = FrameWorker(per_frame(gate), on_error=lambda k, f, e: errors.append((f, e)))
    worker.start()
    yield gate, worker, errors
    gate.release()
    worker.stop()


def test_frames_are_processed_in_order_when_the_worker_keeps_up():
    gate = Gate(blocking=False)
    worker = FrameWorker(per_frame(gate))
    worker.start()
    for i in range(5):
        worker.submit(i)
        assert gate.done.acquire(timeout=WAIT)
    assert worker.stop()
    assert gate.seen == [0, 1, 2, 3, 4]
    s = worker.stats()
    assert (s.received, s.processed, s.dropped, s.failed) == (5, 5, 0, 0)
    assert s.latency_p50_s is not None and s.latency_p95_s is not None
    assert 0 <= s.latency_p50_s <= s.latency_p95_s
    assert not s.busy


def test_newest_frame_replaces_the_waiting_one(gate_worker):
    gate, worker, _ = gate_worker
    assert worker.submit("a") is False
    assert gate.started.acquire(timeout=WAIT)  # "a" is being processed
    assert worker.stats().busy
    assert worker.submit("b") is False  # waits
    assert worker.submit("c") is True  # replaces b
    assert worker.submit("d") is True  # replaces c
    gate.release()
    assert gate.done.acquire(timeout=WAIT) and gate.done.acquire(timeout=WAIT)
    assert worker.stop()
    assert gate.seen == ["a", "d"]
    s = worker.stats()
    assert (s.received, s.processed, s.dropped) == (4, 2, 2)


def test_a_failing_frame_is_reported_and_the_next_one_still_runs():
    gate = Gate(blocking=False)
    errors: list[tuple[object, BaseException]] = []
    worker = FrameWorker(per_frame(gate), on_error=lambda k, f, e: errors.append((f, e)))
    worker.start()
    bad = ValueError("broken frame")
    worker.submit(bad)
    assert gate.started.acquire(timeout=WAIT)
    worker.submit("good")
    assert gate.done.acquire(timeout=WAIT)
    assert worker.stop()
    assert errors == [(bad, bad)]
    s = worker.stats()
    assert (s.processed, s.failed) == (1, 1)


def test_a_failing_error_handler_does_not_stop_the_worker():
    gate = Gate(blocking=False)

    def bad_handler(key: str, frame: object, exc: BaseException) -> None:
        raise RuntimeError("handler bug")

    worker = FrameWorker(per_frame(gate), on_error=bad_handler)
    worker.start()
    worker.submit(KeyError("x"))
    assert gate.started.acquire(timeout=WAIT)
    worker.submit("next")
    assert gate.done.acquire(timeout=WAIT)
    assert worker.stop()
    assert worker.stats().processed == 1


def test_stop_finishes_the_current_frame_and_discards_the_waiting_one(gate_worker):
    gate, worker, _ = gate_worker
    worker.submit(1)
    assert gate.started.acquire(timeout=WAIT)
    worker.submit(2)  # waiting
    assert worker.stop(timeout=0.05) is False  # frame 1 still in progress
    assert not worker.running
    gate.release()
    assert worker.stop(timeout=WAIT) is True
    assert gate.seen == [1]
    s = worker.stats()
    assert (s.processed, s.dropped) == (1, 1)
    # After stop, frames are counted and discarded; stop is idempotent.
    assert worker.submit(3) is False
    assert worker.stats().dropped == 2
    assert worker.stop() is True


def test_cannot_start_twice():
    worker = FrameWorker(per_frame(lambda frame: None))
    worker.start()
    with pytest.raises(RuntimeError, match="already started"):
        worker.start()
    assert worker.stop()


def test_stop_without_start_is_harmless():
    assert FrameWorker(per_frame(lambda frame: None)).stop() is True


def test_rate_meter_counts_events_in_its_window():
    meter = _RateMeter(window_s=2.0)
    assert meter.rate(0.0) == 0.0
    for i in range(11):  # 10 Hz for one second
        meter.add(i * 0.1)
    assert meter.rate(1.0) == pytest.approx(10.0)
    # A stalled stream decays (as 1 / silence) and reads 0 once the horizon has passed.
    assert 0 < meter.rate(10.0) < 0.2
    assert meter.rate(1.0 + meter.horizon_s + 1) == 0.0


def test_rate_meter_reads_a_slow_stream_right():
    # 0.22 Hz (one frame every 4.5 s): a 5 s window holds a single event most of the time,
    # which read 0.00 before; the rate is right at every moment between two frames.
    meter = _RateMeter(window_s=5.0)
    period = 4.5
    for i in range(10):
        meter.add(i * period)
        for dt in (0.0, 1.0, 2.5, 4.4):
            if i > 0:
                assert meter.rate(i * period + dt) == pytest.approx(1 / period), (i, dt)
    # Slower than the window, too: one frame every 20 s reads 0.05.
    slow = _RateMeter(window_s=5.0)
    for i in range(4):
        slow.add(i * 20.0)
    assert slow.rate(60.0 + 19.0) == pytest.approx(0.05)
    assert slow.count(60.0 + 19.0) == 0  # none in the window itself


def test_worker_reports_the_recent_drop_share(gate_worker):
    gate, worker, _ = gate_worker
    worker.submit("a")
    assert gate.started.acquire(timeout=WAIT)  # "a" in progress: the next ones replace each other
    for i in range(10):
        worker.submit(i)
    s = worker.stats()
    assert (s.recent_received, s.recent_dropped) == (11, 9)
    assert s.drop_share == pytest.approx(9 / 11)


class TwoStages:
    """`process` returns the rest of the work; each rest blocks until released (per frame)."""

    def __init__(self) -> None:
        self.first: list[object] = []
        self.rest: list[object] = []
        self.first_started = threading.Semaphore(0)
        self.rest_started = threading.Semaphore(0)
        self.rest_done = threading.Semaphore(0)
        self.release_rest: dict[object, threading.Event] = {}
        self.threads: dict[str, set[str]] = {"first": set(), "rest": set()}

    def __call__(self, frame: object):
        self.threads["first"].add(threading.current_thread().name)
        self.first.append(frame)
        self.release_rest[frame] = threading.Event()
        self.first_started.release()

        def rest() -> None:
            self.threads["rest"].add(threading.current_thread().name)
            self.rest_started.release()
            assert self.release_rest[frame].wait(WAIT)
            if isinstance(frame, Exception):
                raise frame
            self.rest.append(frame)
            self.rest_done.release()
        return rest


def test_the_rest_of_a_frame_overlaps_the_next_frame_in_order():
    work = TwoStages()
    errors: list[tuple[object, BaseException]] = []
    worker = FrameWorker(per_frame(work), on_error=lambda k, f, e: errors.append((f, e)))
    worker.start()
    try:
        worker.submit(1)
        assert work.rest_started.acquire(timeout=WAIT)  # frame 1's rest is running (blocked) ...
        worker.submit(2)
        assert work.first_started.acquire(timeout=WAIT) and work.first_started.acquire(timeout=WAIT)
        assert work.first == [1, 2]  # ... while frame 2 went through the first stage
        s = worker.stats()
        assert s.processed == 0 and s.busy
        # Frame 3 goes through the first stage too, then waits until the finisher takes frame 2.
        worker.submit(3)
        bad = ValueError("bad rest")
        work.release_rest[1].set()
        assert work.rest_done.acquire(timeout=WAIT)
        assert work.rest_started.acquire(timeout=WAIT)  # frame 2's rest
        work.release_rest[2].set()
        assert work.rest_done.acquire(timeout=WAIT)
        assert work.rest_started.acquire(timeout=WAIT)  # frame 3's rest
        work.release_rest[3].set()
        assert work.rest_done.acquire(timeout=WAIT)
        worker.submit(bad)  # a failing rest is counted and reported; the worker goes on
        assert work.rest_started.acquire(timeout=WAIT)
        work.release_rest[bad].set()
        worker.submit(4)
        assert work.rest_started.acquire(timeout=WAIT)
        work.release_rest[4].set()
        assert work.rest_done.acquire(timeout=WAIT)
    finally:
        for e in work.release_rest.values():
            e.set()
        assert worker.stop(timeout=WAIT)
    assert work.rest == [1, 2, 3, 4] and errors == [(bad, bad)]
    s = worker.stats()
    assert (s.received, s.processed, s.failed, s.dropped) == (5, 4, 1, 0)
    assert not s.busy and s.latency_p50_s is not None
    assert len(work.threads["first"]) == len(work.threads["rest"]) == 1
    assert work.threads["first"] != work.threads["rest"]


def test_stop_lets_a_handed_on_frame_finish():
    work = TwoStages()
    worker = FrameWorker(per_frame(work))
    worker.start()
    worker.submit(1)
    assert work.rest_started.acquire(timeout=WAIT)
    worker.submit(2)
    assert work.first_started.acquire(timeout=WAIT) and work.first_started.acquire(timeout=WAIT)
    assert worker.stop(timeout=0.05) is False  # 1's rest is blocked, 2 waits for the finisher
    work.release_rest[1].set()
    assert work.rest_started.acquire(timeout=WAIT)
    work.release_rest[2].set()
    assert worker.stop(timeout=WAIT) is True
    assert work.rest == [1, 2] and worker.stats().processed == 2
