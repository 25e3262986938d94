"""FrameWorker with several cameras: batching, newest frame wins per camera, two stages, stopping (no ROS)."""
from __future__ import annotations

import threading
import time

import pytest

from dap_led_ros.ros.frame_worker import BatchStats, FrameWorker

WAIT = 10.0  # generous bound for thread hand-offs; nothing here measures speed
LONG = 30.0  # a batch window no test outlasts: the batch must end for another reason


class Batches:
    """A `process_batch` that records its batches and holds each one until `go` is released."""

    def __init__(self, blocking: bool = True, results=None) -> None:
        self.batches: list[list[tuple[str, object]]] = []
        self.taken_at: list[float] = []
        self.threads: set[str] = set()
        self.started = threading.Semaphore(0)
        self.go = threading.Semaphore(0)
        self.blocking = blocking
        self.results = results  # items -> results, or None

    def __call__(self, items):
        self.taken_at.append(time.monotonic())
        self.threads.add(threading.current_thread().name)
        self.batches.append(list(items))
        self.started.release()
        if self.blocking:
            assert self.go.acquire(timeout=WAIT)
        return None if self.results is None else self.results(items)

    def next_batch(self) -> list[tuple[str, object]]:
        assert self.started.acquire(timeout=WAIT), "no batch started"
        return self.batches[-1]

    def no_batch_yet(self) -> bool:
        return not self.started.acquire(timeout=0)

    def release_all(self) -> None:
        for _ in range(100):
            self.go.release()


@pytest.fixture
def make_worker():
    """Builds started workers and stops them (releasing their batches) at the end."""
    made: list[tuple[FrameWorker, Batches]] = []

    def make(keys, work: Batches | None = None, **kwargs):
        work = Batches() if work is None else work
        worker = FrameWorker(work, keys=keys, **kwargs)
        worker.start()
        made.append((worker, work))
        return worker, work

    yield make
    for worker, work in made:
        work.release_all()
        assert worker.stop(timeout=WAIT)


def counts(s) -> tuple[int, int, int, int]:
    return s.received, s.processed, s.dropped, s.failed


def test_frames_arriving_inside_the_window_go_as_one_batch_in_key_order(make_worker):
    worker, work = make_worker(["a", "b", "c"], batch_window_s=LONG)
    worker.submit("c1", key="c")
    worker.submit("a1", key="a")
    assert work.no_batch_yet()  # waits for b
    worker.submit("b1", key="b")  # every camera has a frame: no more waiting
    assert work.next_batch() == [("a", "a1"), ("b", "b1"), ("c", "c1")]
    work.go.release()
    assert worker.stop(timeout=WAIT)
    assert counts(worker.stats()) == (3, 3, 0, 0)
    assert worker.batch_stats() == BatchStats(batches=1, recent_batches=1, mean_size=3.0, max_size=3)


def test_the_window_expires_with_only_some_cameras(make_worker):
    window = 0.2
    worker, work = make_worker(["a", "b", "c"], batch_window_s=window)
    for key in "abc":
        worker.submit(f"{key}1", key=key)
    assert len(work.next_batch()) == 3  # held until go
    t0 = time.monotonic()
    worker.submit("a2", key="a")
    worker.submit("b2", key="b")
    work.go.release()
    assert work.next_batch() == [("a", "a2"), ("b", "b2")]  # c never came
    assert work.taken_at[-1] - t0 >= window  # ... after the window counted from a2's arrival
    work.go.release()


def test_a_zero_window_takes_whatever_waits_at_once(make_worker):
    worker, work = make_worker(["a", "b"], batch_window_s=0)
    worker.submit("a1", key="a")
    assert work.next_batch() == [("a", "a1")]  # b is not waited for
    worker.submit("b1", key="b")
    worker.submit("a2", key="a")
    work.go.release()
    assert work.next_batch() == [("a", "a2"), ("b", "b1")]  # both waited meanwhile: one batch
    work.go.release()


def test_newest_frame_wins_per_camera(make_worker):
    worker, work = make_worker(["a", "b"], batch_window_s=LONG)
    assert worker.submit("a1", key="a") is False
    assert worker.submit("b1", key="b") is False
    assert work.next_batch() == [("a", "a1"), ("b", "b1")]
    assert worker.submit("a2", key="a") is False  # waits
    assert worker.submit("a3", key="a") is True  # replaces a2
    assert worker.submit("b2", key="b") is False  # b's own slot
    assert worker.submit("a4", key="a") is True  # replaces a3
    work.go.release()
    assert work.next_batch() == [("a", "a4"), ("b", "b2")]
    work.go.release()
    assert worker.stop(timeout=WAIT)
    by_key = worker.stats_by_key()
    assert counts(by_key["a"]) == (4, 2, 2, 0)
    assert counts(by_key["b"]) == (2, 2, 0, 0)
    assert (by_key["a"].recent_received, by_key["a"].recent_dropped) == (4, 2)
    assert counts(worker.stats()) == (6, 4, 2, 0)


def test_max_batch_takes_the_least_recently_served_cameras_first(make_worker):
    worker, work = make_worker(["a", "b", "c", "d"], batch_window_s=LONG, max_batch=2)
    worker.submit("a1", key="a")
    assert work.no_batch_yet()
    worker.submit("b1", key="b")  # max_batch frames wait: no more waiting
    assert work.next_batch() == [("a", "a1"), ("b", "b1")]
    for key, frame in [("c", "c1"), ("d", "d1"), ("a", "a2"), ("b", "b2")]:
        worker.submit(frame, key=key)
    work.go.release()
    assert work.next_batch() == [("c", "c1"), ("d", "d1")]  # never served (and waited longer)
    # a and b keep sending; a replacement keeps its camera's place in the queue.
    worker.submit("a3", key="a")
    worker.submit("c2", key="c")
    worker.submit("b3", key="b")
    work.go.release()
    assert work.next_batch() == [("a", "a3"), ("b", "b3")]
    worker.submit("d2", key="d")
    worker.submit("c3", key="c")  # c and d were served before a (c has waited since c2)
    worker.submit("a4", key="a")
    work.go.release()
    assert work.next_batch() == [("c", "c3"), ("d", "d2")]
    worker.submit("b4", key="b")
    work.go.release()
    assert work.next_batch() == [("a", "a4"), ("b", "b4")]
    work.go.release()
    assert worker.stop(timeout=WAIT)
    dropped = {key: s.dropped for key, s in worker.stats_by_key().items()}
    assert dropped == {"a": 1, "b": 1, "c": 1, "d": 0}
    assert worker.batch_stats() == BatchStats(batches=5, recent_batches=5, mean_size=2.0, max_size=2)


def test_cameras_triggered_together_share_a_worker_that_cannot_keep_up(make_worker):
    """Four cameras deliver a frame each at every trigger, in the same order; the worker finishes
    three frames between triggers (one frame at a time, the CPU default). Every camera gets three
    quarters of its frames through: the first cameras of a trigger do not crowd out the last."""
    keys = ["cam0", "cam1", "cam2", "cam3"]
    worker, work = make_worker(keys, batch_window_s=0.005, max_batch=1)

    def trigger(i: int) -> None:
        for key in keys:
            worker.submit((key, i), key=key)

    trigger(0)
    work.next_batch()
    for i in range(1, 41):
        for _ in range(3):
            work.go.release()
            work.next_batch()
        trigger(i)
    for _ in range(3):  # the last trigger's frames, all of them
        work.go.release()
        work.next_batch()
    work.release_all()
    assert worker.stop(timeout=WAIT)
    served = {key: sum(1 for batch in work.batches if batch[0][0] == key) for key in keys}
    assert all(len(batch) == 1 for batch in work.batches)
    assert served == {"cam0": 31, "cam1": 31, "cam2": 31, "cam3": 31}, served  # longest-waiting first: 41/41/21/21
    assert {key: s.dropped for key, s in worker.stats_by_key().items()} == {key: 10 for key in keys}


def test_per_item_results_done_rest_and_exception():
    bad = ValueError("b is broken")
    rest_bad = RuntimeError("c's rest is broken")
    rest_ran: list[str] = []

    def results(items):
        def rest_c():
            raise rest_bad

        return [None, bad, rest_c, lambda: rest_ran.append("d")]

    errors: list[tuple[str, object, BaseException]] = []
    work = Batches(blocking=False, results=results)
    worker = FrameWorker(work, keys=["a", "b", "c", "d"], batch_window_s=LONG,
                              on_error=lambda key, frame, exc: errors.append((key, frame, exc)))
    worker.start()
    for key in "abcd":
        worker.submit(key + "1", key=key)
    assert len(work.next_batch()) == 4
    assert worker.stop(timeout=WAIT)
    assert sorted(errors, key=lambda e: e[0]) == [("b", "b1", bad), ("c", "c1", rest_bad)]
    assert rest_ran == ["d"]
    by_key = worker.stats_by_key()
    assert [(s.processed, s.failed) for s in by_key.values()] == [(1, 0), (0, 1), (0, 1), (1, 0)]
    assert by_key["b"].latency_p50_s is None and by_key["d"].latency_p50_s is not None
    assert counts(worker.stats()) == (4, 2, 0, 2)


def test_a_raising_process_batch_fails_every_item_and_the_worker_goes_on():
    boom = RuntimeError("backend down")
    calls: list[int] = []

    def results(items):
        calls.append(len(items))
        if len(calls) == 1:
            raise boom
        if len(calls) == 2:
            return [None]  # one result for two items
        return None

    def bad_handler(key, frame, exc):
        errors.append((key, frame, exc))
        raise RuntimeError("handler bug")  # swallowed

    errors: list[tuple[str, object, BaseException]] = []
    work = Batches(blocking=False, results=results)
    worker = FrameWorker(work, keys=["a", "b"], batch_window_s=LONG, on_error=bad_handler)
    worker.start()
    for round_ in range(3):
        worker.submit(f"a{round_}", key="a")
        worker.submit(f"b{round_}", key="b")
        assert len(work.next_batch()) == 2
    assert worker.stop(timeout=WAIT)
    assert errors[:2] == [("a", "a0", boom), ("b", "b0", boom)]
    assert [(k, f) for k, f, _ in errors[2:]] == [("a", "a1"), ("b", "b1")]
    assert all(isinstance(e, ValueError) and "1 results for 2 items" in str(e) for _, _, e in errors[2:])
    assert counts(worker.stats()) == (6, 2, 0, 4)
    assert not worker.stats().busy


class Rests:
    """process_batch results: a rest per item that blocks until its frame's event is set."""

    def __init__(self) -> None:
        self.order: list[object] = []
        self.started: list[object] = []
        self.rest_started = threading.Semaphore(0)
        self.release: dict[object, threading.Event] = {}
        self.threads: set[str] = set()

    def __call__(self, items):
        rests = []
        for _, frame in items:
            self.release[frame] = threading.Event()

            def rest(frame=frame) -> None:
                self.threads.add(threading.current_thread().name)
                self.started.append(frame)
                self.rest_started.release()
                assert self.release[frame].wait(WAIT)
                self.order.append(frame)
            rests.append(rest)
        return rests


def test_rests_run_in_order_overlapping_the_next_batch():
    rests = Rests()
    work = Batches(blocking=False, results=rests)
    worker = FrameWorker(work, keys=["a", "b"], batch_window_s=LONG)
    worker.start()
    try:
        worker.submit("a1", key="a")
        worker.submit("b1", key="b")
        assert work.next_batch() == [("a", "a1"), ("b", "b1")]
        assert rests.rest_started.acquire(timeout=WAIT)  # a1's rest runs (held) ...
        worker.submit("a2", key="a")
        worker.submit("b2", key="b")
        assert work.next_batch() == [("a", "a2"), ("b", "b2")]  # ... while the next batch goes through
        assert worker.stats().busy and worker.stats().processed == 0
        rests.release["a1"].set()
        assert rests.rest_started.acquire(timeout=WAIT)
        assert rests.started == ["a1", "b1"]  # a batch's rests wait for the batch before
        rests.release["b1"].set()
        assert rests.rest_started.acquire(timeout=WAIT)
        assert rests.started == ["a1", "b1", "a2"]
        rests.release["a2"].set()
        rests.release["b2"].set()
    finally:
        for event in rests.release.values():
            event.set()
        assert worker.stop(timeout=WAIT)
    assert rests.order == ["a1", "b1", "a2", "b2"]
    assert counts(worker.stats()) == (4, 4, 0, 0) and not worker.stats().busy
    assert len(work.threads) == len(rests.threads) == 1 and work.threads != rests.threads


def test_stop_drops_waiting_frames_and_finishes_the_batch_in_progress(make_worker):
    worker, work = make_worker(["a", "b"], batch_window_s=LONG)
    worker.submit("a1", key="a")
    worker.submit("b1", key="b")
    assert len(work.next_batch()) == 2
    worker.submit("a2", key="a")  # waiting
    assert worker.stop(timeout=0.05) is False  # the batch is held
    assert not worker.running
    work.go.release()
    assert worker.stop(timeout=WAIT) is True
    assert len(work.batches) == 1
    by_key = worker.stats_by_key()
    assert counts(by_key["a"]) == (2, 1, 1, 0) and counts(by_key["b"]) == (1, 1, 0, 0)
    # After stop, frames are counted and discarded; stop is idempotent.
    assert worker.submit("b2", key="b") is False
    assert worker.stats_by_key()["b"].dropped == 1
    assert worker.stop() is True


def test_stop_lets_the_handed_on_rests_finish():
    rests = Rests()
    worker = FrameWorker(Batches(blocking=False, results=rests), keys=["a"], batch_window_s=0)
    worker.start()
    worker.submit("a1", key="a")
    assert rests.rest_started.acquire(timeout=WAIT)
    assert worker.stop(timeout=0.05) is False  # a1's rest is held
    rests.release["a1"].set()
    assert worker.stop(timeout=WAIT) is True
    assert rests.order == ["a1"] and worker.stats().processed == 1


def test_stop_during_the_window_wait_returns_at_once():
    worker = FrameWorker(Batches(), keys=["a", "b"], batch_window_s=LONG)
    worker.start()
    worker.submit("a1", key="a")  # waits for b, up to LONG
    t0 = time.monotonic()
    assert worker.stop(timeout=WAIT) is True
    assert time.monotonic() - t0 < WAIT
    assert counts(worker.stats()) == (1, 0, 1, 0)


def test_stop_from_inside_the_work():
    returned: list[bool] = []
    rests = Rests()

    def results(items):
        returned.append(worker.stop())
        out = rests(items)
        for event in rests.release.values():
            event.set()
        return out

    worker = FrameWorker(Batches(blocking=False, results=results), keys=["a", "b"], batch_window_s=LONG)
    worker.start()
    worker.submit("a1", key="a")
    worker.submit("b1", key="b")
    assert rests.rest_started.acquire(timeout=WAIT)
    assert worker.stop(timeout=WAIT) is True
    assert returned == [False] and not worker.running
    assert rests.order == ["a1", "b1"] and counts(worker.stats()) == (2, 2, 0, 0)


def test_stats_by_key_values(make_worker):
    worker, work = make_worker(["a", "b", "c"], batch_window_s=0)
    worker.submit("a1", received_at=time.monotonic() - 1.0, key="a")  # arrived a second ago
    assert work.next_batch() == [("a", "a1")]
    by_key = worker.stats_by_key()
    assert list(by_key) == ["a", "b", "c"]
    assert by_key["a"].busy and not by_key["b"].busy and worker.stats().busy
    worker.submit("a2", received_at=time.monotonic() - 1.0, key="a")
    worker.submit("b1", key="b")
    work.go.release()
    assert work.next_batch() == [("a", "a2"), ("b", "b1")]
    work.go.release()
    assert worker.stop(timeout=WAIT)
    by_key = worker.stats_by_key()
    a, b, c = by_key["a"], by_key["b"], by_key["c"]
    assert counts(a) == (2, 2, 0, 0) and counts(b) == (1, 1, 0, 0) and counts(c) == (0, 0, 0, 0)
    assert 1.0 <= a.latency_p50_s <= a.latency_p95_s < WAIT
    assert 0 <= b.latency_p50_s < 1.0
    assert c.latency_p50_s is None and c.fps_in == c.fps_out == 0.0
    assert a.fps_in > 0 and a.fps_out > 0 and b.fps_in == 0.0  # b: one frame, no interval yet
    assert not any(s.busy for s in by_key.values())
    total = worker.stats()
    assert counts(total) == (3, 3, 0, 0) and total.recent_received == 3 and total.drop_share == 0.0
    assert total.latency_p95_s >= 1.0
    assert worker.batch_stats() == BatchStats(batches=2, recent_batches=2, mean_size=1.5, max_size=2)


def test_many_submitters_keep_the_books_straight():
    keys = [f"cam{i}" for i in range(4)]
    seen: dict[str, list[int]] = {key: [] for key in keys}

    def results(items):
        assert len(items) <= 3 and [k for k, _ in items] == [k for k in keys if k in dict(items)]
        for key, i in items:
            seen[key].append(i)
        return [None if i % 2 else (lambda: None) for _, i in items]

    worker = FrameWorker(Batches(blocking=False, results=results), keys=keys,
                              batch_window_s=0.001, max_batch=3)
    worker.start()
    barrier = threading.Barrier(len(keys))

    def send(key: str) -> None:
        barrier.wait(WAIT)
        for i in range(300):
            worker.submit(i, key=key)

    senders = [threading.Thread(target=send, args=(key,)) for key in keys]
    for t in senders:
        t.start()
    for t in senders:
        t.join(WAIT)
    assert worker.stop(timeout=WAIT)
    for key, s in worker.stats_by_key().items():
        assert s.received == 300 and s.failed == 0
        assert s.processed + s.dropped == 300
        assert s.processed == len(seen[key]) and seen[key] == sorted(seen[key])  # newest wins, in order
    assert worker.batch_stats().max_size <= 3


def test_bad_arguments_and_lifecycle():
    with pytest.raises(KeyError, match="unknown camera key 'x'"):
        FrameWorker(lambda items: None, keys=["a"]).submit(1, key="x")
    with pytest.raises(ValueError, match="at least one"):
        FrameWorker(lambda items: None, keys=[])
    with pytest.raises(ValueError, match="unique"):
        FrameWorker(lambda items: None, keys=["a", "a"])
    with pytest.raises(ValueError, match="batch_window_s"):
        FrameWorker(lambda items: None, keys=["a"], batch_window_s=-1)
    with pytest.raises(ValueError, match="max_batch"):
        FrameWorker(lambda items: None, keys=["a"], max_batch=-1)
    worker = FrameWorker(lambda items: None, keys=["a"])
    assert worker.stop() is True  # never started
    assert worker.submit(1, key="a") is False  # not running: counted and discarded
    assert counts(worker.stats()) == (1, 0, 1, 0)
    assert worker.batch_stats() == BatchStats(batches=0, recent_batches=0, mean_size=0.0, max_size=0)
    worker.start()
    with pytest.raises(RuntimeError, match="already started"):
        worker.start()
    assert worker.running
    assert worker.stop()
    assert not worker.running
