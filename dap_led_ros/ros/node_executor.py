"""The executor the nodes spin in: rclpy's MultiThreadedExecutor without its busy loop.

rclpy's MultiThreadedExecutor (Jazzy 7.1, Kilted 9.1) hands a ready callback to its thread pool and
waits again; until a pool thread has *started* that callback, the wait yields the same task again
without blocking, and it is queued again (ros2/rclpy#1452, fixed upstream in rclpy#1547 after these
releases). While the worker threads keep the CPU and the GIL busy, a pool thread can take
milliseconds to start, and the spinning thread loops the whole time: 43 % of a core in
`enhance_node` fed 640x480 at 30 Hz (docs/benchmarks.md, "Where the node's time went").

Here a task already queued is not queued again; the spinning thread waits until a pool thread has
taken it. A callback that runs long (a configure loading a model) does not hold the spinning thread:
it waits only until the callback starts, so the other callback groups are served meanwhile.
"""
from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from rclpy.executors import (ConditionReachedException, ExternalShutdownException, MultiThreadedExecutor,
                             ShutdownException, TimeoutException)

# How long the spinning thread waits at most for a queued task to start before it looks again (the
# pool is stuck only when every thread runs a long callback; shutdown is noticed at this pace too).
START_WAIT_S = 0.1


class NodeExecutor(MultiThreadedExecutor):
    """MultiThreadedExecutor that queues each ready task once and waits for it to start."""

    def __init__(self, num_threads: int | None = None, *, context: Any = None) -> None:
        super().__init__(num_threads=num_threads, context=context)
        self._started_cond = threading.Condition()
        self._queued: set[Any] = set()   # tasks handed to the pool and not started yet
        self.requeues_avoided = 0        # times a queued task came back from the wait (tests, benchmarks)

    def _run_task(self, task: Any) -> None:
        with self._started_cond:
            self._queued.discard(task)
            self._started_cond.notify_all()
        task()

    def _spin_once_impl(self, timeout_sec: Any = None,
                        wait_condition: Callable[[], bool] = lambda: False) -> None:
        try:
            task, _, _ = self.wait_for_ready_callbacks(timeout_sec, None, wait_condition)
        except (ExternalShutdownException, ShutdownException, TimeoutException, ConditionReachedException):
            return
        with self._started_cond:
            if task in self._queued:
                self.requeues_avoided += 1
                self._started_cond.wait_for(lambda: task not in self._queued, START_WAIT_S)
                return
            self._queued.add(task)
        self._executor.submit(self._run_task, task)
        self._futures.append(task)
        for future in self._futures[:]:
            if future.done():
                self._futures.remove(future)
                future.result()  # raise any exceptions
