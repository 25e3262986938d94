"""`dap-led bag IN OUT`: a rosbag2 recording in, the same recording plus enhanced frames out.

Every input message is copied byte for byte (same topic, type, definition, offered QoS,
timestamp). For every Image / CompressedImage on the chosen topics one enhanced message with
the same header and timestamp is added on `<ns>/enhanced/image` (raw) or
`<ns>/enhanced/image/compressed` (same codec), see `bag_io.enhanced_topic`, and `<ns>/camera_info`
is copied to `<ns>/enhanced/camera_info`, as the enhance node does live. A frame that cannot
be decoded is reported with its topic and timestamp and only copied. OUT is written in a hidden
folder beside it and renamed into place at the end, so an interrupted run leaves no OUT.
"""
from __future__ import annotations

import argparse
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

from rosbags.interfaces import Connection
from rosbags.rosbag2 import CompressionFormat, CompressionMode, Reader, Writer
from tqdm import tqdm

from ..enhance_cli import add_backend_args, enhancer_from_args
from ..enhancer import Enhancer
from ..image_encoding import ImageEncodingError
from .bag_io import (
    CAMERA_INFO,
    STORAGES,
    BagError,
    add_connection_like,
    atomic_bag_output,
    camera_info_topics,
    check_output_path,
    enhanced_topic,
    format_stamp,
    is_image_connection,
    open_reader,
    storage_of,
)
from .frames import BagFrame, CompressionSettings, FrameDecodeError, decode_frame, encode_frame


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
    topic_map: dict[str, str] = field(default_factory=dict)          # input -> enhanced topic
    camera_info_map: dict[str, str] = field(default_factory=dict)    # camera_info -> its copy
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
        for src, dst in self.camera_info_map.items():
            lines.append(f"  {src} -> {dst}: copied")
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
                if not isinstance(out, Exception):
                    try:
                        slot.data = encode_frame(frame, out, self.settings)
                        self.summary.enhanced[topic] += 1
                    except (ImageEncodingError, FrameDecodeError) as exc:
                        out = exc
                if isinstance(out, Exception):
                    self.summary.failures.append(FrameFailure(topic, slot.timestamp, f"enhancement failed: {out}"))
                    tqdm.write(f"warning: {self.summary.failures[-1]}; copied unchanged", file=sys.stderr)
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


@dataclass
class _TopicPlan:
    images: dict[str, str]        # input image topic -> enhanced topic
    camera_infos: dict[str, str]  # <ns>/camera_info -> <ns>/enhanced/camera_info (copied beside)


def _plan_topics(reader: Reader, wanted: list[str] | None) -> _TopicPlan:
    """Which topics are enhanced where, checked for unknown names and collisions."""
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
    infos = {}
    for t, m in sorted(images.items()):
        src, dst = camera_info_topics(t, m)
        if src in by_topic and by_topic[src].msgtype == CAMERA_INFO:
            infos[src] = dst
    seen: dict[str, str] = {}
    for src, dst in list(mapping.items()) + list(infos.items()):
        if dst in by_topic:
            raise BagError(f"output topic {dst} for {src} already exists in the input bag "
                           f"(was it enhanced before?); choose topics with --topics")
        if seen.get(dst, src) != src:
            raise BagError(f"{seen[dst]} and {src} would both be written to {dst}; "
                           f"enhance one of them per run with --topics")
        seen[dst] = src
    return _TopicPlan(mapping, infos)


def _check_paths(src: Path, dst: Path, force: bool) -> None:
    if dst.resolve() == src.resolve() or src.resolve() in dst.resolve().parents:
        raise BagError(f"OUT {dst} must not be IN or lie inside it")
    check_output_path(dst, force)


def _set_compression(writer: Writer, reader: Reader) -> None:
    mode = {"file": CompressionMode.FILE, "message": CompressionMode.MESSAGE}.get(reader.compression_mode or "")
    if mode is not None:
        writer.set_compression(mode, CompressionFormat.ZSTD)


def enhance_bag(src: Path, dst: Path, enhancer: Enhancer, options: BagEnhanceOptions | None = None,
                progress: bool = True) -> BagSummary:
    """Write `dst`: every message of `src` plus the enhanced frames. Raises BagError on bad input."""
    options = options or BagEnhanceOptions()
    options.validate()
    src, dst = Path(src), Path(dst)
    _check_paths(src, dst, options.force)
    reader = open_reader(src)
    try:
        plan = _plan_topics(reader, options.topics)
        if not plan.images:
            raise BagError(f"{src} has no Image or CompressedImage topics to enhance")
        storage = options.storage or storage_of(src)
        with atomic_bag_output(dst) as out:
            summary = _convert(reader, out, storage, plan, enhancer, options, progress)
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


def _convert(reader: Reader, out: Path, storage: str, plan: _TopicPlan, enhancer: Enhancer,
             options: BagEnhanceOptions, progress: bool) -> BagSummary:
    mapping = plan.images
    summary = BagSummary(output=out, storage=storage, topic_map=dict(mapping), camera_info_map=dict(plan.camera_infos))
    total = sum(c.msgcount for c in reader.connections if c.topic in mapping)
    writer = Writer(out, version=Writer.VERSION_LATEST, storage_plugin=STORAGES[storage])
    _set_compression(writer, reader)
    writer.open()
    bar = tqdm(total=total, unit="frame", desc="enhance", disable=not progress, mininterval=0.5,
               dynamic_ncols=True)
    try:
        copies = {c.id: add_connection_like(writer, c) for c in reader.connections}
        outputs: dict[str, Connection] = {}  # output topic -> its connection
        for c in reader.connections:
            dst = mapping.get(c.topic) or plan.camera_infos.get(c.topic)
            if dst is not None and dst not in outputs:
                outputs[dst] = add_connection_like(writer, c, topic=dst)
        sink = _EnhancedSink(writer, enhancer, options.batch, options.compression, summary, lambda: bar.update(1))
        started = time.monotonic()
        for conn, timestamp, data in _messages(reader):
            sink.copy(copies[conn.id], timestamp, data)
            summary.copied += 1
            if conn.topic in plan.camera_infos:
                sink.copy(outputs[plan.camera_infos[conn.topic]], timestamp, data)
                continue
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
                    "(same codec), with the original header and timestamp; <ns>/camera_info is copied "
                    "to <ns>/enhanced/camera_info. Every input message is kept byte for byte. Exit status 1 when some frames could not be decoded (they are "
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
    enhancer = enhancer_from_args(args)
    if enhancer is None:
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
