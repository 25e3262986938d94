"""`dap-led bag` / `dap-led replay` against a hostile or broken world: a full disk, metadata.yaml
that points outside the bag or lies about its counts, and flags that must never touch an input.

Both commands open bags through the one BagReader, so each metadata refusal is checked for both.
"""
from __future__ import annotations

import os
import re
import resource
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from dap_led_ros.bag.bag_enhance import enhance_bag
from dap_led_ros.bag.bag_errors import BagError
from dap_led_ros.bag.bag_reader import BagReader
from dap_led_ros.bag.sample_bag import SampleBagConfig, make_sample_bag
from dap_led_ros.cli import main as cli_main
from dap_led_ros.enhancer import Enhancer, EnhancerConfig

DAP_LED = [sys.executable, "-m", "dap_led_ros.cli"]
EXIT_WRITE_FAILED = 3


def snapshot(path: Path) -> dict[str, tuple[bytes, int]]:
    """Every file under `path` (or `path` itself) with its bytes and mtime."""
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    return {str(p): (p.read_bytes(), p.stat().st_mtime_ns) for p in files}


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if ".partial-" in p.name or ".replaced-" in p.name)


@pytest.fixture(scope="module")
def bags(tmp_path_factory) -> dict[str, Path]:
    """A small sample drive per storage (written once; tests copy before changing anything)."""
    root = tmp_path_factory.mktemp("hardening")
    return {s: make_sample_bag(root / f"drive_{s}", SampleBagConfig(frames=8, width=64, height=48, storage=s),
                               progress=False) for s in ("sqlite3", "mcap")}


def _copy(bag: Path, dst: Path) -> Path:
    shutil.copytree(bag, dst)
    return dst


def _metadata(bag: Path) -> dict:
    return yaml.safe_load((bag / "metadata.yaml").read_text())


def _write_metadata(bag: Path, doc: dict) -> None:
    (bag / "metadata.yaml").write_text(yaml.safe_dump(doc))


def _info(doc: dict) -> dict:
    return doc["rosbag2_bagfile_information"]


def _storage_file(bag: Path) -> Path:
    (f,) = [p for p in bag.iterdir() if p.name != "metadata.yaml"]
    return f


# -- 1. a full disk: exit 3, a clear message, no partial output, the input untouched -----------------

# A size-limited child must not write bytecode: CPython ignores a short .pyc write, and a truncated
# cache file would break later imports in this checkout.
LIMITED_ENV = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}


def _file_size_limit(limit: int):
    def apply() -> None:  # in the child: writes past `limit` bytes fail with EFBIG instead of killing it
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
    return apply


def _bag_with_file_limit(src: Path, dst: Path, checkpoint: Path, limit: int, *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run(DAP_LED + ["bag", str(src), str(dst), "--model", str(checkpoint), "--backend", "torch",
                                     "--threads", "1", *extra],
                          preexec_fn=_file_size_limit(limit), env=LIMITED_ENV, capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize("storage", ["sqlite3", "mcap"])
def test_full_disk_exits_3_with_the_cause_and_leaves_no_output(tmp_path, bags, tiny_checkpoint, storage):
    src = _copy(bags[storage], tmp_path / "in")
    before = snapshot(src)
    dst = tmp_path / "out"
    proc = _bag_with_file_limit(src, dst, tiny_checkpoint, 60_000)  # the output bag needs several times that
    assert proc.returncode == EXIT_WRITE_FAILED, proc.stderr
    assert f"error: cannot write {dst}: " in proc.stderr, proc.stderr
    assert "(EFBIG)" in proc.stderr or "SQLITE_" in proc.stderr, proc.stderr  # the real cause, named
    assert "Traceback" not in proc.stderr
    assert not dst.exists() and leftovers(tmp_path) == []
    assert snapshot(src) == before


@pytest.mark.parametrize("storage", ["sqlite3", "mcap"])
def test_full_disk_with_force_keeps_the_earlier_output(tmp_path, bags, tiny_checkpoint, storage):
    src = _copy(bags[storage], tmp_path / "in")
    dst = tmp_path / "out"
    enhancer = Enhancer(EnhancerConfig(model=str(tiny_checkpoint), backend="torch", threads=1))
    try:
        enhance_bag(src, dst, enhancer, progress=False)  # an earlier output, written with room to spare
    finally:
        enhancer.close()
    earlier = snapshot(dst)
    proc = _bag_with_file_limit(src, dst, tiny_checkpoint, 60_000, "--force")
    assert proc.returncode == EXIT_WRITE_FAILED, proc.stderr
    assert snapshot(dst) == earlier  # the old OUT is replaced only by a complete new one
    assert leftovers(tmp_path) == []


def test_a_storage_switch_under_a_full_disk_also_exits_3(tmp_path, bags, tiny_checkpoint):
    src = _copy(bags["sqlite3"], tmp_path / "in")
    proc = _bag_with_file_limit(src, tmp_path / "out", tiny_checkpoint, 60_000, "--storage", "mcap")
    assert proc.returncode == EXIT_WRITE_FAILED, proc.stderr
    assert not (tmp_path / "out").exists() and leftovers(tmp_path) == []


@pytest.mark.parametrize("storage", ["sqlite3", "mcap"])
def test_make_sample_bag_on_a_full_disk_says_why_and_leaves_nothing(tmp_path, storage):
    proc = subprocess.run(DAP_LED + ["make-sample-bag", str(tmp_path / "drive"), "--frames", "20", "--storage", storage],
                          preexec_fn=_file_size_limit(30_000), env=LIMITED_ENV,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == EXIT_WRITE_FAILED and "Traceback" not in proc.stderr, proc.stderr
    assert "cannot write the output bag: " in proc.stderr, proc.stderr
    assert not (tmp_path / "drive").exists() and leftovers(tmp_path) == []


# -- 2. storage file paths that leave the bag folder -------------------------------------------------

def _escape(kind: str, bag: Path, outside: Path) -> None:
    """Make metadata.yaml reach the bag's storage file outside the bag folder."""
    f = _storage_file(bag)
    outside.mkdir()
    moved = outside / f.name
    shutil.move(f, moved)
    doc = _metadata(bag)
    info = _info(doc)
    if kind == "dotdot":
        rel = f"../{outside.name}/{f.name}"
    elif kind == "absolute":
        rel = str(moved)
    else:  # a symbolic link in the bag folder that leads out
        (bag / f.name).symlink_to(moved)
        rel = f.name
    info["relative_file_paths"] = [rel]
    for entry in info.get("files") or []:
        entry["path"] = rel
    _write_metadata(bag, doc)


@pytest.mark.parametrize("command", ["bag", "replay"])
@pytest.mark.parametrize("kind,message", [("dotdot", "points outside the bag folder"),
                                          ("absolute", "an absolute path"),
                                          ("symlink", "leads outside the bag folder")])
def test_storage_paths_outside_the_bag_are_refused(tmp_path, bags, capsys, command, kind, message):
    bag = _copy(bags["sqlite3"], tmp_path / "bag")
    _escape(kind, bag, tmp_path / "elsewhere")
    before = snapshot(tmp_path / "elsewhere")
    args = [command, str(bag)] + ([str(tmp_path / "out")] if command == "bag" else [])
    assert cli_main(args) == 2
    err = capsys.readouterr().err
    assert message in err and "relative_file_paths" in err, err
    assert not (tmp_path / "out").exists()
    assert snapshot(tmp_path / "elsewhere") == before


@pytest.mark.parametrize("command", ["bag", "replay"])
@pytest.mark.parametrize("rel", ["loop_a", "n" * 300 + ".db3", "d/" * 3000 + "x.db3"])
def test_storage_paths_that_cannot_be_resolved_are_refused(tmp_path, bags, capsys, command, rel):
    """A symbolic link loop, a name or a path too long for the file system: a refusal, not a traceback."""
    bag = _copy(bags["sqlite3"], tmp_path / "bag")
    (bag / "loop_a").symlink_to("loop_b")
    (bag / "loop_b").symlink_to("loop_a")
    doc = _metadata(bag)
    _info(doc)["relative_file_paths"] = [rel]
    _info(doc).pop("files")
    _write_metadata(bag, doc)
    args = [command, str(bag)] + ([str(tmp_path / "out")] if command == "bag" else [])
    assert cli_main(args) == 2
    err = capsys.readouterr().err
    assert "relative_file_paths names" in err and "cannot be opened" in err and len(err) < 1000, err


def test_a_symlink_that_stays_inside_the_bag_is_read(tmp_path, bags):
    bag = _copy(bags["mcap"], tmp_path / "bag")
    f = _storage_file(bag)
    (bag / "data").mkdir()
    shutil.move(f, bag / "data" / f.name)
    (bag / f.name).symlink_to(Path("data") / f.name)
    with BagReader(bag) as r:
        assert sum(r.check_counts().values()) == sum(1 for _ in r.messages()) > 0


def test_legacy_paths_prefixed_with_the_bag_folder_are_read(tmp_path, bags):
    """rosbag2 before metadata v4 wrote `<bag folder>/<file>`; the folder may since have been renamed."""
    bag = _copy(bags["sqlite3"], tmp_path / "renamed")
    doc = _metadata(bag)
    info = _info(doc)
    name = _storage_file(bag).name
    info.update(version=3, relative_file_paths=[f"recorded_as/{name}"])
    info.pop("files", None)
    _write_metadata(bag, doc)
    with BagReader(bags["sqlite3"]) as original, BagReader(bag) as r:
        assert r.check_counts() == original.check_counts()
        assert [m.data for m in r.messages()] == [m.data for m in original.messages()]


# -- 3. metadata.yaml that lies about what the storage holds -----------------------------------------

def _lie(kind: str, info: dict, bag: Path) -> None:
    topics = info["topics_with_message_count"]
    if kind == "total":
        info["message_count"] += 1
    elif kind == "topic count":
        topics[0]["message_count"] += 2
    elif kind == "topic missing from metadata":
        info["message_count"] -= topics[0]["message_count"]
        del topics[0]
    elif kind == "topic missing from storage":
        topics.append({"topic_metadata": {"name": "/lidar/points", "type": "sensor_msgs/msg/PointCloud2",
                                          "serialization_format": "cdr", "offered_qos_profiles": ""},
                       "message_count": 3})
        info["message_count"] += 3
    elif kind == "topic type":
        topics[0]["topic_metadata"]["type"] = "sensor_msgs/msg/CompressedImage"
    elif kind == "file count":
        info["files"][0]["message_count"] += 1
    elif kind == "file list names a missing file":
        info["relative_file_paths"].append("drive_1.db3")
    elif kind == "files entry names an unlisted file":
        info["files"].append({"path": "drive_9.db3", "message_count": 0})
    elif kind == "file listed twice":
        info["relative_file_paths"] *= 2
    elif kind == "negative duration":
        info["duration"]["nanoseconds"] = -5
    elif kind == "starting_time a string":
        info["starting_time"]["nanoseconds_since_epoch"] = "yesterday"
    elif kind == "negative count":
        topics[0]["message_count"] = -1
    elif kind == "count a float":
        topics[0]["message_count"] = 2.5
    elif kind == "no files":
        info["relative_file_paths"] = []
    elif kind == "unknown version":
        info["version"] = 10
    elif kind == "unknown storage":
        info["storage_identifier"] = "rosbag_v2"
    else:
        raise AssertionError(kind)


LIES = {"total": "message_count is", "topic count": "disagree on the number of messages",
        "topic missing from metadata": "disagree on the number of messages",
        "topic missing from storage": "/lidar/points (sensor_msgs/msg/PointCloud2): metadata.yaml 3, storage 0",
        "topic type": "disagree on the number of messages",
        "file count": "files and the storage files disagree", "file list names a missing file": "are missing",
        "files entry names an unlisted file": "relative_file_paths does not list",
        "file listed twice": "twice", "negative duration": "duration.nanoseconds is -5, out of range",
        "starting_time a string": "nanoseconds_since_epoch must be an integer",
        "negative count": "message_count is -1, out of range", "count a float": "must be an integer",
        "no files": "lists no storage file", "unknown version": "metadata version 10 is not one this reader knows",
        "unknown storage": "unsupported storage"}


@pytest.mark.parametrize("command", ["bag", "replay"])
@pytest.mark.parametrize("kind", sorted(LIES))
def test_metadata_that_lies_is_refused_before_anything_happens(tmp_path, bags, capsys, command, kind):
    bag = _copy(bags["sqlite3"], tmp_path / "bag")
    doc = _metadata(bag)
    _lie(kind, _info(doc), bag)
    _write_metadata(bag, doc)
    before = snapshot(bag)
    with pytest.raises(BagError, match=re.escape(LIES[kind])):
        with BagReader(bag) as r:
            r.check_counts()
    args = [command, str(bag)] + ([str(tmp_path / "out")] if command == "bag" else [])
    assert cli_main(args) == 2  # refused before any model is loaded or anything is published
    assert LIES[kind] in capsys.readouterr().err
    assert not (tmp_path / "out").exists() and snapshot(bag) == before


@pytest.mark.parametrize("storage", ["sqlite3", "mcap"])
def test_wrong_start_and_duration_are_a_warning_and_the_messages_times_are_kept(tmp_path, bags, tiny_checkpoint,
                                                                                storage, capsys):
    bag = _copy(bags[storage], tmp_path / "bag")
    doc = _metadata(bag)
    _info(doc)["starting_time"]["nanoseconds_since_epoch"] = 42
    _info(doc)["duration"]["nanoseconds"] = 7
    _write_metadata(bag, doc)
    with BagReader(bag) as r:
        counts = r.check_counts()
        (warning,) = r.warnings
    assert "starting_time 42 and duration 7 ns do not match the messages' log times" in warning
    rc = cli_main(["bag", str(bag), str(tmp_path / "out"), "--model", str(tiny_checkpoint), "--backend", "torch",
                   "--threads", "1"])
    out, err = capsys.readouterr()
    assert rc == 0, err
    assert "note: " in out and "do not match the messages' log times" in out
    with BagReader(tmp_path / "out") as r:  # the copy's metadata tells the truth
        copied = r.check_counts()
        assert not r.warnings
    assert all(copied[key] == n for key, n in counts.items())


# -- 4. metadata.yaml that cannot be trusted as YAML -------------------------------------------------

BOMB = ("a0: &a0 [x, x, x, x, x, x, x, x, x]\n"
        + "".join(f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 9)}]\n" for i in range(1, 12))
        + "rosbag2_bagfile_information: {version: 9, storage_identifier: mcap, relative_file_paths: [f.mcap], "
          "custom_data: {k: *a11}}\n")  # 9^12 elements once expanded


@pytest.mark.parametrize("command", ["bag", "replay"])
@pytest.mark.parametrize("kind,data,message", [
    ("alias bomb", BOMB.encode(), "YAML alias"),
    ("merge bomb", b"a: &a {x: 1}\nb: &b {<<: [*a, *a]}\nc: {<<: [*b, *b]}\n", "YAML alias"),
    ("deep nesting", b"rosbag2_bagfile_information: " + b"[" * 5000 + b"]" * 5000 + b"\n", "nest"),
    ("deep block nesting", "".join(f"{' ' * i}k:\n" for i in range(200)).encode(), "nests deeper"),
    ("not UTF-8", b"rosbag2_bagfile_information:\n  version: 9\n  ros_distro: \xff\xfe\n", "not UTF-8"),
    ("python tag", b"rosbag2_bagfile_information: !!python/object/apply:os.system [true]\n", "not valid YAML"),
    ("not a mapping", b"- 1\n- 2\n", "no rosbag2_bagfile_information"),
    ("empty", b"", "no rosbag2_bagfile_information"),
    ("two documents", b"a: 1\n---\nb: 2\n", "not valid YAML"),
])
def test_untrustworthy_yaml_is_refused_quickly(tmp_path, bags, capsys, command, kind, data, message):
    bag = _copy(bags["mcap"], tmp_path / "bag")
    (bag / "metadata.yaml").write_bytes(data)
    t0 = time.monotonic()
    args = [command, str(bag)] + ([str(tmp_path / "out")] if command == "bag" else [])
    assert cli_main(args) == 2
    assert time.monotonic() - t0 < 30  # an expanded bomb would take hours and all memory
    err = capsys.readouterr().err
    assert "not a readable rosbag2 metadata file" in err and message in err, err
    assert len(err) < 2000


MERGE_BOMB = "a0: &a0 {k0: 0}\n" + "".join(f"a{i}: &a{i} {{<<: [*a{i - 1}, *a{i - 1}], k{i}: {i}}}\n"
                                            for i in range(1, 40))


def test_a_qos_string_with_a_yaml_bomb_is_not_expanded_by_replay():
    """A guard: replay reads the bag's QoS strings with the same alias-free loader as metadata.yaml."""
    from dap_led_ros.bag.bag_storage import TopicInfo
    from dap_led_ros.bag.replay import _transient_local

    t0 = time.monotonic()
    assert _transient_local(TopicInfo("/tf_static", "tf2_msgs/msg/TFMessage", offered_qos_profiles=MERGE_BOMB)) is False
    assert _transient_local(TopicInfo("/tf_static", "tf2_msgs/msg/TFMessage",
                                      offered_qos_profiles="- durability: 1\n  depth: 1")) is True
    assert time.monotonic() - t0 < 10  # 2^39 merged keys if expanded


def test_force_never_trusts_a_bombed_metadata_in_out(tmp_path, bags, capsys):
    """--force reads OUT's metadata.yaml to decide whether OUT is a bag: a bomb there is refused, OUT kept."""
    src = _copy(bags["sqlite3"], tmp_path / "in")
    dst = _copy(bags["mcap"], tmp_path / "out")
    (dst / "metadata.yaml").write_text(BOMB.replace("relative_file_paths: [f.mcap]", "relative_file_paths: [*a11]"))
    before = snapshot(dst)
    t0 = time.monotonic()
    assert cli_main(["bag", str(src), str(dst), "--force"]) == 2
    assert time.monotonic() - t0 < 30
    assert "not a rosbag2 bag folder" in capsys.readouterr().err
    assert snapshot(dst) == before


def test_huge_metadata_is_refused_without_parsing(tmp_path, bags, monkeypatch):
    from dap_led_ros.bag import bag_metadata

    monkeypatch.setattr(bag_metadata, "MAX_METADATA_BYTES", 10_000)
    bag = _copy(bags["mcap"], tmp_path / "bag")
    doc = _metadata(bag)
    _info(doc)["ros_distro"] = "x" * 20_000
    _write_metadata(bag, doc)
    with pytest.raises(BagError, match="more than the 10000 a metadata file may have"):
        BagReader(bag)


def test_a_huge_string_is_shown_cut_short(tmp_path, bags):
    bag = _copy(bags["mcap"], tmp_path / "bag")
    doc = _metadata(bag)
    _info(doc)["storage_identifier"] = "z" * 500_000
    _write_metadata(bag, doc)
    with pytest.raises(BagError, match="unsupported storage") as exc:
        BagReader(bag)
    assert len(str(exc.value)) < 500


# -- 5. no flag combination deletes or modifies an input --------------------------------------------

def _out_for(relation: str, src: Path) -> Path:
    return {"IN itself": src, "inside IN": src / "sub", "IN's parent": src.parent,
            "IN's storage file": _storage_file(src), "IN's metadata.yaml": src / "metadata.yaml"}[relation]


@pytest.mark.parametrize("flags", [[], ["--force"], ["--force", "--storage", "mcap"],
                                   ["--force", "--topics", "/camera/image_raw", "--storage", "sqlite3"]])
@pytest.mark.parametrize("relation", ["IN itself", "inside IN", "IN's parent", "IN's storage file",
                                      "IN's metadata.yaml"])
def test_no_flags_let_an_output_touch_the_input(tmp_path, bags, capsys, flags, relation):
    src = _copy(bags["sqlite3"], tmp_path / "d" / "in")
    before = snapshot(tmp_path / "d")
    assert cli_main(["bag", str(src), str(_out_for(relation, src)), *flags]) == 2
    assert "error: " in capsys.readouterr().err
    assert snapshot(tmp_path / "d") == before
    assert leftovers(tmp_path / "d") == [] and leftovers(src) == []


def test_an_input_named_like_a_dead_runs_work_folder_is_kept(tmp_path, bags, tiny_checkpoint):
    """A stale `.OUT.partial-<pid>` folder is removed before a run, but never when it is (or holds) the input."""
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    src = _copy(bags["mcap"], tmp_path / f".out.partial-{dead.pid}")
    before = snapshot(src)
    rc = cli_main(["bag", str(src), str(tmp_path / "out"), "--model", str(tiny_checkpoint), "--backend", "torch",
                   "--threads", "1"])
    assert rc == 0
    assert snapshot(src) == before
    with BagReader(tmp_path / "out") as r:
        assert r.check_counts()


def test_replay_never_writes_into_the_bag(tmp_path, bags, capsys):
    """Refused or not, replay opens the bag read-only: a refused bag's folder is byte- and time-identical."""
    bag = _copy(bags["sqlite3"], tmp_path / "bag")
    os.chmod(_storage_file(bag), 0o444)
    doc = _metadata(bag)
    _info(doc)["message_count"] += 1
    _write_metadata(bag, doc)
    before = snapshot(bag)
    assert cli_main(["replay", str(bag)]) == 2
    assert "message_count is" in capsys.readouterr().err
    assert snapshot(bag) == before and sorted(p.name for p in bag.iterdir()) == sorted(Path(p).name for p in before)
