"""One rosbag2 storage file as stored: sqlite3 (standard library) or MCAP (`mcap`), topics, counts, messages.

A sqlite3 file is opened read-only (`immutable`); an MCAP file through its summary section. Each
yields its messages in log-time order with what the storage keeps (MCAP: publish_time, sequence).
"""
from __future__ import annotations

import sqlite3
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mcap.exceptions import McapError
from mcap.reader import make_reader

from dap_led_ros.bag.bag_errors import BagError

STORAGE_SUFFIXES = {".db3": "sqlite3", ".mcap": "mcap"}
ROS1_MAGIC = b"#ROSBAG V"
MCAP_MAGIC = b"\x89MCAP"
SQLITE_MAGIC = b"SQLite format 3\x00"


@dataclass
class TopicInfo:
    """One topic (name + type) as the bag stores it."""

    name: str
    msgtype: str
    serialization_format: str = "cdr"
    offered_qos_profiles: str = ""        # the serialized string, exactly as stored
    type_description_hash: str = ""       # RIHS01 hash where the bag has one, else ""
    msgdef: str = ""                      # message definition text where the bag has one, else ""
    msgdef_encoding: str = ""             # "ros2msg", "ros2idl", "jsonschema", ... ("" = none stored)
    msgdef_hash: str = ""                 # sqlite3: the hash stored beside the definition
    metadata: dict[str, str] = field(default_factory=dict)  # MCAP channel metadata, all keys kept

    @property
    def key(self) -> tuple[str, str]:
        return self.name, self.msgtype


@dataclass
class BagRecord:
    topic: TopicInfo
    log_time: int          # ns; rosbag2's "timestamp" (receive time)
    publish_time: int      # ns; MCAP's send time (= log_time where the storage has none)
    sequence: int          # MCAP per-channel sequence (0 where the storage has none)
    data: bytes            # serialized message (decompressed where the bag compresses messages)


@dataclass(frozen=True)
class McapLayout:
    """How an MCAP input was chunked, so that a copy keeps it."""

    compression: str = "zstd"   # "", "zstd" or "lz4"
    chunk_size: int = 768 * 1024


class StorageFile:
    """One .db3 or .mcap file: topics, per-topic counts, messages in log-time order."""

    topics: list[TopicInfo]

    def counts(self) -> Counter:
        raise NotImplementedError

    def messages(self, wanted: set[tuple[str, str]] | None) -> Iterator[tuple[int, int, BagRecord]]:
        raise NotImplementedError

    def time_span(self) -> tuple[int, int] | None:
        """(first, last) log time of the file's messages; None when it has none or does not say."""
        raise NotImplementedError

    def close(self) -> None:
        pass


class Sqlite3File(StorageFile):
    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            self.db = sqlite3.connect(f"file:{path}?mode=ro&immutable=1", uri=True)
            tables = {r[0] for r in self.db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
            if not {"topics", "messages"} <= tables:
                raise BagError(f"{path}: not a rosbag2 sqlite3 file (no topics/messages tables)")
            cols = {r[1] for r in self.db.execute("PRAGMA table_info(topics)")}
            sel = ["id", "name", "type", "serialization_format"] + [
                c if c in cols else "''" for c in ("offered_qos_profiles", "type_description_hash")]
            defs: dict[str, tuple[str, str, str]] = {}
            if "message_definitions" in tables:
                for ttype, enc, text, digest in self.db.execute(
                        "SELECT topic_type, encoding, encoded_message_definition, type_description_hash "
                        "FROM message_definitions"):
                    defs[ttype] = (enc or "", text or "", digest or "")
            self.by_id: dict[int, TopicInfo] = {}
            for tid, name, ttype, fmt, qos, digest in self.db.execute(f"SELECT {', '.join(sel)} FROM topics ORDER BY id"):
                enc, text, def_digest = defs.get(ttype, ("", "", ""))
                self.by_id[tid] = TopicInfo(name, ttype, fmt, qos or "", digest or "", text,
                                            enc if text else "", def_digest)
        except sqlite3.DatabaseError as exc:
            raise BagError(f"{path}: cannot read the sqlite3 file: {exc}") from exc
        self.topics = list(self.by_id.values())

    def counts(self) -> Counter:
        out: Counter = Counter()
        try:
            for tid, n in self.db.execute("SELECT topic_id, COUNT(*) FROM messages GROUP BY topic_id"):
                topic = self.by_id.get(tid)
                out[topic.key if topic else ("<unknown topic id %d>" % tid, "")] += n
        except sqlite3.DatabaseError as exc:
            raise BagError(f"{self.path}: cannot count the messages: {exc}") from exc
        return out

    def time_span(self) -> tuple[int, int] | None:
        try:
            first, last = self.db.execute("SELECT MIN(timestamp), MAX(timestamp) FROM messages").fetchone()
        except sqlite3.DatabaseError as exc:
            raise BagError(f"{self.path}: cannot read the message times: {exc}") from exc
        return None if first is None else (first, last)

    def messages(self, wanted):
        ids = [tid for tid, t in self.by_id.items() if wanted is None or t.key in wanted]
        if not ids:
            return
        query = (f"SELECT id, topic_id, timestamp, data FROM messages WHERE topic_id IN "
                 f"({', '.join('?' * len(ids))}) ORDER BY timestamp, id")
        try:
            for mid, tid, ts, data in self.db.execute(query, ids):
                yield ts, mid, BagRecord(self.by_id[tid], ts, ts, 0, bytes(data))
        except sqlite3.DatabaseError as exc:
            raise BagError(f"{self.path}: cannot read the messages: {exc}") from exc

    def close(self) -> None:
        self.db.close()


class McapFile(StorageFile):
    def __init__(self, path: Path) -> None:
        self.path = path
        self.stream = path.open("rb")
        try:
            self.reader = make_reader(self.stream)
            self.summary = self.reader.get_summary()
            self.header = self.reader.get_header()
        except (McapError, ValueError, EOFError, OSError) as exc:
            self.stream.close()
            raise BagError(f"{path}: cannot read the MCAP file: {type(exc).__name__}: {exc}") from exc
        if self.summary is None:
            self.stream.close()
            raise BagError(f"{path}: the MCAP file has no summary section (an unfinished recording?); "
                           f"recover it with `mcap recover` first")
        self.by_channel: dict[int, TopicInfo] = {}
        for cid, ch in sorted(self.summary.channels.items()):
            schema = self.summary.schemas.get(ch.schema_id)
            meta = dict(ch.metadata)
            self.by_channel[cid] = TopicInfo(
                name=ch.topic, msgtype=schema.name if schema else "",
                serialization_format=ch.message_encoding,
                offered_qos_profiles=meta.get("offered_qos_profiles", ""),
                type_description_hash=meta.get("topic_type_hash", ""),
                msgdef=schema.data.decode("utf-8", "replace") if schema else "",
                msgdef_encoding=schema.encoding if schema else "", metadata=meta)
        self.topics = list(self.by_channel.values())

    def layout(self) -> McapLayout:
        chunks = self.summary.chunk_indexes
        if not chunks:
            return McapLayout(compression="")
        biggest = max(c.uncompressed_size for c in chunks)
        return McapLayout(compression=chunks[0].compression, chunk_size=max(biggest, 1024))

    def counts(self) -> Counter:
        out: Counter = Counter()
        stats = self.summary.statistics
        if stats is not None and (stats.channel_message_counts or not stats.message_count):
            for cid, n in stats.channel_message_counts.items():
                out[self.by_channel[cid].key] += n
            return out
        for _, _, record in self.messages(None):  # no statistics record: count by reading
            out[record.topic.key] += 1
        return out

    def time_span(self) -> tuple[int, int] | None:
        stats = self.summary.statistics
        if stats is None or not stats.message_count:
            return None
        return stats.message_start_time, stats.message_end_time

    def metadata_records(self) -> list[tuple[str, dict[str, str]]]:
        return [(m.name, dict(m.metadata)) for m in self.reader.iter_metadata()]

    def attachments(self) -> list[Any]:
        return list(self.reader.iter_attachments())

    def messages(self, wanted):
        keep = [cid for cid, t in self.by_channel.items() if wanted is None or t.key in wanted]
        if not keep:
            return
        topics = {self.by_channel[c].name for c in keep}
        try:
            for n, (_, channel, msg) in enumerate(self.reader.iter_messages(topics=list(topics),
                                                                            log_time_order=True)):
                topic = self.by_channel[channel.id]
                if wanted is not None and topic.key not in wanted:
                    continue
                yield msg.log_time, n, BagRecord(topic, msg.log_time, msg.publish_time, msg.sequence,
                                                 bytes(msg.data))
        except (McapError, ValueError, EOFError, OSError) as exc:
            raise BagError(f"{self.path}: cannot read the messages: {type(exc).__name__}: {exc}") from exc

    def close(self) -> None:
        self.stream.close()


