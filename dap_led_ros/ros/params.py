"""Typed node settings: one dataclass per node, the single source of defaults.

A settings dataclass maps onto ROS parameters field by field; a nested dataclass becomes a
dotted prefix (``qos.input.depth``), which is also how a ROS params file nests them:

    enhance_node:
      ros__parameters:
        backend: torch
        qos:
          input: {reliability: reliable, depth: 10}

The same dataclass loads from ROS parameters (`declare_node_parameters` + `read_node_parameters`)
and from a params file without ROS (`load_params_file`, used by `dap-led pipeline`).
Values are checked here, with messages that name the parameter and the accepted values.
"""
from __future__ import annotations

import dataclasses
import difflib
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar, get_type_hints

import yaml

from dap_led_ros.imaging.image_encoding import DEFAULT_MAX_INPUT_PIXELS
from dap_led_ros.settings import dataclass_from_mapping, read_text_file

RELIABILITIES = ("best_effort", "reliable", "auto")  # auto: inputs only (follow the publishers)
DURABILITIES = ("volatile", "transient_local")
MAX_QUEUE_DEPTH = 1000
# Sane ranges: a diagnostics period below MIN_DIAGNOSTICS_PERIOD_S keeps an idle node busy.
MIN_DIAGNOSTICS_PERIOD_S = 0.1
MAX_DIAGNOSTICS_PERIOD_S = 3600.0
MAX_RATE_HZ = 1000.0
MAX_INPUT_PIXELS = 1 << 28  # 16384 x 16384
MAX_THREADS = 256

C = TypeVar("C")


class ConfigError(ValueError):
    """A node setting is missing, unknown, of the wrong type or out of range."""


def param_help(text: str, low: float | None = None, high: float | None = None,
               note: str = "") -> dict[str, Any]:
    """Field metadata: the parameter's description and, with `low`/`high`, its range (both shown by
    `ros2 param describe` and rqt; checked by `check_field_ranges`; `note` explains a special value)."""
    meta: dict[str, Any] = {"help": text}
    if low is not None and high is not None:
        meta[RANGE] = (low, high, note)
    return meta


RANGE = "range"


def check_field_ranges(cfg: Any) -> None:
    """ConfigError for the first field of `cfg` outside the range its metadata declares."""
    for f in dataclasses.fields(cfg):
        if RANGE in f.metadata:
            low, high, note = f.metadata[RANGE]
            check_range(f.name, getattr(cfg, f.name), low, high, note)


def ranges(cls: type, prefix: str = "") -> dict[str, tuple[float, float]]:
    """Dotted parameter name -> (low, high) for the fields that declare a range."""
    out: dict[str, tuple[float, float]] = {}
    hints = get_type_hints(cls)
    for f in dataclasses.fields(cls):
        if dataclasses.is_dataclass(hints[f.name]):
            out.update(ranges(hints[f.name], f"{prefix}{f.name}."))
        elif RANGE in f.metadata:
            out[f"{prefix}{f.name}"] = f.metadata[RANGE][:2]
    return out


@dataclass
class QosSettings:
    """QoS of one side of a node (history is always keep-last)."""

    reliability: str = field(default="reliable", metadata=param_help(
        "best_effort | reliable | auto (inputs: the publishers' reliability, as rosbag2 records)"))
    depth: int = field(default=10, metadata=param_help("keep-last queue depth", 1, MAX_QUEUE_DEPTH))
    durability: str = field(default="volatile", metadata=param_help("volatile | transient_local"))

    def validate(self, prefix: str, inputs: bool = False) -> None:
        check_choice(f"{prefix}.reliability", self.reliability, RELIABILITIES if inputs else RELIABILITIES[:2])
        check_choice(f"{prefix}.durability", self.durability, DURABILITIES)
        if not 1 <= self.depth <= MAX_QUEUE_DEPTH:
            raise ConfigError(f"{prefix}.depth must be in 1..{MAX_QUEUE_DEPTH}, got {self.depth}")


def _input_qos() -> QosSettings:
    """Input side: the publishers' reliability (auto: a reliable camera is read reliably, so a large
    frame that loses a UDP fragment is resent, not dropped; a best-effort camera is read best
    effort), and rclpy's usual depth 10: every frame of a paced burst reaches the node (with depth
    1, 1080p frames at 30 Hz were replaced in the reader before the executor took them); the worker
    keeps only the newest, so latency stays bounded. docs/ros.md has figures."""
    return QosSettings(reliability="auto", depth=10, durability="volatile")


def _output_qos() -> QosSettings:
    """REP-2003 output side: reliable (the system default) so any subscriber matches."""
    return QosSettings(reliability="reliable", depth=10, durability="volatile")


@dataclass
class QosConfig:
    input: QosSettings = field(default_factory=_input_qos)
    output: QosSettings = field(default_factory=_output_qos)

    def validate(self) -> None:
        self.input.validate("qos.input", inputs=True)
        self.output.validate("qos.output")


@dataclass
class ManagedNodeConfig:
    """Settings every dap_led_ros image node has (lifecycle, enable switch, rate, QoS)."""

    autostart: bool = field(default=True, metadata=param_help(
        "configure and activate at start; false: wait for a lifecycle manager"))
    enabled: bool = field(default=True, metadata=param_help(
        "initial state of the ~/enable switch"))
    passthrough_when_disabled: bool = field(default=True, metadata=param_help(
        "while disabled: true republishes input frames untouched, false publishes nothing"))
    max_rate_hz: float = field(default=0.0, metadata=param_help(
        "process at most this many frames per second (0: as fast as possible)", 0.0, MAX_RATE_HZ,
        "0 = unlimited"))
    diagnostics_period_s: float = field(default=1.0, metadata=param_help(
        "period of the /diagnostics status", MIN_DIAGNOSTICS_PERIOD_S, MAX_DIAGNOSTICS_PERIOD_S))
    hardware_id: str = field(default="", metadata=param_help(
        "hardware_id of the /diagnostics statuses (diagnostic_updater); empty: the input's frame_id"))
    max_input_pixels: int = field(default=DEFAULT_MAX_INPUT_PIXELS, metadata=param_help(
        "frames larger than this are rejected as malformed (guards against corrupt headers)", 1, MAX_INPUT_PIXELS))
    qos: QosConfig = field(default_factory=QosConfig)

    def validate(self) -> None:
        if self.max_rate_hz < 0:
            raise ConfigError(f"max_rate_hz must be >= 0 (0 = unlimited), got {self.max_rate_hz}")
        check_field_ranges(self)  # every field whose metadata declares a range, subclasses' too
        self.qos.validate()


def check_range(name: str, value: float, low: float, high: float, note: str = "") -> None:
    """ConfigError unless low <= value <= high."""
    if not low <= value <= high:
        hint = f" ({note})" if note else ""
        raise ConfigError(f"{name} must be in {_number(low)}..{_number(high)}{hint}, got {_number(value)}")


def _number(v: float) -> str:
    return str(v) if isinstance(v, int) else f"{v:g}"


def check_choice(name: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ConfigError(f"{name} must be one of {', '.join(choices)}; got '{value}'")


# ----------------------------------------------------------------------------- flat views

def flat_defaults(cls: type) -> dict[str, Any]:
    """Dotted parameter name -> default value, for every leaf field of a settings dataclass."""
    return flatten(cls())


def flatten(cfg: Any, prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for f in dataclasses.fields(cfg):
        value = getattr(cfg, f.name)
        if dataclasses.is_dataclass(value):
            out.update(flatten(value, f"{prefix}{f.name}."))
        else:
            out[f"{prefix}{f.name}"] = value
    return out


def descriptions(cls: type, prefix: str = "") -> dict[str, str]:
    """Dotted parameter name -> help text."""
    out: dict[str, str] = {}
    hints = get_type_hints(cls)
    for f in dataclasses.fields(cls):
        if dataclasses.is_dataclass(hints[f.name]):
            out.update(descriptions(hints[f.name], f"{prefix}{f.name}."))
        else:
            out[f"{prefix}{f.name}"] = f.metadata.get("help", "")
    return out


def _coerce(name: str, value: Any, kind: type) -> Any:
    """Check one value against the field's type (ints are accepted where floats are)."""
    if kind is bool:
        if isinstance(value, bool):
            return value
    elif kind is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif kind is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            if not math.isfinite(value):
                raise ConfigError(f"parameter '{name}' must be a finite number, got {value!r}")
            return float(value)
    elif kind is str:
        if isinstance(value, str):
            return value
    else:
        raise TypeError(f"unsupported settings field type {kind} for {name}")
    article = "an" if kind is int else "a"
    raise ConfigError(f"parameter '{name}' must be {article} {kind.__name__}, got {value!r} "
                      f"({type(value).__name__})")


def _nest(flat: dict[str, Any]) -> dict[str, Any]:
    """{"qos.input.depth": 5} -> {"qos": {"input": {"depth": 5}}}."""
    out: dict[str, Any] = {}
    for name, value in flat.items():
        *parents, leaf = name.split(".")
        node = out
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = value
    return out


def _coerce_leaf(where: str) -> Any:
    """A converter for settings.dataclass_from_mapping that names parameters as ROS does."""
    def convert(name: str, value: Any, kind: Any, default: Any) -> Any:
        return _coerce(name.removeprefix(f"{where}."), value, kind)
    return convert


def config_from_flat(cls: type[C], flat: dict[str, Any], *, strict: bool = True) -> C:
    """Build and validate settings from dotted names; missing names keep their defaults.

    strict: unknown names are an error (they are typos more often than not).
    """
    known = flat_defaults(cls)
    unknown = sorted(set(flat) - set(known))
    if strict and unknown:
        raise ConfigError(f"{unknown_parameters_message(unknown, known)} for {cls.__name__}")
    flat = {k: v for k, v in flat.items() if k in known}
    where = cls.__name__
    cfg = dataclass_from_mapping(cls, _nest(flat), where, convert=_coerce_leaf(where))
    cfg.validate()  # type: ignore[attr-defined]
    return cfg


# ----------------------------------------------------------------------------- params files

def _flatten_mapping(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in d.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(_flatten_mapping(value, f"{name}."))
        else:
            out[name] = value
    return out


def _node_keys(node_name: str, namespace: str) -> list[str]:
    """Keys of a params file that address this node, most general first (later ones win)."""
    ns = "/" + namespace.strip("/") if namespace.strip("/") else ""
    return ["/**", "**", f"/**/{node_name}", node_name, f"/{node_name}", f"{ns}/{node_name}" if ns else "",
            f"{ns.lstrip('/')}/{node_name}" if ns else ""]


def read_params_document(path: Path) -> dict[str, Any]:
    """A params file as a mapping (empty file: {}), with clear errors for unreadable or bad YAML."""
    try:
        doc = yaml.safe_load(read_text_file(path, "params file"))
    except (OSError, ValueError) as exc:
        raise ConfigError(str(exc)) from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"params file {path} is not valid YAML: {exc}") from None
    if doc is None:
        return {}
    if not isinstance(doc, dict):
        raise ConfigError(f"params file {path} must map node names to 'ros__parameters'")
    return doc


def read_params_file(path: str | Path, node_name: str, namespace: str = "") -> dict[str, Any]:
    """Dotted parameter name -> value for one node from a ROS 2 params file.

    Sections apply in the order `/**`, `/**/node_name`, `node_name`, `/namespace/node_name` (later ones win),
    as `ros2 run ... --params-file` would apply them.
    """
    p = Path(path)
    doc = read_params_document(p)
    flat: dict[str, Any] = {}
    for key in filter(None, _node_keys(node_name, namespace)):
        section = doc.get(key)
        if section is None:
            continue
        if not isinstance(section, dict) or not isinstance(section.get("ros__parameters"), dict):
            raise ConfigError(f"params file {p}: section '{key}' needs a 'ros__parameters' mapping")
        flat.update(_flatten_mapping(section["ros__parameters"]))
    return flat


def load_params_file(cls: type[C], path: str | Path, node_name: str, namespace: str = "") -> C:
    """Settings for one node from a ROS 2 params file (defaults for what it does not set)."""
    flat = read_params_file(path, node_name, namespace)
    for name in ROS_BUILTIN_PARAMETERS:
        flat.pop(name, None)
    try:
        return config_from_flat(cls, flat)
    except ConfigError as exc:
        raise ConfigError(f"{path} [{node_name}]: {exc}") from None


# Parameters rclpy itself declares or reads; never "unknown".
ROS_BUILTIN_PARAMETERS = ("use_sim_time", "start_type_description_service")


# ----------------------------------------------------------------------------- ROS parameters

def declare_node_parameters(node: Any, cls: type) -> None:
    """Declare one ROS parameter per settings field, with its default, description and range.

    Types are checked by `read_node_parameters` (dynamic typing here, so that `rate: 5` in a
    params file is not rejected by rclpy for being an int where a float is declared). A value given
    at start that is outside its range would make rclpy raise here, before configure could report
    it: that parameter is declared without its range, and configure fails with the reason.
    """
    from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor
    from rclpy.exceptions import InvalidParameterValueException

    helps, limits = descriptions(cls), ranges(cls)
    for name, default in flat_defaults(cls).items():
        plain = ParameterDescriptor(description=helps[name], dynamic_typing=True)
        if name not in limits:
            node.declare_parameter(name, default, plain)
            continue
        low, high = limits[name]
        ranged = ParameterDescriptor(description=helps[name], dynamic_typing=True)
        if isinstance(default, int) and not isinstance(default, bool):
            ranged.integer_range = [IntegerRange(from_value=int(low), to_value=int(high), step=0)]
        else:
            ranged.floating_point_range = [FloatingPointRange(from_value=float(low), to_value=float(high), step=0.0)]
        try:
            node.declare_parameter(name, default, ranged)
        except InvalidParameterValueException:
            node.declare_parameter(name, default, plain)


def read_node_parameters(node: Any, cls: type[C]) -> C:
    """Current values of the declared parameters as validated settings (ConfigError if bad)."""
    flat = {name: node.get_parameter(name).value for name in flat_defaults(cls)}
    return config_from_flat(cls, flat)


def unknown_parameters_message(unknown: list[str], known: Any) -> str:
    """"unknown parameter 'x' (did you mean 'y'?)", for each unknown name."""
    parts = []
    for name in unknown:
        close = difflib.get_close_matches(name, list(known), n=1, cutoff=0.6)
        parts.append(f"'{name}'" + (f" (did you mean '{close[0]}'?)" if close else ""))
    return f"unknown parameter{'s' if len(parts) > 1 else ''} {', '.join(parts)}"


QOS_OVERRIDES_PREFIX = "qos_overrides."


def unknown_parameter_overrides(node: Any, cls: type) -> list[str]:
    """Names given to the node (params file, -p) that no settings field declares: likely typos."""
    given = getattr(node, "_parameter_overrides", {}) or {}
    known = set(flat_defaults(cls)) | set(ROS_BUILTIN_PARAMETERS)
    return sorted(name for name in given if name not in known and not name.startswith(QOS_OVERRIDES_PREFIX))


def qos_overrides_message(node: Any) -> str:
    """Why `qos_overrides.*` given to the node are refused ("" when none is): the node does not
    apply rclpy's per-topic QoS overrides (its inputs re-subscribe to follow their publishers), so
    a value there would be silently ignored; qos.input.* / qos.output.* set the QoS."""
    given = sorted(n for n in (getattr(node, "_parameter_overrides", {}) or {}) if n.startswith(QOS_OVERRIDES_PREFIX))
    if not given:
        return ""
    return (f"{', '.join(given)}: per-topic qos_overrides are not applied by this node; set "
            f"qos.input.reliability/depth/durability and qos.output.* instead (docs/ros.md#qos)")
