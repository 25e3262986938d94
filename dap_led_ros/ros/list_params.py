"""List-valued node settings written as comma-separated strings.

node_config maps settings onto scalar ROS parameters only (bool, int, float, str), so a list
such as a normalisation mean is one string parameter, e.g. `mean: "0.485, 0.456, 0.406"`.
"""
from __future__ import annotations

from collections.abc import Sequence

from dap_led_ros.ros.params import ConfigError


def format_list(values: Sequence[object]) -> str:
    """The parameter text of a list (its default in a settings dataclass)."""
    return ", ".join(str(v) for v in values)


def parse_floats(name: str, text: str, count: int) -> list[float]:
    """`count` comma-separated numbers, or ConfigError naming the parameter."""
    parts = [p.strip() for p in text.split(",")]
    try:
        values = [float(p) for p in parts]
    except ValueError:
        raise ConfigError(f"parameter '{name}' must be {count} comma-separated numbers, "
                          f"got '{text}'") from None
    if len(values) != count:
        raise ConfigError(f"parameter '{name}' needs {count} numbers, got {len(values)} ('{text}')")
    return values


def parse_names(text: str) -> list[str]:
    """Comma-separated names, blanks dropped ("" -> [])."""
    return [p.strip() for p in text.split(",") if p.strip()]
