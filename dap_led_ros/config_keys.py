"""Checking configuration mappings against the dataclass that holds their defaults."""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import fields
from typing import Any


def reject_unknown_keys(d: Mapping[str, Any], cls: type, what: str) -> None:
    """ValueError naming the keys of `d` that are not fields of dataclass `cls` (likely typos)."""
    known = sorted(f.name for f in fields(cls))
    unknown = sorted(set(d) - set(known))
    if unknown:
        raise ValueError(f"unknown {what} {unknown}; known: {known}")
