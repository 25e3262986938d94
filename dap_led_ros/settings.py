"""Reading configuration YAML and checking it against the dataclass that holds the defaults."""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import fields
from pathlib import Path
from typing import Any, TypeVar

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


def load_yaml_mapping(path: str | Path, what: str) -> dict[str, Any]:
    """The top-level mapping of a YAML file ({} when empty), with specific errors."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{what} not found: {path}")
    try:
        doc = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ValueError(f"{path} is not valid YAML: {exc}") from exc
    if not isinstance(doc, dict):
        raise ValueError(f"{path}: expected a mapping at the top level")
    return doc
