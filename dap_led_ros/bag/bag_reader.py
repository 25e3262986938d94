"""Reading rosbag2 bags as stored: every topic's metadata and every message's times, nothing filled in.

A bag is a rosbag2 folder (metadata.yaml plus .db3 / .mcap files, split, zstd file or message
compressed) or a single .db3 / .mcap file. Topics come from the storage files themselves (the
C++ writer's metadata.yaml QoS strings need not match them), keyed by name and type; messages
come out in log-time order with publish_time and sequence where the storage has them (MCAP).
sqlite3 is read with the standard library, MCAP with the `mcap` package, zstd with `zstandard`.
"""
from __future__ import annotations

import heapq
import logging
import tempfile
from collections import Counter
from collections.abc import Iterable, Iterator
from pathlib import Path, PurePath
from typing import Any

import yaml
import zstandard

from dap_led_ros.bag.bag_errors import BagError
from dap_led_ros.bag.bag_metadata import BagMetadata, brief, parse_metadata, storage_path
from dap_led_ros.bag.bag_storage import (
    MCAP_MAGIC,
    ROS1_MAGIC,
    SQLITE_MAGIC,
    STORAGE_SUFFIXES,
    BagRecord,
    McapFile,
    McapLayout,
    Sqlite3File,
    StorageFile,
    TopicInfo,
)

log = logging.getLogger(__name__)


def _sniff(path: Path) -> bytes:
    try:
        with path.open("rb") as f:
            return f.read(16)
    except OSError as exc:
        raise BagError(f"{path}: cannot read: {exc}") from exc


def _refuse_ros1(path: Path) -> None:
    if _sniff(path).startswith(ROS1_MAGIC):
        raise BagError(f"{path} is a ROS 1 bag (rosbag format 2.0); these tools read ROS 2 (rosbag2) "
                       f"bags only: convert it first, e.g. `rosbags-convert --src {path.name} --dst OUT`")


class BagReader:
    """An open bag. `topics` lists every topic; `messages()` yields them in log-time order."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.version: int | None = None
        self.ros_distro = ""
        self.compression_mode = ""           # "", "file" or "message" (rosbag2's own compression)
        self.compression_format = ""         # "zstd" when compressed
        self.metadata_counts: Counter | None = None   # metadata.yaml's per-topic counts
        self.custom_data: dict[str, str] = {}
        self._yaml_topics: dict[tuple[str, str], dict] = {}   # metadata.yaml's topic_metadata
        self._tmp: tempfile.TemporaryDirectory | None = None
        self.files: list[StorageFile] = []
        self.metadata: BagMetadata | None = None
        self._file_names: list[str] = []     # metadata.yaml's name of each of `files`
        self.warnings: list[str] = []        # what metadata.yaml gets wrong that reading does not depend on
        try:
            self._open()
        except BaseException:
            self.close()
            raise
        merged: dict[tuple[str, str], TopicInfo] = {}
        for f in self.files:
            for t in f.topics:
                merged.setdefault(t.key, t)
        for key, tm in self._yaml_topics.items():  # what only metadata.yaml stores (rosbags' MCAP hash)
            if key in merged:
                t = merged[key]
                t.type_description_hash = t.type_description_hash or str(tm.get("type_description_hash") or "")
                if not t.offered_qos_profiles and tm.get("offered_qos_profiles"):
                    qos = tm["offered_qos_profiles"]
                    t.offered_qos_profiles = qos if isinstance(qos, str) else yaml.safe_dump(qos)
        self.topics: list[TopicInfo] = list(merged.values())

    # -- opening -------------------------------------------------------------------------------
    def _open(self) -> None:
        path = self.path
        if not path.exists():
            raise BagError(f"{path}: no such bag (file or folder)")
        if path.is_file():
            _refuse_ros1(path)
            storage = STORAGE_SUFFIXES.get(path.suffix)
            if storage is None:
                raise BagError(f"{path}: not a rosbag2 bag (expected a bag folder, a .db3 or an .mcap file)")
            self.storage = storage
            self.files = [self._open_file(path, storage)]
            return
        meta_path = path / "metadata.yaml"
        if not meta_path.is_file():
            ros1 = sorted(p.name for p in path.glob("*.bag"))
            hint = f" (it holds ROS 1 bags: {', '.join(ros1)})" if ros1 else ""
            raise BagError(f"{path}: not a rosbag2 bag (the folder has no metadata.yaml){hint}")
        try:
            data = meta_path.read_bytes()
        except OSError as exc:
            raise BagError(f"{meta_path}: cannot read: {exc}") from exc
        try:
            meta = parse_metadata(data)
        except BagError as exc:
            raise BagError(f"{meta_path}: not a readable rosbag2 metadata file: {exc}") from None
        self.metadata = meta
        self.version, self.storage = meta.version, meta.storage
        self.compression_mode, self.compression_format = meta.compression_mode, meta.compression_format
        self.ros_distro, self.custom_data = meta.ros_distro, dict(meta.custom_data)
        self.metadata_counts = meta.counts
        self._yaml_topics = meta.topics
        if self.storage not in STORAGE_SUFFIXES.values():
            raise BagError(f"{path}: unsupported storage '{brief(self.storage)}' (supported: sqlite3, mcap)")
        if self.compression_mode and self.compression_format != "zstd":
            raise BagError(f"{path}: unsupported compression '{brief(self.compression_format)}' "
                           f"(supported: zstd)")
        if self.compression_mode not in ("", "file", "message"):
            raise BagError(f"{path}: unknown compression mode '{brief(self.compression_mode)}'")
        try:
            found = [storage_path(path, rel, meta.version) for rel in meta.relative_file_paths]
        except BagError as exc:
            raise BagError(f"{path}: {exc}") from None
        missing = [rel for rel, p in zip(meta.relative_file_paths, found) if p is None]
        paths = [p for p in found if p is not None]
        if missing:
            raise BagError(f"{path}: storage file(s) listed in metadata.yaml are missing: "
                           f"{', '.join(brief(m) for m in missing)}")
        seen: set[Path] = set()
        for rel, p in zip(meta.relative_file_paths, paths):
            if p.resolve() in seen:
                raise BagError(f"{path}: metadata.yaml lists the storage file {brief(rel)} twice")
            seen.add(p.resolve())
        listed = {PurePath(rel).name for rel in meta.relative_file_paths}
        unlisted = [f.path for f in meta.files if PurePath(f.path).name not in listed]
        if unlisted:
            raise BagError(f"{path}: metadata.yaml's files name storage file(s) that relative_file_paths does not "
                           f"list: {', '.join(brief(u) for u in unlisted)}")
        self._file_names = [PurePath(rel).name for rel in meta.relative_file_paths]
        for p in paths:
            self.files.append(self._open_file(self._decompressed(p), self.storage))

    def _decompressed(self, p: Path) -> Path:
        if self.compression_mode != "file":
            return p
        if self._tmp is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="dap-led-bag-")
        out = Path(self._tmp.name) / (p.stem if p.suffix == ".zstd" else p.name)
        try:
            with p.open("rb") as src, out.open("wb") as dst:
                zstandard.ZstdDecompressor().copy_stream(src, dst)
        except (zstandard.ZstdError, OSError) as exc:
            raise BagError(f"{p}: cannot decompress the zstd file: {exc}") from exc
        return out

    def _open_file(self, p: Path, storage: str) -> StorageFile:
        magic = _sniff(p)
        if storage == "mcap":
            if not magic.startswith(MCAP_MAGIC):
                raise BagError(f"{p}: not an MCAP file (first bytes {magic[:8].hex()})")
            return McapFile(p)
        if not magic.startswith(SQLITE_MAGIC):
            raise BagError(f"{p}: not a sqlite3 file (first bytes {magic[:8].hex()})")
        return Sqlite3File(p)

    # -- what it holds ---------------------------------------------------------------------------
    def topic(self, name: str) -> list[TopicInfo]:
        return [t for t in self.topics if t.name == name]

    def storage_counts(self) -> Counter:
        """Messages per (topic, type) as the storage files count them."""
        out: Counter = Counter()
        for f in self.files:
            out.update(f.counts())
        return out

    def check_counts(self, topics: Iterable[tuple[str, str]] | None = None) -> Counter:
        """The storage's per-topic counts, after checking metadata.yaml's counts against them.

        Per topic (only `topics` when given), the total and, where metadata.yaml has them, per
        file: any difference is a BagError naming the numbers. Start time and duration are not
        needed to read a bag: a difference there is only a warning (logged, kept in `warnings`).
        """
        per_file = [f.counts() for f in self.files]
        counts: Counter = sum(per_file, Counter())
        meta = self.metadata
        if self.metadata_counts is not None:
            keys = set(counts) | set(self.metadata_counts)
            if topics is not None:  # those topics, and any that only metadata.yaml claims
                keys = {k for k in keys if k in set(topics) or k not in counts}
            bad = sorted(k for k in keys if counts.get(k, 0) != self.metadata_counts.get(k, 0))
            if bad:
                listed = "; ".join(f"{brief(n)} ({brief(t)}): metadata.yaml {self.metadata_counts.get((n, t), 0)}, "
                                   f"storage {counts.get((n, t), 0)}" for n, t in bad[:10])
                listed += f"; and {len(bad) - 10} more topics" if len(bad) > 10 else ""
                raise BagError(f"{self.path}: metadata.yaml and the storage files disagree on the number of "
                               f"messages: {listed}")
        if meta is not None:
            total = sum(counts.values())
            if meta.message_count is not None and meta.message_count != total:
                raise BagError(f"{self.path}: metadata.yaml's message_count is {meta.message_count}, but the "
                               f"storage files hold {total} messages")
            stored = {name: sum(c.values()) for name, c in zip(self._file_names, per_file)}
            wrong = [f"{brief(entry.path)}: metadata.yaml {entry.message_count}, storage {stored[PurePath(entry.path).name]}"
                     for entry in meta.files if entry.message_count is not None
                     and entry.message_count != stored[PurePath(entry.path).name]]
            if wrong:
                raise BagError(f"{self.path}: metadata.yaml's files and the storage files disagree on the number "
                               f"of messages: {'; '.join(wrong)}")
            self._check_times(meta, total)
        return counts

    def _check_times(self, meta: BagMetadata, total: int) -> None:
        spans = [f.time_span() for f in self.files]
        if not total or any(s is None for s in spans) or (meta.starting_time is None and meta.duration is None):
            return
        first, last = min(s[0] for s in spans), max(s[1] for s in spans)
        if meta.starting_time not in (None, first) or meta.duration not in (None, last - first):
            warning = (f"{self.path}: metadata.yaml's starting_time {meta.starting_time} and duration "
                       f"{meta.duration} ns do not match the messages' log times ({first} to {last}, "
                       f"{last - first} ns); the messages' own times are used")
            if warning not in self.warnings:
                self.warnings.append(warning)
                log.warning("%s", warning)

    @property
    def mcap_layout(self) -> McapLayout | None:
        mcaps = [f for f in self.files if isinstance(f, McapFile)]
        return mcaps[0].layout() if mcaps else None

    def mcap_metadata_records(self) -> list[tuple[str, dict[str, str]]]:
        return [m for f in self.files if isinstance(f, McapFile) for m in f.metadata_records()]

    def mcap_attachments(self) -> list[Any]:
        return [a for f in self.files if isinstance(f, McapFile) for a in f.attachments()]

    def messages(self, topics: Iterable[tuple[str, str]] | None = None) -> Iterator[BagRecord]:
        """Messages of `topics` (all when None) in log-time order, across every storage file."""
        wanted = None if topics is None else set(topics)
        streams = [f.messages(wanted) for f in self.files]
        message_compressed = self.compression_mode == "message"
        dctx = zstandard.ZstdDecompressor() if message_compressed else None
        for _, _, record in heapq.merge(*[_tag(s, k) for k, s in enumerate(streams)],
                                        key=lambda x: (x[0], x[1])):
            if dctx is not None:
                try:
                    record.data = dctx.decompressobj().decompress(record.data)
                except zstandard.ZstdError as exc:
                    raise BagError(f"{self.path}: message on {record.topic.name} at {record.log_time} "
                                   f"cannot be decompressed: {exc}") from exc
            yield record

    def close(self) -> None:
        for f in self.files:
            f.close()
        self.files = []
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None

    def __enter__(self) -> "BagReader":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _tag(stream: Iterator[tuple[int, int, BagRecord]], k: int) -> Iterator[tuple[int, tuple[int, int], BagRecord]]:
    """Order key (time, (file, position)) so that equal times keep file order."""
    for ts, n, record in stream:
        yield ts, (k, n), record
