"""One camera of `enhance_node`: its topics and lazy publishing (its video stream: `Enhancer.stream`).

Topics are image_transport's: the input on `image_raw` (transport raw) or `image_raw/compressed`
(transport compressed, sensor_msgs/CompressedImage), the output on `enhanced/image` and, when enabled,
`enhanced/image/compressed`, and the detector's `detect/image`, all under the camera's prefix ("" for the node's own namespace, "front/"
for camera `front` of a multi-camera node).

Lazy: a frame is restored only while some image output has a subscriber. The newest frame that
arrived while nobody listened is kept and restored as soon as a subscriber matches (unless a newer
frame went through first), so a new subscriber gets the frame it was waiting for even when the
publisher side of the match is reported after the frame arrived.
"""
from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any

from dap_led_ros.ros.camera_info_cache import CameraInfoCache
from dap_led_ros.ros.diagnostics import matched_publishers
from dap_led_ros.runtime.exposure import ExposureState

INPUT_TRANSPORTS = ("raw", "compressed")
COMPRESSED = "/compressed"  # image_transport's topic suffix for the compressed transport
RESTORED_OUTPUTS = ("image", "compressed", "heatmap")  # pub_<role>: the outputs made from the restored frame
IMAGE_OUTPUTS = (*RESTORED_OUTPUTS, "detect")  # the outputs lazy publishing watches (detect: restored or camera)


class CameraChannel:
    """Publishers, camera_info cache, held frame and counters of one camera (thread-safe counters)."""

    def __init__(self, name: str = "") -> None:
        self.name = name                           # "" for the node's only camera
        self.stream_name = name                    # its VideoStream in the Enhancer
        self.prefix = f"{name}/" if name else ""
        self.camera_infos = CameraInfoCache()
        self.pub_image: Any = None
        self.pub_compressed: Any = None
        self.pub_info: Any = None
        self.pub_heatmap: Any = None
        self.pub_detect: Any = None
        self.sub_input: Any = None
        self.lazy = True
        self._lock = threading.Lock()
        self._held: Any = None
        self.reset()

    def topic(self, relative: str) -> str:
        return self.prefix + relative

    def input_topic(self, transport: str) -> str:
        return self.topic("image_raw" + (COMPRESSED if transport == "compressed" else ""))

    def reset(self) -> None:
        """A new activation: counters and the held frame start afresh."""
        with self._lock:
            self._held = None
            self._matched: dict[str, int] = {}  # role -> subscribers at its last matched event
        self.lazy_skipped = 0     # frames not restored because nobody subscribed
        self.restored = 0         # frames that went through the network
        self.detect_camera_frames = 0  # frames detect/image carried as the camera sent them
        self.detect_restoring = False  # detect/image's last frame was the restored one (hysteresis)
        self.detect_exposure = ExposureState()  # the detector-facing level's steadied gain

    def input_publishers(self) -> int:
        """Publishers the camera's input subscription has matched (0 while it has none)."""
        return matched_publishers([self.sub_input])

    # ------------------------------------------------------------------ lazy publishing

    def note_matched(self, role: str, current_count: int) -> None:
        """A matched event of output `role` ("image", "compressed", "heatmap"): its subscriber count
        then. Counted with the publisher's own, which the middleware may update a moment later."""
        with self._lock:
            self._matched[role] = current_count

    def count(self, role: str) -> int:
        """Subscribers of output `role` (0 when it is not published)."""
        pub = getattr(self, f"pub_{role}")
        if pub is None:
            return 0
        with self._lock:
            matched = self._matched.get(role, 0)
        return max(pub.get_subscription_count(), matched)

    def wants(self, role: str) -> bool:
        """Whether to publish output `role`: it exists and, when lazy, someone subscribes."""
        return getattr(self, f"pub_{role}") is not None and (not self.lazy or self.count(role) > 0)

    def wants_restored(self) -> bool:
        """Whether an output made from the restored frame is published now."""
        return any(self.wants(role) for role in RESTORED_OUTPUTS)

    def subscribers(self) -> int:
        """Subscribers of the image outputs (raw, compressed, heatmaps)."""
        return sum(self.count(role) for role in IMAGE_OUTPUTS)

    def skip_if_unwatched(self, frame: Any) -> bool:
        """Lazy and nobody subscribes: keep `frame` as the newest unwatched one and return True."""
        if not self.lazy or self.subscribers() > 0:
            return False
        with self._lock:
            self._held = frame
            self.lazy_skipped += 1
        return True

    def take_held(self) -> Any:
        """The newest frame skipped while unwatched (None if none), forgotten here."""
        with self._lock:
            frame, self._held = self._held, None
            return frame


@dataclass(frozen=True)
class CameraFrame:
    """A frame on the worker: the message and the camera it came from."""

    channel: CameraChannel
    msg: Any  # sensor_msgs/Image or sensor_msgs/CompressedImage
