"""`run_nodes` exits cleanly on SIGINT/SIGTERM wherever the signal lands (and `StopSignals`).

The stress node's timer callback spends nearly all its time in finalisers (`__del__`), where an
asynchronous KeyboardInterrupt is swallowed ("Exception ignored in ...") and the executor then
fails on the shut-down context: the way a signal could make a node exit with code 1.
"""
from __future__ import annotations

import signal
import sys
import textwrap
from pathlib import Path

import pytest

from dap_led_ros.stop_signals import StopSignals

from conftest import NodeProcess

STRESS_NODE = textwrap.dedent("""
    import sys, time
    from rclpy.node import Node
    from dap_led_ros.ros.runner import run_nodes

    class SlowFinaliser:
        def __del__(self):
            end = time.monotonic() + 0.02
            while time.monotonic() < end:
                pass

    class StressNode(Node):
        def __init__(self):
            super().__init__("signal_stress")
            self.ticks = 0
            self.create_timer(0.001, self.tick)

        def tick(self):
            for _ in range(5):
                SlowFinaliser()
            self.ticks += 1
            if self.ticks == 3:
                print("spinning", flush=True)

    sys.exit(run_nodes([StressNode], args=[]))
""")


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_signal_during_callbacks_exits_zero_without_traceback(ros_domain_id: int, tmp_path: Path,
                                                              sig: signal.Signals) -> None:
    proc = NodeProcess([sys.executable, "-c", STRESS_NODE], tmp_path / "stress.log")
    try:
        proc.wait_for_output("spinning", timeout=60)
        out = proc.assert_clean_exit(sig)
    finally:
        if proc.returncode is None:
            proc.stop(signal.SIGKILL)
    assert "Exception ignored" not in out, out
    assert "error" not in out.lower(), out


def test_signal_while_nodes_are_created_exits_zero(ros_domain_id: int, tmp_path: Path) -> None:
    # A slow start (a big model loading) can still be interrupted.
    script = textwrap.dedent("""
        import sys, time
        from dap_led_ros.ros.runner import run_nodes

        def slow_factory():
            print("loading", flush=True)
            time.sleep(60)
            raise AssertionError("not interrupted")

        sys.exit(run_nodes([slow_factory], args=[]))
    """)
    proc = NodeProcess([sys.executable, "-c", script], tmp_path / "slow.log")
    try:
        proc.wait_for_output("loading", timeout=60)
        out = proc.assert_clean_exit(signal.SIGINT)
    finally:
        if proc.returncode is None:
            proc.stop(signal.SIGKILL)
    assert "not interrupted" not in out, out


def test_run_nodes_off_the_main_thread_stops_on_rclpy_shutdown(ros_domain_id: int) -> None:
    # Embedded in a bigger program: no signal handlers (Python allows them only on the main
    # thread); the program ends the nodes with rclpy.shutdown().
    import threading

    import rclpy
    from rclpy.node import Node

    from dap_led_ros.ros.runner import run_nodes

    started = threading.Event()

    def make() -> Node:
        node = Node("embedded")
        node.create_timer(0.01, started.set)
        return node

    result: list[int] = []
    thread = threading.Thread(target=lambda: result.append(run_nodes([make], args=[])))
    thread.start()
    assert started.wait(60), "the node never spun"
    rclpy.shutdown()
    thread.join(30)
    assert not thread.is_alive() and result == [0]


def test_stop_signals_set_the_flag_raise_only_when_asked_and_restore_the_handlers() -> None:
    import os

    before = {sig: signal.getsignal(sig) for sig in StopSignals.SIGNALS}
    with StopSignals() as stop:
        os.kill(os.getpid(), signal.SIGTERM)
        os.kill(os.getpid(), signal.SIGINT)  # no KeyboardInterrupt
        assert stop.requested.is_set()
        stop.interrupt = True
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGINT)
    assert {sig: signal.getsignal(sig) for sig in StopSignals.SIGNALS} == before
