"""Writing a rosbag2 folder (metadata.yaml + one .db3 or .mcap file) that keeps what a reader gave us.

Topics are written with the metadata they were read with (QoS string, type hash, message
definition and its encoding, MCAP channel metadata); messages with log_time, publish_time and
sequence (MCAP; sqlite3 has only the log time). MCAP chunk compression and size, rosbag2 file
or message zstd compression are the caller's choice (the copy passes the input's).
"""
from __future__ import annotations

import sqlite3
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
import zstandard
from mcap.writer import CompressionType
from mcap.writer import Writer as McapWriter

from dap_led_ros import __version__
from dap_led_ros.bag.bag_errors import BagError, storage_writes
from dap_led_ros.bag.bag_storage import McapLayout, TopicInfo

METADATA_VERSION = 8   # QoS as a serialized string, type_description_hash, ros_distro, files
SQLITE_SCHEMA_VERSION = 4
_MCAP_COMPRESSION = {"": CompressionType.NONE, "zstd": CompressionType.ZSTD, "lz4": CompressionType.LZ4}
_LIBRARY = f"dap_led_ros {__version__} (mcap-python)"


@dataclass
class OutputSettings:
    storage: str = "sqlite3"                 # "sqlite3" | "mcap"
    compression_mode: str = ""               # "", "file" or "message" (rosbag2 zstd compression)
    mcap: McapLayout = McapLayout()          # chunking of an MCAP file
    ros_distro: str = ""                     # recorded distro, kept from the input
    custom_data: dict[str, str] | None = None


@dataclass
class _Topic:
    info: TopicInfo
    handle: int
    count: int = 0


class BagWriter:
    """Write a bag folder at `path` (which must not exist yet); a failed write raises BagWriteError."""

    @storage_writes()
    def __init__(self, path: Path, settings: OutputSettings) -> None:
        if settings.storage not in ("sqlite3", "mcap"):
            raise BagError(f"unknown storage '{settings.storage}' (use sqlite3 or mcap)")
        if settings.compression_mode not in ("", "file", "message"):
            raise BagError(f"unknown compression mode '{settings.compression_mode}'")
        if settings.mcap.compression not in _MCAP_COMPRESSION:
            raise BagError(f"MCAP chunk compression '{settings.mcap.compression}' cannot be written "
                           f"(supported: zstd, lz4, none)")
        self.path, self.settings = Path(path), settings
        self.path.mkdir()
        suffix = ".db3" if settings.storage == "sqlite3" else ".mcap"
        self.file = self.path / f"{self.path.name}_0{suffix}"
        self.topics: dict[tuple[str, str], _Topic] = {}
        self.start = self.end = None
        self._cctx = zstandard.ZstdCompressor() if settings.compression_mode == "message" else None
        if settings.storage == "sqlite3":
            self._db = sqlite3.connect(self.file)
            self._db.executescript(
                "CREATE TABLE schema(schema_version INTEGER PRIMARY KEY, ros_distro TEXT NOT NULL);"
                "CREATE TABLE metadata(id INTEGER PRIMARY KEY, metadata_version INTEGER NOT NULL, metadata TEXT NOT NULL);"
                "CREATE TABLE topics(id INTEGER PRIMARY KEY, name TEXT NOT NULL, type TEXT NOT NULL, "
                "serialization_format TEXT NOT NULL, offered_qos_profiles TEXT NOT NULL, "
                "type_description_hash TEXT NOT NULL);"
                "CREATE TABLE message_definitions(id INTEGER PRIMARY KEY, topic_type TEXT NOT NULL, "
                "encoding TEXT NOT NULL, encoded_message_definition TEXT NOT NULL, type_description_hash TEXT NOT NULL);"
                "CREATE TABLE messages(id INTEGER PRIMARY KEY, topic_id INTEGER NOT NULL, timestamp INTEGER NOT NULL, "
                "data BLOB NOT NULL);"
                "CREATE INDEX timestamp_idx ON messages (timestamp ASC);")
            self._db.execute("INSERT INTO schema VALUES (?, ?)", (SQLITE_SCHEMA_VERSION, settings.ros_distro))
            self._defined: set[str] = set()
        else:
            self._stream = self.file.open("wb")
            self._mcap = McapWriter(self._stream, chunk_size=settings.mcap.chunk_size,
                                    compression=_MCAP_COMPRESSION[settings.mcap.compression])
            self._mcap.start(profile="ros2", library=_LIBRARY)
            self._schemas: dict[tuple[str, str, str], int] = {}

    @storage_writes()
    def add_topic(self, info: TopicInfo, name: str | None = None) -> tuple[str, str]:
        """Register `info` (under `name` if given); returns the key to write its messages with."""
        if name is not None:
            info = TopicInfo(**{**info.__dict__, "name": name})
        if info.key in self.topics:
            raise BagError(f"topic {info.name} ({info.msgtype}) is written twice")
        if self.settings.storage == "sqlite3":
            cur = self._db.execute("INSERT INTO topics (name, type, serialization_format, offered_qos_profiles, "
                                   "type_description_hash) VALUES (?, ?, ?, ?, ?)",
                                   (info.name, info.msgtype, info.serialization_format,
                                    info.offered_qos_profiles, info.type_description_hash))
            handle = cur.lastrowid
            if info.msgdef and info.msgtype not in self._defined:
                self._defined.add(info.msgtype)
                self._db.execute("INSERT INTO message_definitions (topic_type, encoding, encoded_message_definition, "
                                 "type_description_hash) VALUES (?, ?, ?, ?)",
                                 (info.msgtype, info.msgdef_encoding, info.msgdef,
                                  info.msgdef_hash or info.type_description_hash))
        else:
            skey = (info.msgtype, info.msgdef_encoding, info.msgdef)
            if skey not in self._schemas:
                self._schemas[skey] = (self._mcap.register_schema(info.msgtype, info.msgdef_encoding,
                                                                  info.msgdef.encode()) if info.msgtype else 0)
            meta = dict(info.metadata)
            if info.offered_qos_profiles:
                meta["offered_qos_profiles"] = info.offered_qos_profiles
            if info.type_description_hash:
                meta["topic_type_hash"] = info.type_description_hash
            handle = self._mcap.register_channel(info.name, info.serialization_format, self._schemas[skey], meta)
        self.topics[info.key] = _Topic(info, handle)
        return info.key

    @storage_writes()
    def write(self, key: tuple[str, str], log_time: int, data: bytes, publish_time: int | None = None,
              sequence: int = 0) -> None:
        topic = self.topics[key]
        if self._cctx is not None:
            data = self._cctx.compress(data)
        if self.settings.storage == "sqlite3":
            self._db.execute("INSERT INTO messages (topic_id, timestamp, data) VALUES (?, ?, ?)",
                             (topic.handle, log_time, data))
        else:
            self._mcap.add_message(topic.handle, log_time, data,
                                   log_time if publish_time is None else publish_time, sequence)
        topic.count += 1
        self.start = log_time if self.start is None else min(self.start, log_time)
        self.end = log_time if self.end is None else max(self.end, log_time)

    @storage_writes()
    def add_mcap_metadata(self, name: str, data: dict[str, str]) -> None:
        if self.settings.storage == "mcap":
            self._mcap.add_metadata(name, data)

    @storage_writes()
    def add_mcap_attachment(self, attachment: Any) -> None:
        if self.settings.storage == "mcap":
            self._mcap.add_attachment(attachment.create_time, attachment.log_time, attachment.name,
                                      attachment.media_type, attachment.data)

    @property
    def counts(self) -> Counter:
        return Counter({k: t.count for k, t in self.topics.items()})

    @storage_writes()
    def close(self) -> None:
        """Finish the storage file, compress it if asked, and write metadata.yaml."""
        if self.settings.storage == "sqlite3":
            self._db.execute("INSERT INTO metadata (metadata_version, metadata) VALUES (?, ?)",
                             (METADATA_VERSION, yaml.safe_dump(self._metadata(self.file.name))))
            self._db.commit()
            self._db.close()
        else:
            # rosbag2 (Iron and later) keeps a copy of metadata.yaml in the file, so that a lone
            # .mcap opens with its topics' metadata
            self._mcap.add_metadata("rosbag2", {"serialized_metadata": yaml.safe_dump(self._metadata(self.file.name))})
            self._mcap.finish()
            self._stream.close()
        name = self.file.name
        if self.settings.compression_mode == "file":
            packed = self.file.with_name(self.file.name + ".zstd")
            with self.file.open("rb") as src, packed.open("wb") as dst:
                zstandard.ZstdCompressor().copy_stream(src, dst)
            self.file.unlink()
            name = packed.name
        (self.path / "metadata.yaml").write_text(yaml.safe_dump(self._metadata(name), sort_keys=False))

    def abort(self) -> None:
        """Release the files (the caller removes the folder)."""
        try:
            if self.settings.storage == "sqlite3":
                self._db.close()
            else:
                self._stream.close()
        except Exception:  # closing after a failure must not hide that failure
            pass

    def _metadata(self, file_name: str) -> dict:
        count = sum(t.count for t in self.topics.values())
        start = self.start or 0
        duration = (self.end - self.start) if count else 0
        topics = [{"topic_metadata": {"name": t.info.name, "type": t.info.msgtype,
                                      "serialization_format": t.info.serialization_format,
                                      "offered_qos_profiles": t.info.offered_qos_profiles,
                                      "type_description_hash": t.info.type_description_hash},
                   "message_count": t.count} for t in self.topics.values()]
        return {"rosbag2_bagfile_information": {
            "version": METADATA_VERSION,
            "storage_identifier": self.settings.storage,
            "duration": {"nanoseconds": duration},
            "starting_time": {"nanoseconds_since_epoch": start},
            "message_count": count,
            "topics_with_message_count": topics,
            "compression_format": "zstd" if self.settings.compression_mode else "",
            "compression_mode": self.settings.compression_mode.upper() if self.settings.compression_mode else "",
            "relative_file_paths": [file_name],
            "files": [{"path": file_name, "starting_time": {"nanoseconds_since_epoch": start},
                       "duration": {"nanoseconds": duration}, "message_count": count}],
            "custom_data": dict(self.settings.custom_data or {}),
            "ros_distro": self.settings.ros_distro,
        }}
