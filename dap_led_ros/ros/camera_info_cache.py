"""camera_info beside images: recent CameraInfo messages, found by the stamp of an image."""
from __future__ import annotations

import copy
import threading
from collections import OrderedDict

from sensor_msgs.msg import CameraInfo
from std_msgs.msg import Header

# camera_info messages remembered to pair with images by stamp.
CAMERA_INFO_CACHE = 16


def _stamp_key(header: Header) -> tuple[int, int]:
    return (header.stamp.sec, header.stamp.nanosec)


class CameraInfoCache:
    """Recent camera_info messages, looked up by the stamp of the image they belong to."""

    def __init__(self, size: int = CAMERA_INFO_CACHE) -> None:
        self._size = size
        self._by_stamp: OrderedDict[tuple[int, int], CameraInfo] = OrderedDict()
        self._lock = threading.Lock()

    def add(self, info: CameraInfo) -> None:
        with self._lock:
            self._by_stamp[_stamp_key(info.header)] = info
            self._by_stamp.move_to_end(_stamp_key(info.header))
            while len(self._by_stamp) > self._size:
                self._by_stamp.popitem(last=False)

    def for_image(self, header: Header) -> CameraInfo | None:
        """The camera_info with the image's stamp, else the newest one; re-stamped with `header`."""
        with self._lock:
            info = self._by_stamp.get(_stamp_key(header))
            if info is None and self._by_stamp:
                info = next(reversed(self._by_stamp.values()))
        if info is None:
            return None
        out = copy.copy(info)  # shallow: only the header is replaced
        out.header = header
        return out

    def clear(self) -> None:
        with self._lock:
            self._by_stamp.clear()
