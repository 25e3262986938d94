"""/diagnostics (diagnostic_msgs/DiagnosticArray) for the image nodes.

One DiagnosticStatus per node, named after the node's full name: lifecycle state, enable
switch, backend, fps in/out, latency p50/p95 (arrival to publish), dropped and rejected frames.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from rclpy.node import Node

from dap_led_ros.ros.frame_worker import WorkerStats

DIAGNOSTICS_TOPIC = "/diagnostics"

# Levels (diagnostic_msgs uses one-byte values).
OK: bytes = DiagnosticStatus.OK
WARN: bytes = DiagnosticStatus.WARN
ERROR: bytes = DiagnosticStatus.ERROR


# Overload: at least this share of the last window's input frames dropped (newest frame wins),
# and at least OVERLOAD_MIN_DROPS of them (a single replaced frame is no overload).
OVERLOAD_DROP_SHARE = 0.2
OVERLOAD_MIN_DROPS = 3


def matched_publishers(subscriptions: Sequence[Any]) -> int:
    """`input_publishers`: the publishers `subscriptions` have matched, as this side sees them
    (None entries and subscriptions destroyed by a transition meanwhile count 0)."""
    total = 0
    for sub in subscriptions:
        if sub is None:
            continue
        try:
            total += sub.get_publisher_count()
        except Exception:  # noqa: BLE001 - destroyed by a transition meanwhile
            pass
    return total


def overload_message(stats: WorkerStats | None, verb: str = "processed") -> str:
    """"overloaded: input X fps, <verb> Y fps, dropping Z %" while input arrives faster than the
    worker keeps up with; "" otherwise."""
    if stats is None or stats.recent_dropped < OVERLOAD_MIN_DROPS \
            or stats.drop_share < OVERLOAD_DROP_SHARE:
        return ""
    return (f"overloaded: input {stats.fps_in:.1f} fps, {verb} {stats.fps_out:.1f} fps, "
            f"dropping {100 * stats.drop_share:.0f} %")


def worker_values(stats: WorkerStats | None) -> dict[str, str]:
    """Key/value pairs for the frame worker's statistics (zeros/empty while none is running).

    Failed frames are left to the node, which knows which of them were malformed input.
    """
    if stats is None:
        return {"fps_in": "0.0", "fps_out": "0.0", "latency_p50_ms": "", "latency_p95_ms": ""}

    def ms(v: float | None) -> str:
        return "" if v is None else f"{v * 1000.0:.1f}"

    return {
        "fps_in": f"{stats.fps_in:.2f}",
        "fps_out": f"{stats.fps_out:.2f}",
        "latency_p50_ms": ms(stats.latency_p50_s),
        "latency_p95_ms": ms(stats.latency_p95_s),
        "frames_in": str(stats.received),
        "frames_out": str(stats.processed),
        "dropped": str(stats.dropped),
        "dropping_pct": f"{100 * stats.drop_share:.0f}",
    }


class StampDelays:
    """diagnostic_updater's TimeStampStatus figures: the earliest and latest delay between a frame's
    header stamp and its arrival, over the frames since the last status (thread-safe enough: a
    torn read only mixes two windows)."""

    def __init__(self) -> None:
        self._low: float | None = None
        self._high: float | None = None

    def add(self, delay_s: float) -> None:
        self._low = delay_s if self._low is None else min(self._low, delay_s)
        self._high = delay_s if self._high is None else max(self._high, delay_s)

    def take(self) -> dict[str, str]:
        low, high, self._low, self._high = self._low, self._high, None, None
        if low is None or high is None:
            return {}
        return {"Earliest timestamp delay:": f"{low:.6f}", "Latest timestamp delay:": f"{high:.6f}"}


def frequency_values(stats: WorkerStats | None) -> dict[str, str]:
    """diagnostic_updater's FrequencyStatus keys for the output: its rate over the recent window."""
    if stats is None:
        return {}
    return {"Events since startup": str(stats.processed), "Actual frequency (Hz)": f"{stats.fps_out:.6f}"}


def _text(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    return str(v)


@dataclass(frozen=True)
class Status:
    """One more status beside a node's own (e.g. one camera of a multi-camera node)."""

    name: str
    level: bytes
    message: str
    values: Mapping[str, Any]


class DiagnosticsPublisher:
    """Publishes one node's status on /diagnostics (created with the node, alive in every state)."""

    def __init__(self, node: Node, name: str | None = None, hardware_id: str = "") -> None:
        self._node = node
        self._name = name or node.get_fully_qualified_name().lstrip("/")
        self.hardware_id = hardware_id  # diagnostic_updater's hardware ID: what device the status is about
        self._pub = node.create_publisher(DiagnosticArray, DIAGNOSTICS_TOPIC, 10)

    def publish(self, level: bytes, message: str, values: Mapping[str, Any],
                extra: Sequence[Status] = ()) -> DiagnosticArray:
        """The node's status, named after the node, then the `extra` ones named "<node>: <name>"."""
        statuses = [self._status(self._name, level, message, values)]
        statuses += [self._status(f"{self._name}: {s.name}", s.level, s.message, s.values) for s in extra]
        msg = DiagnosticArray(status=statuses)
        msg.header.stamp = self._node.get_clock().now().to_msg()
        self._pub.publish(msg)
        return msg

    def _status(self, name: str, level: bytes, message: str, values: Mapping[str, Any]) -> DiagnosticStatus:
        status = DiagnosticStatus(level=level, name=name, message=message, hardware_id=self.hardware_id)
        status.values = [KeyValue(key=k, value=_text(v)) for k, v in values.items()]
        return status

    def destroy(self) -> None:
        self._node.destroy_publisher(self._pub)


def status_of(msg: DiagnosticArray, name: str) -> DiagnosticStatus | None:
    """The status called `name` in `msg` (None when absent)."""
    return next((status for status in msg.status if status.name == name), None)


def status_values(status: DiagnosticStatus) -> dict[str, str]:
    return {kv.key: kv.value for kv in status.values}


def values_of(msg: DiagnosticArray, name: str) -> dict[str, str] | None:
    """The key/values of the status called `name` in `msg` (None when absent); for consumers."""
    status = status_of(msg, name)
    return None if status is None else status_values(status)
