"""Opening, inspecting and copying rosbag2 bags with `rosbags`; shared by the bag commands."""
from __future__ import annotations

import logging
import os
import posixpath
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import yaml
from rosbags.interfaces import Connection, ConnectionExtRosbag2
from rosbags.rosbag2 import Reader, StoragePlugin, Writer
from rosbags.typesys import Stores, get_typestore
from rosbags.typesys.base import TypesysError
from rosbags.typesys.msg import get_types_from_msg

log = logging.getLogger(__name__)

# sensor_msgs, std_msgs and geometry_msgs are identical from Humble on; the bag's own message
# definitions and type hashes are copied wherever the bag has them.
TYPESTORE = get_typestore(Stores.ROS2_HUMBLE)

IMAGE = "sensor_msgs/msg/Image"
COMPRESSED_IMAGE = "sensor_msgs/msg/CompressedImage"
CAMERA_INFO = "sensor_msgs/msg/CameraInfo"
IMAGE_TYPES = (IMAGE, COMPRESSED_IMAGE)

STORAGES: dict[str, StoragePlugin] = {"sqlite3": StoragePlugin.SQLITE3, "mcap": StoragePlugin.MCAP}
_SUFFIX_STORAGE = {".db3": "sqlite3", ".mcap": "mcap"}

# Output topics follow image_transport: `<ns>/enhanced/image` for raw frames and its
# `compressed` transport `<ns>/enhanced/image/compressed` for CompressedImage.
ENHANCED_NAMESPACE = "enhanced"
ENHANCED_BASE = "image"
COMPRESSED_TRANSPORT = "compressed"
DEPTH_TRANSPORT = "compressedDepth"

_PARTIAL = ".partial-"    # hidden work folder beside OUT: .<OUT name>.partial-<pid>
_REPLACED = ".replaced-"  # an old OUT moved aside while the new one takes its place


class BagError(Exception):
    """A bag cannot be read or written as asked; the message says why."""


def open_reader(path: str | Path) -> Reader:
    """An opened Reader for a rosbag2 folder (or a single .db3/.mcap file), else BagError."""
    path = Path(path)
    if not path.exists():
        raise BagError(f"{path}: no such bag (file or folder)")
    if path.is_dir() and not (path / "metadata.yaml").is_file():
        raise BagError(f"{path}: not a rosbag2 bag (the folder has no metadata.yaml)")
    if path.is_file() and path.suffix not in _SUFFIX_STORAGE:
        raise BagError(f"{path}: not a rosbag2 bag (expected a bag folder, a .db3 or an .mcap file)")
    try:
        reader = Reader(path)
        reader.open()
    except Exception as exc:  # rosbags, sqlite and YAML errors alike: all mean "unreadable bag"
        raise BagError(f"{path}: cannot open the bag: {exc}") from exc
    return reader


def storage_of(path: str | Path) -> str:
    """Storage plugin name ("sqlite3" or "mcap") of a bag folder or file."""
    path = Path(path)
    if path.is_file():
        return _SUFFIX_STORAGE[path.suffix]
    try:
        meta = yaml.safe_load((path / "metadata.yaml").read_text())
        storage = meta["rosbag2_bagfile_information"]["storage_identifier"]
    except (OSError, yaml.YAMLError, KeyError, TypeError) as exc:
        raise BagError(f"{path}: cannot read the storage format from metadata.yaml: {exc}") from exc
    if storage not in STORAGES:
        raise BagError(f"{path}: unsupported storage '{storage}' (supported: {', '.join(STORAGES)})")
    return storage


def add_connection_like(writer: Writer, conn: Connection, topic: str | None = None) -> Connection:
    """Add a connection with `conn`'s type, definition, hash, serialization and offered QoS."""
    ext = conn.ext
    if not isinstance(ext, ConnectionExtRosbag2):
        raise BagError(f"topic {conn.topic}: not a rosbag2 connection")
    msgdef, digest = conn.msgdef.data, conn.digest
    if not msgdef or not digest:
        msgdef, digest = _definition_from_typestore(conn, msgdef, digest)
    return writer.add_connection(topic or conn.topic, conn.msgtype, msgdef=msgdef, rihs01=digest,
                                 serialization_format=ext.serialization_format,
                                 offered_qos_profiles=ext.offered_qos_profiles)


def _definition_from_typestore(conn: Connection, msgdef: str, digest: str) -> tuple[str, str]:
    """Fill in what older bags (before rosbag2 format 7/8) did not store."""
    store = TYPESTORE
    if conn.msgtype not in store.types:
        if not msgdef:
            raise BagError(f"topic {conn.topic}: type {conn.msgtype} is unknown and the bag holds no "
                           f"definition of it, so it cannot be copied")
        store = get_typestore(Stores.EMPTY)
        try:
            store.register(get_types_from_msg(msgdef, conn.msgtype))
        except TypesysError as exc:
            raise BagError(f"topic {conn.topic}: cannot parse the definition of {conn.msgtype}: {exc}") from exc
    if not msgdef:
        msgdef, _ = store.generate_msgdef(conn.msgtype, ros_version=2)
    return msgdef, digest or store.hash_rihs01(conn.msgtype)


def is_image_connection(conn: Connection) -> bool:
    """Image or CompressedImage carrying colour frames (compressedDepth topics hold depth maps)."""
    return conn.msgtype in IMAGE_TYPES and posixpath.basename(conn.topic) != DEPTH_TRANSPORT


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


def check_output_path(dst: Path, force: bool) -> None:
    """OUT may be created (or, with force, replaced); BagError otherwise."""
    if dst.exists() and not force:
        raise BagError(f"{dst} exists; pass --force to replace it")
    if dst.exists() and not dst.is_dir():
        raise BagError(f"{dst} exists and is not a bag folder; remove it yourself")
    if not dst.parent.is_dir():
        raise BagError(f"the folder {dst.parent} for {dst.name} does not exist")


@contextmanager
def atomic_bag_output(dst: Path) -> Iterator[Path]:
    """Yield a path to write a bag folder at; it becomes `dst` only when the block completes.

    The bag is written inside a hidden folder beside `dst`; an exception (or Ctrl-C) removes it,
    and a killed run's folder is removed by the next run. An existing `dst` is replaced only once
    the new bag is complete.
    """
    _remove_stale_partials(dst)
    work = dst.parent / f".{dst.name}{_PARTIAL}{os.getpid()}"
    work.mkdir()
    try:
        yield work / dst.name
        old = None
        if dst.exists():
            old = dst.parent / f".{dst.name}{_REPLACED}{os.getpid()}"
            dst.rename(old)
        (work / dst.name).rename(dst)
        if old is not None:
            shutil.rmtree(old)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _remove_stale_partials(dst: Path) -> None:
    """Work folders of earlier runs that were killed (their process is gone)."""
    for p in dst.parent.glob(f".{dst.name}{_PARTIAL}*"):
        try:
            os.kill(int(p.name.rsplit("-", 1)[1]), 0)
            continue  # that run is still going
        except ProcessLookupError:
            pass
        except (ValueError, PermissionError):
            continue
        log.info("removing %s left by an interrupted run", p)
        shutil.rmtree(p, ignore_errors=True)
