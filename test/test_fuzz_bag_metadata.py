"""Property: whatever metadata.yaml says, the bag reader reads the bag exactly or refuses with BagError.

Two small real bags (sqlite3 and MCAP) are written once; each generated case copies (hard-links)
their storage files into a fresh folder beside a mutated metadata.yaml: wrong types, missing keys,
negative and huge numbers, unknown versions and storage ids, lying counts, path traversal, symbolic
links leading out, non-UTF-8 bytes, YAML aliases and bombs, deep nesting, huge strings, garbage.
The reader (the one `dap-led bag` and `dap-led replay` both use) must then either give every
message exactly as stored, or raise BagError with a short message: never another exception,
never a hang.
"""
from __future__ import annotations

import copy
import os
import shutil
import signal
import tempfile
from pathlib import Path

import pytest
import yaml
from conftest import count_fuzz_case, fuzz_examples
from hypothesis import given, settings
from hypothesis import strategies as st

from dap_led_ros.bag.bag_errors import BagError
from dap_led_ros.bag.bag_reader import BagReader
from dap_led_ros.bag.sample_bag import SampleBagConfig, make_sample_bag

CASE_SECONDS = 30  # a case taking longer is a hang


class _Bag:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.doc = yaml.safe_load((path / "metadata.yaml").read_text())
        self.storage_files = [p for p in path.iterdir() if p.name != "metadata.yaml"]
        with BagReader(path) as r:
            self.counts = r.check_counts()
            self.messages = [(m.topic.name, m.topic.msgtype, m.log_time, m.data) for m in r.messages()]


@pytest.fixture(scope="module")
def bags(tmp_path_factory) -> dict[str, _Bag]:
    root = tmp_path_factory.mktemp("fuzz_bags")
    return {s: _Bag(make_sample_bag(root / f"b_{s}", SampleBagConfig(frames=2, width=32, height=24, storage=s),
                                    progress=False)) for s in ("sqlite3", "mcap")}


# -- what gets generated ------------------------------------------------------------------------------

TRAVERSALS = ["../b.db3", "../../etc/passwd", "/etc/passwd", "a/../../b.mcap", "./{name}", "sub/{name}",
              "{name}/", "", " ", "{name}\x00", "~/{name}", "C:\\{name}", "//{name}", "../{name}",
              "loop_a", "x" * 300 + ".db3", "a/" * 3000 + "{name}", "metadata.yaml", "."]
SCALARS = st.one_of(
    st.none(), st.booleans(),
    st.integers(min_value=-2**70, max_value=2**70), st.sampled_from([0, 1, -1, 2**63 - 1, 2**63, 2**64, 10**40]),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=40), st.sampled_from(["sqlite3", "mcap", "rosbag_v2", "SQLITE3", "zstd", "FILE", "MESSAGE",
                                           "none", "lz4", "2001-12-14", "yes", "0x10", "1e3", "~"]),
    st.builds(lambda n, c: c * n, st.integers(1000, 150_000), st.sampled_from(["x", "é", "/", "\n"])),
    st.binary(max_size=30))
PLAUSIBLE = st.one_of(st.sampled_from(["jazzy", "humble", "", "sqlite3", "mcap", "/camera/image_raw", "/imu",
                                       "sensor_msgs/msg/Image", "cdr", "- history: 1\n  depth: 5"]),
                      st.text(max_size=20))
VALUES = st.recursive(SCALARS, lambda inner: st.one_of(st.lists(inner, max_size=4),
                                                         st.dictionaries(st.text(max_size=8), inner, max_size=4)),
                      max_leaves=12)
KEYS = ["version", "storage_identifier", "relative_file_paths", "message_count", "duration", "starting_time",
        "topics_with_message_count", "compression_format", "compression_mode", "custom_data", "ros_distro", "files"]
TOPIC_KEYS = ["name", "type", "serialization_format", "offered_qos_profiles", "type_description_hash"]


def _paths(doc: dict) -> list[tuple]:
    """Every (container path, key) in the document that a mutation may hit."""
    out: list[tuple] = [((), "rosbag2_bagfile_information")]
    info = doc.get("rosbag2_bagfile_information")
    if not isinstance(info, dict):
        return out
    base = ("rosbag2_bagfile_information",)
    out += [(base, k) for k in KEYS]
    for name, sub in (("duration", "nanoseconds"), ("starting_time", "nanoseconds_since_epoch")):
        if isinstance(info.get(name), dict):
            out.append((base + (name,), sub))
    def entries(key: str) -> list:
        return info[key] if isinstance(info.get(key), list) else []

    for i, entry in enumerate(entries("topics_with_message_count")):
        if isinstance(entry, dict):
            out += [(base + ("topics_with_message_count", i), k) for k in ("message_count", "topic_metadata")]
            if isinstance(entry.get("topic_metadata"), dict):
                out += [(base + ("topics_with_message_count", i, "topic_metadata"), k) for k in TOPIC_KEYS]
    for i, entry in enumerate(entries("files")):
        if isinstance(entry, dict):
            out += [(base + ("files", i), k) for k in ("path", "message_count", "starting_time", "duration")]
    out += [(base + ("relative_file_paths",), i) for i in range(len(entries("relative_file_paths")))]
    return out


def _container(doc: dict, path: tuple):
    for k in path:
        doc = doc[k]
    return doc


@st.composite
def mutated_documents(draw, bag: _Bag) -> dict:
    """The bag's metadata.yaml with 1-4 structural mutations."""
    doc = copy.deepcopy(bag.doc)
    name = bag.storage_files[0].name
    for _ in range(draw(st.sampled_from([1, 1, 1, 2, 3, 4]))):
        paths = _paths(doc)
        # the whole section only now and then: the interesting mutations are deeper
        path, key = draw(st.sampled_from(paths[1:] if len(paths) > 1 and draw(st.integers(0, 19)) else paths))
        try:
            where = _container(doc, path)
        except (KeyError, IndexError, TypeError):
            continue
        if not isinstance(where, (dict, list)) or (
                isinstance(where, list) and not (isinstance(key, int) and key < len(where))):
            continue
        kind = draw(st.sampled_from(["set", "delete", "count", "traverse", "duplicate", "type swap", "plausible",
                                     "plausible"]))
        current = where[key] if (isinstance(where, list) or key in where) else None
        if kind == "delete":
            if isinstance(where, dict):
                where.pop(key, None)
            else:
                del where[key]
        elif kind == "count" and isinstance(current, int) and not isinstance(current, bool):
            where[key] = current + draw(st.sampled_from([-1, 1, 2, -current - 1, 2**63, 10**30]))
        elif kind == "traverse":
            where[key] = draw(st.sampled_from(TRAVERSALS)).replace("{name}", name)
        elif kind == "duplicate" and isinstance(current, list) and current:
            current.append(copy.deepcopy(draw(st.sampled_from(current))))
        elif kind == "type swap" and current is not None:
            where[key] = draw(st.sampled_from([[current], {"value": current}, str(current)[:200], None]))
        elif kind == "plausible":  # the right type, another value: read as is, or a count that disagrees
            where[key] = draw(st.integers(0, 100) if isinstance(current, int) else PLAUSIBLE)
        else:
            where[key] = draw(VALUES)
    return doc


BOMB = ("a0: &a0 [x, x, x, x, x, x, x, x]\n"
        + "".join(f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 8)}]\n" for i in range(1, 10)))


@st.composite
def raw_metadata(draw, bag: _Bag) -> bytes:
    """metadata.yaml bytes broken below the YAML level (encoding, syntax, aliases, nesting, size)."""
    text = yaml.safe_dump(draw(mutated_documents(bag)) if draw(st.booleans()) else bag.doc).encode()
    kind = draw(st.sampled_from(["bytes", "truncate", "bomb", "alias", "merge", "deep flow", "deep block", "tag",
                                 "documents", "garbage", "control", "anchor only"]))
    at = draw(st.integers(0, len(text)))
    if kind == "bytes":
        return text[:at] + draw(st.binary(min_size=1, max_size=8)) + text[at:]
    if kind == "truncate":
        return text[:at]
    if kind == "bomb":
        return BOMB.encode() + text.replace(b"ros_distro: rosbags", b"ros_distro: *a9")
    if kind == "alias":
        return text.replace(b"topics_with_message_count:", b"x: &t [1]\n  topics_with_message_count: *t\n  y:", 1)
    if kind == "merge":
        return b"base: &b {version: 9}\n" + text.replace(b"  version: 9", b"  <<: *b", 1)
    if kind == "deep flow":
        n = draw(st.integers(30, 20_000))
        return text.replace(b"ros_distro: rosbags", b"ros_distro: " + b"[" * n + b"]" * n)
    if kind == "deep block":
        n = draw(st.integers(30, 400))
        return text + b"".join(b" " * i + b"k:\n" for i in range(n))
    if kind == "tag":
        tag = draw(st.sampled_from([b"!!python/object/apply:os.system ['true']", b"!!binary aGVsbG8=",
                                    b"!!timestamp 2001-12-14", b"!custom 3", b"!!float 1", b"!!set {a, b}"]))
        return text.replace(b"message_count: ", b"message_count: " + tag + b" #", 1)
    if kind == "documents":
        return text + b"---\n" + text
    if kind == "garbage":
        return draw(st.binary(max_size=300))
    if kind == "control":
        return text[:at] + draw(st.sampled_from([b"\x00", b"\x07", b"\x1b[2J", b"\r", b"\t", b"\xef\xbb\xbf"])) + text[at:]
    return text.replace(b"ros_distro: rosbags", b"ros_distro: &d rosbags", 1)


# -- the property ---------------------------------------------------------------------------------------

class _Hang(Exception):
    pass


def _alarm(signum, frame):
    raise _Hang(f"a case took more than {CASE_SECONDS} s")


def _check(bag: _Bag, data: bytes, escape: bool = False) -> None:
    """Read a folder with `bag`'s storage files and metadata.yaml `data`: exact, or BagError."""
    count_fuzz_case("bag metadata")
    with tempfile.TemporaryDirectory(prefix="fuzz-meta-") as tmp:
        folder = Path(tmp) / "bag"
        folder.mkdir()
        for f in bag.storage_files:
            if escape:  # a storage file reached through a symbolic link to the original, outside the folder
                (folder / f.name).symlink_to(f)
            else:
                try:
                    os.link(f, folder / f.name)
                except OSError:
                    shutil.copyfile(f, folder / f.name)
        (folder / "metadata.yaml").write_bytes(data)
        (folder / "loop_a").symlink_to("loop_b")  # a symbolic link loop, for the paths that name it
        (folder / "loop_b").symlink_to("loop_a")
        before = {p.name: p.stat().st_mtime_ns for p in bag.storage_files}
        old = signal.signal(signal.SIGALRM, _alarm)
        signal.alarm(CASE_SECONDS)
        try:
            with BagReader(folder) as r:
                counts = r.check_counts()
                got = [(m.topic.name, m.topic.msgtype, m.log_time, m.data) for m in r.messages()]
        except BagError as exc:
            message = str(exc)
            assert message.strip() and len(message) < 3000, message[:3000]
        else:
            assert not escape, "a storage file outside the bag folder was read"
            assert counts == bag.counts
            assert got == bag.messages
        finally:
            signal.alarm(0)
            signal.signal(signal.SIGALRM, old)
        assert {p.name: p.stat().st_mtime_ns for p in bag.storage_files} == before


STORAGES = st.sampled_from(["sqlite3", "mcap"])


@settings(max_examples=fuzz_examples(ci=200, long=2000))
@given(data=st.data())
def test_mutated_metadata_is_read_exactly_or_refused(bags, data):
    bag = bags[data.draw(STORAGES)]
    doc = data.draw(mutated_documents(bag))
    try:
        text = yaml.safe_dump(doc, allow_unicode=data.draw(st.booleans()))
    except yaml.YAMLError:
        return
    _check(bag, text.encode())


@settings(max_examples=fuzz_examples(ci=150, long=1600))
@given(data=st.data())
def test_broken_yaml_is_refused_not_crashed_on(bags, data):
    bag = bags[data.draw(STORAGES)]
    _check(bag, data.draw(raw_metadata(bag)))


@settings(max_examples=fuzz_examples(ci=40, long=400))
@given(data=st.data())
def test_storage_files_behind_links_out_of_the_bag_are_never_read(bags, data):
    bag = bags[data.draw(STORAGES)]
    doc = data.draw(mutated_documents(bag)) if data.draw(st.booleans()) else bag.doc
    _check(bag, yaml.safe_dump(doc).encode(), escape=True)


def test_the_unmutated_documents_are_read_exactly(bags):
    """The property's oracle: the sample bags themselves pass."""
    for bag in bags.values():
        _check(bag, (bag.path / "metadata.yaml").read_bytes())
