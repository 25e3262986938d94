"""CameraInfoCache: camera_info paired with images by stamp (no ROS graph needed)."""
from __future__ import annotations

from builtin_interfaces.msg import Time
from sensor_msgs.msg import CameraInfo
from std_msgs.msg import Header

from dap_led_ros.ros.camera_info_cache import CameraInfoCache


def info(sec: int, fx: float) -> CameraInfo:
    msg = CameraInfo(header=Header(stamp=Time(sec=sec), frame_id="cam"), width=64, height=48)
    msg.k[0] = fx
    return msg


def test_the_same_stamp_wins_else_the_newest_and_the_image_header_is_used():
    cache = CameraInfoCache(size=3)
    assert cache.for_image(Header(stamp=Time(sec=1))) is None
    originals = [info(sec, fx=100.0 + sec) for sec in (1, 2, 3)]
    for msg in originals:
        cache.add(msg)
    image_header = Header(stamp=Time(sec=2), frame_id="cam_optical")
    paired = cache.for_image(image_header)
    assert paired.k[0] == 102.0 and paired.header == image_header

    later = Header(stamp=Time(sec=9), frame_id="cam_optical")
    assert cache.for_image(later).k[0] == 103.0  # none with that stamp: the newest
    # The cached messages themselves keep their headers.
    assert [m.header.frame_id for m in originals] == ["cam"] * 3
    assert originals[2].header.stamp.sec == 3


def test_old_entries_are_forgotten_and_clear_empties():
    cache = CameraInfoCache(size=2)
    for sec in (1, 2, 3):
        cache.add(info(sec, fx=float(sec)))
    assert cache.for_image(Header(stamp=Time(sec=1))).k[0] == 3.0  # 1 evicted: newest used
    cache.clear()
    assert cache.for_image(Header(stamp=Time(sec=3))) is None
