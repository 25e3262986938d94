"""Bags this project did not write: nothing lost, nothing destroyed, everything the recorder stored kept.

Inputs come from rosbag2's C++ writer (../shared/data/external-bags, skipped when absent) and from
a second, independent writer: the `mcap` package with `mcap-ros2-support`'s CDR encoder, and plain
sqlite3 in the Humble schema. Outputs are read back with `mcap` and with `rosbags`.
"""
from __future__ import annotations

import json
import shutil
import sqlite3
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
import zstandard
from mcap.reader import make_reader
from mcap.writer import CompressionType, Writer as McapWriter
from mcap_ros2._dynamic import serialize_dynamic
from rosbags.rosbag2 import Reader as RosbagsReader

from dap_led_ros.bag.bag_enhance import BagEnhanceOptions, enhance_bag
from dap_led_ros.bag.bag_errors import BagError
from dap_led_ros.bag.bag_reader import BagReader
from dap_led_ros.bag.sample_bag import SampleBagConfig, make_sample_bag
from dap_led_ros.cli import main as cli_main
from dap_led_ros.enhancer import Enhancer, EnhancerConfig

from conftest import EXTERNAL_BAG_NAMES, EXTERNAL_BAGS as EXTERNAL, needs_external


_SEP = "=" * 80
HEADER_DEFS = (f"{_SEP}\nMSG: std_msgs/Header\nbuiltin_interfaces/Time stamp\nstring frame_id\n"
               f"{_SEP}\nMSG: builtin_interfaces/Time\nint32 sec\nuint32 nanosec\n")
IMAGE_DEF = ("std_msgs/Header header\nuint32 height\nuint32 width\nstring encoding\nuint8 is_bigendian\n"
             "uint32 step\nuint8[] data\n" + HEADER_DEFS)
COMPRESSED_DEF = "std_msgs/Header header\nstring format\nuint8[] data\n" + HEADER_DEFS
IMAGE, COMPRESSED = "sensor_msgs/msg/Image", "sensor_msgs/msg/CompressedImage"
ENCODE = {IMAGE: serialize_dynamic(IMAGE, IMAGE_DEF)[IMAGE],
          COMPRESSED: serialize_dynamic(COMPRESSED, COMPRESSED_DEF)[COMPRESSED]}
QOS = ("- history: 1\n  depth: 5\n  reliability: 2\n  durability: 2\n  deadline:\n    sec: 9223372036\n"
       "    nsec: 854775807\n  lifespan:\n    sec: 9223372036\n    nsec: 854775807\n  liveliness: 1\n"
       "  liveliness_lease_duration:\n    sec: 9223372036\n    nsec: 854775807\n  avoid_ros_namespace_conventions: false")
HASH = "RIHS01_d31d41a9a4c4bc8eae9be757b0beed306564f7526c88ea6a4588fb9582527d47"
T0 = 1_700_000_000_000_000_000


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    torch.set_num_threads(1)


@pytest.fixture(scope="module")
def enhancer(tiny_checkpoint) -> Enhancer:
    return Enhancer(EnhancerConfig(model=str(tiny_checkpoint), backend="torch", threads=1))


def _image(ns: int, encoding: str, data: bytes, width: int, height: int, step: int) -> bytes:
    return ENCODE[IMAGE]({"header": {"stamp": {"sec": ns // 10**9, "nanosec": ns % 10**9}, "frame_id": "cam"},
                          "height": height, "width": width, "encoding": encoding, "is_bigendian": 0,
                          "step": step, "data": data})


def _rgb8(ns: int, w: int = 24, h: int = 16, seed: int = 0) -> bytes:
    px = np.random.default_rng(seed).integers(0, 60, (h, w, 3), dtype=np.uint8)
    return _image(ns, "rgb8", px.tobytes(), w, h, w * 3)


def _compressed(ns: int, fmt: str, data: bytes) -> bytes:
    return ENCODE[COMPRESSED]({"header": {"stamp": {"sec": ns // 10**9, "nanosec": ns % 10**9}, "frame_id": "cam"},
                               "format": fmt, "data": data})


def write_jazzy_mcap(path: Path, compression: CompressionType = CompressionType.ZSTD, json_topic: bool = False,
                     rgbd: bool = False, frames: int = 3) -> dict:
    """An MCAP laid out like `ros2 bag record` (Jazzy): channel metadata with QoS and type hash,
    publish_time != log_time and a per-channel sequence. Returns what was written per topic."""
    path.parent.mkdir(parents=True, exist_ok=True)
    written: dict[str, list[tuple[int, int, int, bytes]]] = {}
    with path.open("wb") as f:
        w = McapWriter(f, chunk_size=4096, compression=compression)
        w.start(profile="ros2", library="test-writer")
        img = w.register_schema(IMAGE, "ros2msg", IMAGE_DEF.encode())
        cmp_ = w.register_schema(COMPRESSED, "ros2msg", COMPRESSED_DEF.encode())
        meta = {"offered_qos_profiles": QOS, "topic_type_hash": HASH}
        channels = {"/cam/color/image_raw": (w.register_channel("/cam/color/image_raw", "cdr", img, meta), IMAGE)}
        if rgbd:
            for topic in ("/cam/depth/image_rect_raw", "/cam/depth/float", "/cam/cv/image"):
                channels[topic] = (w.register_channel(topic, "cdr", img, meta), IMAGE)
            for topic in ("/cam/color/image_raw/zstd", "/cam/depth/image_rect_raw/compressedDepth"):
                channels[topic] = (w.register_channel(topic, "cdr", cmp_, meta), COMPRESSED)
        if json_topic:
            js = w.register_schema("vendor.Status", "jsonschema", b'{"type": "object"}')
            channels["/status"] = (w.register_channel("/status", "json", js, {"source": "vendor"}), None)
        w.add_metadata("vendor", {"site": "test track"})
        w.add_attachment(T0, T0, "calib.yaml", "text/yaml", b"fx: 1.0\n")
        for i in range(frames):
            ns = T0 + i * 100_000_000
            payloads = {"/cam/color/image_raw": _rgb8(ns, seed=i),
                        "/cam/depth/image_rect_raw": _image(ns, "16UC1", bytes(24 * 16 * 2), 24, 16, 48),
                        "/cam/depth/float": _image(ns, "32FC1", bytes(24 * 16 * 4), 24, 16, 96),
                        "/cam/cv/image": _image(ns, "8UC3", bytes(24 * 16 * 3), 24, 16, 72),
                        "/cam/color/image_raw/zstd": _compressed(ns, "rgb8; zstd compressed", zstandard.compress(bytes(99))),
                        "/cam/depth/image_rect_raw/compressedDepth": _compressed(ns, "16UC1; compressedDepth png",
                                                                                  b"\x00" * 12 + b"\x89PNG"),
                        "/status": json.dumps({"ok": True, "i": i}).encode()}
            for topic, (cid, _) in channels.items():
                rec = (ns + 5, ns, 100 + i, payloads[topic])  # log_time, publish_time, sequence, data
                w.add_message(cid, log_time=rec[0], data=rec[3], publish_time=rec[1], sequence=rec[2])
                written.setdefault(topic, []).append(rec)
        w.finish()
    return written


def read_mcap(path: Path) -> tuple[dict, dict, list, list, set]:
    """(messages per topic, channels, metadata, attachments, chunk compressions) of an MCAP file."""
    with path.open("rb") as f:
        r = make_reader(f)
        summary = r.get_summary()
        msgs: dict[str, list] = {}
        for schema, ch, m in r.iter_messages(log_time_order=True):
            msgs.setdefault(ch.topic, []).append((m.log_time, m.publish_time, m.sequence, bytes(m.data)))
        chans = {c.topic: (c.message_encoding, dict(c.metadata),
                           (summary.schemas[c.schema_id].name, summary.schemas[c.schema_id].encoding,
                            summary.schemas[c.schema_id].data) if c.schema_id else None)
                 for c in summary.channels.values()}
        meta = [(m.name, dict(m.metadata)) for m in r.iter_metadata()]
        atts = [(a.name, a.media_type, bytes(a.data)) for a in r.iter_attachments()]
        return msgs, chans, meta, atts, {c.compression for c in summary.chunk_indexes}


def only_file(bag: Path, suffix: str) -> Path:
    (f,) = [p for p in bag.iterdir() if p.name.endswith(suffix)]
    return f


def snapshot(path: Path) -> dict[str, bytes]:
    return {str(p.relative_to(path)): p.read_bytes() for p in sorted(path.rglob("*")) if p.is_file()}


# -- 1. --force never destroys an input or a folder that is not a bag ---------------------------------

def test_force_refuses_an_out_that_contains_the_input(tmp_path, capsys):
    d = tmp_path / "d"
    d.mkdir()
    make_sample_bag(d / "in", SampleBagConfig(frames=2, width=32, height=24), progress=False)
    before = snapshot(d / "in")
    assert cli_main(["bag", str(d / "in"), str(d), "--force"]) == 2
    assert "contains the input" in capsys.readouterr().err
    assert snapshot(d / "in") == before
    # a single .mcap file inside OUT, and OUT reached through a symlink
    single = tmp_path / "e" / "drive.mcap"
    make_sample_bag(tmp_path / "tmpbag", SampleBagConfig(frames=2, width=32, height=24, storage="mcap"), progress=False)
    single.parent.mkdir()
    shutil.copy(only_file(tmp_path / "tmpbag", ".mcap"), single)
    assert cli_main(["bag", str(single), str(tmp_path / "e"), "--force"]) == 2
    assert "contains the input" in capsys.readouterr().err and single.is_file()
    (tmp_path / "link").symlink_to(d)
    assert cli_main(["bag", str(d / "in"), str(tmp_path / "link"), "--force"]) == 2
    assert "symbolic link" in capsys.readouterr().err
    # IN given through a symlink that points into OUT
    (tmp_path / "f").mkdir()
    (tmp_path / "f" / "in_link").symlink_to(d / "in")
    assert cli_main(["bag", str(tmp_path / "f" / "in_link"), str(d), "--force"]) == 2
    assert "contains the input" in capsys.readouterr().err
    assert cli_main(["bag", str(d / "in"), str(d / "in" / "sub"), "--force"]) == 2
    assert "lie inside it" in capsys.readouterr().err
    assert snapshot(d / "in") == before


def test_force_replaces_only_a_bag_folder(tmp_path, enhancer, capsys):
    src = tmp_path / "in"
    make_sample_bag(src, SampleBagConfig(frames=2, width=32, height=24), progress=False)
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "thesis.txt").write_text("years of work")
    assert cli_main(["bag", str(src), str(docs), "--force"]) == 2
    assert "not a rosbag2 bag folder" in capsys.readouterr().err
    assert (docs / "thesis.txt").read_text() == "years of work"
    # a bag folder that also holds a user's file is not replaced either
    shutil.copytree(src, tmp_path / "bag_plus")
    (tmp_path / "bag_plus" / "notes.txt").write_text("mine")
    with pytest.raises(BagError, match="not part of the bag: notes.txt"):
        enhance_bag(src, tmp_path / "bag_plus", enhancer, BagEnhanceOptions(force=True), progress=False)
    (tmp_path / "file.db3").write_bytes(b"x")
    assert cli_main(["bag", str(src), str(tmp_path / "file.db3"), "--force"]) == 2
    assert "is a file" in capsys.readouterr().err and (tmp_path / "file.db3").read_bytes() == b"x"
    # a previous output (a bag folder) is replaced
    enhance_bag(src, tmp_path / "out", enhancer, progress=False)
    enhance_bag(src, tmp_path / "out", enhancer, BagEnhanceOptions(force=True), progress=False)
    assert BagReader(tmp_path / "out").storage_counts()


# -- 2. the C++ writer's bags: every message, counted -------------------------------------------------

@needs_external
@pytest.mark.parametrize("name", ["r2_talker_sqlite3", "r2_talker_mcap"])
def test_cpp_recorded_talker_bags_read_every_message(name):
    """metadata.yaml's QoS strings differ from the storage's: the old reader paired none of them."""
    with BagReader(EXTERNAL / name) as r:
        counts = r.check_counts()
        got = [m.topic.name for m in r.messages()]
    assert len(got) == 20 and got.count("/topic") == 10 and got.count("/rosout") == 10
    assert counts[("/topic", "std_msgs/msg/String")] == 10


def _definitions(db: Path) -> tuple[list, list]:
    con = sqlite3.connect(db)
    try:
        return (sorted(con.execute("SELECT topic_type, encoding, encoded_message_definition, type_description_hash "
                                   "FROM message_definitions")),
                sorted(con.execute("SELECT name, type, type_description_hash FROM topics")))
    finally:
        con.close()


def _add_image_topic(db: Path, meta: Path, frames: int, compress: bool = False) -> None:
    """Insert an Image topic the way the C++ writer would (its own QoS string) into a copied bag."""
    con = sqlite3.connect(db)
    (tid,) = con.execute("INSERT INTO topics (name, type, serialization_format, offered_qos_profiles) "
                         "VALUES ('/cam/image_raw', ?, 'cdr', ?) RETURNING id", (IMAGE, QOS)).fetchone()
    for i in range(frames):
        ns = 1585866235112411371 + i * 1000
        con.execute("INSERT INTO messages (topic_id, timestamp, data) VALUES (?, ?, ?)", (tid, ns, zstandard.compress(_rgb8(ns, seed=i)) if compress else _rgb8(ns, seed=i)))
    con.commit()
    con.close()
    info = yaml.safe_load(meta.read_text())
    b = info["rosbag2_bagfile_information"]
    b["topics_with_message_count"].append({"topic_metadata": {
        "name": "/cam/image_raw", "type": IMAGE, "serialization_format": "cdr",
        "offered_qos_profiles": QOS.replace("depth: 5", "depth: 0")}, "message_count": frames})
    b["message_count"] += frames
    meta.write_text(yaml.safe_dump(info))


@needs_external
def test_cpp_bag_with_an_image_topic_is_copied_whole(tmp_path, enhancer):
    src = tmp_path / "talker"
    shutil.copytree(EXTERNAL / "r2_talker_sqlite3", src)
    _add_image_topic(src / "talker.db3", src / "metadata.yaml", 6)
    summary = enhance_bag(src, tmp_path / "out", enhancer, progress=False)
    assert sum(summary.copied.values()) == 26 and summary.frames == 6
    assert "26 messages on 3 topics copied" in summary.report()
    with RosbagsReader(tmp_path / "out") as r:  # another reader agrees
        assert sum(1 for _ in r.messages()) == 32
    # definitions and hashes exactly as stored (topics without a hash keep none; none computed)
    defs_in, topics_in = _definitions(src / "talker.db3")
    defs_out, topics_out = _definitions(only_file(tmp_path / "out", ".db3"))
    assert defs_out == defs_in
    assert [t for t in topics_out if "enhanced" not in t[0]] == topics_in


def test_count_mismatch_with_metadata_is_an_error(tmp_path, enhancer, capsys):
    src = tmp_path / "in"
    make_sample_bag(src, SampleBagConfig(frames=3, width=32, height=24), progress=False)
    meta = src / "metadata.yaml"
    info = yaml.safe_load(meta.read_text())
    info["rosbag2_bagfile_information"]["topics_with_message_count"][0]["message_count"] += 2
    meta.write_text(yaml.safe_dump(info))
    assert cli_main(["bag", str(src), str(tmp_path / "out")]) == 2
    assert "disagree on the number of messages" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


# -- 3. MCAP: publish_time, sequence, channel metadata, chunk compression, metadata and attachments --

@pytest.mark.parametrize("compression", [CompressionType.ZSTD, CompressionType.LZ4, CompressionType.NONE])
def test_mcap_copy_keeps_everything_the_recorder_wrote(tmp_path, enhancer, compression):
    src = tmp_path / "drive.mcap"
    written = write_jazzy_mcap(src, compression=compression, json_topic=True)
    before = src.read_bytes()
    summary = enhance_bag(src, tmp_path / "out", enhancer, progress=False)
    assert src.read_bytes() == before
    assert summary.frames == 3
    msgs_in, chans_in, meta_in, atts_in, comp_in = read_mcap(src)
    msgs, chans, meta, atts, comp = read_mcap(only_file(tmp_path / "out", ".mcap"))
    for topic, recs in written.items():
        assert msgs[topic] == recs == msgs_in[topic]          # log_time, publish_time, sequence, bytes
        assert chans[topic] == chans_in[topic]                # encoding, QoS, type hash, schema as stored
    enhanced = msgs["/cam/color/enhanced/image"]
    assert [(r[0], r[1], r[2]) for r in enhanced] == [(r[0], r[1], r[2]) for r in written["/cam/color/image_raw"]]
    assert chans["/cam/color/enhanced/image"] == chans["/cam/color/image_raw"]
    assert comp == comp_in == {compression.name.lower() if compression != CompressionType.NONE else ""}
    assert ("vendor", {"site": "test track"}) in meta and atts == atts_in
    rosbag2 = yaml.safe_load(dict(meta)["rosbag2"]["serialized_metadata"])["rosbag2_bagfile_information"]
    assert rosbag2["message_count"] == sum(len(v) for v in msgs.values())
    assert chans["/status"][0] == "json" and chans["/status"][2][1] == "jsonschema"


def test_mcap_to_sqlite3_says_what_sqlite3_cannot_keep(tmp_path, enhancer):
    src = tmp_path / "drive.mcap"
    write_jazzy_mcap(src)
    summary = enhance_bag(src, tmp_path / "out", enhancer, BagEnhanceOptions(storage="sqlite3"), progress=False)
    assert "sqlite3 stores no publish_time or sequence" in summary.report()
    with RosbagsReader(tmp_path / "out") as r:
        c = {c.topic: c for c in r.connections}["/cam/color/image_raw"]
        assert c.digest == HASH and c.msgdef.data == IMAGE_DEF


# -- 4. RGB-D and image_transport: only camera frames are enhanced ------------------------------------

def test_rgbd_bag_enhances_only_the_colour_stream(tmp_path, tiny_checkpoint, capsys):
    src = tmp_path / "rgbd.mcap"
    written = write_jazzy_mcap(src, rgbd=True)
    rc = cli_main(["bag", str(src), str(tmp_path / "out"), "--model", str(tiny_checkpoint), "--backend", "torch",
                   "--threads", "1"])
    out, err = capsys.readouterr()
    assert rc == 0, err
    assert "warning" not in err
    msgs, chans, *_ = read_mcap(only_file(tmp_path / "out", ".mcap"))
    assert set(msgs) == set(chans) == set(written) | {"/cam/color/enhanced/image"}  # no odd empty topics
    for topic in ("/cam/depth/image_rect_raw", "/cam/depth/float", "/cam/cv/image", "/cam/color/image_raw/zstd",
                  "/cam/depth/image_rect_raw/compressedDepth"):
        assert f"{topic}: copied untouched" in out
    assert "encoding 16UC1" in out and "encoding 32FC1" in out and "encoding 8UC3" in out


def test_a_depth_topic_asked_for_by_name_is_refused(tmp_path, enhancer):
    src = tmp_path / "rgbd.mcap"
    write_jazzy_mcap(src, rgbd=True)
    with pytest.raises(BagError, match="/cam/depth/float .encoding 32FC1"):
        enhance_bag(src, tmp_path / "out", enhancer, BagEnhanceOptions(topics=["/cam/depth/float"]), progress=False)


# -- 5. old and vendor bags, refusals ------------------------------------------------------------------

def write_humble_sqlite(path: Path) -> None:
    """A Humble-layout sqlite3 bag with a vendor message type and no stored definitions at all."""
    path.mkdir()
    con = sqlite3.connect(path / "vendor_0.db3")
    con.executescript(
        "CREATE TABLE schema(schema_version INTEGER PRIMARY KEY, ros_distro TEXT NOT NULL);"
        "INSERT INTO schema VALUES (3, 'humble');"
        "CREATE TABLE metadata(id INTEGER PRIMARY KEY, metadata_version INTEGER NOT NULL, metadata TEXT NOT NULL);"
        "CREATE TABLE topics(id INTEGER PRIMARY KEY, name TEXT NOT NULL, type TEXT NOT NULL, "
        "serialization_format TEXT NOT NULL, offered_qos_profiles TEXT NOT NULL);"
        "CREATE TABLE messages(id INTEGER PRIMARY KEY, topic_id INTEGER NOT NULL, timestamp INTEGER NOT NULL, "
        "data BLOB NOT NULL);")
    con.execute("INSERT INTO topics VALUES (1, '/cam/image_raw', ?, 'cdr', ?)", (IMAGE, QOS))
    con.execute("INSERT INTO topics VALUES (2, '/can/frames', 'acme_msgs/msg/CanFrame', 'cdr', ?)", (QOS,))
    for i in range(3):
        ns = T0 + i * 10**8
        con.execute("INSERT INTO messages (topic_id, timestamp, data) VALUES (1, ?, ?)", (ns, _rgb8(ns, seed=i)))
        con.execute("INSERT INTO messages (topic_id, timestamp, data) VALUES (2, ?, ?)", (ns + 1, bytes([0, 1, 0, 0, i])))
    con.commit()
    con.close()
    topics = [{"topic_metadata": {"name": n, "type": t, "serialization_format": "cdr", "offered_qos_profiles": QOS},
               "message_count": 3} for n, t in (("/cam/image_raw", IMAGE), ("/can/frames", "acme_msgs/msg/CanFrame"))]
    (path / "metadata.yaml").write_text(yaml.safe_dump({"rosbag2_bagfile_information": {
        "version": 5, "storage_identifier": "sqlite3", "relative_file_paths": ["vendor_0.db3"],
        "duration": {"nanoseconds": 2 * 10**8 + 1}, "starting_time": {"nanoseconds_since_epoch": T0},
        "message_count": 6, "topics_with_message_count": topics, "compression_format": "", "compression_mode": ""}}))


def test_vendor_type_without_definition_is_copied_not_fatal(tmp_path, enhancer):
    src = tmp_path / "humble"
    write_humble_sqlite(src)
    for options in (BagEnhanceOptions(topics=["/cam/image_raw"]), BagEnhanceOptions(force=True)):
        summary = enhance_bag(src, tmp_path / "out", enhancer, options, progress=False)
        assert summary.frames == 3 and summary.copied["/can/frames"] == 3
    with RosbagsReader(tmp_path / "out") as r:
        conns = {c.topic: c for c in r.connections}
        vendor = [bytes(d) for c, _, d in r.messages([conns["/can/frames"]])]
    assert vendor == [bytes([0, 1, 0, 0, i]) for i in range(3)]
    # nothing filled in from another distro's layout
    assert conns["/cam/image_raw"].msgdef.data == "" and conns["/cam/image_raw"].digest == ""


@needs_external
def test_no_camera_topic_is_refused_before_the_model_loads(tmp_path, capsys):
    rc = cli_main(["bag", str(EXTERNAL / "r2_talker_sqlite3"), str(tmp_path / "out"), "--model", str(tmp_path / "none")])
    assert rc == 2
    err = capsys.readouterr().err
    assert "no colour or mono camera topics" in err and "cannot load the model" not in err


@needs_external
@pytest.mark.parametrize("command", ["bag", "replay"])
def test_ros1_bags_are_refused_as_ros1(tmp_path, capsys, command):
    before = (EXTERNAL / "rosbagjs_example.bag").stat().st_mtime_ns
    args = [command, str(EXTERNAL / "rosbagjs_example.bag")] + ([str(tmp_path / "out")] if command == "bag" else [])
    assert cli_main(args) == 2
    assert "is a ROS 1 bag" in capsys.readouterr().err
    assert (EXTERNAL / "rosbagjs_example.bag").stat().st_mtime_ns == before


def test_max_pixels_zero_is_an_option_error(tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        cli_main(["bag", str(tmp_path / "in"), str(tmp_path / "out"), "--max-pixels", "0"])
    assert exc.value.code == 2
    assert "--max-pixels: must be >= 1" in capsys.readouterr().err


# -- every C++-recorded bag: copied whole or refused clearly ------------------------------------------

@needs_external
@pytest.mark.parametrize("name", EXTERNAL_BAG_NAMES)
def test_every_external_bag_is_read_whole_or_refused(name, tmp_path):
    path = EXTERNAL / name
    before = snapshot(path) if path.is_dir() else {name: path.read_bytes()}
    try:
        reader = BagReader(path)
    except BagError as exc:
        assert name.endswith(".bag") and "ROS 1" in str(exc)
        return
    with reader:
        counts = reader.check_counts()
        read = {}
        for m in reader.messages():
            read[m.topic.key] = read.get(m.topic.key, 0) + 1
    assert read == {k: n for k, n in counts.items() if n}
    assert (snapshot(path) if path.is_dir() else {name: path.read_bytes()}) == before


@needs_external
@pytest.mark.parametrize("name", ["r2_msgcomp_zstd", "r2_wbag_split_sqlite3", "rsrs_test_bag_mcap"])
def test_external_bags_with_a_camera_topic_added_are_copied_whole(name, tmp_path, enhancer):
    """zstd message compression and split files are kept through a copy (rsrs has its own images);
    file compression: the next test."""
    src = tmp_path / name
    shutil.copytree(EXTERNAL / name, src)
    if not name.startswith("rsrs"):
        meta = yaml.safe_load((src / "metadata.yaml").read_text())["rosbag2_bagfile_information"]
        first = src / Path(meta["relative_file_paths"][0]).name
        _add_image_topic(first, src / "metadata.yaml", 2, compress=name == "r2_msgcomp_zstd")
    with BagReader(src) as r:
        expected = r.check_counts()
        mode = r.compression_mode
    summary = enhance_bag(src, tmp_path / "out", enhancer, progress=False)
    with BagReader(tmp_path / "out") as out:
        got = out.check_counts()
        assert out.compression_mode == mode
    for key, n in expected.items():
        assert got[key] == n
    assert sum(summary.copied.values()) == sum(expected.values())


@needs_external
def test_file_compressed_bag_copy_stays_file_compressed(tmp_path, enhancer):
    src = tmp_path / "talker"
    shutil.copytree(EXTERNAL / "r2_talker_sqlite3", src)
    _add_image_topic(src / "talker.db3", src / "metadata.yaml", 2)
    meta = yaml.safe_load((src / "metadata.yaml").read_text())
    raw = (src / "talker.db3").read_bytes()
    (src / "talker.db3.zstd").write_bytes(zstandard.compress(raw))
    (src / "talker.db3").unlink()
    b = meta["rosbag2_bagfile_information"]
    b.update(relative_file_paths=["talker.db3.zstd"], compression_mode="FILE", compression_format="zstd")
    (src / "metadata.yaml").write_text(yaml.safe_dump(meta))
    enhance_bag(src, tmp_path / "out", enhancer, progress=False)
    assert only_file(tmp_path / "out", ".db3.zstd")
    with RosbagsReader(tmp_path / "out") as r:
        assert r.compression_mode == "file" and sum(1 for _ in r.messages()) == 24


@needs_external
@pytest.mark.parametrize("name", EXTERNAL_BAG_NAMES)
def test_dap_led_bag_on_every_external_bag_copies_all_or_refuses_clearly(name, tmp_path, tiny_checkpoint, capsys):
    rc = cli_main(["bag", str(EXTERNAL / name), str(tmp_path / "out"), "--model", str(tiny_checkpoint),
                   "--backend", "torch", "--threads", "1"])
    out, err = capsys.readouterr()
    if rc == 2:
        assert ("is a ROS 1 bag" in err) if name.endswith(".bag") else ("no colour or mono camera topics" in err), err
        assert not (tmp_path / "out").exists()
        return
    assert rc in (0, 1), err  # 1: frames that cannot be decoded (rsrs's dummy images), listed, copied
    with BagReader(EXTERNAL / name) as src:
        counts = src.check_counts()
    assert f"{sum(counts.values())} messages on {len(counts)} topics copied" in out
    with BagReader(tmp_path / "out") as copy:
        got = copy.check_counts()
    assert all(got[key] == n for key, n in counts.items())
