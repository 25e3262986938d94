"""Settings: YAML files read into the dataclasses that hold the defaults, through one loader."""
from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import fields, is_dataclass, replace
from pathlib import Path
from typing import Any, TypeVar, get_type_hints

import yaml

T = TypeVar("T")


def reject_unknown_keys(d: Mapping[str, Any], cls: type, what: str) -> None:
    """ValueError naming the keys of `d` that are not fields of dataclass `cls` (likely typos)."""
    known = sorted(f.name for f in fields(cls))
    unknown = sorted(set(d) - set(known))
    if unknown:
        raise ValueError(f"unknown {what} {unknown}; known: {known}")


def validated_from_mapping(cls: type[T], d: Mapping[str, Any], what: str) -> T:
    """`cls(**d)` after the unknown-key check, then `cls.validate()`."""
    reject_unknown_keys(d, cls, what)
    cfg = cls(**d)
    cfg.validate()
    return cfg


def read_text_file(path: str | Path, what: str) -> str:
    """The UTF-8 text of a settings file; FileNotFoundError when missing, ValueError naming the
    cause when it cannot be read or is not UTF-8 text (a binary file, another encoding)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{what} not found: {path}" + (" (it is a folder)" if path.is_dir() else ""))
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ValueError(f"cannot read {what} {path}: {exc.strerror or exc}") from None
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ValueError(f"{what} {path} is not UTF-8 text (byte 0x{data[exc.start]:02x} at offset {exc.start}); "
                         f"is it the right file?") from None


def load_yaml_mapping(path: str | Path, what: str) -> dict[str, Any]:
    """The top-level mapping of a YAML file ({} when empty), with specific errors."""
    path = Path(path)
    text = read_text_file(path, what)
    try:
        doc = yaml.safe_load(text) or {}
    except yaml.YAMLError as exc:
        raise ValueError(f"{path} is not valid YAML: {exc}") from None
    if not isinstance(doc, dict):
        raise ValueError(f"{path}: expected a mapping at the top level, got {type(doc).__name__}")
    return doc


def _plain_convert(name: str, value: Any, kind: Any, default: Any) -> Any:
    """YAML values as the dataclass holds them: lists become tuples where the default is one."""
    if isinstance(default, tuple):
        if not isinstance(value, (list, tuple)):
            raise ValueError(f"{name} must be a list, got {value!r}")
        return tuple(value)
    return value


def dataclass_from_mapping(cls: type[T], d: Mapping[str, Any] | None, where: str, *, base: T | None = None,
                           convert: Callable[[str, Any, Any, Any], Any] = _plain_convert) -> T:
    """The one loader of nested settings: `base` (default `cls()`) with the keys of `d` replaced.

    Nested dataclass fields take nested mappings (recursively, on the base's value); unknown keys
    are a ValueError naming them; leaf values go through `convert(name, value, type, default)`.
    Validation is the caller's (`cfg.validate()`), so that it runs once on the whole tree.
    """
    if d is None:
        d = {}
    if not isinstance(d, Mapping):
        raise ValueError(f"{where}: expected a mapping, got {type(d).__name__}")
    reject_unknown_keys(d, cls, f"{where} keys")
    base = cls() if base is None else base
    hints = get_type_hints(cls)
    changes: dict[str, Any] = {}
    for key, value in d.items():
        default = getattr(base, key)
        if is_dataclass(default):
            changes[key] = dataclass_from_mapping(type(default), value, f"{where}.{key}", base=default,
                                                  convert=convert)
        else:
            changes[key] = convert(f"{where}.{key}", value, hints.get(key), default)
    return replace(base, **changes)
