"""`dap-led bag IN OUT`: a rosbag2 recording in, the same recording plus enhanced frames out.

Every input message is copied byte for byte (same topic, type, definition, offered QoS, type
hash, log time, send time, sequence), and the per-topic counts read and written are checked
against the input storage's own. For every colour/mono camera frame (Image / CompressedImage on
the chosen topics; depth and other transports are copied untouched) one enhanced message with
the same header and times is added on `<ns>/enhanced/image` (raw) or
`<ns>/enhanced/image/compressed` (same codec), see `bag_io.enhanced_topic`, and `<ns>/camera_info`
is copied to `<ns>/enhanced/camera_info`, as the enhance node does live. A frame that cannot
be decoded is reported with its topic and timestamp and only copied. OUT is written in a hidden
folder beside it and renamed into place at the end, so an interrupted run leaves no OUT.

Every image topic is its own video stream (`Enhancer.stream(topic)`, closed when the bag ends): with
an Enhancer built with `temporal` (the CLI's default) its frames are fused with that topic's previous
ones only, and its history restarts when its log time goes back or jumps by more than the
Enhancer's `temporal_max_gap_s`.
"""
from __future__ import annotations

import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from tqdm import tqdm

from dap_led_ros.bag.bag_errors import BagError
from dap_led_ros.bag.bag_io import (
    CAMERA_INFO,
    IMAGE_TYPES,
    STORAGES,
    camera_frames_reason,
    camera_info_topics,
    enhanced_topic,
    format_stamp,
)
from dap_led_ros.bag.bag_output import atomic_bag_output, check_output_path
from dap_led_ros.bag.bag_reader import BagReader
from dap_led_ros.bag.bag_storage import BagRecord, TopicInfo
from dap_led_ros.bag.bag_writer import BagWriter, OutputSettings
from dap_led_ros.bag.frames import BagFrame, CompressionSettings, FrameDecodeError, decode_frame, encode_frame
from dap_led_ros.enhancer import Enhancer
from dap_led_ros.imaging.image_encoding import ImageEncodingError

LOG_TIME = "log time"  # the clock a topic's stream follows (frame_id is not checked in a bag)


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
    untouched: dict[str, str] = field(default_factory=dict)          # image-typed topic -> why not enhanced
    failures: list[FrameFailure] = field(default_factory=list)
    temporal: bool = False                                           # frames fused per topic
    burst: bool = False                                              # input frames merged per topic
    history_restarts: Counter = field(default_factory=Counter)       # input topic -> time jumps that restarted it
    fusion_weight: dict[str, float] = field(default_factory=dict)    # input topic -> history weight in its last frame
    copied: Counter = field(default_factory=Counter)     # input topic -> messages copied
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def frames(self) -> int:
        return sum(self.enhanced.values())

    @property
    def fps(self) -> float:
        return self.frames / self.seconds if self.seconds > 0 else 0.0

    def report(self) -> str:
        lines = [f"wrote {self.output} ({self.storage}): {sum(self.copied.values())} messages on "
                 f"{len(self.copied)} topics copied (counts checked against the input's storage), "
                 f"{self.frames} frames enhanced in {self.seconds:.1f} s ({self.fps:.2f} frames/s)"]
        for src, dst in self.topic_map.items():
            restarts = self.history_restarts[src]
            lines.append(f"  {src} -> {dst}: {self.enhanced[src]} frames"
                         + (f" (temporal history restarted {restarts}x on a time jump)" if restarts else ""))
        if self.temporal:
            lines.append("  temporal fusion: on, one history per topic (--no-temporal: each frame on its own)")
        if self.burst:
            lines.append("  burst: on, each topic's aligned input frames merged before the network")
        for src, dst in self.camera_info_map.items():
            lines.append(f"  {src} -> {dst}: copied")
        for topic, why in self.untouched.items():
            lines.append(f"  {topic}: copied untouched, not enhanced ({why})")
        lines += [f"  note: {n}" for n in self.notes]
        if self.failures:
            lines.append(f"  {len(self.failures)} frame(s) not enhanced (copied unchanged):")
            lines += [f"    {f}" for f in self.failures]
        return "\n".join(lines)


@dataclass
class _Pending:
    """A message waiting to be written; `data` stays None until its frame is enhanced."""

    key: tuple[str, str]
    record: BagRecord
    data: bytes | None


class _EnhancedSink:
    """Holds messages in bag order until their batch is enhanced, then writes them in that order."""

    def __init__(self, writer: BagWriter, enhancer: Enhancer, batch: int, settings: CompressionSettings,
                 summary: BagSummary, on_frame: Callable[[], None]) -> None:
        self.writer, self.enhancer, self.batch, self.settings = writer, enhancer, batch, settings
        self.summary, self.on_frame = summary, on_frame
        self.queue: list[_Pending] = []
        self.frames: list[tuple[_Pending, BagFrame]] = []

    def copy(self, key: tuple[str, str], record: BagRecord) -> None:
        if self.queue:
            self.queue.append(_Pending(key, record, record.data))
        else:
            self._write(key, record, record.data)

    def _write(self, key: tuple[str, str], record: BagRecord, data: bytes) -> None:
        self.writer.write(key, record.log_time, data, record.publish_time, record.sequence)

    def add_frame(self, key: tuple[str, str], record: BagRecord, frame: BagFrame) -> None:
        slot = _Pending(key, record, None)
        self.queue.append(slot)
        self.frames.append((slot, frame))
        if len(self.frames) >= self.batch:
            self.flush()

    def flush(self) -> None:
        if self.frames:
            outs = self._enhance([f for _, f in self.frames], [slot.record for slot, _ in self.frames])
            for (slot, frame), out in zip(self.frames, outs):
                topic = slot.record.topic.name
                if not isinstance(out, Exception):
                    try:
                        slot.data = encode_frame(frame, out, self.settings)
                        self.summary.enhanced[topic] += 1
                    except (ImageEncodingError, FrameDecodeError) as exc:
                        out = exc
                if isinstance(out, Exception):
                    self.summary.failures.append(FrameFailure(topic, slot.record.log_time,
                                                              f"enhancement failed: {out}"))
                    tqdm.write(f"warning: {self.summary.failures[-1]}; copied unchanged", file=sys.stderr)
                self.on_frame()
            self.frames.clear()
        for p in self.queue:
            if p.data is not None:
                self._write(p.key, p.record, p.data)
        self.queue.clear()

    def _enhance(self, frames: list[BagFrame], records: list[BagRecord]) -> list:
        """Enhanced RGB per frame, or the exception that frame raised (one bad frame spoils no batch).
        Each frame goes to its topic's stream at its log time. Frames of several sizes go one by one;
        a batch whose network failed left the streams untouched and is retried frame by frame."""
        streams = [self.enhancer.stream(r.topic.name, clock=LOG_TIME) for r in records]
        times = [r.log_time for r in records]
        out: list = []
        try:
            if len({f.rgb.shape for f in frames}) == 1:
                try:
                    out = self.enhancer.enhance_batch([f.rgb for f in frames], streams, times)
                except (ValueError, RuntimeError) as exc:
                    if len(frames) == 1:
                        out = [exc]
            if not out:
                for f, stream, t in zip(frames, streams, times):
                    try:
                        out.append(stream.enhance(f.rgb, t))
                    except (ValueError, RuntimeError) as exc:
                        out.append(exc)
        finally:
            if self.enhancer.cfg.temporal or self.enhancer.cfg.burst:
                for stream in set(streams):
                    if stream.restarts:
                        self.summary.history_restarts[stream.name] = stream.restarts
        return out


@dataclass
class TopicPlan:
    images: dict[str, str]        # input image topic -> enhanced topic
    camera_infos: dict[str, str]  # <ns>/camera_info -> <ns>/enhanced/camera_info (copied beside)
    untouched: dict[str, str]     # Image/CompressedImage topics that are not camera frames -> why


def plan_topics(reader: BagReader, wanted: list[str] | None) -> TopicPlan:
    """Which topics are enhanced where, checked for unknown names, non-camera topics and collisions."""
    by_name: dict[str, TopicInfo] = {}
    for t in reader.topics:
        by_name.setdefault(t.name, t)
    if wanted:
        unknown = [t for t in wanted if t not in by_name]
        if unknown:
            raise BagError(f"topic(s) {', '.join(unknown)} not in the bag; its topics: "
                           f"{', '.join(sorted(by_name)) or 'none'}")
    candidates = [t for t in reader.topics if t.msgtype in IMAGE_TYPES and (not wanted or t.name in wanted)]
    images: dict[str, str] = {}
    untouched: dict[str, str] = {}
    for t in candidates:
        reason = camera_frames_reason(reader, t)
        if reason is None:
            images[t.name] = t.msgtype
        else:
            untouched[t.name] = reason
    if wanted:
        refused = [f"{t} ({untouched.get(t) or by_name[t].msgtype})" for t in wanted if t not in images]
        if refused:
            raise BagError(f"topic(s) {', '.join(refused)} hold no colour or mono camera frames to enhance")
    mapping = {t: enhanced_topic(t, m) for t, m in sorted(images.items())}
    infos = {}
    for t, m in sorted(images.items()):
        src, dst = camera_info_topics(t, m)
        if src in by_name and by_name[src].msgtype == CAMERA_INFO:
            infos[src] = dst
    seen: dict[str, str] = {}
    for src, dst in list(mapping.items()) + list(infos.items()):
        if dst in by_name:
            raise BagError(f"output topic {dst} for {src} already exists in the input bag "
                           f"(was it enhanced before?); choose topics with --topics")
        if seen.get(dst, src) != src:
            raise BagError(f"{seen[dst]} and {src} would both be written to {dst}; "
                           f"enhance one of them per run with --topics")
        seen[dst] = src
    return TopicPlan(mapping, infos, untouched)


def check_paths(src: Path, dst: Path, force: bool) -> None:
    check_output_path(Path(dst), force, inputs=[Path(src)])


@dataclass
class PreparedBag:
    """An opened IN with its plan and its checked per-topic counts, ready to convert."""

    src: Path
    reader: BagReader
    plan: TopicPlan
    counts: Counter          # (topic, type) -> messages, as the storage counts them

    def close(self) -> None:
        self.reader.close()


def prepare(src: Path, dst: Path, options: BagEnhanceOptions) -> PreparedBag:
    """Check the paths, open IN and plan the run: BagError (before any model is loaded) when
    there is nothing to do or the run could not keep every message."""
    options.validate()
    src, dst = Path(src), Path(dst)
    check_paths(src, dst, options.force)
    reader = BagReader(src)
    try:
        plan = plan_topics(reader, options.topics)
        if not plan.images:
            skipped = "; ".join(f"{t}: {why}" for t, why in plan.untouched.items())
            raise BagError(f"{src} has no colour or mono camera topics (Image or CompressedImage) to enhance"
                           + (f" ({skipped})" if skipped else ""))
        counts = reader.check_counts()
    except BaseException:
        reader.close()
        raise
    return PreparedBag(src, reader, plan, counts)


def enhance_prepared(bag: PreparedBag, dst: Path, enhancer: Enhancer, options: BagEnhanceOptions,
                     progress: bool = True) -> BagSummary:
    """Write `dst` from a prepared IN (closed afterwards): every message plus the enhanced frames."""
    dst = Path(dst)
    try:
        storage = options.storage or bag.reader.storage
        with atomic_bag_output(dst, inputs=[bag.src]) as out:
            summary = _convert(bag, out, storage, enhancer, options, progress)
            check_paths(bag.src, dst, options.force)  # nothing changed under us while converting
    finally:
        bag.close()
    summary.output = dst
    return summary


def enhance_bag(src: Path, dst: Path, enhancer: Enhancer, options: BagEnhanceOptions | None = None,
                progress: bool = True) -> BagSummary:
    """Write `dst`: every message of `src` plus the enhanced frames. Raises BagError on bad input."""
    options = options or BagEnhanceOptions()
    return enhance_prepared(prepare(src, dst, options), dst, enhancer, options, progress)


def _output_settings(reader: BagReader, storage: str) -> OutputSettings:
    layout = reader.mcap_layout
    return OutputSettings(storage=storage, compression_mode=reader.compression_mode,
                          mcap=layout if layout is not None else OutputSettings().mcap,
                          ros_distro=reader.ros_distro, custom_data=reader.custom_data)


def _convert(bag: PreparedBag, out: Path, storage: str, enhancer: Enhancer, options: BagEnhanceOptions,
             progress: bool) -> BagSummary:
    reader, plan, expected = bag.reader, bag.plan, bag.counts
    mapping = plan.images
    summary = BagSummary(output=out, storage=storage, topic_map=dict(mapping),
                         camera_info_map=dict(plan.camera_infos), untouched=dict(plan.untouched),
                         temporal=enhancer.cfg.temporal, burst=enhancer.cfg.burst)
    summary.notes += reader.warnings
    total = sum(n for (name, _), n in expected.items() if name in mapping)
    writer = BagWriter(out, _output_settings(reader, storage))
    bar = tqdm(total=total, unit="frame", desc="enhance", disable=not progress, mininterval=0.5,
               dynamic_ncols=True)
    try:
        for t in reader.topics:
            writer.add_topic(t)
        outputs: dict[str, tuple[str, str]] = {}  # input topic -> key of its output topic
        for t in reader.topics:
            dst = mapping.get(t.name) or plan.camera_infos.get(t.name)
            if dst is not None and t.name not in outputs:
                outputs[t.name] = writer.add_topic(t, name=dst)
        for name, data in reader.mcap_metadata_records():
            if name != "rosbag2":  # rosbag2's copy of metadata.yaml describes the input, not OUT
                writer.add_mcap_metadata(name, data)
        for attachment in reader.mcap_attachments():
            writer.add_mcap_attachment(attachment)
        sink = _EnhancedSink(writer, enhancer, options.batch, options.compression, summary, lambda: bar.update(1))
        read: Counter = Counter()
        send_times = 0
        started = time.monotonic()
        for record in reader.messages():
            topic = record.topic
            read[topic.key] += 1
            send_times += record.publish_time != record.log_time or record.sequence != 0
            sink.copy(topic.key, record)
            if topic.name in plan.camera_infos:
                sink.copy(outputs[topic.name], record)
                continue
            if topic.name not in mapping:
                continue
            try:
                frame = decode_frame(topic.msgtype, record.data)
            except FrameDecodeError as exc:
                summary.failures.append(FrameFailure(topic.name, record.log_time, str(exc)))
                tqdm.write(f"warning: {summary.failures[-1]}; copied unchanged", file=sys.stderr)
                bar.update(1)
                continue
            sink.add_frame(outputs[topic.name], record, frame)
        sink.flush()
        summary.seconds = time.monotonic() - started
        _check_kept(expected, read, writer.counts)
        if storage == "sqlite3" and send_times:
            summary.notes.append(f"sqlite3 stores no publish_time or sequence: those of {send_times} messages "
                                 f"are not in OUT (use --storage mcap to keep them)")
        writer.close()
    except BaseException:
        bar.close()
        writer.abort()
        raise
    finally:
        for topic in mapping:  # the recording ends here, and so do its topics' streams
            stream = enhancer.streams.get(topic)
            if stream is not None and stream.fuses:
                summary.fusion_weight[topic] = stream.weight
            enhancer.close_stream(topic)
    bar.close()
    for (name, _), n in sorted(read.items()):
        summary.copied[name] += n
    return summary


def _check_kept(expected: Counter, read: Counter, written: Counter) -> None:
    """Every message the storage holds was read and written once; BagError naming the topics otherwise."""
    bad = []
    for key in sorted(set(expected) | set(read)):
        n_exp, n_read, n_out = expected.get(key, 0), read.get(key, 0), written.get(key, 0)
        if not n_exp == n_read == n_out:
            bad.append(f"{key[0]} ({key[1]}): storage {n_exp}, read {n_read}, written {n_out}")
    if bad:
        raise BagError(f"{len(bad)} topic(s) would not be copied whole, so OUT was not written: " + "; ".join(bad))
