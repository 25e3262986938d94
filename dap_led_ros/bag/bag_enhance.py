"""`dap-led bag IN OUT`: a rosbag2 recording in, the same recording plus enhanced frames out.

Every input message is copied byte for byte (same topic, type, definition, offered QoS,
timestamp). For every Image / CompressedImage on the chosen topics one enhanced message with
the same header and timestamp is added on `<ns>/enhanced/image` (raw) or
`<ns>/enhanced/image/compressed` (same codec), see `bag_io.enhanced_topic`. A frame that cannot
be decoded is reported with its topic and timestamp and only copied. OUT is written in a hidden
folder beside it and renamed into place at the end, so an interrupted run leaves no OUT.
"""
from __future__ import annotations

import argparse
import logging
import os
import shutil
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

from rosbags.interfaces import Connection
from rosbags.rosbag2 import CompressionFormat, CompressionMode, Reader, Writer
from tqdm import tqdm

from ..enhance_cli import add_backend_args, enhancer_config_from_args
from ..enhancer import Enhancer
from .bag_io import (
    STORAGES,
    BagError,
    add_connection_like,
    enhanced_topic,
    format_stamp,
    is_image_connection,
    open_reader,
    storage_of,
)
from .frames import BagFrame, CompressionSettings, FrameDecodeError, decode_frame, encode_frame

log = logging.getLogger(__name__)

_PARTIAL = ".partial-"    # hidden work folder: .<OUT name>.partial-<pid>
_REPLACED = ".replaced-"  # an old OUT being replaced under --force


@dataclass
class BagEnhanceOptions:
    topics: list[str] | None = None     # image topics to enhance; None = every image topic
    storage: str | None = None          # "sqlite3" | "mcap"; None = the input's
    batch: int = 4                      # frames per backend call
    force: bool = False                 # replace an existing OUT
    compression: CompressionSettings = field(default_factory=CompressionSettings)

    def validate(self) -> None:
        if self.batch < 1:
            raise BagError(f"--batch must be >= 1, got {self.batch}")
        if self.storage is not None and self.storage not in STORAGES:
            raise BagError(f"unknown storage '{self.storage}' (use {' or '.join(STORAGES)})")
        try:
            self.compression.validate()
        except ValueError as exc:
            raise BagError(str(exc)) from None


@dataclass
class FrameFailure:
    topic: str
    timestamp: int
    reason: str

    def __str__(self) -> str:
        return f"{self.topic} @ {format_stamp(self.timestamp)}: {self.reason}"


@dataclass
class BagSummary:
    output: Path
    storage: str
    enhanced: Counter = field(default_factory=Counter)   # input topic -> enhanced frames
    topic_map: dict[str, str] = field(default_factory=dict)
    failures: list[FrameFailure] = field(default_factory=list)
    copied: int = 0                                       # input messages copied
    seconds: float = 0.0

    @property
    def frames(self) -> int:
        return sum(self.enhanced.values())

    @property
    def fps(self) -> float:
        return self.frames / self.seconds if self.seconds > 0 else 0.0

    def report(self) -> str:
        lines = [f"wrote {self.output} ({self.storage}): {self.copied} messages copied, "
                 f"{self.frames} frames enhanced in {self.seconds:.1f} s ({self.fps:.2f} frames/s)"]
        for src, dst in self.topic_map.items():
            lines.append(f"  {src} -> {dst}: {self.enhanced[src]} frames")
        if self.failures:
            lines.append(f"  {len(self.failures)} frame(s) not enhanced (copied unchanged):")
            lines += [f"    {f}" for f in self.failures]
        return "\n".join(lines)


@dataclass
class _Pending:
    """A message waiting to be written; `data` stays None until its frame is enhanced."""

    conn: Connection
    timestamp: int
    data: bytes | None


class _EnhancedSink:
    """Holds messages in bag order until their batch is enhanced, then writes them in that order."""

    def __init__(self, writer: Writer, enhancer: Enhancer, batch: int, settings: CompressionSettings,
                 summary: BagSummary, on_frame: Callable[[], None]) -> None:
        self.writer, self.enhancer, self.batch, self.settings = writer, enhancer, batch, settings
        self.summary, self.on_frame = summary, on_frame
        self.queue: list[_Pending] = []
        self.frames: list[tuple[_Pending, BagFrame, str]] = []

    def copy(self, conn: Connection, timestamp: int, data: bytes) -> None:
        if self.queue:
            self.queue.append(_Pending(conn, timestamp, data))
        else:
            self.writer.write(conn, timestamp, data)

    def add_frame(self, out_conn: Connection, timestamp: int, frame: BagFrame, src_topic: str) -> None:
        slot = _Pending(out_conn, timestamp, None)
        self.queue.append(slot)
        self.frames.append((slot, frame, src_topic))
        if len(self.frames) >= self.batch:
            self.flush()

    def flush(self) -> None:
        if self.frames:
            for (slot, frame, topic), out in zip(self.frames, self._enhance([f for _, f, _ in self.frames])):
                if isinstance(out, Exception):
                    self.summary.failures.append(FrameFailure(topic, slot.timestamp, f"enhancement failed: {out}"))
                    tqdm.write(f"warning: {self.summary.failures[-1]}", file=sys.stderr)
                else:
                    slot.data = encode_frame(frame, out, self.settings)
                    self.summary.enhanced[topic] += 1
                self.on_frame()
            self.frames.clear()
        for p in self.queue:
            if p.data is not None:
                self.writer.write(p.conn, p.timestamp, p.data)
        self.queue.clear()

    def _enhance(self, frames: list[BagFrame]) -> list:
        """Enhanced RGB per frame, or the exception that frame raised (one bad frame spoils no batch)."""
        try:
            return self.enhancer.enhance_batch([f.rgb for f in frames])
        except (ValueError, RuntimeError) as exc:
            if len(frames) == 1:
                return [exc]
        out: list = []
        for f in frames:
            try:
                out.append(self.enhancer.enhance(f.rgb))
            except (ValueError, RuntimeError) as exc:
                out.append(exc)
        return out


def _select_topics(reader: Reader, wanted: list[str] | None) -> dict[str, str]:
    """Input image topic -> enhanced output topic, checked for unknown names and collisions."""
    by_topic = {c.topic: c for c in reader.connections}
    images = {c.topic: c.msgtype for c in reader.connections if is_image_connection(c)}
    if wanted:
        unknown = [t for t in wanted if t not in by_topic]
        if unknown:
            raise BagError(f"topic(s) {', '.join(unknown)} not in the bag; its image topics: "
                           f"{', '.join(sorted(images)) or 'none'}")
        not_images = [t for t in wanted if t not in images]
        if not_images:
            raise BagError(f"topic(s) {', '.join(not_images)} hold no colour frames "
                           f"({', '.join(by_topic[t].msgtype for t in not_images)})")
        images = {t: images[t] for t in wanted}
    mapping = {t: enhanced_topic(t, m) for t, m in sorted(images.items())}
    seen: dict[str, str] = {}
    for src, dst in mapping.items():
        if dst in by_topic:
            raise BagError(f"output topic {dst} for {src} already exists in the input bag "
                           f"(was it enhanced before?); choose topics with --topics")
        if dst in seen:
            raise BagError(f"{seen[dst]} and {src} would both be written to {dst}; "
                           f"enhance one of them per run with --topics")
        seen[dst] = src
    return mapping


def _check_paths(src: Path, dst: Path, force: bool) -> None:
    if dst.resolve() == src.resolve() or src.resolve() in dst.resolve().parents:
        raise BagError(f"OUT {dst} must not be IN or lie inside it")
    if dst.exists() and not force:
        raise BagError(f"{dst} exists; pass --force to replace it")
    if dst.exists() and not dst.is_dir():
        raise BagError(f"{dst} exists and is not a bag folder; remove it yourself")
    if not dst.parent.is_dir():
        raise BagError(f"the folder {dst.parent} for OUT does not exist")


def _remove_stale_partials(dst: Path) -> None:
    """Work folders of earlier runs that were killed (their process is gone)."""
    for p in dst.parent.glob(f".{dst.name}{_PARTIAL}*"):
        try:
            pid = int(p.name.rsplit("-", 1)[1])
            os.kill(pid, 0)
            continue  # that run is still going
        except ProcessLookupError:
            pass
        except (ValueError, PermissionError):
            continue
        log.info("removing %s left by an interrupted run", p)
        shutil.rmtree(p, ignore_errors=True)


def _set_compression(writer: Writer, reader: Reader) -> None:
    mode = {"file": CompressionMode.FILE, "message": CompressionMode.MESSAGE}.get(reader.compression_mode or "")
    if mode is not None:
        writer.set_compression(mode, CompressionFormat.ZSTD)


def _install(work: Path, dst: Path) -> None:
    """Move the finished bag to `dst`, replacing an old one only once the new one is complete."""
    old = None
    if dst.exists():
        old = dst.parent / f".{dst.name}{_REPLACED}{os.getpid()}"
        dst.rename(old)
    (work / dst.name).rename(dst)
    if old is not None:
        shutil.rmtree(old)


def enhance_bag(src: Path, dst: Path, enhancer: Enhancer, options: BagEnhanceOptions | None = None,
                progress: bool = True) -> BagSummary:
    """Write `dst`: every message of `src` plus the enhanced frames. Raises BagError on bad input."""
    options = options or BagEnhanceOptions()
    options.validate()
    src, dst = Path(src), Path(dst)
    _check_paths(src, dst, options.force)
    reader = open_reader(src)
    try:
        mapping = _select_topics(reader, options.topics)
        if not mapping:
            raise BagError(f"{src} has no Image or CompressedImage topics to enhance")
        storage = options.storage or storage_of(src)
        _remove_stale_partials(dst)
        work = dst.parent / f".{dst.name}{_PARTIAL}{os.getpid()}"
        work.mkdir()
        try:
            summary = _convert(reader, work / dst.name, storage, mapping, enhancer, options, progress)
            _install(work, dst)
        finally:
            shutil.rmtree(work, ignore_errors=True)
    finally:
        reader.close()
    summary.output = dst
    return summary


def _messages(reader: Reader) -> Iterator[tuple[Connection, int, bytes]]:
    """The bag's messages in order; a storage-level read error becomes a BagError."""
    it = iter(reader.messages())
    while True:
        try:
            item = next(it)
        except StopIteration:
            return
        except Exception as exc:  # sqlite / mcap / zstd errors: the input bag is damaged
            raise BagError(f"cannot read the input bag: {type(exc).__name__}: {exc}") from exc
        yield item


def _convert(reader: Reader, out: Path, storage: str, mapping: dict[str, str], enhancer: Enhancer,
             options: BagEnhanceOptions, progress: bool) -> BagSummary:
    summary = BagSummary(output=out, storage=storage, topic_map=dict(mapping))
    total = sum(c.msgcount for c in reader.connections if c.topic in mapping)
    writer = Writer(out, version=Writer.VERSION_LATEST, storage_plugin=STORAGES[storage])
    _set_compression(writer, reader)
    writer.open()
    bar = tqdm(total=total, unit="frame", desc="enhance", disable=not progress, mininterval=0.5,
               dynamic_ncols=True)
    try:
        copies = {c.id: add_connection_like(writer, c) for c in reader.connections}
        outputs: dict[str, Connection] = {}
        for c in reader.connections:
            if c.topic in mapping and mapping[c.topic] not in outputs:
                outputs[mapping[c.topic]] = add_connection_like(writer, c, topic=mapping[c.topic])
        sink = _EnhancedSink(writer, enhancer, options.batch, options.compression, summary, lambda: bar.update(1))
        started = time.monotonic()
        for conn, timestamp, data in _messages(reader):
            sink.copy(copies[conn.id], timestamp, data)
            summary.copied += 1
            if conn.topic not in mapping:
                continue
            try:
                frame = decode_frame(conn.msgtype, data)
            except FrameDecodeError as exc:
                summary.failures.append(FrameFailure(conn.topic, timestamp, str(exc)))
                tqdm.write(f"warning: {summary.failures[-1]}; copied unchanged", file=sys.stderr)
                bar.update(1)
                continue
            sink.add_frame(outputs[mapping[conn.topic]], timestamp, frame, conn.topic)
        sink.flush()
        summary.seconds = time.monotonic() - started
    except BaseException:
        bar.close()
        writer.abort()
        raise
    bar.close()
    writer.close()
    return summary


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "bag", help="enhance the camera frames of a rosbag2 recording",
        description="Copy a rosbag2 bag (sqlite3 or mcap) and add an enhanced copy of every camera frame: "
                    "Image on <ns>/enhanced/image, CompressedImage on <ns>/enhanced/image/compressed "
                    "(same codec), with the original header and timestamp. Every input message is kept "
                    "byte for byte. Exit status 1 when some frames could not be decoded (they are "
                    "listed and copied unchanged; OUT is still written), 2 on errors.")
    p.add_argument("input", type=Path, metavar="IN", help="rosbag2 folder (or a .db3/.mcap file)")
    p.add_argument("output", type=Path, metavar="OUT", help="new bag folder")
    d = BagEnhanceOptions()
    p.add_argument("--topics", nargs="+", default=None, metavar="TOPIC",
                   help="image topics to enhance (default: every Image/CompressedImage topic)")
    p.add_argument("--force", action="store_true", help="replace OUT if it exists")
    p.add_argument("--storage", choices=sorted(STORAGES), default=d.storage, help="default: the input's")
    p.add_argument("--batch", type=int, default=d.batch, help="frames per backend call (default: %(default)s)")
    p.add_argument("--jpeg-quality", type=int, default=d.compression.jpeg_quality,
                   help="quality of re-encoded JPEG frames (default: %(default)s)")
    p.add_argument("--png-level", type=int, default=d.compression.png_level,
                   help="compression level of re-encoded PNG frames (default: %(default)s)")
    add_backend_args(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    options = BagEnhanceOptions(topics=args.topics, storage=args.storage, batch=args.batch, force=args.force,
                                compression=CompressionSettings(args.jpeg_quality, args.png_level))
    try:
        options.validate()
        _check_paths(args.input, args.output, args.force)
        open_reader(args.input).close()  # fail on a bad bag before loading the model
    except BagError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    try:
        enhancer = Enhancer(enhancer_config_from_args(args))
    except (ValueError, RuntimeError, FileNotFoundError) as exc:
        print(f"error: cannot load the model: {exc}", file=sys.stderr)
        return 2
    try:
        summary = enhance_bag(args.input, args.output, enhancer, options)
    except BagError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"error: cannot write {args.output}: {exc}", file=sys.stderr)
        return 2
    finally:
        enhancer.close()
    print(summary.report())
    return 1 if summary.failures else 0
