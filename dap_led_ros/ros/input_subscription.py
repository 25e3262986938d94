"""A node's input subscription whose reliability follows its publishers' (`qos.input.reliability: auto`).

A best-effort reader matches every publisher, but it drops each large frame that loses one UDP
fragment: a 640x480 bgr8 frame (921 kB) from a publisher outside our shared-memory profile goes
over UDP in ~15 fragments, and 1 to 3 of 12 came through (docs/ros.md). A reliable reader gets
every frame, but matches only reliable publishers. So, as rosbag2's recorder does, the input takes
the publishers' reliability: reliable while every publisher on the topic offers reliable, best
effort as soon as one offers only best effort (or none is known yet, so that any publisher
matches). `refresh()` re-reads the graph (the node calls it periodically) and re-creates the
subscription when the answer changes; the queue depth and durability stay as configured.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

from rclpy.qos import QoSProfile, ReliabilityPolicy

AUTO = "auto"


def reliability_for(offered: list[ReliabilityPolicy], current: ReliabilityPolicy | None) -> ReliabilityPolicy:
    """The reliability to subscribe with, given the publishers' offered reliabilities."""
    if not offered:
        return current if current is not None else ReliabilityPolicy.BEST_EFFORT
    if all(r == ReliabilityPolicy.RELIABLE for r in offered):
        return ReliabilityPolicy.RELIABLE
    return ReliabilityPolicy.BEST_EFFORT


class InputSubscription:
    """One input topic: the rclpy subscription, re-created when the publishers' reliability changes."""

    def __init__(self, node: Any, msg_type: Any, topic: str, callback: Callable[[Any], None],
                 profile: QoSProfile, callback_group: Any, follow_publishers: bool) -> None:
        self._node, self._msg_type, self._topic, self._callback = node, msg_type, topic, callback
        self._profile, self._group = profile, callback_group
        self.follow_publishers = follow_publishers  # reliability auto
        self.subscription: Any = None
        self.changes = 0  # re-subscriptions made for a change of the publishers' reliability
        if follow_publishers:
            # Subscribe with the publishers' reliability at once when they are known already.
            self._subscribe(reliability_for(self._offered(self._resolved(topic)), None))
        else:
            self._subscribe(profile.reliability)

    @property
    def reliability(self) -> str:
        return "reliable" if self._profile.reliability == ReliabilityPolicy.RELIABLE else "best_effort"

    @property
    def topic_name(self) -> str:
        return self.subscription.topic_name

    def _subscribe(self, reliability: ReliabilityPolicy) -> None:
        self._profile = QoSProfile(history=self._profile.history, depth=self._profile.depth,
                                   durability=self._profile.durability, reliability=reliability)
        self.subscription = self._node.create_subscription(
            self._msg_type, self._topic, self._callback, self._profile, callback_group=self._group)

    def _resolved(self, topic: str) -> str:
        try:
            return self._node.resolve_topic_name(topic)  # namespace and remaps applied
        except Exception:  # noqa: BLE001 - an rclpy without it: found once subscribed
            return topic

    def _offered(self, topic: str) -> list[ReliabilityPolicy]:
        """The reliability each publisher on the topic offers (other nodes' and this node's alike)."""
        return [info.qos_profile.reliability for info in self._node.get_publishers_info_by_topic(topic)]

    def offered(self) -> list[ReliabilityPolicy]:
        return self._offered(self.subscription.topic_name)

    def refresh(self) -> bool:
        """Follow the publishers' reliability; True when the subscription was re-created."""
        if not self.follow_publishers or self.subscription is None:
            return False
        wanted = reliability_for(self.offered(), self._profile.reliability)
        if wanted == self._profile.reliability:
            return False
        old = self.subscription
        self._subscribe(wanted)  # the new reader first: no gap in which the topic has none
        self._node.destroy_subscription(old)
        self.changes += 1
        return True

    def get_publisher_count(self) -> int:
        """Publishers matched, 0 while a re-subscription to the publishers' reliability is due (a
        frame sent then may reach only the reader about to go: a sender waiting for a match waits
        for the right reader)."""
        if self.follow_publishers and reliability_for(self.offered(), self._profile.reliability) \
                != self._profile.reliability:
            return 0
        return self.subscription.get_publisher_count()

    def destroy(self) -> None:
        sub, self.subscription = self.subscription, None
        if sub is not None:
            self._node.destroy_subscription(sub)
