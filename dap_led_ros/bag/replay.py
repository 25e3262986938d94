"""`dap-led replay BAG`: publish a bag's messages with their recorded timing (pip-only `ros2 bag play`).

Messages are published as the serialized bytes stored in the bag (`Publisher.publish(bytes)`),
so nothing is decoded on the way; every replayed topic's message type must be installed, since
a publisher needs its Python class: a bag with topics of types not installed is refused, naming
them, unless `--topics` leaves them out. The messages published per topic are checked against
the storage's own counts (and metadata.yaml's); a difference is an error.

QoS: `reliable` (default; any subscriber matches it) or `sensor-data` (best effort, depth 5).
Topics recorded with transient-local durability (/tf_static, maps) keep it, so late
subscribers still get them. Ctrl-C or SIGTERM stops cleanly.
"""
from __future__ import annotations

import importlib
import logging
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dap_led_ros.bag.bag_errors import BagError
from dap_led_ros.bag.bag_metadata import load_yaml
from dap_led_ros.bag.bag_reader import BagReader
from dap_led_ros.bag.bag_storage import TopicInfo
from dap_led_ros.stop_signals import StopSignals

log = logging.getLogger(__name__)

QOS_CHOICES = ("reliable", "sensor-data")
_POLL_S = 0.05  # longest uninterrupted sleep, so a stop request is seen quickly


@dataclass
class ReplayOptions:
    rate: float = 1.0                   # playback speed factor
    loop: bool = False
    topics: list[str] | None = None     # None = every topic
    start_delay: float = 0.0            # seconds between publishers created and first message
    wait_subscribers: int = 0           # wait until the topics have this many subscriptions in all
    wait_timeout: float = 30.0          # seconds; 0 = wait forever
    qos: str = "reliable"
    depth: int = 10                     # keep-last depth of the reliable profile
    remap: dict[str, str] = field(default_factory=dict)   # bag topic -> published topic
    drain_timeout: float = 5.0          # seconds to wait for reliable subscribers to acknowledge the end

    def validate(self) -> None:
        if self.rate <= 0:
            raise BagError(f"--rate must be > 0, got {self.rate}")
        if min(self.start_delay, self.wait_timeout, self.wait_subscribers, self.drain_timeout) < 0:
            raise BagError("--start-delay, --wait-timeout, --wait-subscribers and --drain-timeout must be >= 0")
        if self.qos not in QOS_CHOICES:
            raise BagError(f"--qos must be one of {', '.join(QOS_CHOICES)}, got '{self.qos}'")
        if self.depth < 1:
            raise BagError(f"--depth must be >= 1, got {self.depth}")


class StopRequested(Exception):
    """SIGTERM (or a caller) asked the replay to stop."""


def message_class(msgtype: str) -> Any | None:
    """The installed Python class of e.g. 'sensor_msgs/msg/Image', None when not installed."""
    try:
        package, kind, name = msgtype.split("/")
        return getattr(importlib.import_module(f"{package}.{kind}"), name)
    except (ValueError, ImportError, AttributeError):
        return None


def _select(reader: BagReader, topics: list[str] | None) -> list[TopicInfo]:
    selected = list(reader.topics)
    if topics:
        known = {t.name for t in selected}
        unknown = [t for t in topics if t not in known]
        if unknown:
            raise BagError(f"topic(s) {', '.join(unknown)} not in the bag; it has: {', '.join(sorted(known))}")
        selected = [t for t in selected if t.name in topics]
    not_cdr = [f"{t.name} ({t.serialization_format})" for t in selected if t.serialization_format != "cdr"]
    if not_cdr:
        raise BagError(f"topic(s) {', '.join(not_cdr)} are not CDR-serialized and cannot be published on ROS 2; "
                       f"leave them out with --topics")
    return selected


def _transient_local(topic: TopicInfo) -> bool:
    """Whether the recorder offered transient-local durability (rmw enum 1, or its name in metadata v9)."""
    try:  # the bag's string is untrusted: no aliases, bounded nesting (load_yaml)
        profiles = load_yaml((topic.offered_qos_profiles or "[]").encode()) or []
    except BagError as exc:
        log.warning("%s: offered_qos_profiles not readable (%s); publishing volatile", topic.name, exc)
        return False
    return isinstance(profiles, list) and any(
        isinstance(q, dict) and q.get("durability") in (1, "transient_local") for q in profiles)


def _qos_profile(options: ReplayOptions, latched: bool) -> Any:
    from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy, qos_profile_sensor_data

    if options.qos == "sensor-data":
        profile = QoSProfile(**{k: getattr(qos_profile_sensor_data, k) for k in ("history", "depth", "reliability")})
    else:
        profile = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=options.depth,
                             reliability=ReliabilityPolicy.RELIABLE)
    profile.durability = DurabilityPolicy.TRANSIENT_LOCAL if latched else DurabilityPolicy.VOLATILE
    return profile


class _Stopper(StopSignals):
    """SIGINT/SIGTERM become StopRequested at the next check."""

    def check(self) -> None:
        if self.requested.is_set():
            raise StopRequested()

    def sleep_until(self, deadline: float) -> None:
        while True:
            self.check()
            left = deadline - time.monotonic()
            if left <= 0:
                return
            time.sleep(min(left, _POLL_S))


@dataclass
class ReplayStats:
    published: Counter = field(default_factory=Counter)   # published topic -> messages
    expected: Counter = field(default_factory=Counter)    # published topic -> messages per loop in the bag
    first_loop: Counter = field(default_factory=Counter)  # published topic -> messages in the first loop
    loops: int = 0
    seconds: float = 0.0
    stopped: bool = False
    unacknowledged: list[str] = field(default_factory=list)  # reliable topics not acknowledged at the end

    def report(self) -> str:
        state = "stopped" if self.stopped else "done"
        lines = [f"{state}: published {sum(self.published.values())} messages in {self.seconds:.1f} s"
                 + (f" ({self.loops} loops)" if self.loops > 1 else "")]
        lines += [f"  {t}: {n}" for t, n in sorted(self.published.items())]
        if self.unacknowledged:
            lines.append(f"  not acknowledged by every subscriber: {', '.join(self.unacknowledged)}")
        missing = self.missing()
        if missing:
            lines.append("  error: the bag holds messages that were not published: " + "; ".join(
                f"{t}: {self.first_loop[t]} of {n}" for t, n in missing.items()))
        return "\n".join(lines)

    def missing(self) -> dict[str, int]:
        """Topics whose first loop published fewer (or more) messages than the storage holds."""
        if self.stopped:
            return {}
        return {t: n for t, n in self.expected.items() if self.first_loop[t] != n}


def replay(bag: Path, options: ReplayOptions | None = None, domain_id: int | None = None) -> ReplayStats:
    """Publish the bag on a ROS graph with its recorded timing; blocks until done or stopped."""
    import rclpy
    from rclpy.signals import SignalHandlerOptions

    from dap_led_ros.ros.dds import configure_dds_environment

    options = options or ReplayOptions()
    options.validate()
    reader = BagReader(bag)
    stats = ReplayStats()
    stopper = _Stopper()
    stopper.install()
    context = node = None
    try:
        selected = _select(reader, options.topics)
        missing_types = [f"{t.name} ({t.msgtype})" for t in selected if message_class(t.msgtype) is None]
        if missing_types:
            raise BagError(f"message type(s) not installed here, so these topics cannot be published: "
                           f"{', '.join(missing_types)}; install their packages or leave the topics out "
                           f"with --topics")
        counts = reader.check_counts([t.key for t in selected])
        configure_dds_environment()
        context = rclpy.Context()
        # args=[]: our command line is not ROS arguments (rcl would read remaps from sys.argv)
        rclpy.init(args=[], context=context, domain_id=domain_id, signal_handler_options=SignalHandlerOptions.NO)
        node = rclpy.create_node("dap_led_replay", context=context, start_parameter_services=False)
        publishers: dict[tuple[str, str], Any] = {}
        by_topic: dict[str, Any] = {}
        for t in selected:
            topic = options.remap.get(t.name, t.name)
            if topic not in by_topic:
                by_topic[topic] = node.create_publisher(message_class(t.msgtype), topic,
                                                        _qos_profile(options, _transient_local(t)))
            publishers[t.key] = by_topic[topic]
            stats.expected[by_topic[topic].topic_name] += counts.get(t.key, 0)
        _wait_for_subscribers(list(by_topic.values()), options, stopper)
        stopper.sleep_until(time.monotonic() + options.start_delay)
        started = time.monotonic()
        try:
            _play(reader, publishers, options, stopper, stats)
        except StopRequested:
            stats.stopped = True
        stats.seconds = time.monotonic() - started
        stats.unacknowledged = _drain(list(by_topic.values()), options.drain_timeout)
    except StopRequested:
        stats.stopped = True
    finally:
        stopper.restore()
        if node is not None:
            node.destroy_node()
        if context is not None and context.ok():
            rclpy.shutdown(context=context)
        reader.close()
    return stats


def _drain(publishers: list[Any], timeout: float) -> list[str]:
    """Wait until reliable subscribers acknowledged everything published (destroying a publisher
    earlier loses its last messages); the topics still unacknowledged after `timeout` seconds."""
    from rclpy.duration import Duration

    deadline = time.monotonic() + timeout
    late = []
    for pub in publishers:
        left = max(0.0, deadline - time.monotonic())
        if not pub.wait_for_all_acked(Duration(nanoseconds=int(left * 1e9))):
            late.append(pub.topic_name)
    if late:
        log.warning("not acknowledged by every subscriber within %g s: %s", timeout, ", ".join(late))
    return late


def _wait_for_subscribers(publishers: list[Any], options: ReplayOptions, stopper: _Stopper) -> None:
    if options.wait_subscribers <= 0:
        return
    deadline = time.monotonic() + options.wait_timeout if options.wait_timeout else float("inf")
    log.info("waiting for %d subscription(s)", options.wait_subscribers)
    while (matched := sum(p.get_subscription_count() for p in publishers)) < options.wait_subscribers:
        if time.monotonic() > deadline:
            raise BagError(f"only {matched} of {options.wait_subscribers} subscription(s) matched within "
                           f"{options.wait_timeout:g} s (check topic names, ROS_DOMAIN_ID and QoS)")
        stopper.sleep_until(time.monotonic() + 0.1)


def _play(reader: BagReader, publishers: dict[tuple[str, str], Any], options: ReplayOptions,
          stopper: _Stopper, stats: ReplayStats) -> None:
    confirm = options.wait_subscribers > 0 and options.qos == "reliable"
    confirmed: set[int] = set()
    while True:
        stats.loops += 1
        wall0, bag0 = time.monotonic(), None
        for record in reader.messages(publishers):
            timestamp = record.log_time
            if bag0 is None:
                bag0 = timestamp
            stopper.sleep_until(wall0 + (timestamp - bag0) / 1e9 / options.rate)
            pub = publishers[record.topic.key]
            pub.publish(record.data)
            stats.published[pub.topic_name] += 1
            if stats.loops == 1:
                stats.first_loop[pub.topic_name] += 1
            if confirm and id(pub) not in confirmed:
                confirmed.add(id(pub))
                wall0 += _confirm_first(pub, options, stopper)
        if not options.loop or bag0 is None:
            return


def _confirm_first(pub: Any, options: ReplayOptions, stopper: _Stopper) -> float:
    """Wait until every matched reliable subscriber acknowledged a publisher's first message.

    A subscription can be matched by our publisher before it has matched the publisher itself
    (discovery runs on both sides); a reader only acknowledges once it has, so this ack is the
    proof that the first message reached it and that the next ones will. Returns the seconds
    waited, by which the playback clock is shifted.
    """
    from rclpy.duration import Duration

    t0 = time.monotonic()
    deadline = t0 + options.wait_timeout if options.wait_timeout else float("inf")
    while not pub.wait_for_all_acked(Duration(nanoseconds=int(_POLL_S * 1e9))):
        stopper.check()
        if time.monotonic() > deadline:
            log.warning("%s: the first message was not acknowledged by every subscriber within %g s",
                        pub.topic_name, options.wait_timeout)
            break
    return time.monotonic() - t0
