"""NodeExecutor: rclpy's MultiThreadedExecutor without the busy loop of ros2/rclpy#1452."""
from __future__ import annotations

import threading
import time
from collections import Counter

import pytest
import rclpy
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup
from rclpy.executors import MultiThreadedExecutor
from rclpy.node import Node

from dap_led_ros.ros.node_executor import START_WAIT_S, NodeExecutor


class CountingSubmits:
    """Counts the pool submissions of each task and how often the spinning thread came back."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.waits = 0
        self.submits: Counter = Counter()
        submit = self._executor.submit

        def counted(fn, *fn_args):
            self.submits[fn_args[0] if fn_args else fn] += 1
            return submit(fn, *fn_args)
        self._executor.submit = counted

    def wait_for_ready_callbacks(self, *args, **kwargs):
        self.waits += 1
        return super().wait_for_ready_callbacks(*args, **kwargs)


class CountingNodeExecutor(CountingSubmits, NodeExecutor):
    pass


class CountingStockExecutor(CountingSubmits, MultiThreadedExecutor):
    pass


@pytest.fixture
def context(ros_domain_id):
    ctx = rclpy.Context()
    rclpy.init(context=ctx, domain_id=ros_domain_id)
    yield ctx
    ctx.try_shutdown()


def _spin_with_a_stuck_pool(context, executor_cls, hold_s: float):
    """A pool of one thread, held by a long timer callback while a second timer is due: the second
    timer's task waits in the pool's queue for `hold_s`, while something wakes the executor every
    5 ms (as a node's traffic does)."""
    node = Node("executor_probe", context=context)
    ran: list[str] = []
    release, stop = threading.Event(), threading.Event()

    def long_callback() -> None:
        long_timer.cancel()
        ran.append("long")
        release.wait(hold_s)

    def short_callback() -> None:
        short_timer.cancel()
        ran.append("short")

    long_timer = node.create_timer(0.01, long_callback, callback_group=MutuallyExclusiveCallbackGroup())
    short_timer = node.create_timer(0.05, short_callback, callback_group=MutuallyExclusiveCallbackGroup())
    executor = executor_cls(num_threads=1, context=context)
    executor.add_node(node)

    def waker() -> None:
        while not stop.wait(0.005):
            executor.wake()
    threading.Thread(target=waker, daemon=True).start()
    deadline = time.monotonic() + hold_s + 5.0
    try:
        while "short" not in ran and time.monotonic() < deadline:
            executor.spin_once(timeout_sec=0.5)
    finally:
        stop.set()
        executor.shutdown()
        node.destroy_node()
    return executor, ran


def test_a_task_waiting_for_a_pool_thread_is_queued_once_and_not_spun_on(context):
    hold_s = 1.0
    executor, ran = _spin_with_a_stuck_pool(context, CountingNodeExecutor, hold_s)
    assert ran == ["long", "short"]  # each callback once, in order
    assert sorted(executor.submits.values()) == [1, 1], executor.submits
    assert executor.requeues_avoided >= 1
    # While the short timer's task waited, the spinning thread came back about once per
    # START_WAIT_S, not at every wake-up (200 a second here).
    assert executor.waits <= 2 * hold_s / START_WAIT_S + 10, executor.waits


@pytest.mark.filterwarnings("ignore:MultiThreadedExecutor is used with a single thread")
def test_the_stock_executor_queues_the_waiting_task_again_and_again(context):
    """The reason for NodeExecutor (ros2/rclpy#1452). When this starts failing, the rclpy installed
    has the upstream fix (rclpy#1547) and NodeExecutor can go."""
    executor, ran = _spin_with_a_stuck_pool(context, CountingStockExecutor, 0.5)
    assert ran == ["long", "short"]
    assert max(executor.submits.values()) > 10, executor.submits


def test_other_groups_are_served_while_a_callback_runs_long(context):
    node = Node("executor_probe2", context=context)
    release, served = threading.Event(), threading.Event()

    def long_callback() -> None:
        long_timer.cancel()
        release.wait(10.0)

    long_timer = node.create_timer(0.01, long_callback, callback_group=MutuallyExclusiveCallbackGroup())
    node.create_timer(0.05, served.set, callback_group=MutuallyExclusiveCallbackGroup())
    executor = NodeExecutor(num_threads=3, context=context)
    executor.add_node(node)
    spinner = threading.Thread(target=executor.spin, daemon=True)
    spinner.start()
    try:
        assert served.wait(5.0), "the other group's timer did not run while the long callback ran"
    finally:
        release.set()
        executor.shutdown()
        spinner.join(5.0)
        node.destroy_node()
    assert not spinner.is_alive()
