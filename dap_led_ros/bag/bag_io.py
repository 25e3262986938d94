"""Topic naming, camera-topic selection and the write rules shared by the bag commands.

Reading and writing live in `bag_reader` / `bag_writer`; this module decides which topics are
camera frames, where their enhanced copies go, and whether an output path may be written.
"""
from __future__ import annotations

import logging
import posixpath
from pathlib import Path

from rosbags.rosbag2 import StoragePlugin
from rosbags.typesys import Stores, get_typestore

from dap_led_ros.bag.bag_reader import BagReader
from dap_led_ros.bag.bag_storage import TopicInfo
from dap_led_ros.imaging.image_encoding import SUPPORTED_ENCODINGS

log = logging.getLogger(__name__)

# Decodes and encodes Image / CompressedImage / CameraInfo / Imu only: their layouts are the same
# in every ROS 2 distro. Every other message is copied as stored and never decoded.
TYPESTORE = get_typestore(Stores.ROS2_HUMBLE)

IMAGE = "sensor_msgs/msg/Image"
COMPRESSED_IMAGE = "sensor_msgs/msg/CompressedImage"
CAMERA_INFO = "sensor_msgs/msg/CameraInfo"
IMAGE_TYPES = (IMAGE, COMPRESSED_IMAGE)

STORAGES: dict[str, StoragePlugin] = {"sqlite3": StoragePlugin.SQLITE3, "mcap": StoragePlugin.MCAP}

# Output topics follow image_transport: `<ns>/enhanced/image` for raw frames and its
# `compressed` transport `<ns>/enhanced/image/compressed` for CompressedImage.
ENHANCED_NAMESPACE = "enhanced"
ENHANCED_BASE = "image"
COMPRESSED_TRANSPORT = "compressed"
DEPTH_TRANSPORT = "compressedDepth"
# image_transport plugins whose messages are not JPEG/PNG camera frames (depth, video codecs, zstd).
OTHER_TRANSPORTS = frozenset({DEPTH_TRANSPORT, "zstd", "theora", "ffmpeg", "h264", "h265", "hevc", "av1",
                              "foxglove", "qoi", "avif", "jxl", "draco"})
_PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
_JPEG_MAGIC = b"\xff\xd8\xff"

def open_reader(path: str | Path) -> BagReader:
    """An opened BagReader for a rosbag2 folder (or a single .db3/.mcap file), else BagError."""
    return BagReader(path)


def storage_of(path: str | Path) -> str:
    """Storage plugin name ("sqlite3" or "mcap") of a bag folder or file."""
    with BagReader(path) as reader:
        return reader.storage


def camera_frames_reason(reader: BagReader, topic: TopicInfo) -> str | None:
    """None when `topic` holds colour/mono camera frames the enhancer restores, else why not.

    Decided from the type, the transport name and the first message's encoding / format, as
    image_transport subscribers would: depth and other non-camera encodings (16UC1, 32FC1,
    8UC3, ...) and transports other than raw and `compressed` are not camera frames.
    """
    if topic.msgtype not in IMAGE_TYPES:
        return f"type {topic.msgtype or 'unknown'}"
    if topic.serialization_format != "cdr":
        return f"serialization {topic.serialization_format}"
    leaf = posixpath.basename(topic.name)
    if leaf in OTHER_TRANSPORTS:
        return f"the {leaf} transport"
    first = next(iter(reader.messages([topic.key])), None)
    if first is None:
        return "no messages"
    try:
        msg = TYPESTORE.deserialize_cdr(first.data, topic.msgtype)
    except Exception as exc:  # a garbled first message: decide on the frames one by one instead
        log.debug("first message of %s not decodable: %s", topic.name, exc)
        return None
    if topic.msgtype == IMAGE:
        if str(msg.encoding).strip().lower() not in SUPPORTED_ENCODINGS:
            return f"encoding {msg.encoding} (not a colour or mono camera image)"
        return None
    fmt = str(msg.format)
    data = bytes(msg.data[:8])
    if "compresseddepth" in fmt.lower():
        return f"format '{fmt}' (compressed depth)"
    if not (data.startswith(_PNG_MAGIC) or data.startswith(_JPEG_MAGIC)):
        return f"format '{fmt}' (not JPEG or PNG)"
    return None


def enhanced_topic(topic: str, msgtype: str) -> str:
    """Where the enhanced frames of `topic` go.

    /cam/image_raw -> /cam/enhanced/image; /cam/image_raw/compressed (the compressed transport of
    /cam/image_raw) -> /cam/enhanced/image/compressed. A CompressedImage topic not named
    `.../compressed` is taken as the base topic itself.
    """
    base = topic
    if msgtype == COMPRESSED_IMAGE and posixpath.basename(topic) == COMPRESSED_TRANSPORT:
        base = posixpath.dirname(topic)
    out = posixpath.join(posixpath.dirname(base) or "/", ENHANCED_NAMESPACE, ENHANCED_BASE)
    return posixpath.join(out, COMPRESSED_TRANSPORT) if msgtype == COMPRESSED_IMAGE else out


def camera_info_topics(topic: str, msgtype: str) -> tuple[str, str]:
    """(camera_info beside an image topic, its copy beside the enhanced topic).

    /cam/image_raw and /cam/image_raw/compressed -> (/cam/camera_info, /cam/enhanced/camera_info),
    as image_transport pairs an image with the camera_info of its namespace.
    """
    base = topic
    if msgtype == COMPRESSED_IMAGE and posixpath.basename(topic) == COMPRESSED_TRANSPORT:
        base = posixpath.dirname(topic)
    ns = posixpath.dirname(base) or "/"
    return posixpath.join(ns, "camera_info"), posixpath.join(ns, ENHANCED_NAMESPACE, "camera_info")


def format_stamp(ns: int) -> str:
    """Bag timestamp (ns) as seconds, e.g. 1700000000.066666666."""
    return f"{ns // 1_000_000_000}.{ns % 1_000_000_000:09d}"
