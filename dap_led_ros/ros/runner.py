"""Running lifecycle nodes in a process: signals, spinning, configure/activate, clean shutdown."""
from __future__ import annotations

import sys
from collections.abc import Callable, Sequence

import rclpy
from rclpy.executors import Executor, ExternalShutdownException
from rclpy.lifecycle import LifecycleNode
from rclpy.signals import SignalHandlerOptions

from dap_led_ros.ros.dds import configure_dds_environment
from dap_led_ros.ros.lifecycle_base import (
    ManagedImageNode,
)
from dap_led_ros.ros.node_executor import NodeExecutor
from dap_led_ros.stop_signals import StopSignals

EXIT_WORKER_TIMEOUT_S = 5.0


class NodeStartError(RuntimeError):
    """The nodes cannot start as configured (exit code 2, message only)."""


STOP_POLL_S = 0.1
# Executor threads per node: one per busy callback group of a ManagedImageNode (a transition,
# the frames, the services, the queries, the diagnostics timer) and one spare.
THREADS_PER_NODE = 6


def node_executor(node_count: int) -> Executor:
    """A multi-threaded executor with a thread for each callback group of the nodes: the lifecycle
    and parameter services and ~/enable answer while frames flood in or a model loads
    (NodeExecutor: rclpy's MultiThreadedExecutor without its busy loop)."""
    return NodeExecutor(num_threads=THREADS_PER_NODE * max(1, node_count))


def run_nodes(factories: Sequence[Callable[[], LifecycleNode]],
              args: Sequence[str] | None = None,
              executor_class: Callable[[], Executor] | None = None,
              on_started: Callable[[list[LifecycleNode]], None] | None = None) -> int:
    """Create the nodes and spin them in one executor until SIGINT/SIGTERM; returns the exit code.

    Ctrl-C and SIGTERM end with code 0 and no stack trace; nodes are released before exit.
    executor_class: makes the executor; default `node_executor` (multi-threaded).
    `on_started` may check the created nodes and raise NodeStartError.
    """
    configure_dds_environment()
    # Not rclpy's signal handler: it shuts the context down and raises KeyboardInterrupt wherever
    # Python is (in a finaliser it is swallowed and the executor then fails on the dead context).
    # A signal interrupts node creation (model loading) at once; while spinning it sets a flag
    # the loop checks.
    with StopSignals(interrupt=True) as stop:
        try:
            rclpy.init(args=list(args) if args is not None else None,
                       signal_handler_options=SignalHandlerOptions.NO)
        except KeyboardInterrupt:
            return 0
        except Exception as exc:  # noqa: BLE001 - rcl rejects bad ROS arguments / params files
            print(f"error: ROS initialisation failed: {exc}", file=sys.stderr)
            return 1
        nodes: list[LifecycleNode] = []
        executor = executor_class() if executor_class is not None else node_executor(len(factories))
        code = 0
        try:
            for make in factories:
                nodes.append(make())
            if on_started is not None:
                on_started(nodes)
            for node in nodes:
                executor.add_node(node)
            stop.interrupt = False
            while not stop.requested.is_set() and rclpy.ok():
                executor.spin_once(timeout_sec=STOP_POLL_S)
        except (KeyboardInterrupt, ExternalShutdownException):
            pass
        except NodeStartError as exc:
            print(f"error: {exc}", file=sys.stderr)
            code = 2
        except Exception as exc:  # noqa: BLE001 - report, do not dump a trace on users
            print(f"error: {type(exc).__name__}: {exc}", file=sys.stderr)
            code = 1
        finally:
            stop.interrupt = False  # a second signal during release only sets the flag again
            for node in nodes:
                if isinstance(node, ManagedImageNode):
                    node.closing()  # a transition in progress makes nothing more
            # No new callbacks; the ones in progress (a configure loading a model) finish first,
            # so nothing is destroyed under them.
            executor.shutdown(timeout_sec=1.0)
            for node in nodes:
                try:
                    if isinstance(node, ManagedImageNode):
                        node.release(worker_timeout_s=EXIT_WORKER_TIMEOUT_S)
                    node.destroy_node()
                except Exception:  # noqa: BLE001 - the context may already be shut down
                    pass
            rclpy.try_shutdown()
        return code


def main_for(node_class: type[LifecycleNode], argv: Sequence[str] | None = None) -> int:
    """Console-script body: run one node class (ROS arguments come from argv / sys.argv)."""
    return run_nodes([node_class], args=sys.argv if argv is None else argv)


