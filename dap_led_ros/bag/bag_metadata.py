"""metadata.yaml of a rosbag2 folder, parsed strictly: what it cannot be trusted with is a BagError.

The file is read as UTF-8 YAML with a size cap, no aliases (rosbag2 never writes them, and
nested aliases expand exponentially) and bounded nesting; every field the reader uses is
checked for its type and range; storage file paths must stay inside the bag folder (no
absolute paths, no `..`, no symbolic link leading out).
"""
from __future__ import annotations

import reprlib
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path, PurePath
from typing import Any

import yaml

from dap_led_ros.bag.bag_errors import BagError

MAX_METADATA_BYTES = 8 * 1024 * 1024   # a bag with thousands of topics stays far below this
MAX_DEPTH = 32                         # rosbag2 nests 5 levels deep (v9 QoS lists)
VERSIONS = range(1, 10)                # rosbag2 metadata versions 1-9
INT64_MAX = 2**63 - 1
_YAML_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_SHOW = reprlib.Repr()
_SHOW.maxstring = _SHOW.maxother = 60
_SHOW.maxlevel, _SHOW.maxlist, _SHOW.maxdict = 2, 4, 4


@dataclass
class FileEntry:
    """One entry of `files` (metadata v5+): a storage file with its own message count."""

    path: str
    message_count: int | None


@dataclass
class BagMetadata:
    version: int
    storage: str
    relative_file_paths: list[str]
    compression_mode: str = ""                  # "", "file" or "message"
    compression_format: str = ""
    ros_distro: str = ""
    custom_data: dict[str, str] = field(default_factory=dict)
    message_count: int | None = None            # the total, where given
    starting_time: int | None = None            # ns since epoch, where given
    duration: int | None = None                 # ns, where given
    counts: Counter = field(default_factory=Counter)              # (topic, type) -> messages
    topics: dict[tuple[str, str], dict] = field(default_factory=dict)   # (topic, type) -> topic_metadata
    files: list[FileEntry] = field(default_factory=list)


def brief(value: Any) -> str:
    """An untrusted value shown with a bounded length (quoted and escaped when long or unprintable)."""
    if isinstance(value, str) and len(value) <= _SHOW.maxstring and value.isprintable():
        return value
    return _SHOW.repr(value)


def _show(value: Any) -> str:
    """A bounded description of an untrusted value (never the whole of a huge or nested one)."""
    return f"{type(value).__name__} {_SHOW.repr(value)}"


class _Fields:
    """Typed access to one mapping of the document; `where` names it in errors."""

    def __init__(self, value: Any, where: str) -> None:
        if not isinstance(value, dict):
            raise BagError(f"{where} must be a mapping, got {_show(value)}")
        self.value, self.where = value, where

    def _get(self, key: str, required: bool) -> Any:
        if key not in self.value or self.value[key] is None:
            if required:
                raise BagError(f"{self.where}.{key} is missing")
            return None
        return self.value[key]

    def str(self, key: str, required: bool = False) -> str | None:
        v = self._get(key, required)
        if v is not None and not isinstance(v, str):
            raise BagError(f"{self.where}.{key} must be a string, got {_show(v)}")
        if v is not None and "\x00" in v:
            raise BagError(f"{self.where}.{key} holds a NUL character")
        return v

    def int(self, key: str, required: bool = False, low: int = 0) -> int | None:
        v = self._get(key, required)
        if v is None:
            return None
        if isinstance(v, bool) or not isinstance(v, int):
            raise BagError(f"{self.where}.{key} must be an integer, got {_show(v)}")
        if not low <= v <= INT64_MAX:
            raise BagError(f"{self.where}.{key} is {_SHOW.repr(v)}, out of range ({low}..2^63-1)")
        return v

    def list(self, key: str, required: bool = False) -> list:
        v = self._get(key, required)
        if v is None:
            return []
        if not isinstance(v, list):
            raise BagError(f"{self.where}.{key} must be a list, got {_show(v)}")
        return v

    def map(self, key: str) -> "_Fields | None":
        v = self._get(key, False)
        return None if v is None else _Fields(v, f"{self.where}.{key}")


def load_yaml(data: bytes) -> Any:
    """The YAML document in `data`, refused (BagError) when too big, not UTF-8, aliased or too deep."""
    if len(data) > MAX_METADATA_BYTES:
        raise BagError(f"it is {len(data)} bytes, more than the {MAX_METADATA_BYTES} a metadata file may have")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise BagError(f"it is not UTF-8 text (byte 0x{data[exc.start]:02x} at offset {exc.start})") from None
    try:
        depth = 0
        for event in yaml.parse(text, Loader=_YAML_LOADER):
            if isinstance(event, yaml.AliasEvent):
                raise BagError(f"it uses a YAML alias (*{_SHOW.repr(event.anchor)}) at {_mark(event)}; "
                               f"rosbag2 writes none")
            if isinstance(event, yaml.CollectionStartEvent):
                depth += 1
                if depth > MAX_DEPTH:
                    raise BagError(f"it nests deeper than {MAX_DEPTH} levels at {_mark(event)}")
            elif isinstance(event, yaml.CollectionEndEvent):
                depth -= 1
        return yaml.load(text, Loader=_YAML_LOADER)
    except yaml.YAMLError as exc:
        raise BagError(f"it is not valid YAML: {_bounded(str(exc))}") from None
    except (RecursionError, MemoryError) as exc:
        raise BagError(f"it cannot be parsed ({type(exc).__name__})") from None


def _mark(event: Any) -> str:
    mark = getattr(event, "start_mark", None)
    return f"line {mark.line + 1}, column {mark.column + 1}" if mark is not None else "an unknown position"


def _bounded(text: str, limit: int = 300) -> str:
    return text if len(text) <= limit else text[:limit] + f"... ({len(text) - limit} more characters)"


def parse_metadata(data: bytes) -> BagMetadata:
    """metadata.yaml's bytes as BagMetadata; BagError naming the first field that cannot be trusted."""
    doc = load_yaml(data)
    if not isinstance(doc, dict) or "rosbag2_bagfile_information" not in doc:
        raise BagError(f"it has no rosbag2_bagfile_information mapping (the document is {_show(doc)})")
    info = _Fields(doc["rosbag2_bagfile_information"], "rosbag2_bagfile_information")
    version = info.int("version", required=True)
    if version not in VERSIONS:
        raise BagError(f"metadata version {version} is not one this reader knows "
                       f"({VERSIONS.start}-{VERSIONS.stop - 1})")
    rel = []
    for i, p in enumerate(info.list("relative_file_paths", required=True)):
        if not isinstance(p, str) or not p or "\x00" in p:
            raise BagError(f"relative_file_paths[{i}] must be a file name, got {_show(p)}")
        rel.append(p)
    if not rel:
        raise BagError("relative_file_paths lists no storage file")
    meta = BagMetadata(version=version, storage=info.str("storage_identifier", required=True), relative_file_paths=rel,
                       compression_mode=(info.str("compression_mode") or "").lower(),
                       compression_format=info.str("compression_format") or "",
                       ros_distro=info.str("ros_distro") or "",
                       message_count=info.int("message_count"))
    if meta.compression_mode == "none":
        meta.compression_mode = ""
    custom = info.map("custom_data")
    if custom is not None:
        for k, v in custom.value.items():
            if isinstance(v, (list, dict)) or isinstance(k, (list, dict, tuple)):
                raise BagError(f"custom_data must map names to strings, got {_show(k)}: {_show(v)}")
            meta.custom_data[str(k)] = "" if v is None else str(v)
    start, duration = info.map("starting_time"), info.map("duration")
    meta.starting_time = start.int("nanoseconds_since_epoch") if start else None
    meta.duration = duration.int("nanoseconds") if duration else None
    for i, entry in enumerate(info.list("topics_with_message_count")):
        e = _Fields(entry, f"topics_with_message_count[{i}]")
        tm = e.map("topic_metadata")
        if tm is None:
            raise BagError(f"{e.where}.topic_metadata is missing")
        key = (tm.str("name", required=True), tm.str("type", required=True))
        tm.str("serialization_format")
        tm.str("type_description_hash")
        qos = tm._get("offered_qos_profiles", False)
        if qos is not None and not isinstance(qos, (str, list)):
            raise BagError(f"{tm.where}.offered_qos_profiles must be a string or a list, got {_show(qos)}")
        meta.counts[key] += e.int("message_count", required=True)
        meta.topics[key] = tm.value
    for i, entry in enumerate(info.list("files")):
        e = _Fields(entry, f"files[{i}]")
        meta.files.append(FileEntry(e.str("path", required=True), e.int("message_count")))
        for name, sub in (("starting_time", "nanoseconds_since_epoch"), ("duration", "nanoseconds")):
            m = e.map(name)
            if m is not None:
                m.int(sub)
    return meta


def storage_path(bag: Path, rel: str, version: int) -> Path | None:
    """Where a relative_file_paths entry lies inside `bag` (None: no such file there); BagError for an
    absolute path, `..`, a symbolic link leading out, a name too long or a link loop."""
    p = PurePath(rel)
    if p.is_absolute() or p.anchor:
        raise BagError(f"relative_file_paths names '{brief(rel)}', an absolute path: storage files must lie in "
                       f"the bag folder")
    if ".." in p.parts:
        raise BagError(f"relative_file_paths names '{brief(rel)}', which points outside the bag folder")
    if version < 4 and len(p.parts) == 2:  # rosbag2 before v4 prefixed each file with the bag folder's name
        p = PurePath(p.name)
    target = bag / p
    try:
        base, real = bag.resolve(), target.resolve()
        if base not in real.parents:
            raise BagError(f"relative_file_paths names '{brief(rel)}', which leads outside the bag folder "
                           f"(to {brief(str(real))}); storage files must lie in the bag folder")
        present = real.is_file()
    except (OSError, RuntimeError) as exc:  # a name too long, a symbolic link loop (RuntimeError before 3.13)
        raise BagError(f"relative_file_paths names '{brief(rel)}', which cannot be opened: "
                       f"{brief(str(exc))}") from None
    return target if present else None
